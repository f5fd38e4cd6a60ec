#include "core/runtime.hpp"

#include <algorithm>
#include <map>

#include <string.h>

#include "core/counters.hpp"

namespace optgate {

PrefixTrie::PrefixTrie(Family family) : max_depth_(family == Family::v4 ? 4 : 16) { nodes_.resize(1); }

std::shared_ptr<const Runtime> Runtime::compile(Policy policy, std::string* error) {
    auto fail = [&](std::string msg) -> std::shared_ptr<const Runtime> {
        if (error) *error = std::move(msg);
        return nullptr;
    };
    if (policy.purposes.size() > kMaxPurposes) return fail("more than " + std::to_string(kMaxPurposes) + " purposes");
    if (policy.collectors.size() + policy.exemptions.size() > kMaxCollectors)
        return fail("more than " + std::to_string(kMaxCollectors) + " collectors and exemptions");
    if (policy.identifiers.size() > kMaxIdentifiers)
        return fail("more than " + std::to_string(kMaxIdentifiers) + " identifiers");
    for (const auto& c : policy.collectors)
        if (c.purpose >= policy.purposes.size()) return fail("collector '" + c.name + "' has no valid purpose");

    std::shared_ptr<Runtime> rt(new Runtime(std::move(policy)));
    const Policy& p = rt->policy_;

    for (const auto& prefix : p.subscriber_prefixes) {
        auto& trie = prefix.addr.family == Family::v4 ? rt->subscribers_v4_ : rt->subscribers_v6_;
        trie.insert(prefix, [](uint32_t) { return 1u; });
        const uint64_t ones = ~uint64_t(0);
        if (prefix.addr.family == Family::v4) {
            if (rt->few_v4_count_ < kFewPrefixes) {
                const uint32_t mask = prefix.len ? uint32_t(ones << (32 - prefix.len)) : 0;
                rt->few_v4_[rt->few_v4_count_] = {prefix.addr.v4_host_order(), mask};
            }
            ++rt->few_v4_count_;
        } else {
            if (rt->few_v6_count_ < kFewPrefixes) {
                const uint64_t net = big_endian::load64(prefix.addr.bytes.data());
                const unsigned bits = prefix.len < 64 ? prefix.len : 64;
                const uint64_t mask = bits ? ones << (64 - bits) : 0;
                rt->few_v6_[rt->few_v6_count_] = {net & mask, mask, prefix.len};
            }
            ++rt->few_v6_count_;
        }
    }

    // One rule per (destination, prefix); host-only rules kept apart.
    struct Placed {
        Prefix prefix;
        uint32_t rule;
    };
    std::vector<Placed> placed;
    auto add = [&](Destination d, const DestinationMatch& m) {
        Rule base{d, m.ports, m.hosts};
        rt->has_host_rules_ |= !m.hosts.empty();
        if (m.prefixes.empty()) {
            rt->rules_.push_back(base);
            rt->host_only_rules_.push_back(uint32_t(rt->rules_.size() - 1));
            return;
        }
        for (const auto& prefix : m.prefixes) {
            rt->rules_.push_back(base);
            placed.push_back({prefix, uint32_t(rt->rules_.size() - 1)});
        }
    };
    for (size_t i = 0; i < p.collectors.size(); ++i)
        add({Destination::Kind::collector, uint16_t(i), uint16_t(i)}, p.collectors[i].match);
    for (size_t i = 0; i < p.exemptions.size(); ++i)
        add({Destination::Kind::exemption, uint16_t(i), uint16_t(p.collectors.size() + i)}, p.exemptions[i].match);
    rt->no_collector_slot_ = uint16_t(p.collectors.size() + p.exemptions.size());

    // Shorter prefixes first, so that each slot's list is "this prefix's
    // rules, then everything that covered it before" (most specific first).
    // Identical prefixes end up adjacent, in policy order.
    std::stable_sort(placed.begin(), placed.end(), [](const Placed& a, const Placed& b) {
        if (a.prefix.len != b.prefix.len) return a.prefix.len < b.prefix.len;
        if (a.prefix.addr.family != b.prefix.addr.family) return a.prefix.addr.family < b.prefix.addr.family;
        return a.prefix.addr.bytes < b.prefix.addr.bytes;
    });
    std::map<std::vector<uint32_t>, uint32_t> interned;
    auto intern = [&](std::vector<uint32_t> list) -> uint32_t {
        auto [it, inserted] = interned.emplace(list, uint32_t(rt->rule_lists_.size() + 1));
        if (inserted) rt->rule_lists_.push_back(std::move(list));
        return it->second;
    };
    for (size_t i = 0; i < placed.size();) {
        // All rules on exactly this prefix go in together, in policy order.
        size_t j = i;
        std::vector<uint32_t> same;
        while (j < placed.size() && placed[j].prefix == placed[i].prefix) same.push_back(placed[j++].rule);
        auto& trie = placed[i].prefix.addr.family == Family::v4 ? rt->destinations_v4_ : rt->destinations_v6_;
        trie.insert(placed[i].prefix, [&](uint32_t old) {
            std::vector<uint32_t> list = same;
            if (old) list.insert(list.end(), rt->rule_lists_[old - 1].begin(), rt->rule_lists_[old - 1].end());
            return intern(std::move(list));
        });
        i = j;
    }

    for (size_t i = 0; i < p.purposes.size(); ++i)
        if (p.purposes[i].honour_gpc) rt->gpc_purposes_ |= PurposeMask(1) << i;
    for (size_t i = 0; i < p.collectors.size(); ++i) {
        if (p.collectors[i].deliver != Collector::Delivery::pseudonym) continue;
        if (rt->pseudonym_slots_.size() == kMaxPseudonymCollectors) {
            if (error)
                *error = "more than " + std::to_string(kMaxPseudonymCollectors) + " collectors receive pseudonyms";
            return nullptr;
        }
        rt->pseudonym_slots_.push_back(uint16_t(i));
    }
    rt->http_ports_ = PortSet(p.http_ports);
    rt->dns_ports_ = PortSet(p.dns_ports);
    for (size_t i = 0; i < p.identifiers.size(); ++i) {
        const auto& id = p.identifiers[i];
        if (id.kind == Identifier::Kind::dns_option)
            rt->dns_codes_.emplace_back(id.option_code, int(i));
        else
            (id.header_prefix ? rt->http_prefixes_ : rt->http_headers_).emplace_back(ascii_lower(id.header), int(i));
    }
    rt->header_matcher_ = std::make_shared<const HeaderMatcher>(rt->http_headers_, rt->http_prefixes_);
    return rt;
}

Runtime::~Runtime() {
    for (auto& c : policy_.collectors)
        if (c.pseudonym_key) explicit_bzero(c.pseudonym_key->data(), c.pseudonym_key->size());
}

bool Runtime::rule_matches(const Rule& r, uint16_t port, const std::string_view* host) const noexcept {
    if (!r.ports.empty() &&
        std::none_of(r.ports.begin(), r.ports.end(), [&](const PortRange& pr) { return pr.contains(port); }))
        return false;
    if (r.hosts.empty()) return true;
    if (!host) return false;
    return std::any_of(r.hosts.begin(), r.hosts.end(), [&](const HostPattern& h) { return h.matches(*host); });
}

Destination Runtime::classify(Family f, const uint8_t* dst, uint16_t port,
                              const std::string_view* host) const noexcept {
    const uint32_t list = (f == Family::v4 ? destinations_v4_ : destinations_v6_).lookup(dst);
    if (list)
        for (uint32_t r : rule_lists_[list - 1])
            if (rule_matches(rules_[r], port, host)) return rules_[r].dest;
    if (host)
        for (uint32_t r : host_only_rules_)
            if (rule_matches(rules_[r], port, host)) return rules_[r].dest;
    return {Destination::Kind::none, 0, no_collector_slot_};
}

std::string_view Runtime::destination_name(size_t slot) const noexcept {
    if (slot < policy_.collectors.size()) return policy_.collectors[slot].name;
    slot -= policy_.collectors.size();
    if (slot < policy_.exemptions.size()) return policy_.exemptions[slot].name;
    return "(none)";
}

}  // namespace optgate
