// The replay tool's consent file (docs/consent-file.md): YAML or NDJSON ->
// consent records checked against the policy (its purposes, subscriber
// prefixes and IPv6 key length). Reports every error with its location.
//
// Both formats feed one ConsentChecker, so a subscriber is judged the same
// whichever way it was written. YAML is read whole by yaml-cpp (its node tree
// costs about 4.5 KB per subscriber: fine for the hand-written files it is
// for); NDJSON is read a line at a time, so a 1M-subscriber file costs what
// its records do (docs/benchmarks.md, "Consent file").
#include <istream>
#include <sstream>
#include <unordered_map>

#include "core/addr_hash.hpp"
#include "policy/loader.hpp"
#include "policy/strict_json.hpp"
#include "policy/values.hpp"
#include "policy/yaml_reader.hpp"

namespace optgate::policy {

namespace {

using namespace syntax;

// Judges subscribers one at a time, whatever the file's format: begin(),
// then id(), address() and purpose() for what the subscriber lists (each
// reports its own errors), then end().
class ConsentChecker {
public:
    ConsentChecker(const Policy& policy, Diagnostics& d) : policy_(policy), d_(d) {
        for (const auto& p : policy.purposes) purpose_names_.push_back(p.name);
    }

    void begin(std::string owner) {
        owner_ = std::move(owner);
        errors_at_begin_ = d_.error_count();
        record_ = ConsentRecord{};
        id_ = &kNoId;
    }

    const std::string& owner() const noexcept { return owner_; }

    void id(const std::string& t, Location at) {
        if (!is_subscriber_id(t)) {
            d_.error(at, "subscriber id '" + t + "' is not valid: use 1 to 128 letters, digits or ._:@-");
            return;
        }
        const auto [seen, inserted] = ids_.try_emplace(t, at);
        if (!inserted) {
            d_.error(at, "subscriber id '" + t + "' is used twice (first at line " + std::to_string(seen->second.line) +
                             ")");
            return;
        }
        record_.subscriber_id = t;
        id_ = &seen->first;  // a node's key: stable while ids_ lives
    }

    void address(const std::string& t, Location at) {
        std::string why;
        const auto p = Prefix::parse(t, &why);
        if (!p) {
            d_.error(at, why);
            return;
        }
        const unsigned key_len = policy_.ipv6_key_length;
        const bool bare = t.find('/') == std::string::npos;
        bool inside = false;
        if (p->addr.family == Family::v4) {
            if (p->len != 32) {
                d_.error(at, "'" + t +
                                 "' is a prefix: IPv4 subscribers are keyed by address, so write one "
                                 "address (A.B.C.D or A.B.C.D/32)");
                return;
            }
            for (const auto& s : policy_.subscriber_prefixes) inside = inside || s.contains(p->addr);
        } else {
            if (!bare && p->len != key_len) {
                d_.error(at, "'" + t + "' is a /" + std::to_string(p->len) + ": IPv6 subscribers are keyed by their /" +
                                 std::to_string(key_len) + " prefix (the policy's ipv6_key_length), so write a /" +
                                 std::to_string(key_len) + " or an address in it");
                return;
            }
            const Prefix key_prefix{p->addr.masked(key_len), uint8_t(key_len)};
            for (const auto& s : policy_.subscriber_prefixes)
                inside = inside || (bare ? s.contains(p->addr) : s.overlaps(key_prefix));
        }
        if (!inside) {
            d_.error(at, "'" + t + "' is not in the policy's subscriber prefixes (subscribers.prefixes)");
            return;
        }
        const SubscriberKey key = SubscriberKey::make(p->addr, key_len);
        if (key.addr.family == Family::v4 &&
            (key.addr.v4_host_order() == 0 || key.addr.v4_host_order() == 0xffffffffu)) {
            d_.error(at, "'" + t + "' cannot be a subscriber: 0.0.0.0 and 255.255.255.255 are reserved");
            return;
        }
        const auto [it, inserted] = bound_.try_emplace(key, Bound{id_, at});
        if (!inserted) {
            const std::string key_text = key.addr.family == Family::v4
                                             ? key.addr.to_string()
                                             : key.addr.to_string() + "/" + std::to_string(key_len);
            const std::string as_key = key_text == t ? "" : " (subscriber key " + key_text + ")";
            if (*it->second.subscriber == record_.subscriber_id)
                d_.error(at, "'" + t + "'" + as_key + " is listed twice for " + owner_ + " (first at line " +
                                 std::to_string(it->second.at.line) + ")");
            else
                d_.error(at, "'" + t + "'" + as_key + " is already bound to subscriber '" + *it->second.subscriber +
                                 "' at line " + std::to_string(it->second.at.line) +
                                 ": a subscriber key belongs to one subscriber");
            return;
        }
        record_.keys.push_back(key);
    }

    void purpose(const std::string& t, Location at) {
        if (const auto idx = policy_.purpose_index(t)) {
            record_.purposes |= PurposeMask(1) << *idx;
            return;
        }
        std::string msg = "unknown purpose '" + t + "': the policy does not define it";
        if (const auto near = closest_match(t, purpose_names_)) {
            msg += " (did you mean '" + std::string(*near) + "'?)";
        } else {
            msg += " (it defines: ";
            for (size_t i = 0; i < purpose_names_.size(); ++i) msg += (i ? ", " : "") + std::string(purpose_names_[i]);
            msg += purpose_names_.empty() ? "no purposes)" : ")";
        }
        d_.error(at, std::move(msg));
    }

