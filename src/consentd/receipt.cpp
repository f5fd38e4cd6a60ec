#include "consentd/receipt.hpp"

#include <boost/json/serialize.hpp>

#include <stdexcept>

#include "consentd/json_text.hpp"
#include "policy/loader.hpp"

namespace optgate::consentd {

namespace json = boost::json;

namespace {

json::array texts(const std::vector<std::string>& list) {
    json::array a;
    for (const auto& s : list) a.emplace_back(s);
    return a;
}

// Identifiers pass to every collector of a consented purpose, so a purpose
// with collectors shares all of them; one without shares none.
json::array identifiers_json(const Policy& p) {
    json::array a;
    for (const auto& id : p.identifiers) {
        json::object o;
        o["name"] = id.name;
        if (id.kind == Identifier::Kind::http_header)
            o[id.header_prefix ? "http_header_prefix" : "http_header"] = id.header;
        else
            o["edns0_option"] = id.option_code;
        a.emplace_back(std::move(o));
    }
    return a;
}

std::string shown(const json::value& v) {
    std::string s = json::serialize(v);
    if (s.size() > 120) s = s.substr(0, 117) + "...";
    return s;
}

std::string kind_name(const json::value& v) {
    switch (v.kind()) {
    case json::kind::object: return "an object";
    case json::kind::array: return "a list";
    case json::kind::string: return "text";
    case json::kind::null: return "null";
    case json::kind::bool_: return "true or false";
    default: return "a number";
    }
}

std::string field(const std::string& path) { return path.empty() ? "the receipt" : "field '" + path + "'"; }

std::string difference(const json::value& given, const json::value& expected, const std::string& path) {
    const bool both_numbers = given.is_number() && expected.is_number();
    if (given.kind() != expected.kind() && !both_numbers)
        return field(path) + " is " + kind_name(given) + " (" + shown(given) + "); the ledger says " + shown(expected);
    if (expected.is_object()) {
        const auto& g = given.as_object();
        const auto& x = expected.as_object();
        for (const auto& [key, value] : x) {
            const std::string sub = path.empty() ? std::string(key) : path + "." + std::string(key);
            const auto* v = g.if_contains(key);
            if (!v) return field(sub) + " is missing; the ledger says " + shown(value);
            if (auto d = difference(*v, value, sub); !d.empty()) return d;
        }
        for (const auto& [key, value] : g)
            if (!x.contains(key))
                return field(path.empty() ? std::string(key) : path + "." + std::string(key)) +
                       " is not part of a receipt";
        return {};
    }
    if (expected.is_array()) {
        const auto& g = given.as_array();
        const auto& x = expected.as_array();
        if (g.size() != x.size())
            return field(path) + " has " + std::to_string(g.size()) + " entries; the ledger says " +
                   std::to_string(x.size()) + ": " + shown(expected);
        for (size_t i = 0; i < x.size(); ++i)
            if (auto d = difference(g[i], x[i], path + "[" + std::to_string(i) + "]"); !d.empty()) return d;
        return {};
    }
    // Scalars by their JSON text: 7 as a signed or unsigned number is the same.
    if (json::serialize(given) != json::serialize(expected))
        return field(path) + " says " + shown(given) + "; the ledger says " + shown(expected);
    return {};
}

}  // namespace

json::object build_receipt(const ReceiptSource& s) {
    const Event& e = s.event;
    const PolicyRecord* rec = s.record.get();
    const Policy* policy = rec && rec->text ? s.policy.get() : nullptr;
    const ReceiptIssuer none;
    const ReceiptIssuer& issuer = rec ? rec->issuer : none;
    const std::string purpose_name = e.purpose.value_or("");
    const Purpose* purpose = nullptr;
    unsigned index = kMaxPurposes;  // none
    if (const auto i = policy ? policy->purpose_index(purpose_name) : std::nullopt) {
        index = *i;
        purpose = &policy->purposes[index];
    }

    json::object r;
    r["receipt_id"] = e.hash;
    r["version"] = kReceiptVersion;
    r["jurisdiction"] = json_or_null(issuer.jurisdiction);
    json::object controller;
    controller["name"] = json_or_null(issuer.controller_name);
    controller["contact"] = json_or_null(issuer.controller_contact);
    r["controller"] = std::move(controller);
    r["policy_url"] = json_or_null(issuer.policy_url);
    r["timestamp"] = e.time;
    r["collection_method"] = e.source;
    r["subscriber"] = e.subscriber;
    r["notice_version"] = json_or_null(e.notice_version);
    r["action"] = e.action == Action::grant ? "opt-in" : "opt-out";

    json::object p;
    p["name"] = purpose_name;
    p["in_policy"] = policy ? json::value(purpose != nullptr) : json::value(nullptr);
    p["description"] = purpose ? json::value(purpose->description) : json::value(nullptr);
    p["benefit"] = purpose ? json::value(purpose->benefit) : json::value(nullptr);
    r["purpose"] = std::move(p);
    r["data_categories"] = purpose ? json::value(texts(purpose->data)) : json::value(nullptr);
    r["retention"] = purpose ? json::value(purpose->retention) : json::value(nullptr);

    // Known from the policy even for a purpose it no longer defines: then
    // nobody receives anything for it.
    json::value third_parties(nullptr), identifiers(nullptr);
    if (policy) {
        json::array list;
        for (const auto& c : policy->collectors) {
            if (c.purpose != index) continue;
            json::object o;
            o["name"] = c.name;
            o["description"] = c.description;
            list.emplace_back(std::move(o));
        }
        identifiers = list.empty() ? json::array() : identifiers_json(*policy);
        third_parties = std::move(list);
    }
    r["third_parties"] = std::move(third_parties);
    r["identifiers"] = std::move(identifiers);

    json::object ledger;
    ledger["seq"] = e.seq;
    ledger["prev_hash"] = e.prev_hash;
    ledger["credential"] = e.credential;
    r["ledger"] = std::move(ledger);
    if (rec) {
        json::object o;
        o["record"] = rec->id;
        o["from_seq"] = rec->from_seq;
        o["sha256"] = json_or_null(rec->sha256);
        r["policy"] = std::move(o);
    } else {
        r["policy"] = nullptr;
    }
    return r;
}

std::shared_ptr<const Policy> load_recorded_policy(const PolicyRecord& r) {
    if (!r.text) return nullptr;
    try {
        return std::make_shared<const Policy>(
            policy::load_policy_text(*r.text, "recorded policy " + std::to_string(r.id)).policy);
    } catch (const policy::PolicyError& e) {
        throw std::runtime_error("the recorded policy " + std::to_string(r.id) + " does not load: " + e.what());
    }
}

std::string receipt_difference(const json::value& given, const json::value& expected) {
    return difference(given, expected, "");
}

ReceiptReader::Result ReceiptReader::read(const std::string& subscriber, uint64_t seq) {
    EventRecord r = reader_.event(subscriber, seq);
    Result out;
    if (!r.subscriber_known) {
        out.status = Status::unknown_subscriber;
        return out;
    }
    if (!r.event) {
        out.status = Status::unknown_event;
        return out;
    }
    if (r.event->subscriber != subscriber) {
        out.status = Status::other_subscriber;
        return out;
    }
    if (r.event->action != Action::grant && r.event->action != Action::revoke) {
        out.status = Status::not_a_consent_event;
        out.action = r.event->action;
        return out;
    }
    ReceiptSource source;
    if (r.record && r.record->text) {
        // Parsing a policy costs far more than reading the event: once per
        // record (a few: one per policy reload).
        if (recorded_policies_.size() >= 64) recorded_policies_.clear();
        auto& cached = recorded_policies_[r.record->id];
        if (!cached) cached = load_recorded_policy(*r.record);
        source.policy = cached;
    }
    source.event = std::move(*r.event);
    source.record = std::move(r.record);
    out.status = Status::found;
    out.receipt = build_receipt(source);
    return out;
}

}  // namespace optgate::consentd
