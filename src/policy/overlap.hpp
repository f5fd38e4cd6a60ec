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

namespace optgate::policy {

// Where a collector or exemption was written, parallel to its match lists.
struct RuleOrigin {
    syntax::Location name_at;
    std::vector<syntax::Location> prefix_at;
    std::vector<syntax::Location> host_at;
};

// What makes two matches overlap, for the message; nullopt if they don't.
std::optional<std::string> match_overlap(const DestinationMatch& a, const DestinationMatch& b,
                                         const RuleOrigin& b_origin, syntax::Location* where_in_b);

void check_overlaps(const Policy& policy, const std::vector<RuleOrigin>& collectors,
                    const std::vector<RuleOrigin>& exemptions, syntax::Diagnostics& d);

}  // namespace optgate::policy
