// The `radius:` section of consentd's config (docs/radius.md): the RADIUS
// accounting listener, off unless the section is present.
//
//   radius:
//     listen: {address: 0.0.0.0, port: 1813}
//     clients:
//       - {name: bng-1, address: 203.0.113.10, secret: "..."}
//       - {name: bras-pool, address: 198.51.100.0/24, secret: "..."}
//     subscriber:
//       attribute: User-Name          # Class, Calling-Station-Id, or Vendor-Specific
//       vendor: 3561                  # Vendor-Specific only: vendor id and
//       vendor_type: 1                #   sub-attribute type
//       rewrite: {match: '^([^@]+)@.*$', replace: '$1'}   # optional: strip a realm
//     max_delegated_keys: 256         # keys one delegated prefix may bind
//     retransmit_window: 30s          # answers kept for retransmissions
//     retransmit_cache: 65536         #   at most this many
//     max_pending: 65536              # requests waiting for the ledger
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "core/addr.hpp"
#include "policy/yaml_reader.hpp"

namespace optgate::consentd {

struct RadiusClient {
    std::string name;  // [A-Za-z0-9._:@-], in sources, credentials and metrics
    Prefix from;       // a single address is a full-length prefix
    std::string secret;
};

struct RadiusSubscriberRule {
    uint8_t attribute = 1;  // User-Name
    uint32_t vendor = 0;    // attribute 26: the vendor and its sub-attribute
    uint8_t vendor_type = 0;
    // When set and the whole value matches, the value becomes `replace`
    // (ECMAScript syntax, $1..$9); a value that does not match is used as is.
    std::shared_ptr<const std::regex> match;
    std::string match_text, replace;
};

struct RadiusConfig {
    std::string address = "0.0.0.0";
    uint16_t port = 1813;
    std::vector<RadiusClient> clients;
    RadiusSubscriberRule subscriber;
    size_t max_delegated_keys = 256;
    std::chrono::milliseconds retransmit_window{30000};
    size_t retransmit_cache = 65536;
    size_t max_pending = 65536;

    // The client a datagram from `a` belongs to: the longest prefix that
    // holds it (an IPv4-mapped IPv6 source counts as its IPv4 address).
    const RadiusClient* client_for(const IpAddr& a) const noexcept;
};

void read_radius_config(const policy::syntax::Value& v, std::optional<RadiusConfig>& c, policy::syntax::Diagnostics& d);

}  // namespace optgate::consentd
