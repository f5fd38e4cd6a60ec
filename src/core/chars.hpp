// Character classes: the one place for each rule about which bytes a token,
// a name or a line of text may hold. Table lookups or two compares, no
// locale (unlike <cctype>), usable on the packet path.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace optgate {

namespace http_chars {

// RFC 9110 tchar: the bytes allowed in a field name or method.
inline constexpr std::array<bool, 256> kTchar = [] {
    std::array<bool, 256> t{};
    for (int c = '0'; c <= '9'; ++c) t[size_t(c)] = true;
    for (int c = 'a'; c <= 'z'; ++c) t[size_t(c)] = true;
    for (int c = 'A'; c <= 'Z'; ++c) t[size_t(c)] = true;
    for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[uint8_t(c)] = true;
    return t;
}();

inline constexpr std::array<uint8_t, 256> kLower = [] {
    std::array<uint8_t, 256> t{};
    for (int c = 0; c < 256; ++c) t[size_t(c)] = uint8_t(c >= 'A' && c <= 'Z' ? c + 32 : c);
    return t;
}();

constexpr bool is_tchar(uint8_t c) noexcept { return kTchar[c]; }
constexpr uint8_t lower(uint8_t c) noexcept { return kLower[c]; }

}  // namespace http_chars

namespace ascii {

// Printable ASCII, 0x20 (space) to 0x7e: what may be echoed into a message
// or a log line as it is.
constexpr bool is_printable(char c) noexcept { return uint8_t(c) >= 0x20 && uint8_t(c) <= 0x7e; }
// Printable ASCII but space (0x21..0x7e): opaque tokens, path segments.
constexpr bool is_visible(char c) noexcept { return uint8_t(c) > 0x20 && uint8_t(c) <= 0x7e; }
// C0 controls and DEL. Bytes >= 0x80 are not: text may be UTF-8.
constexpr bool is_control(char c) noexcept { return uint8_t(c) < 0x20 || uint8_t(c) == 0x7f; }

}  // namespace ascii

namespace hex_chars {

inline constexpr std::string_view kLowerDigits = "0123456789abcdef";

// The value of a hex digit of either case; -1 for any other byte.
constexpr int value(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// The value of a digit of lowercase hex (what optgate writes: digests,
// keys, signatures); -1 for any other byte, uppercase too.
constexpr int lower_value(char c) noexcept { return c >= 'A' && c <= 'F' ? -1 : value(c); }

// Appends two lowercase digits a byte, writing into `out` only (for secrets
// that must not be left in a temporary).
inline void append_lower(std::string& out, std::span<const uint8_t> bytes) {
    for (const uint8_t b : bytes) {
        out += kLowerDigits[b >> 4];
        out += kLowerDigits[b & 15];
    }
}

inline std::string lower(std::span<const uint8_t> bytes) {
    std::string out;
    out.reserve(bytes.size() * 2);
    append_lower(out, bytes);
    return out;
}

inline std::string lower(std::string_view bytes) {
    return lower(std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
}

}  // namespace hex_chars

}  // namespace optgate
