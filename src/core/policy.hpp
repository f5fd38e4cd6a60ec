// The policy as the core sees it: plain, already-validated data. The YAML
// loader (src/policy) produces it and is the only code that may throw while
// doing so; the core compiles it once into lookup structures (runtime.hpp)
// and never reads YAML.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/addr.hpp"
#include "core/encapsulation.hpp"

namespace optgate {

// Consent is a bitmask of purposes; bit i is policy.purposes[i].
using PurposeMask = uint32_t;
inline constexpr unsigned kMaxPurposes = 32;

struct Purpose {
    std::string name;
    std::string description;        // plain language: what opting in means
    std::vector<std::string> data;  // data categories shared
    std::string retention;
    // What the subscriber gains by opting in, shown wherever they are asked
    // or told (last, so that positional initializers elsewhere stay valid).
    std::string benefit{};
    // A request carrying Sec-GPC: 1 (Global Privacy Control) strips this
    // purpose's identifiers even with consent (docs/http.md#global-privacy-control).
    bool honour_gpc = true;
};

struct Identifier {
    enum class Kind : uint8_t { http_header, dns_option };
    Kind kind = Kind::http_header;
    std::string name;          // readable name used in reports ("Verizon UIDH", "ECS")
    std::string header;        // http_header: the header name as written in the policy
    uint16_t option_code = 0;  // dns_option: the EDNS0 option code
    // http_header: `header` is a name prefix (policy key `header_prefix`):
    // every header whose name starts with it, unless another identifier's
    // exact name or longer prefix matches it (docs/policy.md).
    bool header_prefix = false;
};

struct PortRange {
    uint16_t first = 0;
    uint16_t last = 0;
    bool contains(uint16_t p) const noexcept { return p >= first && p <= last; }
    friend bool operator==(const PortRange&, const PortRange&) = default;
};

// "name.example" matches exactly; "*.example" matches any name ending in
// ".example" (not "example" itself). Stored lowercase, without a trailing dot.
struct HostPattern {
    std::string name;  // for a wildcard: the suffix after "*."
    bool wildcard = false;
    bool matches(std::string_view lowercase_host) const noexcept;
    std::string to_string() const { return wildcard ? "*." + name : name; }
};

struct DestinationMatch {
    std::vector<Prefix> prefixes;    // empty: any address (then hostnames must be set)
    std::vector<PortRange> ports;    // empty: any port
    std::vector<HostPattern> hosts;  // empty: any host
};

// A collector's key for pseudonyms (core/pseudonym.hpp): SipHash-2-4's
// 128-bit key.
using PseudonymKey = std::array<uint8_t, 16>;

struct Collector {
    // What a collector receives on a consenting pass (docs/policy.md#pseudonyms).
    enum class Delivery : uint8_t { raw, pseudonym };
    static constexpr unsigned kDefaultRotateDays = 30;
    static constexpr unsigned kMinRotateDays = 1, kMaxRotateDays = 366;

    std::string name;
    unsigned purpose = 0;  // index into Policy::purposes
    DestinationMatch match;
    std::string description;  // who the recipient is
    Delivery deliver = Delivery::raw;
    // How long one pseudonym key lives (policy key `rotate`, in days):
    // consentd makes a new key for each period.
    unsigned rotate_days = kDefaultRotateDays;
    // The key of the current period. Never in the policy file: consentd
    // sends it with the policy (docs/protocol.md), optgate-replay reads it
    // from --pseudonym-keys. Unset for a pseudonym collector: its
    // identifiers are stripped (Verdict::strip_no_pseudonym_key).
    std::optional<PseudonymKey> pseudonym_key{};
};

struct Exemption {
    std::string name;
    DestinationMatch match;
    std::string reason;  // mandatory: why identifiers pass without consent
};

struct Tagging {
    // DSCP (0..63) set on subscriber packets to collectors and exemptions;
    // unset means "leave DSCP alone".
    std::optional<uint8_t> passed;
    std::optional<uint8_t> stripped;
    std::optional<uint8_t> exempt;
    bool enabled() const noexcept { return passed || stripped || exempt; }
};

struct Policy {
    std::vector<Purpose> purposes;
    std::vector<Identifier> identifiers;
    std::vector<Collector> collectors;
    std::vector<Exemption> exemptions;

    std::vector<Prefix> subscriber_prefixes;
    uint8_t ipv6_key_length = 64;

    std::vector<PortRange> http_ports{{80, 80}, {8080, 8080}};
    std::vector<PortRange> dns_ports{{53, 53}};

    std::chrono::milliseconds staleness_limit{30000};
    char strip_filler = 'x';
    Tagging tagging;
    // The encapsulations the parser looks into (docs/pipeline.md#encapsulations).
    EncapsulationSet encapsulations = kDefaultEncapsulations;

    std::optional<unsigned> purpose_index(std::string_view name) const noexcept {
        for (unsigned i = 0; i < purposes.size(); ++i)
            if (purposes[i].name == name) return i;
        return std::nullopt;
    }
};

// Lowercases ASCII letters; used for header names and hostnames.
std::string ascii_lower(std::string_view s);

}  // namespace optgate