    // The subscriber, unless anything since begin() was an error.
    std::optional<ConsentRecord> end() {
        if (d_.error_count() != errors_at_begin_) return std::nullopt;
        return std::move(record_);
    }

private:
    struct Bound {
        const std::string* subscriber;  // its id ("" when the id was invalid)
        Location at;
    };
    static inline const std::string kNoId;

    const Policy& policy_;
    Diagnostics& d_;
    std::vector<std::string_view> purpose_names_;
    std::unordered_map<std::string, Location> ids_;
    std::unordered_map<SubscriberKey, Bound, SubscriberKeyHash> bound_;  // who has each key
    std::string owner_;
    size_t errors_at_begin_ = 0;
    ConsentRecord record_;
    const std::string* id_ = &kNoId;
};

std::vector<ConsentRecord> read_yaml(const YAML::Node& root, const Policy& policy, Diagnostics& d) {
    const Value top{root, location_of(root), "the consent file"};
    const MapReader m(top, "the consent file", {"subscribers"}, d);
    const auto list = m.require("subscribers");
    if (!list) return {};
    const auto items = as_list(*list, d);
    if (!items) return {};
    ConsentChecker check(policy, d);
    std::vector<ConsentRecord> out;
    out.reserve(items->size());
    size_t n = 0;
    for (const auto& item : *items) {
        std::string owner = "subscriber " + std::to_string(++n);
        if (const auto id = text_under(item.node, "id")) owner = "subscriber '" + *id + "'";
        const MapReader s(item, owner, {"id", "addresses", "consents"}, d);
        if (!s.is_map()) continue;
        check.begin(std::move(owner));
        if (const auto x = s.require("id"))
            if (const auto t = as_text(*x, d)) check.id(*t, x->at);
        if (const auto x = s.require("addresses")) {
            if (const auto addresses = as_list(*x, d)) {
                if (addresses->empty()) d.error(x->at, check.owner() + " lists no addresses");
                for (const auto& a : *addresses)
                    if (const auto t = as_text(a, d)) check.address(*t, a.at);
            }
        }
        if (const auto x = s.require("consents")) {
            if (const auto consents = as_list(*x, d))
                for (const auto& c : *consents)
                    if (const auto t = as_text(c, d)) check.purpose(*t, c.at);
        }
        if (auto r = check.end()) out.push_back(std::move(*r));
    }
    return out;
}

// NDJSON: one subscriber per line, a JSON object with the YAML list item's
// keys. Errors point at the line (column 1: Boost.JSON gives values no
// position; the message names the field and the value).
constexpr size_t kMaxNdjsonErrors = 100;

std::vector<ConsentRecord> read_ndjson(std::istream& in, const Policy& policy, Diagnostics& d) {
    ConsentChecker check(policy, d);
    StrictJsonParser json;
    std::vector<ConsentRecord> out;
    std::string line;
    int number = 0;
    while (std::getline(in, line)) {
        ++number;
        if (d.error_count() >= kMaxNdjsonErrors) {
            d.error({number, 1}, "stopped at this line after " + std::to_string(kMaxNdjsonErrors) +
                                     " errors; the rest of the file was not checked");
            break;
        }
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.find_first_not_of(" \t") == std::string::npos) continue;
        const Location at{number, 1};
        std::string error;
        const auto v = json.parse(line, error);
        if (!v) {
            d.error(at, error);
            continue;
        }
        if (!v->is_object()) {
            d.error(at, R"(a line must be one JSON object: {"id": ..., "addresses": [...], "consents": [...]})");
            continue;
        }
        JsonFields f(*v, {"id", "addresses", "consents"});
        const auto id = f.text("id", true);
        const auto addresses = f.text_list("addresses", true);
        const auto consents = f.text_list("consents", true);
        if (!f.ok()) {
            d.error(at, f.error());
            continue;
        }
        check.begin("subscriber '" + *id + "'");
        check.id(*id, at);
        if (addresses->empty()) d.error(at, check.owner() + " lists no addresses");
        for (const auto& a : *addresses) check.address(a, at);
        for (const auto& c : *consents) check.purpose(c, at);
        if (auto r = check.end()) out.push_back(std::move(*r));
    }
    if (in.bad()) d.error({}, "cannot read the file");
    return out;
}

std::vector<ConsentRecord> load_yaml(std::string_view text, const Policy& policy, const std::string& name) {
    Diagnostics d(name);
    std::vector<ConsentRecord> out;
    if (const auto root = parse_document(text, d)) out = read_yaml(*root, policy, d);
    d.throw_if_errors();
    return out;
}

std::vector<ConsentRecord> load_ndjson(std::istream& in, const Policy& policy, const std::string& name) {
    Diagnostics d(name);
    auto out = read_ndjson(in, policy, d);
    d.throw_if_errors();
    return out;
}

bool ends_with(const std::string& s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

ConsentFormat consent_format_of(const std::string& path) {
    return ends_with(path, ".ndjson") || ends_with(path, ".jsonl") ? ConsentFormat::ndjson : ConsentFormat::yaml;
}

std::vector<ConsentRecord> load_consent_text(std::string_view text, const Policy& policy, const std::string& name,
                                             ConsentFormat format) {
    if (format == ConsentFormat::yaml) return load_yaml(text, policy, name);
    std::istringstream in{std::string(text)};
    return load_ndjson(in, policy, name);
}

std::vector<ConsentRecord> load_consent_file(const std::string& path, const Policy& policy) {
    if (consent_format_of(path) == ConsentFormat::yaml) return load_yaml(read_file(path), policy, path);
    auto in = open_file(path);
    return load_ndjson(in, policy, path);
}

}  // namespace optgate::policy
