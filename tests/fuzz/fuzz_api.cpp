// fuzz_api: consentd's request parsers (src/consentd) on fuzz bytes, under
// consentd's unit-test policy (tests/consentd/fixture.hpp).
//
// Input: byte 0 picks the parser, the rest is its text.
//   0 PUT    /v1/subscribers/{id}/consents/{purpose}  body {source, notice_version}
//   1 DELETE /v1/subscribers/{id}/consents/{purpose}  body {source[, notice_version]}
//   2 PUT    /v1/bindings/{address}                   body {subscriber[, source]}
//   3 DELETE /v1/bindings/{address}                   body {[subscriber, source]}
//   4 POST /v1/import, NDJSON     5 POST /v1/import, CSV
//   6 a request target through the router (method: byte 1)
//   7 a binding address ({address}, import "addresses")
// The JSON bodies go through the functions Api's handlers call
// (consentd/request_bodies.hpp): read_json_body, then the endpoint's reader.
//
// Invariants: every parser returns a value or its error and throws nothing
// (an exception escapes and is a crash); errors are non-empty; a JSON value
// serialised and parsed again is the same value; the fields read from a
// body, written back as JSON, read the same; an import's records written
// back as NDJSON and as CSV parse to the same records; a binding's stored
// text parses back to the same binding; an import has records or errors,
// never both, and at most 20 errors.
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <cmath>

#include "consentd/binding_address.hpp"
#include "consentd/import_parser.hpp"
#include "consentd/request_bodies.hpp"
#include "consentd/router.hpp"
#include "fixture.hpp"
#include "policy/strict_json.hpp"
#include "policy/values.hpp"
#include "support/fuzz_check.hpp"

using namespace optgate;
using namespace optgate::consentd;
using optgate::policy::JsonFields;
using optgate::policy::parse_json_strict;
namespace json = boost::json;

