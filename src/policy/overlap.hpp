// Cross-rule checks on collectors and exemptions.
//
// Two destination rules overlap when one packet could match both: their
// prefixes overlap (or both list hostnames only), their ports overlap (no
// ports = any port) and their hosts overlap (no hosts = any host).
//  - a collector overlapping an exemption is an error: whether identifiers
//    need consent would depend on rule precedence, not on what the operator
//    wrote;
//  - two collectors with different purposes overlapping is a warning: the
//    precedence (most specific prefix, then file order) decides which
//    purpose the subscriber must have consented to.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/policy.hpp"
#include "policy/yaml_reader.hpp"

namespace optgate::policy::detail {

// Where a collector or exemption was written, parallel to its match lists.
struct RuleOrigin {
    Location name_at;
    std::vector<Location> prefix_at;
    std::vector<Location> host_at;
};

// What makes two matches overlap, for the message; nullopt if they don't.
std::optional<std::string> match_overlap(const DestinationMatch& a, const DestinationMatch& b,
                                         const RuleOrigin& b_origin, Location* where_in_b);

void check_overlaps(const Policy& policy, const std::vector<RuleOrigin>& collectors,
                    const std::vector<RuleOrigin>& exemptions, Diagnostics& d);

}  // namespace optgate::policy::detail
