#include "consentd/metrics.hpp"

#include <algorithm>
#include <cstdio>

#include "consentd/dataplane_stats.hpp"
#include "proto/codec.hpp"
#include "proto/stats.hpp"

namespace optgate::consentd {

namespace {

std::string number(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.9g", v);
    return buf;
}

void gauge(std::string& out, std::string_view name, std::string_view help, uint64_t v) {
    metric(out, name, "gauge", help, v);
}

}  // namespace

Histogram::Histogram(std::initializer_list<double> bounds) : bounds_(bounds), counts_(bounds.size() + 1, 0) {}

void Histogram::observe(double v) {
    size_t i = 0;
    while (i < bounds_.size() && v > bounds_[i]) ++i;
    ++counts_[i];
    sum_ += v;
    ++count_;
}

void Histogram::render(std::string& out, std::string_view name, std::string_view labels) const {
    const std::string prefix = labels.empty() ? std::string() : std::string(labels) + ",";
    const std::string own = labels.empty() ? std::string() : "{" + std::string(labels) + "}";
    uint64_t cumulative = 0;
    for (size_t i = 0; i < bounds_.size(); ++i) {
        cumulative += counts_[i];
        out.append(name).append("_bucket{").append(prefix).append("le=\"").append(number(bounds_[i])).append("\"} ");
        out.append(std::to_string(cumulative)).append("\n");
    }
    out.append(name).append("_bucket{").append(prefix).append("le=\"+Inf\"} ").append(std::to_string(count_));
    out.append("\n");
    out.append(name).append("_sum").append(own).append(" ").append(number(sum_)).append("\n");
    out.append(name).append("_count").append(own).append(" ").append(std::to_string(count_)).append("\n");
}

void DataPlaneCounters::observe_enforcement(std::string_view dataplane, double seconds) {
    auto it = enforcement_seconds.find(dataplane);
    if (it == enforcement_seconds.end())
        it = enforcement_seconds
                 .try_emplace(std::string(dataplane), Histogram{0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01,
                                                                0.025, 0.05, 0.1, 0.25, 1, 5})
                 .first;
    it->second.observe(seconds);
}

Metrics::Metrics()
    : commit_seconds_({0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60}),
      batch_requests_({1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096}) {}

void Metrics::count_request(std::string_view method, std::string_view route, unsigned status) {
    std::lock_guard lk(mu_);
    ++requests_[{std::string(method), std::string(route), status}];
}

void Metrics::count_events(Action a, uint64_t n) {
    std::lock_guard lk(mu_);
    events_[unsigned(a)] += n;
}

void Metrics::observe_commit(double seconds, size_t requests) {
    std::lock_guard lk(mu_);
    commit_seconds_.observe(seconds);
    batch_requests_.observe(double(requests));
}

void Metrics::count_commit_failure() {
    std::lock_guard lk(mu_);
    ++commit_failures_;
}

void Metrics::count_reload(bool ok) {
    std::lock_guard lk(mu_);
    ++(ok ? reloads_ok_ : reloads_failed_);
}

void Metrics::set_state(uint64_t head_seq, size_t subscribers, size_t bindings, size_t table_entries) {
    std::lock_guard lk(mu_);
    head_seq_ = head_seq;
    subscribers_ = subscribers;
    bindings_ = bindings;
    table_entries_ = table_entries;
}

void Metrics::set_writer(bool writer) {
    std::lock_guard lk(mu_);
    writer_ = writer ? 1 : 0;
}

void Metrics::add_renderer(const void* owner, std::function<void(std::string&)> fn) {
    std::lock_guard lk(mu_);
    renderers_.emplace_back(owner, std::move(fn));
}

void Metrics::remove_renderer(const void* owner) {
    std::lock_guard lk(mu_);
    std::erase_if(renderers_, [&](const auto& r) { return r.first == owner; });
}

void Metrics::count_disclosures(uint64_t stored, uint64_t duplicates, uint64_t to_subscriber, uint64_t unbound,
                                uint64_t ambiguous) {
    std::lock_guard lk(mu_);
    disclosure_reports_[0] += stored;
    disclosure_reports_[1] += duplicates;
    disclosure_entries_[0] += to_subscriber;
    disclosure_entries_[1] += unbound;
    disclosure_entries_[2] += ambiguous;
}

void Metrics::count_disclosure_failures(uint64_t reports) {
    std::lock_guard lk(mu_);
    disclosure_reports_[2] += reports;
}

void Metrics::count_disclosures_pruned(uint64_t rows) {
    std::lock_guard lk(mu_);
    disclosure_pruned_ += rows;
}

std::string Metrics::render() const {
    std::string out;
    std::lock_guard lk(mu_);
    metric_header(out, "consentd_http_requests_total", "counter", "HTTP requests by method, route and status.");
    for (const auto& [k, n] : requests_) {
        const auto& [method, route, status] = k;
        out.append("consentd_http_requests_total{method=\"").append(method).append("\",route=\"").append(route);
        out.append("\",status=\"").append(std::to_string(status)).append("\"} ").append(std::to_string(n));
        out.append("\n");
    }
    metric_header(out, "consentd_ledger_events_total", "counter", "Ledger events committed, by action.");
    for (unsigned a = 0; a < kActionCount; ++a) {
        out.append("consentd_ledger_events_total{action=\"").append(to_string(Action(a))).append("\"} ");
        out.append(std::to_string(events_[a])).append("\n");
    }
    metric_header(out, "consentd_commit_duration_seconds", "histogram",
                  "One group commit, from BEGIN to durable COMMIT (fsync).");
    commit_seconds_.render(out, "consentd_commit_duration_seconds");
    metric_header(out, "consentd_commit_batch_requests", "histogram", "Requests that shared one commit.");
    batch_requests_.render(out, "consentd_commit_batch_requests");
    metric_header(out, "consentd_commit_failures_total", "counter",
                  "Group commits that failed (their requests got 503 and changed nothing).");
    out.append("consentd_commit_failures_total ").append(std::to_string(commit_failures_)).append("\n");
    metric_header(out, "consentd_policy_reloads_total", "counter", "Policy reloads by result.");
    out.append("consentd_policy_reloads_total{result=\"ok\"} ").append(std::to_string(reloads_ok_)).append("\n");
    out.append("consentd_policy_reloads_total{result=\"invalid\"} ").append(std::to_string(reloads_failed_));
    out.append("\n");
    metric_header(
        out, "consentd_disclosure_reports_total", "counter",
        "Disclosure reports from data planes: stored, duplicate (already stored), failed (not stored, resent).");
    const char* report_results[] = {"stored", "duplicate", "failed"};
    for (unsigned i = 0; i < 3; ++i)
        out.append("consentd_disclosure_reports_total{result=\"")
            .append(report_results[i])
            .append("\"} ")
            .append(std::to_string(disclosure_reports_[i]))
            .append("\n");
    metric_header(
        out, "consentd_disclosure_entries_total", "counter",
        "Disclosure report entries by attribution: to a subscriber, unbound key, ambiguous (rebound meanwhile).");
    const char* attributions[] = {"subscriber", "unbound", "ambiguous"};
    for (unsigned i = 0; i < 3; ++i)
        out.append("consentd_disclosure_entries_total{attribution=\"")
            .append(attributions[i])
            .append("\"} ")
            .append(std::to_string(disclosure_entries_[i]))
            .append("\n");
    metric_header(out, "consentd_disclosure_rows_pruned_total", "counter",
                  "Disclosure rows and report ids deleted past disclosures.retention.");
    out.append("consentd_disclosure_rows_pruned_total ").append(std::to_string(disclosure_pruned_)).append("\n");
    gauge(out, "consentd_ledger_head_seq", "Sequence number of the last committed event.", head_seq_);
    gauge(out, "consentd_ledger_writer",
          "1 while this consentd records changes, 0 while it follows another writer of the ledger.", writer_);
    gauge(out, "consentd_subscribers", "Subscribers known to the ledger.", subscribers_);
    gauge(out, "consentd_bindings", "Current address bindings (active or not).", bindings_);
    gauge(out, "consentd_table_entries", "Entries of the derived consent table (active bindings).", table_entries_);
    gauge(out, "consentd_connections", "Open API connections.", uint64_t(connections_.load()));
    for (const auto& r : renderers_) r.second(out);
    return out;
}

// ---- the publisher's families ----

namespace {

// optgate_dataplane_up and _stats_age_seconds per data plane, then every
// family the data planes reported as optgate_dp_<name>: all samples of a
// family together under one TYPE line, as the text format requires.
void render_dataplane_stats(std::string& out, const std::map<std::string_view, DataPlaneMetrics::Source>& sources,
                            std::chrono::steady_clock::time_point now) {
    const auto sample_start = [&](std::string_view family, std::string_view dp) {
        out.append(family).append("{dataplane=\"").append(dp).append("\"");
    };
    metric_header(out, "optgate_dataplane_up", "gauge",
                  "1 while a data plane is connected; 0 for one that disconnected within dataplanes.stats_retention.");
    for (const auto& [name, s] : sources) {
        sample_start("optgate_dataplane_up", name);
        out.append(s.up ? "} 1\n" : "} 0\n");
    }
    metric_header(out, "optgate_dataplane_stats_age_seconds", "gauge", "Time since a data plane's last stats report.");
    for (const auto& [name, s] : sources) {
        if (!s.stats) continue;
        char age[32];
        std::snprintf(age, sizeof age, "} %.3f\n", std::chrono::duration<double>(now - s.stats->received).count());
        sample_start("optgate_dataplane_stats_age_seconds", name);
        out.append(age);
    }

    struct Sample {
        std::string_view name, dataplane, label, value;
        proto::StatKind kind;
        uint64_t v;
    };
    std::vector<Sample> samples;
    for (const auto& [name, s] : sources) {
        if (!s.stats) continue;
        const std::string_view dataplane = name;  // clang 14 cannot capture a structured binding
        proto::for_each_stat(s.stats->view(), [&](const proto::StatView& e) {
            samples.push_back({e.name, dataplane, e.label_name, e.label_value, e.kind, e.value});
        });
    }
    // Each report is sorted; stable by name keeps data planes and labels in order.
    std::stable_sort(samples.begin(), samples.end(), [](const Sample& a, const Sample& b) { return a.name < b.name; });
    std::string family;
    for (size_t i = 0; i < samples.size();) {
        size_t end = i;
        bool mixed = false;
        for (; end < samples.size() && samples[end].name == samples[i].name; ++end)
            mixed = mixed || samples[end].kind != samples[i].kind;
        family.assign("optgate_dp_").append(samples[i].name);
        if (const auto help = proto::stat_help(samples[i].name); !help.empty())
            out.append("# HELP ").append(family).append(" ").append(help).append("\n");
        // Data planes of different versions may disagree on a kind.
        out.append("# TYPE ").append(family).append(" ").append(mixed ? "untyped" : proto::to_string(samples[i].kind));
        out.append("\n");
        for (; i < end; ++i) {
            const Sample& x = samples[i];
            sample_start(family, x.dataplane);
            if (!x.label.empty()) out.append(",").append(x.label).append("=\"").append(x.value).append("\"");
            out.append("} ").append(std::to_string(x.v)).append("\n");
        }
    }
}

}  // namespace

std::string_view to_string(DataPlaneRefusal r) noexcept {
    switch (r) {
    case DataPlaneRefusal::address_cap: return "address_cap";
    case DataPlaneRefusal::handshake_timeout: return "handshake_timeout";
    case DataPlaneRefusal::hello_timeout: return "hello_timeout";
    case DataPlaneRefusal::before_hello: return "before_hello";
    case DataPlaneRefusal::name_not_in_certificate: return "name_not_in_certificate";
    case DataPlaneRefusal::identity_conflict: return "identity_conflict";
    case DataPlaneRefusal::too_many_dataplanes: return "too_many_dataplanes";
    case DataPlaneRefusal::out_of_step: return "out_of_step";
    }
    return "unknown";
}

void render_dataplane_metrics(std::string& out, const DataPlaneMetrics& m, std::chrono::steady_clock::time_point now) {
    metric(out, "consentd_dataplanes_connected", "gauge", "Data planes connected (hello received).", m.connected);
    metric(out, "consentd_dataplane_history_commits", "gauge", "Commits kept in memory for data planes that reconnect.",
           m.history_commits);
    metric(out, "consentd_peer_dataplanes", "gauge",
           "Data planes of the other consentd of the ledger, as they report them (?wait=enforced waits for them).",
           m.peer_dataplanes);
    metric(out, "consentd_dataplanes_fenced", "gauge",
           "1 while consentd cannot confirm it holds the whole ledger: data planes are closed and refused.",
           m.fenced ? 1 : 0);
    metric(out, "consentd_dataplane_fences_total", "counter",
           "Times consentd closed its data planes for being out of step with the ledger.", m.counters.fences);
    metric_header(out, "consentd_dataplane_enforcement_seconds", "histogram",
                  "From a durable commit to a data plane's acknowledgement of it, per data plane.");
    for (const auto& [name, h] : m.counters.enforcement_seconds)
        h.render(out, "consentd_dataplane_enforcement_seconds", "dataplane=\"" + proto::stat_label_value(name) + "\"");
    metric_header(out, "consentd_dataplane_snapshot_build_seconds", "histogram",
                  "Reading and encoding a full table snapshot.");
    m.counters.snapshot_build_seconds.render(out, "consentd_dataplane_snapshot_build_seconds");
    metric(out, "consentd_dataplane_snapshots_sent_total", "counter", "Full tables sent to data planes.",
           m.counters.snapshots_sent);
    metric(out, "consentd_dataplane_token_resumes_total", "counter",
           "Data planes that resumed by a resume token: from another consentd of the ledger, or from this one "
           "before a restart.",
           m.counters.token_resumes);
    metric(out, "consentd_dataplane_resyncs_total", "counter",
           "Data planes resent the whole table because they fell behind.", m.counters.resyncs);
    metric(out, "consentd_dataplane_disconnects_total", "counter", "Data plane connections that ended.",
           m.counters.disconnects);
    metric(out, "consentd_dataplane_protocol_errors_total", "counter",
           "Data plane connections closed for a malformed, oversized or unexpected frame.", m.counters.protocol_errors);
    metric(out, "consentd_dataplane_tls_failures_total", "counter",
           "TCP connections refused in the TLS handshake (no or bad client certificate).", m.counters.tls_failures);
    metric_header(out, "consentd_dataplane_connections_refused_total", "counter",
                  "Connections to the data-plane listeners closed before they became a data plane, by reason.");
    for (size_t i = 0; i < kDataPlaneRefusals; ++i)
        out.append("consentd_dataplane_connections_refused_total{reason=\"")
            .append(to_string(DataPlaneRefusal(i)))
            .append("\"} ")
            .append(std::to_string(m.counters.refusals[i]))
            .append("\n");
    metric(out, "consentd_dataplane_pending_connections", "gauge",
           "TCP connections to the data-plane port without a hello yet (TLS handshake included).", m.counters.pending);
    metric(out, "consentd_dataplane_accept_pauses_total", "counter",
           "Times the data-plane TCP listener stopped accepting because max_pending connections were pending.",
           m.counters.accept_pauses);
    metric_header(out, "consentd_enforced_waits_total", "counter", "?wait=enforced requests by outcome.");
    out.append("consentd_enforced_waits_total{result=\"enforced\"} ")
        .append(std::to_string(m.waits_enforced))
        .append("\n");
    out.append("consentd_enforced_waits_total{result=\"timeout\"} ")
        .append(std::to_string(m.waits_timeout))
        .append("\n");
    out.append("consentd_enforced_waits_total{result=\"no_dataplanes\"} ")
        .append(std::to_string(m.waits_none))
        .append("\n");
    metric(out, "consentd_dataplane_stats_reports_total", "counter", "Stats reports received from data planes.",
           m.counters.stats_reports);
    metric(out, "consentd_dataplane_checkpoint_seq", "gauge",
           "Event seq of the latest signed ledger checkpoint sent to data planes (0: none); compare "
           "optgate_dp_control_checkpoint_seq.",
           m.counters.checkpoint_seq);
    metric_header(out, "consentd_dataplane_disclosure_reports_total", "counter",
                  "Disclosure reports from data planes by outcome: stored (acknowledged), failed (the store could not "
                  "take it; the data plane sends it again), busy (too many in flight; sent again), refused (no "
                  "disclosure store).");
    static constexpr const char* kOutcomes[] = {"stored", "failed", "busy", "refused"};
    for (size_t i = 0; i < 4; ++i)
        out.append("consentd_dataplane_disclosure_reports_total{result=\"")
            .append(kOutcomes[i])
            .append("\"} ")
            .append(std::to_string(m.counters.disclosure_reports[i]))
            .append("\n");
    render_dataplane_stats(out, m.sources, now);
}

}  // namespace optgate::consentd