namespace {

const Policy& policy() {
    static const Policy p = consentd::test::sample_policy();
    return p;
}

// Boost.JSON 1.81 reads a number like 0e999 as NaN (0 * inf), which
// serialises as "NaN", not JSON: values holding one skip the round trip.
// consentd reads only strings from bodies and never writes a parsed body back.
bool all_finite(const json::value& v) {
    if (const double* d = v.if_double()) return std::isfinite(*d);
    if (const auto* a = v.if_array()) return std::all_of(a->begin(), a->end(), all_finite);
    if (const auto* o = v.if_object())
        return std::all_of(o->begin(), o->end(), [](const json::key_value_pair& kv) { return all_finite(kv.value()); });
    return true;
}

// Equal values, doubles to 1e-12 relative: Boost.JSON 1.81's default number
// parsing is not exact, so a double does not always survive serialise + parse
// to the last bit.
bool same_json(const json::value& a, const json::value& b) {
    if (a.kind() != b.kind()) return false;
    if (const double* x = a.if_double()) {
        const double y = b.get_double();
        return *x == y || std::fabs(*x - y) <= 1e-12 * std::max(std::fabs(*x), std::fabs(y));
    }
    if (const auto* x = a.if_array()) {
        const auto& y = b.get_array();
        return x->size() == y.size() && std::equal(x->begin(), x->end(), y.begin(), same_json);
    }
    if (const auto* x = a.if_object()) {
        const auto& y = b.get_object();
        if (x->size() != y.size()) return false;
        for (auto i = x->begin(), j = y.begin(); i != x->end(); ++i, ++j)
            if (i->key() != j->key() || !same_json(i->value(), j->value())) return false;
        return true;
    }
    return a == b;
}

// A body as Api::handle reads it: empty means {}.
std::optional<json::value> read_json(std::string_view body) {
    BodyError error;
    auto v = read_json_body(body, error);
    FUZZ_CHECK(v || (!error.code.empty() && !error.message.empty()), "malformed JSON without an error");
    if (!v || !all_finite(*v)) return v;
    const std::string text = json::serialize(*v);
    std::string again_error;
    const auto again = parse_json_strict(text, again_error);
    FUZZ_CHECK(again && same_json(*again, *v),
               "JSON serialised as " + text + " does not parse back the same: " + again_error);
    return v;
}

// The fields an endpoint reads, by name, as its handler reads them.
using Fields = std::vector<std::pair<std::string, std::optional<std::string>>>;

std::optional<Fields> read_fields(const json::value& v, unsigned route, std::string& error) {
    BodyError why;
    std::optional<Fields> out;
    if (route <= 1) {  // consents: 0 grant, 1 revoke
        if (auto b = read_consent_body(v, route == 0, why)) {
            FUZZ_CHECK(route == 1 || b->notice_version, "a grant read without its notice_version");
            out = Fields{{"source", b->source}, {"notice_version", b->notice_version}};
        }
    } else if (route == 2) {  // bind
        if (auto b = read_bind_body(v, why)) {
            FUZZ_CHECK(policy::syntax::is_subscriber_id(b->subscriber), "a binding read with an invalid subscriber id");
            out = Fields{{"subscriber", b->subscriber}, {"source", b->source}};
        }
    } else if (auto b = read_unbind_body(v, why)) {  // unbind
        out = Fields{{"subscriber", b->subscriber}, {"source", b->source}};
    }
    if (!out) error = why.code.empty() || why.message.empty() ? std::string() : why.code + ": " + why.message;
    return out;
}

void check_body(unsigned route, std::string_view body) {
    const auto v = read_json(body);
    if (!v) return;
    std::string error;
    const auto fields = read_fields(*v, route, error);
    if (!fields) {
        FUZZ_CHECK(!error.empty(), "a body refused without an error message");
        return;
    }
    json::object o;
    for (const auto& [k, val] : *fields)
        if (val) o[k] = *val;
    const std::string text = json::serialize(o);
    std::string again_error;
    const auto again = read_fields(*read_json(text), route, again_error);
    FUZZ_CHECK(again && *again == *fields, "fields written back as " + text + " read differently: " + again_error);
}

// ---- imports ----

std::string address_text(const AddressText& a) { return a.bare ? a.prefix.addr.to_string() : a.prefix.to_string(); }

std::string ndjson(const std::vector<ImportRecord>& records) {
    std::string out;
    for (const auto& r : records) {
        json::object o;
        o["subscriber"] = r.subscriber;
        json::array addresses, consents;
        for (const auto& a : r.addresses) addresses.emplace_back(address_text(a));
        for (const auto& c : r.consents) consents.emplace_back(c);
        o["addresses"] = std::move(addresses);
        o["consents"] = std::move(consents);
        if (r.notice_version) o["notice_version"] = *r.notice_version;
        o["source"] = r.source;
        out += json::serialize(o) + "\n";
    }
    return out;
}

std::string csv_field(std::string_view s) {
    std::string out = "\"";
    for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
    return out + "\"";
}

std::string csv(const std::vector<ImportRecord>& records) {
    std::string out = "subscriber,addresses,consents,notice_version,source\r\n";
    for (const auto& r : records) {
        std::string addresses, consents;
        for (const auto& a : r.addresses) addresses += (addresses.empty() ? "" : " ") + address_text(a);
        for (const auto& c : r.consents) consents += (consents.empty() ? "" : " ") + c;
        out += csv_field(r.subscriber) + "," + csv_field(addresses) + "," + csv_field(consents) + "," +
               (r.notice_version ? csv_field(*r.notice_version) : "") + "," + csv_field(r.source) + "\r\n";
    }
    return out;
}

bool same_records(const std::vector<ImportRecord>& a, const std::vector<ImportRecord>& b, std::string& why) {
    if (a.size() != b.size()) return why = "record count", false;
    for (size_t i = 0; i < a.size(); ++i) {
        const ImportRecord &x = a[i], &y = b[i];
        if (x.subscriber != y.subscriber || x.consents != y.consents || x.source != y.source ||
            x.notice_version != y.notice_version || x.addresses.size() != y.addresses.size())
            return why = "record " + std::to_string(i) + " (" + x.subscriber + ")", false;
        for (size_t k = 0; k < x.addresses.size(); ++k)
            if (!(x.addresses[k].prefix == y.addresses[k].prefix) || x.addresses[k].bare != y.addresses[k].bare)
                return why = "address " + address_text(x.addresses[k]) + " of " + x.subscriber, false;
    }
    return true;
}

void check_import_result(const ImportParse& r) {
    FUZZ_CHECK(r.records.empty() != r.errors.empty(), "an import with both records and errors, or neither");
    FUZZ_CHECK(r.errors.size() <= 20, std::to_string(r.errors.size()) + " errors");
    for (const auto& e : r.errors) FUZZ_CHECK(!e.empty(), "an empty import error");
}

void check_import(std::string_view body, ImportFormat format) {
    const ImportParse r = parse_import(body, format, policy());
    check_import_result(r);
    if (r.records.empty()) return;
    size_t events = 0;
    for (const auto& rec : r.records) {
        FUZZ_CHECK(check_import_record(rec, policy()).empty(), "a parsed record fails check_import_record");
        events += rec.addresses.size() + rec.consents.size();
    }
    FUZZ_CHECK(events == r.events,
               "events " + std::to_string(r.events) + ", records ask for " + std::to_string(events));
    for (const auto& [text, f] :
         {std::pair{ndjson(r.records), ImportFormat::ndjson}, {csv(r.records), ImportFormat::csv}}) {
        const ImportParse again = parse_import(text, f, policy());
        std::string why;
        const bool same = again.errors.empty() && same_records(r.records, again.records, why);
        if (same) continue;
        if (!again.errors.empty()) why += "; " + again.errors[0];
        std::string what = "records written back as ";
        what += f == ImportFormat::csv ? "CSV" : "NDJSON";
        what += " parse differently (" + why + "):\n";
        what += text;
        FUZZ_CHECK(same, what);
    }
}

// ---- routes and addresses ----

void check_route(uint8_t m, std::string_view target) {
    static const boost::beast::http::verb verbs[] = {boost::beast::http::verb::get, boost::beast::http::verb::put,
                                                     boost::beast::http::verb::delete_, boost::beast::http::verb::post,
                                                     boost::beast::http::verb::patch};
    const RouteMatch r = match_route(verbs[m % 5], target);
    if (r.route == Route::none) {
        FUZZ_CHECK(r.status == 400 || r.status == 404 || r.status == 405, "status " + std::to_string(r.status));
        FUZZ_CHECK(!r.code.empty() && !r.message.empty(), "a refused route without a code or message");
        return;
    }
    FUZZ_CHECK(route_info(r.route).method.size() > 0, "a matched route without a method");
    for (const auto& [k, v] : r.query) FUZZ_CHECK(r.param(k) != nullptr, "query parameter '" + k + "' not found");
}

void check_address(std::string_view text) {
    std::string error;
    const auto a = parse_address_text(text, error);
    if (!a) {
        FUZZ_CHECK(!error.empty(), "an address refused without an error message");
        return;
    }
    AddressProblem problem = AddressProblem::none;
    std::string why;
    const auto bind = binding_for_bind(*a, policy(), problem, why);
    std::string unbind_why;
    const auto unbind = binding_for_unbind(*a, policy(), unbind_why);
    if (bind) {
        FUZZ_CHECK(unbind && *unbind == *bind, "an address one can bind but not unbind (" + unbind_why + ")");
        FUZZ_CHECK(binding_active(*bind, policy()), binding_text(*bind) + " bound but not active");
    }
    if (!unbind) return;
    const std::string stored = binding_text(*unbind);
    const auto back = parse_binding_text(stored);
    FUZZ_CHECK(back && *back == *unbind, "stored binding text '" + stored + "' does not parse back");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    const unsigned mode = data[0] % 8;
    const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
    switch (mode) {
    case 0:
    case 1:
    case 2:
    case 3: check_body(mode, text); break;
    case 4: check_import(text, ImportFormat::ndjson); break;
    case 5: check_import(text, ImportFormat::csv); break;
    case 6:
        if (!text.empty()) check_route(uint8_t(text[0]), text.substr(1));
        break;
    case 7: check_address(text); break;
    }
    return 0;
}
