// The replay tool's consent file (docs/consent-file.md): YAML -> consent
// records checked against the policy (its purposes, subscriber prefixes and
// IPv6 key length). Reports every error with its location.
#include <map>

#include "policy/loader.hpp"
#include "policy/values.hpp"
#include "policy/yaml_reader.hpp"

namespace optgate::policy {

namespace {

using namespace syntax;

struct Bound {
    std::string subscriber;
    Location at;
};

class ConsentReader {
public:
    ConsentReader(const Policy& policy, Diagnostics& d) : policy_(policy), d_(d) {
        for (const auto& p : policy.purposes) purpose_names_.push_back(p.name);
    }

    std::vector<ConsentRecord> read(const YAML::Node& root) {
        const Value top{root, location_of(root), "the consent file"};
        const MapReader m(top, "the consent file", {"subscribers"}, d_);
        const auto list = m.require("subscribers");
        if (!list) return {};
        const auto items = as_list(*list, d_);
        if (!items) return {};
        std::vector<ConsentRecord> out;
        size_t n = 0;
        for (const auto& item : *items)
            if (auto r = read_subscriber(item, ++n)) out.push_back(std::move(*r));
        return out;
    }

private:
    std::optional<ConsentRecord> read_subscriber(const Value& item, size_t n) {
        std::string owner = "subscriber " + std::to_string(n);
        if (const auto id = text_under(item.node, "id")) owner = "subscriber '" + *id + "'";
        const MapReader m(item, owner, {"id", "addresses", "consents"}, d_);
        if (!m.is_map()) return std::nullopt;
        const size_t errors = d_.error_count();
        ConsentRecord r;
        if (const auto x = m.require("id")) {
            if (auto t = as_text(*x, d_)) {
                if (!is_subscriber_id(*t)) {
                    d_.error(x->at, "subscriber id '" + *t + "' is not valid: use 1 to 128 letters, digits or ._:@-");
                } else if (const auto seen = ids_.find(*t); seen != ids_.end()) {
                    d_.error(x->at, "subscriber id '" + *t + "' is used twice (first at line " +
                                        std::to_string(seen->second.line) + ")");
                } else {
                    ids_.emplace(*t, x->at);
                    r.subscriber_id = std::move(*t);
                }
            }
        }
        if (const auto x = m.require("addresses")) {
            if (const auto addresses = as_list(*x, d_)) {
                if (addresses->empty()) d_.error(x->at, owner + " lists no addresses");
                for (const auto& a : *addresses) read_address(a, owner, r);
            }
        }
        if (const auto x = m.require("consents")) {
            if (const auto consents = as_list(*x, d_)) {
                for (const auto& c : *consents) {
                    const auto t = as_text(c, d_);
                    if (!t) continue;
                    if (const auto idx = policy_.purpose_index(*t)) {
                        r.purposes |= PurposeMask(1) << *idx;
                        continue;
                    }
                    std::string msg = "unknown purpose '" + *t + "': the policy does not define it";
                    if (const auto near = closest_match(*t, purpose_names_)) {
                        msg += " (did you mean '" + std::string(*near) + "'?)";
                    } else {
                        msg += " (it defines: ";
                        for (size_t i = 0; i < purpose_names_.size(); ++i)
                            msg += (i ? ", " : "") + std::string(purpose_names_[i]);
                        msg += purpose_names_.empty() ? "no purposes)" : ")";
                    }
                    d_.error(c.at, std::move(msg));
                }
            }
        }
        if (d_.error_count() != errors) return std::nullopt;
        return r;
    }

    void read_address(const Value& a, const std::string& owner, ConsentRecord& r) {
        const auto t = as_text(a, d_);
        if (!t) return;
        std::string why;
        const auto p = Prefix::parse(*t, &why);
        if (!p) {
            d_.error(a.at, why);
            return;
        }
        const unsigned key_len = policy_.ipv6_key_length;
        const bool bare = t->find('/') == std::string::npos;
        bool inside = false;
        if (p->addr.family == Family::v4) {
            if (p->len != 32) {
                d_.error(a.at, "'" + *t +
                                   "' is a prefix: IPv4 subscribers are keyed by address, so write one "
                                   "address (A.B.C.D or A.B.C.D/32)");
                return;
            }
            for (const auto& s : policy_.subscriber_prefixes) inside = inside || s.contains(p->addr);
        } else {
            if (!bare && p->len != key_len) {
                d_.error(a.at, "'" + *t + "' is a /" + std::to_string(p->len) +
                                   ": IPv6 subscribers are keyed by their /" + std::to_string(key_len) +
                                   " prefix (the policy's ipv6_key_length), so write a /" + std::to_string(key_len) +
                                   " or an address in it");
                return;
            }
            const Prefix key_prefix{p->addr.masked(key_len), uint8_t(key_len)};
            for (const auto& s : policy_.subscriber_prefixes)
                inside = inside || (bare ? s.contains(p->addr) : s.overlaps(key_prefix));
        }
        if (!inside) {
            d_.error(a.at, "'" + *t + "' is not in the policy's subscriber prefixes (subscribers.prefixes)");
            return;
        }
        const SubscriberKey key = SubscriberKey::make(p->addr, key_len);
        if (key.addr.family == Family::v4 &&
            (key.addr.v4_host_order() == 0 || key.addr.v4_host_order() == 0xffffffffu)) {
            d_.error(a.at, "'" + *t + "' cannot be a subscriber: 0.0.0.0 and 255.255.255.255 are reserved");
            return;
        }
        const std::string key_text = key.addr.family == Family::v4
                                         ? key.addr.to_string()
                                         : key.addr.to_string() + "/" + std::to_string(key_len);
        const auto [it, inserted] = bound_.try_emplace(key_text, Bound{r.subscriber_id, a.at});
        if (!inserted) {
            const std::string as_key = key_text == *t ? "" : " (subscriber key " + key_text + ")";
            if (it->second.subscriber == r.subscriber_id)
                d_.error(a.at, "'" + *t + "'" + as_key + " is listed twice for " + owner + " (first at line " +
                                   std::to_string(it->second.at.line) + ")");
            else
                d_.error(a.at, "'" + *t + "'" + as_key + " is already bound to subscriber '" + it->second.subscriber +
                                   "' at line " + std::to_string(it->second.at.line) +
                                   ": a subscriber key belongs to one subscriber");
            return;
        }
        r.keys.push_back(key);
    }

    const Policy& policy_;
    Diagnostics& d_;
    std::vector<std::string_view> purpose_names_;
    std::map<std::string, Location> ids_;
    std::map<std::string, Bound> bound_;  // subscriber key (text) -> who has it
};

std::vector<ConsentRecord> load(std::string_view text, const Policy& policy, const std::string& name) {
    Diagnostics d(name);
    std::vector<ConsentRecord> out;
    if (const auto root = parse_document(text, d)) out = ConsentReader(policy, d).read(*root);
    d.throw_if_errors();
    return out;
}

}  // namespace

std::vector<ConsentRecord> load_consent_text(std::string_view yaml, const Policy& policy, const std::string& name) {
    return load(yaml, policy, name);
}

std::vector<ConsentRecord> load_consent_file(const std::string& path, const Policy& policy) {
    return load(read_file(path), policy, path);
}

}  // namespace optgate::policy
