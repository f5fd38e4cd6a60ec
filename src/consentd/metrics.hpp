// consentd's Prometheus metrics (GET /metrics, text format 0.0.4):
//   consentd_http_requests_total{method,route,status}
//   consentd_ledger_events_total{action}
//   consentd_commit_duration_seconds (histogram: one group commit, BEGIN to
//     durable COMMIT)
//   consentd_commit_batch_requests (histogram: requests sharing a commit)
//   consentd_commit_failures_total, consentd_policy_reloads_total{result}
//   consentd_disclosure_reports_total{result}, consentd_disclosure_entries_total
//     {attribution}, consentd_disclosure_rows_pruned_total (disclosures.hpp)
//   gauges: consentd_ledger_head_seq, consentd_subscribers, consentd_bindings,
//     consentd_table_entries, consentd_connections
// and, rendered from the publisher's counts (render_dataplane_metrics), the
// consentd_dataplane* and optgate_dataplane* families and the data planes'
// own stats (optgate_dp_*).
// Updated from the API thread and the ledger writer; one mutex (a few
// updates per request, far from the commit path's cost).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "consentd/event.hpp"
#include "proto/prometheus.hpp"

namespace optgate::consentd {

// The text format's helpers, shared with optgate's own endpoint.
using proto::metric;
using proto::metric_header;

class Histogram {
public:
    explicit Histogram(std::initializer_list<double> bounds);
    void observe(double v);
    // `labels`: more labels for every sample, e.g. `dataplane="edge-1"`.
    void render(std::string& out, std::string_view name, std::string_view labels = {}) const;

private:
    std::vector<double> bounds_;
    std::vector<uint64_t> counts_;  // per bucket, not cumulative; last = +Inf
    double sum_ = 0;
    uint64_t count_ = 0;
};

class Metrics {
public:
    Metrics();

    void count_request(std::string_view method, std::string_view route, unsigned status);
    void count_events(Action a, uint64_t n);
    void observe_commit(double seconds, size_t requests);
    void count_commit_failure();
    void count_reload(bool ok);
    void set_state(uint64_t head_seq, size_t subscribers, size_t bindings, size_t table_entries);
    // 1 while this consentd records changes, 0 while it follows another
    // writer (docs/scale-out.md, "Followers").
    void set_writer(bool writer);
    // Disclosure reports durably stored (or repeats of stored ones), and
    // their entries by attribution; reports whose transaction failed.
    void count_disclosures(uint64_t stored, uint64_t duplicates, uint64_t to_subscriber, uint64_t unbound,
                           uint64_t ambiguous);
    void count_disclosure_failures(uint64_t reports);
    void count_disclosures_pruned(uint64_t rows);
    std::atomic<int64_t>& connections() noexcept { return connections_; }
    // More families appended by render() (the RADIUS listener's), until removed.
    void add_renderer(const void* owner, std::function<void(std::string&)> fn);
    void remove_renderer(const void* owner);

    std::string render() const;

private:
    mutable std::mutex mu_;
    std::map<std::tuple<std::string, std::string, unsigned>, uint64_t> requests_;
    std::array<uint64_t, kActionCount> events_{};
    Histogram commit_seconds_;
    Histogram batch_requests_;
    uint64_t commit_failures_ = 0;
    uint64_t reloads_ok_ = 0, reloads_failed_ = 0;
    uint64_t head_seq_ = 0, subscribers_ = 0, bindings_ = 0, table_entries_ = 0;
    uint64_t writer_ = 1;
    std::atomic<int64_t> connections_{0};
    std::vector<std::pair<const void*, std::function<void(std::string&)>>> renderers_;
    uint64_t disclosure_reports_[3] = {0, 0, 0};  // stored, duplicate, failed
    uint64_t disclosure_entries_[3] = {0, 0, 0};  // subscriber, unbound, ambiguous
    uint64_t disclosure_pruned_ = 0;
};

// ---- the publisher's families (docs/consentd.md, "Metrics") ----

struct StatsReport;  // dataplane_stats.hpp

// What the publisher counts: kept by it on the io thread, and rendered from
// that thread (GET /metrics), so without a lock.
// Why a connection to a data-plane listener was closed before it became a
// data plane (docs/protocol.md, "Limits before hello"; issue 17). The names
// are the `reason` label of consentd_dataplane_connections_refused_total.
enum class DataPlaneRefusal : uint8_t {
    address_cap,              // its address already holds max_pending_per_address: closed at accept
    handshake_timeout,        // no TLS handshake within handshake_timeout
    hello_timeout,            // no hello within hello_timeout
    before_hello,             // a frame other than hello first, or one larger than a hello
    name_not_in_certificate,  // the hello's name is neither the certificate's CN nor a DNS SAN
    identity_conflict,        // the name is connected with another certificate (or uid)
    too_many_dataplanes,      // max_dataplanes are connected
    out_of_step,              // consentd is fenced (docs/scale-out.md, "Fencing"): closed with no frame
};
inline constexpr size_t kDataPlaneRefusals = 8;
std::string_view to_string(DataPlaneRefusal r) noexcept;

struct DataPlaneCounters {
    // Commit to acknowledgement, per data plane name: every name that has
    // acknowledged since consentd started (names are configured, so few).
    std::map<std::string, Histogram, std::less<>> enforcement_seconds;
    void observe_enforcement(std::string_view dataplane, double seconds);
    Histogram snapshot_build_seconds{0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10};
    uint64_t snapshots_sent = 0, resyncs = 0, protocol_errors = 0, tls_failures = 0, disconnects = 0;
    uint64_t token_resumes = 0;  // data planes that resumed by a resume token (not this process's stream id)
    uint64_t stats_reports = 0;
    uint64_t checkpoint_seq = 0;          // the latest signed checkpoint's, as sent to data planes
    uint64_t disclosure_reports[4] = {};  // stored, failed, busy, refused (Publisher::DisclosureOutcome)
    uint64_t refusals[kDataPlaneRefusals] = {};
    uint64_t accept_pauses = 0;  // the TCP listener stopped accepting: max_pending reached
    uint64_t fences = 0;         // times the publisher closed its data planes, out of step with the ledger
    size_t pending = 0;          // TCP connections accepted, without a hello yet
};

// The publisher's state as GET /metrics shows it.
struct DataPlaneMetrics {
    explicit DataPlaneMetrics(const DataPlaneCounters& c) : counters(c) {}
    const DataPlaneCounters& counters;
    size_t connected = 0;  // hello received
    size_t history_commits = 0;
    bool fenced = false;         // out of step with the ledger: data planes closed and refused
    size_t peer_dataplanes = 0;  // the other consentd's, heard of within PeerLink::kSilence
    uint64_t waits_enforced = 0, waits_timeout = 0, waits_none = 0;  // ?wait=enforced answers
    // Per data plane name: connected (up), or disconnected within
    // stats_retention; its last stats report, or null.
    struct Source {
        bool up = false;
        const StatsReport* stats = nullptr;
    };
    std::map<std::string_view, Source> sources;
};

// consentd_dataplane* families, then optgate_dataplane_up and
// _stats_age_seconds per data plane, then what the data planes reported, as
// optgate_dp_<name>.
void render_dataplane_metrics(std::string& out, const DataPlaneMetrics& m, std::chrono::steady_clock::time_point now);

}  // namespace optgate::consentd
