#include <doctest/doctest.h>

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/chars.hpp"

using namespace optgate;

TEST_CASE("tchar is RFC 9110's set: letters, digits and !#$%&'*+-.^_`|~, nothing else") {
    const std::string_view specials = "!#$%&'*+-.^_`|~";
    unsigned count = 0;
    for (unsigned c = 0; c < 256; ++c) {
        const bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        const bool want = alnum || (c < 128 && specials.find(char(c)) != std::string_view::npos);
        CHECK_MESSAGE(http_chars::is_tchar(uint8_t(c)) == want, "byte ", c);
        count += http_chars::is_tchar(uint8_t(c));
    }
    CHECK(count == 10 + 26 + 26 + specials.size());
    for (char c : std::string_view(" \t\"(),/:;<=>?@[\\]{}\x7f")) CHECK_FALSE(http_chars::is_tchar(uint8_t(c)));
}

TEST_CASE("lower folds A-Z only") {
    for (unsigned c = 0; c < 256; ++c) {
        const unsigned want = c >= 'A' && c <= 'Z' ? c + 32 : c;
        CHECK_MESSAGE(http_chars::lower(uint8_t(c)) == want, "byte ", c);
    }
}

TEST_CASE("printable, visible and control at their edges; bytes >= 0x80 are neither printable nor control") {
    struct Row {
        unsigned byte;
        bool printable, visible, control;
    };
    const Row rows[] = {
        {0x00, false, false, true},  {0x09, false, false, true},  {0x1f, false, false, true},
        {0x20, true, false, false},  {0x21, true, true, false},   {'A', true, true, false},
        {0x7e, true, true, false},   {0x7f, false, false, true},  {0x80, false, false, false},
        {0xc3, false, false, false}, {0xff, false, false, false},
    };
    for (const Row& r : rows) {
        const char c = char(r.byte);
        CHECK_MESSAGE(ascii::is_printable(c) == r.printable, "byte ", r.byte);
        CHECK_MESSAGE(ascii::is_visible(c) == r.visible, "byte ", r.byte);
        CHECK_MESSAGE(ascii::is_control(c) == r.control, "byte ", r.byte);
    }
    // Over all bytes: visible is printable without the space, and printable
    // ASCII and controls are disjoint and together make up 0x00..0x7f.
    for (unsigned b = 0; b < 256; ++b) {
        const char c = char(b);
        CHECK(ascii::is_visible(c) == (ascii::is_printable(c) && b != 0x20));
        CHECK(ascii::is_printable(c) + ascii::is_control(c) == (b < 0x80 ? 1 : 0));
    }
}

TEST_CASE("hex: digits of either case, lowercase only where asked, and lowercase out") {
    for (int c = 0; c < 256; ++c) {
        CAPTURE(c);
        const char ch = char(c);
        int either = -1;
        if (c >= '0' && c <= '9') either = c - '0';
        if (c >= 'a' && c <= 'f') either = c - 'a' + 10;
        if (c >= 'A' && c <= 'F') either = c - 'A' + 10;
        CHECK(hex_chars::value(ch) == either);
        CHECK(hex_chars::lower_value(ch) == (c >= 'A' && c <= 'F' ? -1 : either));
    }
    std::vector<uint8_t> all(256);
    for (size_t i = 0; i < all.size(); ++i) all[i] = uint8_t(i);
    const std::string text = hex_chars::lower(all);
    REQUIRE(text.size() == 512);
    CHECK(text.substr(0, 8) == "00010203");
    CHECK(text.substr(20, 4) == "0a0b");
    CHECK(text.substr(508) == "feff");
    // Each pair reads back as its byte.
    for (size_t i = 0; i < all.size(); ++i)
        CHECK(hex_chars::lower_value(text[2 * i]) * 16 + hex_chars::lower_value(text[2 * i + 1]) == int(i));
    CHECK(hex_chars::lower(std::string_view("\x01\xab", 2)) == "01ab");
    std::string out = "key ";
    hex_chars::append_lower(out, std::span<const uint8_t>(all.data() + 250, 6));
    CHECK(out == "key fafbfcfdfeff");
}
