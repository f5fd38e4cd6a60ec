#include "consentd/dataplane_stats.hpp"

#include <boost/json/array.hpp>

#include <algorithm>

#include "consentd/event.hpp"
#include "proto/codec.hpp"
#include "proto/stats.hpp"

namespace optgate::consentd {

namespace {

std::string iso_time(std::chrono::system_clock::time_point t) { return format_utc_ms(t); }

}  // namespace

uint64_t age_ms(std::chrono::steady_clock::time_point then, std::chrono::steady_clock::time_point now) {
    return uint64_t(std::chrono::duration_cast<std::chrono::milliseconds>(now - then).count());
}

boost::json::object to_json(const DataPlaneInfo& d, bool with_stats) {
    boost::json::object o;
    o["name"] = d.name;
    o["address"] = d.address;
    if (d.disconnected_at) {
        // Gone: what it last said, and when it went.
        o["disconnected_at"] = iso_time(*d.disconnected_at);
    } else {
        o["connected_since"] = iso_time(d.connected_since);
        o["synced"] = d.synced;
        o["applied_seq"] = d.applied_seq;
        o["lag"] = d.lag;
        o["last_ack"] = d.last_ack ? boost::json::value(iso_time(*d.last_ack)) : boost::json::value(nullptr);
        o["last_heartbeat"] = d.last_heartbeat ? boost::json::value(iso_time(*d.last_heartbeat))
                                               : boost::json::value(nullptr);
        o["snapshots"] = d.snapshots;
        o["resyncs"] = d.resyncs;
    }
    o["stats_age_ms"] = d.stats_age_ms ? boost::json::value(*d.stats_age_ms) : boost::json::value(nullptr);
    o["stats_entries"] = d.stats ? d.stats->count : 0;
    // The ledger checkpoint the data plane holds, as its last report says
    // (null: none, or a data plane that does not take them).
    boost::json::value checkpoint_seq = nullptr;
    if (d.stats)
        proto::for_each_stat(d.stats->view(), [&](const proto::StatView& e) {
            if (e.name == "control_checkpoint_seq") checkpoint_seq = e.value;
        });
    o["checkpoint_seq"] = checkpoint_seq;
    if (with_stats) {
        boost::json::array entries;
        if (d.stats)
            proto::for_each_stat(d.stats->view(), [&](const proto::StatView& e) {
                boost::json::object j;
                j["name"] = e.name;
                j["kind"] = proto::to_string(e.kind);
                j["value"] = e.value;
                if (!e.label_name.empty()) j["labels"] = boost::json::object{{e.label_name, e.label_value}};
                entries.emplace_back(std::move(j));
            });
        o["stats"] = std::move(entries);
    }
    return o;
}

void DisconnectedDataPlanes::disconnected(const std::string& name, std::string address,
                                          std::shared_ptr<const StatsReport> stats) {
    gone_[name] = Gone{std::move(address), std::move(stats), Clock::now(), std::chrono::system_clock::now()};
    forget();
}

void DisconnectedDataPlanes::forget() {
    const auto now = Clock::now();
    std::erase_if(gone_, [&](const auto& kv) { return now - kv.second.at > retention_; });
    while (gone_.size() > max_)
        gone_.erase(std::min_element(gone_.begin(), gone_.end(),
                                     [](const auto& a, const auto& b) { return a.second.at < b.second.at; }));
}

std::vector<DataPlaneInfo> DisconnectedDataPlanes::list() const {
    const auto now = Clock::now();
    std::vector<DataPlaneInfo> out;
    for (const auto& [name, g] : gone_) {
        if (now - g.at > retention_) continue;
        DataPlaneInfo i;
        i.name = name;
        i.address = g.address;
        i.disconnected_at = g.wall;
        i.stats = g.stats;
        if (g.stats) i.stats_age_ms = age_ms(g.stats->received, now);
        out.push_back(std::move(i));
    }
    return out;
}

}  // namespace optgate::consentd
