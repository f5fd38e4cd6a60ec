// Counters as a report: JSON for machines (optgate-replay --report, later the
// data plane's stats endpoint) and a short human summary. Names come from the
// compiled policy, so per-collector and per-identifier counts carry the
// operator's names.
#pragma once

#include <boost/json/value.hpp>
#include <string>
#include <utility>
#include <vector>

#include "core/consent_table.hpp"
#include "core/counters.hpp"
#include "core/disclosure_report.hpp"
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
// Only "packets" and "counters": what is known without a policy (a data
// plane that never received one still reports what it dropped).
boost::json::object counters_to_json(const WorkerCounters& c);

// The per-subscriber disclosure view (docs/replay.md#disclosures): one row
// per (subscriber key, destination, identifier) with its counts, the key
// mapped to a subscriber id through `bindings` (the consent file's keys), or
// null when no subscriber holds it (unbound). Rows are sorted by subscriber
// id (unbound last), key, destination, identifier:
//   [{"subscriber": "sub-1001"|null, "key": "100.64.0.10"|"2001:db8:1000:1::/64",
//     "destination", "identifier", "passed", "stripped"}]
// Names are DisclosureBatch's: what consentd's API shows per subscriber.
boost::json::array disclosures_to_json(const std::vector<DisclosureEntry>& entries,
                                       const std::vector<std::pair<SubscriberKey, std::string>>& bindings,
                                       unsigned ipv6_key_length);

// A few lines for a person: packets, DNS queries, HTTP requests, identifiers
// stripped and passed per collector and exemption.
std::string human_summary(const WorkerCounters& c, const Runtime& rt);

}  // namespace optgate::report
