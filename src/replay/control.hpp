// optgate-replay --control: policy and table from a running consentd instead
// of files, through the data-plane client library (src/proto), so a replay
// enforces exactly what a data plane connected to that consentd would.
// docs/replay.md, "--control".
#pragma once

#include <boost/json/object.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "core/disclosure.hpp"
#include "core/enforcement.hpp"
#include "proto/control_client.hpp"

namespace optgate::replay {

struct ControlOptions {
    std::string endpoint;  // Unix socket path or HOST:PORT
    std::string name;      // how consentd lists this replay ("" : replay-HOST-PID)
    std::string tls_cert, tls_key, tls_ca;
    std::string checkpoint_public_key;                     // consentd's checkpoint key (PEM): checkpoints verified
    std::chrono::milliseconds timeout{10000};              // for the first snapshot
    std::chrono::milliseconds stats_interval{1000};        // stats reports to consentd
    std::chrono::milliseconds disclosure_interval{60000};  // disclosure reports to consentd
};

// The replay's disclosure counts (core/disclosure.hpp): drained by the
// control thread every disclosure interval (reported to consentd) and once
// at the end of the run; every batch also adds to the run's totals, which
// --report shows per subscriber. Thread-safe: one drain at a time.
class DisclosureSource {
public:
    explicit DisclosureSource(Enforcement& enforcement) : enforcement_(enforcement), drain_(unix_ms_now()) {}
    // The worker, once it exists (before: drains are empty).
    void attach(Worker& worker);
    // Moves the worker's counts since the last drain into `out` (replaced).
    // Control thread: ControlClient::set_disclosure_source.
    void drain_into(DisclosureBatch& out);
    // The run's totals (sorted as DisclosureBatch), and what overflowed.
    std::vector<DisclosureEntry> totals() const;
    uint64_t overflowed() const;

private:
    Enforcement& enforcement_;
    mutable std::mutex mu_;
    Worker* worker_ = nullptr;
    DisclosureDrain drain_;
    std::map<std::tuple<Family, std::array<uint8_t, 16>, std::string, std::string>, DisclosureEntry> totals_;
    uint64_t overflowed_ = 0;
};

// The replay's counters for consentd's stats reports: the replay loop hands
// a copy over now and then (its worker's counters are plain, not atomic);
// the control thread reports the copy (proto::append_counters names).
class StatsSource {
public:
    explicit StatsSource(Enforcement& enforcement) : enforcement_(enforcement) {}
    // Replay loop: copies `c` if the last copy is older than 100 ms, or `now`.
    void update(const WorkerCounters& c, bool now = false);
    // Control thread (ControlClient::set_stats_source).
    void fill(std::vector<proto::StatEntry>& out);

private:
    Enforcement& enforcement_;
    std::mutex mu_;
    WorkerCounters copy_;
    uint64_t copied_ns_ = 0;
};

// Connects (in the background) and waits for the first snapshot to be
// installed in `enforcement` (controlled mode). Throws FileError naming the
// endpoint when it cannot be had within the timeout. Fills in o.name.
// `stats`: what the client reports to consentd besides its own state.
std::unique_ptr<proto::ControlClient> connect_control(ControlOptions& o, Enforcement& enforcement,
                                                      StatsSource* stats = nullptr);

// "control": {endpoint, name, connected, applied_seq, head_seq, stream_id,
// connects, snapshots, deltas, last_error, disclosure_reports, checkpoint}
// for the report.
boost::json::object control_report(const ControlOptions& o, const proto::ControlClient::Status& s);

// Real-time replay (--pace): packet i is processed once its capture time,
// relative to the first packet's, has passed on the monotonic clock.
class Pacer {
public:
    // Nanoseconds to wait before the packet captured at `ts_ns` (0: now).
    uint64_t wait_ns(uint64_t ts_ns) noexcept;

private:
    bool started_ = false;
    uint64_t first_ts_ = 0, start_mono_ = 0;
};

}  // namespace optgate::replay
