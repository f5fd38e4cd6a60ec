// optgate's DPDK telemetry commands (docs/dataplane.md#telemetry):
//   /optgate/stats       totals: driver, pipeline counters, table, health
//   /optgate/workers     per worker: rx, tx, packets, steering hand-overs
//   /optgate/collectors  identifiers stripped and passed per collector/exemption
// Read with dpdk-telemetry.py (package dpdk) or any SOCK_SEQPACKET client
// of /var/run/dpdk/<file-prefix>/dpdk_telemetry.v2.
#pragma once

#include <functional>

#include "core/enforcement.hpp"
#include "dataplane/datapath.hpp"

namespace optgate::dataplane {

struct TelemetrySource {
    const Datapath* datapath = nullptr;
    Enforcement* enforcement = nullptr;
    // The control client's view (controlled mode), or nothing.
    std::function<void(uint64_t& applied_seq, uint64_t& table_entries, bool& connected)> control;
};

// Registers the commands; `source` must stay valid until unregister_telemetry()
// (EAL cannot remove a command). Returns false if registration failed (telemetry disabled).
bool register_telemetry(const TelemetrySource* source);
// Before `source` goes away: commands answer -1 from then on.
void unregister_telemetry();

}  // namespace optgate::dataplane
