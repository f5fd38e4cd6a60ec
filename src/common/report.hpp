// Counters as a report: JSON for machines (optgate-replay --report, later the
// data plane's stats endpoint) and a short human summary. Names come from the
// compiled policy, so per-collector and per-identifier counts carry the
// operator's names.
#pragma once

#include <boost/json/value.hpp>
#include <string>

#include "core/counters.hpp"
#include "core/runtime.hpp"

namespace optgate::report {

// {
//   "packets": {"in", "out", "dropped", "rewritten"},
//   "counters": {"<name>": n, ...}                       every named counter
//   "destinations": [{"name", "kind": "collector"|"exemption"|"none",
//                     "purpose"?, "identifiers_stripped", "identifiers_passed"}],
//   "identifiers": [{"name", "kind": "http_header"|"dns_option", "header"|"code",
//                    "stripped", "passed"}]
// }
boost::json::object to_json(const WorkerCounters& c, const Runtime& rt);

// A few lines for a person: packets, DNS queries, HTTP requests, identifiers
// stripped and passed per collector and exemption.
std::string human_summary(const WorkerCounters& c, const Runtime& rt);

}  // namespace optgate::report
