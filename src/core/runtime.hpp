// A policy compiled for the packet path: subscriber prefixes and collector /
// exemption destinations as prefix tries, port sets as bitmaps, identifier
// lookups as small flat arrays. Built once (cold), immutable, shared
// read-only by every worker.
//
// Destination classification (docs/pipeline.md#collectors):
//  - candidate rules are those whose prefix covers the destination address,
//    most specific prefix first, then rules that list hostnames but no
//    prefixes;
//  - the first candidate whose ports (if any) contain the destination port
//    and whose hostnames (if any) match the request's host wins;
//  - when the host is unknown (DNS, or an HTTP request whose Host header has
//    not been seen before the identifier), rules with hostnames never match.
#pragma once

#include <bitset>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/big_endian.hpp"
#include "core/http_matcher.hpp"
#include "core/policy.hpp"
#include "core/prefix_trie.hpp"

namespace optgate {

struct Destination {
    enum class Kind : uint8_t { none, collector, exemption };
    Kind kind = Kind::none;
    uint16_t index = 0;  // into policy.collectors or policy.exemptions
    // Index into the per-destination counters: collectors first, then
    // exemptions, then "no collector" last.
    uint16_t counter_slot = 0;
};

class PortSet {
public:
    PortSet() = default;
    explicit PortSet(const std::vector<PortRange>& ranges) {
        for (const auto& r : ranges)
            for (unsigned p = r.first; p <= r.last; ++p) bits_.set(p);
    }
    bool contains(uint16_t port) const noexcept { return bits_.test(port); }

private:
    std::bitset<65536> bits_;
};

// enable_shared_from_this: a worker pins the runtime its disclosure counts
// were made under (disclosure.hpp) without allocating.
class Runtime : public std::enable_shared_from_this<Runtime> {
public:
    // Compiles a validated policy. Returns nullptr and sets `error` if the
    // policy exceeds what the packet path supports (too many collectors or
    // identifiers); the policy loader reports those earlier, with a location.
    static std::shared_ptr<const Runtime> compile(Policy policy, std::string* error = nullptr);
    // Clears the pseudonym keys it holds (secrets outlive nothing they need).
    ~Runtime();
    Runtime(const Runtime&) = delete;
    Runtime& operator=(const Runtime&) = delete;

    const Policy& policy() const noexcept { return policy_; }

    // Runs for every IP packet. An ISP has a handful of subscriber prefixes
    // per family: up to kFewPrefixes are compared directly (one AND and one
    // compare each, no memory beyond one cache line); more go to the trie.
    bool is_subscriber(Family f, const uint8_t* src) const noexcept {
        if (f == Family::v4) {
            if (few_v4_count_ > kFewPrefixes) return subscribers_v4_.lookup(src) != 0;
            const uint32_t a = big_endian::load32(src);
            for (unsigned i = 0; i < few_v4_count_; ++i)
                if ((a & few_v4_[i].mask) == few_v4_[i].net) return true;
            return false;
        }
        if (few_v6_count_ > kFewPrefixes) return subscribers_v6_.lookup(src) != 0;
        const uint64_t hi = big_endian::load64(src);
        for (unsigned i = 0; i < few_v6_count_; ++i) {
            if ((hi & few_v6_[i].mask) != few_v6_[i].net) continue;
            if (few_v6_[i].len <= 64) return true;
            // Longer than /64: the rest is rare enough for the trie.
            return subscribers_v6_.lookup(src) != 0;
        }
        return false;
    }

    // `host`: lowercase request host without port, or nullptr when unknown.
    Destination classify(Family f, const uint8_t* dst, uint16_t dst_port,
                         const std::string_view* host = nullptr) const noexcept;

    // The purpose a collector destination needs.
    unsigned purpose_of(const Destination& d) const noexcept { return policy_.collectors[d.index].purpose; }

    // Whether the destination of this counter slot is a collector whose
    // purpose honours Global Privacy Control (Purpose::honour_gpc).
    bool honours_gpc(uint16_t counter_slot) const noexcept {
        return counter_slot < policy_.collectors.size() &&
               (gpc_purposes_ >> policy_.collectors[counter_slot].purpose & 1u) != 0;
    }

