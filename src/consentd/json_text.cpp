#include "consentd/json_text.hpp"

#include <boost/json/serialize.hpp>

#include <charconv>
#include <cmath>

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

void write(const json::value& v, std::string& out) {
    switch (v.kind()) {
    case json::kind::object: {
        out.push_back('{');
        bool first = true;
        for (const auto& kv : v.get_object()) {
            if (!first) out.push_back(',');
            first = false;
            out += json::serialize(json::string_view(kv.key()));
            out.push_back(':');
            write(kv.value(), out);
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
            write(e, out);
        }
        out.push_back(']');
        return;
    }
    case json::kind::double_: out += json_number(v.get_double()); return;
    default: out += json::serialize(v); return;  // strings, integers, bools, null
    }
}

}  // namespace

std::string json_text(const json::value& v) {
    std::string out;
    write(v, out);
    return out;
}

}  // namespace optgate::consentd
