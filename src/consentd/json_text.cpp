#include "consentd/json_text.hpp"

#include <array>
#include <charconv>
#include <cmath>

#include "core/chars.hpp"

namespace optgate::consentd {

namespace json = boost::json;

std::string json_number(double d) {
    if (!std::isfinite(d)) return "null";
    // Fixed notation, shortest round trip: at most 309 digits before the point.
    char buf[400];
    const auto r = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::fixed);
    if (r.ec != std::errc()) return "null";
    return std::string(buf, r.ptr);
}

namespace {

// What follows the backslash for each byte that JSON text must escape: 'u'
// for \u00XX, 0 for a byte written as it is (Boost.JSON's table).
constexpr std::array<char, 256> kEscape = [] {
    std::array<char, 256> t{};
    for (int c = 0; c < 0x20; ++c) t[c] = 'u';
    t['\b'] = 'b';
    t['\t'] = 't';
    t['\n'] = 'n';
    t['\f'] = 'f';
    t['\r'] = 'r';
    t['"'] = '"';
    t['\\'] = '\\';
    return t;
}();

template <typename Int>
void append_integer(std::string& out, Int n) {
    char buf[24];
    const auto r = std::to_chars(buf, buf + sizeof buf, n);
    out.append(buf, r.ptr);
}

}  // namespace

void append_json_string(std::string& out, std::string_view s) {
    out.push_back('"');
    size_t run = 0;  // the start of the bytes not yet appended, none escaped
    for (size_t i = 0; i < s.size(); ++i) {
        const char e = kEscape[static_cast<unsigned char>(s[i])];
        if (!e) continue;
        out.append(s.data() + run, i - run);
        run = i + 1;
        out.push_back('\\');
        out.push_back(e);
        if (e == 'u') {
            const auto c = static_cast<unsigned char>(s[i]);
            out.append("00");
            out.push_back(hex_chars::kLowerDigits[c >> 4]);
            out.push_back(hex_chars::kLowerDigits[c & 15]);
        }
    }
    out.append(s.data() + run, s.size() - run);
    out.push_back('"');
}

void append_json_number(std::string& out, int64_t n) { append_integer(out, n); }
void append_json_number(std::string& out, uint64_t n) { append_integer(out, n); }

void append_json(std::string& out, const json::value& v) {
    switch (v.kind()) {
    case json::kind::object: {
        out.push_back('{');
        bool first = true;
        for (const auto& kv : v.get_object()) {
            if (!first) out.push_back(',');
            first = false;
            append_json_string(out, kv.key());
            out.push_back(':');
            append_json(out, kv.value());
        }
        out.push_back('}');
        return;
    }
    case json::kind::array: {
        out.push_back('[');
        bool first = true;
        for (const auto& e : v.get_array()) {
            if (!first) out.push_back(',');
            first = false;
            append_json(out, e);
        }
        out.push_back(']');
        return;
    }
    case json::kind::string: append_json_string(out, v.get_string()); return;
    case json::kind::int64: append_json_number(out, v.get_int64()); return;
    case json::kind::uint64: append_json_number(out, v.get_uint64()); return;
    case json::kind::double_: out += json_number(v.get_double()); return;
    case json::kind::bool_: out += v.get_bool() ? "true" : "false"; return;
    case json::kind::null: out += "null"; return;
    }
}

std::string json_text(const json::value& v) {
    std::string out;
    append_json(out, v);
    return out;
}

}  // namespace optgate::consentd
