// Statistics a data plane reports to consentd (the stats frame,
// docs/protocol.md): how to build the list, and the names optgate uses.
//
// A data plane's stats source fills a std::vector<StatEntry> on the control
// client's thread (ControlClient::set_stats_source):
//
//   client.set_stats_source([&](std::vector<proto::StatEntry>& out) {
//       WorkerCounters sum;                       // plain loads of per-worker u64s
//       for (const auto& w : workers) sum.accumulate(w.counters());
//       proto::append_counters(out, sum, *enforcement.runtime());
//       out.push_back({"rx_packets", port0.ipackets, proto::StatKind::counter, "port", "0"});
//   }, std::chrono::seconds(1));
//
// consentd exports each entry as optgate_dp_<name>{dataplane="...",<label>="..."}
// (docs/consentd.md, "Data plane statistics").
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/counters.hpp"
#include "core/runtime.hpp"
#include "proto/wire.hpp"

namespace optgate::proto {

// The pipeline's counters as entries, named as in counters.hpp and in
// optgate-replay's JSON report:
//  - every named counter: `<counter name>` (counter);
//  - identifiers by destination: `destination_stripped{destination="<name>"}`
//    and `destination_passed{...}` for every collector and exemption of the
//    policy, and destination="(none)" for identifiers to anything else;
//  - identifiers by kind: `identifier_stripped{identifier="<name>"}` and
//    `identifier_passed{...}` for every identifier of the policy.
// Names from the policy are made into valid label values (stat_label_value).
void append_counters(std::vector<StatEntry>& out, const WorkerCounters& counters, const Runtime& runtime);

// `s` as a label value: printable ASCII without quotes or backslashes
// (others become '_'), at most kMaxStatLabelValueBytes, never empty.
std::string stat_label_value(std::string_view s);

// Makes a list encodable (encode_stats): drops invalid entries, sorts
// (stable), keeps the first of repeated (name, label) pairs and, for each
// name, the entries of the kind it has first in sorted order, and keeps the
// first kMaxStatsEntries. Returns how many were dropped
// and describes the first problem in `problem`.
size_t normalize_stats(std::vector<StatEntry>& entries, std::string& problem);

// A sentence for the names optgate reports (counters.hpp, append_counters,
// the control client's own); "" for others. consentd's # HELP lines.
std::string_view stat_help(std::string_view name) noexcept;

}  // namespace optgate::proto
