#include "consentd/request_bodies.hpp"

#include <boost/json/object.hpp>

#include "policy/strict_json.hpp"
#include "policy/values.hpp"

namespace optgate::consentd {

using policy::JsonFields;
using policy::parse_json_strict;

namespace json = boost::json;

std::optional<json::value> read_json_body(std::string_view text, BodyError& error) {
    if (text.empty()) return json::value(json::object());
    std::string why;
    auto v = parse_json_strict(text, why);
    if (!v) error = {"malformed_json", std::move(why)};
    return v;
}

std::optional<ConsentBody> read_consent_body(const json::value& body, bool grant, BodyError& error) {
    JsonFields f(body, {"source", "notice_version"});
    auto source = f.text("source", true);
    auto notice_version = f.text("notice_version", grant);
    if (!f.ok()) {
        error = {"invalid_body", f.error()};
        return std::nullopt;
    }
    return ConsentBody{std::move(*source), std::move(notice_version)};
}

std::optional<BindBody> read_bind_body(const json::value& body, BodyError& error) {
    JsonFields f(body, {"subscriber", "source"});
    auto subscriber = f.text("subscriber", true);
    auto source = f.text("source", false);
    if (!f.ok()) {
        error = {"invalid_body", f.error()};
        return std::nullopt;
    }
    if (!policy::syntax::is_subscriber_id(*subscriber)) {
        error = {"invalid_subscriber_id", "subscriber ids are 1..128 characters of [A-Za-z0-9._:@-]"};
        return std::nullopt;
    }
    return BindBody{std::move(*subscriber), std::move(source)};
}

std::optional<UnbindBody> read_unbind_body(const json::value& body, BodyError& error) {
    JsonFields f(body, {"subscriber", "source"});
    auto subscriber = f.text("subscriber", false);
    auto source = f.text("source", false);
    if (!f.ok()) {
        error = {"invalid_body", f.error()};
        return std::nullopt;
    }
    return UnbindBody{std::move(subscriber), std::move(source)};
}

}  // namespace optgate::consentd
