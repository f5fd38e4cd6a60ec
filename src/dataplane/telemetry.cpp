#include "dataplane/telemetry.hpp"

#include <rte_telemetry.h>

#include <mutex>
#include <string>

#include "core/runtime.hpp"

namespace optgate::dataplane {

namespace {

// Commands run on EAL's telemetry thread and get no context pointer, so the
// source is reached through this one registry; it goes away when optgate
// stops, so every command holds the lock while it reads.
struct Registry {
    std::mutex mutex;
    const TelemetrySource* source = nullptr;
};
Registry& registry() {
    static Registry r;
    return r;
}

std::string_view health_name(TableHealth h) {
    switch (h) {
    case TableHealth::fresh: return "fresh";
    case TableHealth::stale: return "stale";
    case TableHealth::not_received: return "not_received";
    }
    return "?";
}

// Telemetry names may hold only letters, digits, '_' and '/': a collector
// named "example-adnet" is listed as example_adnet.
std::string telemetry_name(std::string name) {
    for (char& ch : name) {
        const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
                        ch == '/';
        if (!ok) ch = '_';
    }
    return name;
}

int stats_cmd(const char*, const char*, rte_tel_data* d) {
    const std::lock_guard lock(registry().mutex);
    const TelemetrySource* source = registry().source;
    if (!source) return -1;
    auto counters = std::make_unique<WorkerCounters>();
    DriverCounters dc;
    source->datapath->read_stats(*counters, dc);
    rte_tel_data_start_dict(d);
#define OPTGATE_X(name, summary) rte_tel_data_add_dict_u64(d, #name, dc.name);
    OPTGATE_DRIVER_COUNTERS(OPTGATE_X)
#undef OPTGATE_X
    for (size_t i = 0; i < kCounterCount; ++i)
        rte_tel_data_add_dict_u64(d, std::string(counter_name(Counter(i))).c_str(), counters->value[i]);
    const auto view = source->enforcement->view(monotonic_ns());
    rte_tel_data_add_dict_string(d, "table_health", std::string(health_name(view.health)).c_str());
    rte_tel_data_add_dict_int(d, "stale", view.health == TableHealth::fresh ? 0 : 1);
    rte_tel_data_add_dict_int(d, "workers", int(source->datapath->workers()));
    if (source->control) {
        uint64_t seq = 0, entries = 0;
        bool connected = false;
        source->control(seq, entries, connected);
        rte_tel_data_add_dict_u64(d, "table_seq", seq);
        rte_tel_data_add_dict_u64(d, "table_entries", entries);
        rte_tel_data_add_dict_int(d, "control_connected", connected ? 1 : 0);
    }
    return 0;
}

int workers_cmd(const char*, const char*, rte_tel_data* d) {
    const std::lock_guard lock(registry().mutex);
    const TelemetrySource* source = registry().source;
    if (!source) return -1;
    rte_tel_data_start_dict(d);
    auto counters = std::make_unique<WorkerCounters>();
    for (unsigned i = 0; i < source->datapath->workers(); ++i) {
        DriverCounters dc;
        source->datapath->read_worker(i, *counters, dc);
        rte_tel_data* w = rte_tel_data_alloc();
        if (!w) return -1;
        rte_tel_data_start_dict(w);
        rte_tel_data_add_dict_int(w, "lcore", int(source->datapath->lcore_of(i)));
        rte_tel_data_add_dict_u64(w, "rx", dc.rx);
        rte_tel_data_add_dict_u64(w, "tx", dc.tx);
        rte_tel_data_add_dict_u64(w, "steered_in", dc.steered_in);
        rte_tel_data_add_dict_u64(w, "steered_out", dc.steered_out);
        rte_tel_data_add_dict_u64(w, "packets", counters->get(Counter::packets));
        rte_tel_data_add_dict_u64(w, "tx_full_dropped", dc.tx_full_dropped);
        if (rte_tel_data_add_dict_container(d, ("worker" + std::to_string(i)).c_str(), w, 0) != 0) rte_tel_data_free(w);
    }
    return 0;
}

int collectors_cmd(const char*, const char*, rte_tel_data* d) {
    const std::lock_guard lock(registry().mutex);
    const TelemetrySource* source = registry().source;
    if (!source) return -1;
    const auto runtime = source->datapath->runtime();
    rte_tel_data_start_dict(d);
    if (!runtime) return 0;
    auto counters = std::make_unique<WorkerCounters>();
    DriverCounters dc;
    source->datapath->read_stats(*counters, dc);
    const auto& policy = runtime->policy();
    size_t slot = 0;
    auto add = [&](const std::string& name) {
        rte_tel_data* c = rte_tel_data_alloc();
        if (!c) return;
        rte_tel_data_start_dict(c);
        rte_tel_data_add_dict_u64(c, "stripped", counters->destination_stripped[slot]);
        rte_tel_data_add_dict_u64(c, "passed", counters->destination_passed[slot]);
        if (rte_tel_data_add_dict_container(d, telemetry_name(name).c_str(), c, 0) != 0) rte_tel_data_free(c);
        ++slot;
    };
    // The telemetry dict holds at most RTE_TEL_MAX_DICT_ENTRIES; the report
    // on exit and consentd's metrics have all of them.
    for (const auto& c : policy.collectors) {
        if (slot + 1 >= RTE_TEL_MAX_DICT_ENTRIES) return 0;
        add(c.name);
    }
    for (const auto& e : policy.exemptions) {
        if (slot + 1 >= RTE_TEL_MAX_DICT_ENTRIES) return 0;
        add("exemption/" + e.name);
    }
    return 0;
}

}  // namespace

void unregister_telemetry() {
    const std::lock_guard lock(registry().mutex);
    registry().source = nullptr;
}

bool register_telemetry(const TelemetrySource* source) {
    {
        const std::lock_guard lock(registry().mutex);
        registry().source = source;
    }
    bool ok = rte_telemetry_register_cmd("/optgate/stats", stats_cmd,
                                         "optgate totals: driver, pipeline counters, consent table, health") == 0;
    ok = rte_telemetry_register_cmd("/optgate/workers", workers_cmd, "optgate per-worker counters") == 0 && ok;
    ok = rte_telemetry_register_cmd("/optgate/collectors", collectors_cmd,
                                    "optgate identifiers stripped and passed per collector and exemption") == 0 &&
         ok;
    return ok;
}

}  // namespace optgate::dataplane
