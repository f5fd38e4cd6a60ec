// Strict JSON for consentd's request bodies and import lines, and for NDJSON
// consent files: Boost.JSON's parser, plus what it lets through that an audit
// record must not: duplicate keys (which parsers resolve differently) and
// fields a request does not define.
#pragma once

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace optgate::policy {

// One JSON value; nullopt with `error` set on malformed JSON, trailing
// content or a duplicate key in any object.
std::optional<boost::json::value> parse_json_strict(std::string_view text, std::string& error);

// The same, for many documents in a row (NDJSON lines): the parser's buffers
// are kept from one to the next, and each value is built in memory that the
// next parse() reuses. The value returned lives until the next parse() (or
// the parser's end): read what is needed from it, do not keep it.
class StrictJsonParser {
public:
    StrictJsonParser();
    ~StrictJsonParser();
    StrictJsonParser(const StrictJsonParser&) = delete;
    StrictJsonParser& operator=(const StrictJsonParser&) = delete;

    // The document, or nullptr with `error` set (as parse_json_strict).
    const boost::json::value* parse(std::string_view text, std::string& error);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// Reads a request object field by field, recording the first problem.
class JsonFields {
public:
    // Rejects a non-object and any key outside `known`.
    JsonFields(const boost::json::value& v, std::initializer_list<std::string_view> known);

    bool ok() const noexcept { return error_.empty(); }
    const std::string& error() const noexcept { return error_; }

    // A string field of 1..max_len printable ASCII characters (space
    // included). Absent: nullopt, and an error if `required`.
    std::optional<std::string> text(std::string_view key, bool required, size_t max_len = 128);
    // A list of strings (each 1..max_len printable ASCII), possibly empty.
    std::optional<std::vector<std::string>> text_list(std::string_view key, bool required, size_t max_len = 128);

private:
    // The field, or nullptr (an error if `required`, or if one was recorded).
    const boost::json::value* field(std::string_view key, bool required);

    const boost::json::object* obj_ = nullptr;
    std::string error_;
};

bool is_printable_ascii(std::string_view s) noexcept;

}  // namespace optgate::policy
