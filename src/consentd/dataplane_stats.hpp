// What consentd shows about data planes (GET /v1/dataplanes, GET /metrics;
// docs/consentd.md): each one's connection state and last stats report
// (DataPlaneInfo, its JSON), and the reports of data planes that have
// disconnected, kept for dataplanes.stats_retention so that a data plane's
// last numbers (and up 0) outlive its connection (DisconnectedDataPlanes).
//
// The Publisher owns a DisconnectedDataPlanes and uses it on the io thread
// only (not thread-safe); reports are immutable once made and shared.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/json/object.hpp>

#include "proto/wire.hpp"

namespace optgate::consentd {

// A data plane's last stats frame: its entries as they came (validated by
// the decoder, sorted), one copy, walked with proto::for_each_stat(view()).
struct StatsReport {
    uint32_t count = 0;
    std::string bytes;
    std::chrono::steady_clock::time_point received;
    proto::Stats view() const { return {count, {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}}; }
};

struct DataPlaneInfo {
    uint64_t id = 0;
    std::string name;     // from hello ("" before it)
    std::string address;  // peer: "unix pid=.. uid=..", "IP:port", plus the certificate subject
    std::chrono::system_clock::time_point connected_since;
    bool synced = false;  // streaming (not waiting for a snapshot)
    uint64_t applied_seq = 0;
    uint64_t lag = 0;  // head - applied
    std::optional<std::chrono::system_clock::time_point> last_ack, last_heartbeat;
    uint64_t snapshots = 0;
    uint64_t resyncs = 0;
    std::shared_ptr<const StatsReport> stats;  // null: no report yet
    std::optional<uint64_t> stats_age_ms;
    // Set for a data plane that has disconnected (kept for stats_retention).
    std::optional<std::chrono::system_clock::time_point> disconnected_at;
};

// GET /v1/dataplanes: one object per data plane; `with_stats`: its reported
// entries too ([{"name", "kind", "value", "labels"?}]).
boost::json::object to_json(const DataPlaneInfo& d, bool with_stats = false);

// Milliseconds from `then` to `now`, for ages in the API and the log.
uint64_t age_ms(std::chrono::steady_clock::time_point then, std::chrono::steady_clock::time_point now);

// Data planes that disconnected, by name, with their last report: kept for
// `retention`, and at most `max` of them (the oldest go first).
class DisconnectedDataPlanes {
public:
    using Clock = std::chrono::steady_clock;

    DisconnectedDataPlanes(Clock::duration retention, size_t max) : retention_(retention), max_(max) {}

    // Kept until it reconnects, or forgotten past the retention or the bound.
    void disconnected(const std::string& name, std::string address, std::shared_ptr<const StatsReport> stats);
    // Back: its old report goes.
    void reconnected(const std::string& name) { gone_.erase(name); }
    // Drops those past the retention or over the bound.
    void forget();

    // Those that disconnected within the retention (GET /v1/dataplanes).
    std::vector<DataPlaneInfo> list() const;
    // fn(name, const StatsReport* or null) for each within the retention at
    // `now`, by name.
    template <class Fn>
    void for_each(Clock::time_point now, Fn&& fn) const {
        for (const auto& [name, g] : gone_)
            if (now - g.at <= retention_) fn(name, g.stats.get());
    }

private:
    struct Gone {
        std::string address;
        std::shared_ptr<const StatsReport> stats;
        Clock::time_point at;
        std::chrono::system_clock::time_point wall;
    };
    Clock::duration retention_;
    size_t max_;
    std::map<std::string, Gone> gone_;  // by name
};

}  // namespace optgate::consentd
