// The JSON bodies of consentd's change endpoints (docs/consentd.md), read
// into what each endpoint needs. The API's handlers and the fuzz target
// (tests/fuzz/fuzz_api.cpp) both call these, so what is fuzzed is what
// answers requests.
#pragma once

#include <boost/json/value.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace optgate::consentd {

// Why a body was refused: the API's error code and message (answered 400).
struct BodyError {
    std::string code;
    std::string message;
};

// A request body's text as JSON: an empty body reads as {}. Malformed JSON,
// trailing content or a duplicate key: nullopt, code "malformed_json".
std::optional<boost::json::value> read_json_body(std::string_view text, BodyError& error);

// PUT and DELETE /v1/subscribers/{id}/consents/{purpose}:
// {"source": ..., "notice_version": ...}; notice_version is required on a
// grant (PUT) and optional on a revoke.
struct ConsentBody {
    std::string source;
    std::optional<std::string> notice_version;
};
std::optional<ConsentBody> read_consent_body(const boost::json::value& body, bool grant, BodyError& error);

// PUT /v1/bindings/{address}: {"subscriber": ..., "source": ...}; the
// subscriber is required and must be a valid subscriber id.
struct BindBody {
    std::string subscriber;
    std::optional<std::string> source;
};
std::optional<BindBody> read_bind_body(const boost::json::value& body, BodyError& error);

// DELETE /v1/bindings/{address}: both fields optional.
struct UnbindBody {
    std::optional<std::string> subscriber;
    std::optional<std::string> source;
};
std::optional<UnbindBody> read_unbind_body(const boost::json::value& body, BodyError& error);

}  // namespace optgate::consentd