    // Pseudonyms (Collector::deliver): whether the destination of this
    // counter slot receives them, and its key (null: not received).
    bool delivers_pseudonym(uint16_t counter_slot) const noexcept {
        return counter_slot < policy_.collectors.size() &&
               policy_.collectors[counter_slot].deliver == Collector::Delivery::pseudonym;
    }
    const PseudonymKey* pseudonym_key(uint16_t counter_slot) const noexcept {
        if (!delivers_pseudonym(counter_slot)) return nullptr;
        const auto& k = policy_.collectors[counter_slot].pseudonym_key;
        return k ? &*k : nullptr;
    }
    // Collectors that receive pseudonyms, numbered 1.. in policy order (so
    // that a flow records which key wrote a value in a few bits); 0: none.
    static constexpr size_t kMaxPseudonymCollectors = 15;
    unsigned pseudonym_number(uint16_t counter_slot) const noexcept {
        for (size_t i = 0; i < pseudonym_slots_.size(); ++i)
            if (pseudonym_slots_[i] == counter_slot) return unsigned(i + 1);
        return 0;
    }
    const PseudonymKey* pseudonym_key_by_number(unsigned number) const noexcept {
        return number >= 1 && number <= pseudonym_slots_.size() ? pseudonym_key(pseudonym_slots_[number - 1]) : nullptr;
    }

    // Some collector or exemption matches by hostname: an HTTP request's
    // Host can change its destination, so only a parsed request decides.
    bool has_host_rules() const noexcept { return has_host_rules_; }

    bool is_dns_port(uint16_t port) const noexcept { return dns_ports_.contains(port); }
    bool is_http_port(uint16_t port) const noexcept { return http_ports_.contains(port); }

    // Identifier index for an EDNS0 option code, or -1.
    int dns_identifier(uint16_t code) const noexcept {
        for (const auto& [c, idx] : dns_codes_)
            if (c == code) return idx;
        return -1;
    }
    // Some identifier option code has this first (high) byte.
    bool dns_identifier_high_byte(uint8_t b) const noexcept {
        for (const auto& [c, idx] : dns_codes_)
            if (c >> 8 == b) return true;
        return false;
    }

    // Identifier index for a lowercase HTTP header name (exact names only), or -1.
    int http_identifier(std::string_view lowercase_name) const noexcept {
        for (const auto& [name, idx] : http_headers_)
            if (name == lowercase_name) return idx;
        return -1;
    }
    // The HTTP stage's header-name matcher for this policy, built here once
    // so that a worker meeting a new policy only takes a reference (no
    // allocation inside a burst). Shared: a stage keeps it past the runtime.
    const std::shared_ptr<const HeaderMatcher>& header_matcher() const noexcept { return header_matcher_; }

    uint16_t no_collector_slot() const noexcept { return no_collector_slot_; }
    size_t destination_slots() const noexcept { return size_t(no_collector_slot_) + 1; }
    // Name of a per-destination counter slot ("(none)" for the last one).
    std::string_view destination_name(size_t slot) const noexcept;

private:
    struct Rule {
        Destination dest;
        std::vector<PortRange> ports;
        std::vector<HostPattern> hosts;
    };

    explicit Runtime(Policy p) : policy_(std::move(p)) {}
    bool rule_matches(const Rule& r, uint16_t port, const std::string_view* host) const noexcept;

    static constexpr unsigned kFewPrefixes = 8;
    struct FewV4 {
        uint32_t net, mask;
    };
    struct FewV6 {
        uint64_t net, mask;  // the first 64 bits
        unsigned len;
    };

    Policy policy_;
    FewV4 few_v4_[kFewPrefixes]{};
    FewV6 few_v6_[kFewPrefixes]{};
    unsigned few_v4_count_ = 0, few_v6_count_ = 0;  // > kFewPrefixes: use the tries
    PrefixTrie subscribers_v4_{Family::v4};
    PrefixTrie subscribers_v6_{Family::v6};
    PrefixTrie destinations_v4_{Family::v4};
    PrefixTrie destinations_v6_{Family::v6};
    std::vector<Rule> rules_;
    // Trie values index this (minus one): the covering rules of a prefix,
    // most specific first.
    std::vector<std::vector<uint32_t>> rule_lists_;
    std::vector<uint32_t> host_only_rules_;
    PortSet http_ports_, dns_ports_;
    std::vector<std::pair<uint16_t, int>> dns_codes_;
    std::vector<std::pair<std::string, int>> http_headers_;
    std::vector<std::pair<std::string, int>> http_prefixes_;
    std::shared_ptr<const HeaderMatcher> header_matcher_;
    uint16_t no_collector_slot_ = 0;
    PurposeMask gpc_purposes_ = 0;           // purposes with honour_gpc
    std::vector<uint16_t> pseudonym_slots_;  // collectors that receive pseudonyms
    bool has_host_rules_ = false;
};

}  // namespace optgate
