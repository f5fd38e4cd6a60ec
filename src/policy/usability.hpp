// Policies that load but cannot work as written, and the bounds consentd
// puts on the staleness limit: what `optgatectl check` warns about (exit 0,
// docs/optgatectl.md) and consentd refuses, from one definition.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "core/policy.hpp"

namespace optgate::policy {

// consentd's dataplanes.heartbeat_interval: its bounds and default
// (docs/consentd.md). A data plane goes stale when no frame came within
// the policy's staleness_limit, so consentd refuses a policy whose limit is
// shorter than three heartbeat intervals.
inline constexpr std::chrono::milliseconds kMinHeartbeatInterval{10};
inline constexpr std::chrono::milliseconds kMaxHeartbeatInterval{60000};
inline constexpr std::chrono::milliseconds kDefaultHeartbeatInterval{1000};
inline constexpr unsigned kHeartbeatsPerStalenessLimit = 3;

// Empty when consentd, with this heartbeat interval, accepts the limit;
// else why it refuses the policy.
std::string staleness_limit_problem(std::chrono::milliseconds staleness_limit,
                                    std::chrono::milliseconds heartbeat_interval);

// What in a valid policy can never take effect: header identifiers with no
// HTTP port, collectors and exemptions only on ports optgate never parses,
// host-name collectors only on DNS ports, a staleness limit consentd (with
// its default heartbeat) refuses. One sentence each.
std::vector<std::string> usability_warnings(const Policy& p);

}  // namespace optgate::policy
