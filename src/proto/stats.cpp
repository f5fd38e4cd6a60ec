#include "proto/stats.hpp"

#include <algorithm>

#include "proto/codec.hpp"

namespace optgate::proto {

namespace {

// Names that are not in counters.hpp: append_counters' and the control
// client's own (control_client.cpp). Keep docs/consentd.md in step.
struct Help {
    std::string_view name, help;
};
constexpr Help kHelp[] = {
    {"destination_stripped", "identifiers stripped on their way to this destination"},
    {"destination_passed", "identifiers passed to this destination"},
    {"identifier_stripped", "identifiers of this kind stripped"},
    {"identifier_passed", "identifiers of this kind passed"},
    {"control_connected", "1 while connected to consentd (optgate's own endpoint only)"},
    {"control_synced", "1 when a consent table from consentd is installed"},
    {"control_applied_seq", "the last consentd sequence applied"},
    {"control_head_seq", "consentd's head sequence, as last heard"},
    {"control_connects", "connections to consentd that got as far as its welcome"},
    {"control_failovers", "welcomes from another consentd endpoint than the previous welcome's"},
    {"control_snapshots", "whole tables received and installed"},
    {"control_deltas", "table changes received and applied (delta frames)"},
    {"control_entries_refused", "table entries refused (outside the policy's subscriber prefixes)"},
    {"control_pseudonym_keys", "pseudonym keys held (current and next periods; never which)"},
    {"control_pseudonym_key_installs", "policies installed again because a pseudonym key changed"},
    {"control_checkpoints", "signed ledger checkpoints from consentd kept (each newer than the last)"},
    {"control_checkpoints_refused",
     "ledger checkpoints refused: malformed, not verifying, or going back from the one kept (see the log)"},
    {"control_checkpoint_seq", "event seq of the ledger checkpoint kept (compare consentd_dataplane_checkpoint_seq)"},
    {"control_checkpoint_age_seconds", "seconds since the ledger checkpoint kept was received"},
    {"table_entries", "entries in the installed consent table"},
    {"table_stale", "1 while nothing was heard from consentd for the staleness limit: every identifier is stripped"},
    {"disclosure_reports_sent", "disclosure report frames written to consentd (resends included)"},
    {"disclosure_reports_acked", "disclosure reports consentd acknowledged (stored)"},
    {"disclosure_reports_pending", "disclosure reports kept until consentd acknowledges them"},
    {"disclosure_reports_dropped", "disclosure reports dropped unacknowledged because the queue was full"},
};

}  // namespace

std::string stat_label_value(std::string_view s) {
    std::string out;
    for (char c : s.substr(0, kMaxStatLabelValueBytes)) out.push_back(is_stat_label_value_char(c) ? c : '_');
    if (out.empty()) out = "_";
    return out;
}

void append_counters(std::vector<StatEntry>& out, const WorkerCounters& c, const Runtime& rt) {
    const Policy& p = rt.policy();
    const size_t slots = std::min(rt.destination_slots(), kMaxCollectors + 1);
    const size_t identifiers = std::min(p.identifiers.size(), kMaxIdentifiers);
    out.reserve(out.size() + kCounterCount + 2 * slots + 2 * identifiers);
    for (size_t i = 0; i < kCounterCount; ++i)
        out.push_back({std::string(counter_name(Counter(i))), c.value[i], StatKind::counter, {}, {}});
    for (size_t slot = 0; slot < slots; ++slot) {
        const std::string name = stat_label_value(rt.destination_name(slot));
        out.push_back({"destination_stripped", c.destination_stripped[slot], StatKind::counter, "destination", name});
        out.push_back({"destination_passed", c.destination_passed[slot], StatKind::counter, "destination", name});
    }
    for (size_t i = 0; i < identifiers; ++i) {
        const std::string name = stat_label_value(p.identifiers[i].name);
        out.push_back({"identifier_stripped", c.identifier_stripped[i], StatKind::counter, "identifier", name});
        out.push_back({"identifier_passed", c.identifier_passed[i], StatKind::counter, "identifier", name});
    }
}

size_t normalize_stats(std::vector<StatEntry>& v, std::string& problem) {
    const size_t before = v.size();
    auto note = [&](std::string p) {
        if (problem.empty()) problem = std::move(p);
    };
    std::erase_if(v, [&](const StatEntry& e) {
        if (stat_valid(e)) return false;
        note("invalid entry '" + stat_label_value(e.name) + "' (names: [a-z0-9_], labels: see docs/protocol.md)");
        return true;
    });
    std::stable_sort(v.begin(), v.end(), [](const StatEntry& a, const StatEntry& b) { return stat_compare(a, b) < 0; });
    // Sorted: repeats and the entries of one name are neighbours. The first
    // reported wins.
    size_t kept = 0;
    for (size_t i = 0; i < v.size(); ++i) {
        if (kept > 0) {
            const StatEntry& prev = v[kept - 1];
            if (stat_compare(prev, v[i]) == 0) {
                note("entry '" + v[i].name + "' repeated with the same label");
                continue;
            }
            if (prev.name == v[i].name && prev.kind != v[i].kind) {
                note("entry '" + v[i].name + "' reported both as a counter and as a gauge");
                continue;
            }
        }
        if (kept != i) v[kept] = std::move(v[i]);
        ++kept;
    }
    v.resize(kept);
    if (v.size() > kMaxStatsEntries) {
        note("more than " + std::to_string(kMaxStatsEntries) + " entries");
        v.resize(kMaxStatsEntries);
    }
    return before - v.size();
}

std::string_view stat_help(std::string_view name) noexcept {
    for (size_t i = 0; i < kCounterCount; ++i)
        if (counter_name(Counter(i)) == name) return counter_help(Counter(i));
    for (const auto& h : kHelp)
        if (h.name == name) return h.help;
    return {};
}

}  // namespace optgate::proto
