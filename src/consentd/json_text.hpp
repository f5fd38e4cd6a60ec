// The one JSON writer for what consentd answers and optgatectl prints.
// Boost.JSON writes doubles in scientific notation ("latency_ms":
// 2.03187E-1, and 0 as 0E0), which people and many tools read badly; here
// every number is plain decimal (the shortest text that reads back as the
// same double), and a NaN or infinity, which JSON cannot say, is null.
// Everything else is the text Boost.JSON's serializer writes, byte for byte
// (tests/consentd/test_json_text.cpp), written straight into the output:
// the largest answers (a page of 100,000 events) are made of millions of
// short strings and numbers, and a serializer per value cost an allocation
// each.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <boost/json/value.hpp>

namespace optgate::consentd {

// `v` as compact JSON text.
std::string json_text(const boost::json::value& v);
// The same, appended to `out`.
void append_json(std::string& out, const boost::json::value& v);
// One string as a JSON string, quotes included, escaped as Boost.JSON does:
// `"` and `\`, \b \t \n \f \r, the other control characters as \u00XX;
// every other byte as it is.
void append_json_string(std::string& out, std::string_view s);
// Integers in decimal.
void append_json_number(std::string& out, int64_t n);
void append_json_number(std::string& out, uint64_t n);
// One number as JSON: 0.203187, 12, 1500000000000000000000.
std::string json_number(double d);
// An optional field's value: the string, or null.
inline boost::json::value json_or_null(const std::optional<std::string>& v) {
    return v ? boost::json::value(*v) : boost::json::value(nullptr);
}

}  // namespace optgate::consentd
