#include "replay/control.hpp"

#include <unistd.h>

#include <iostream>

#include "proto/stats.hpp"
#include "replay/pcap_files.hpp"

namespace optgate::replay {

namespace {

std::string default_name() {
    char host[64] = {};
    ::gethostname(host, sizeof host - 1);
    std::string n = "replay-";
    for (const char* p = host; *p && n.size() < 40; ++p) {
        const char c = *p;
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                        c == '-' || c == '_';
        n.push_back(ok ? c : '_');
    }
    return n + "-" + std::to_string(::getpid());
}

}  // namespace

std::unique_ptr<proto::ControlClient> connect_control(ControlOptions& o, Enforcement& enforcement, StatsSource* stats) {
    std::string error;
    auto endpoints = proto::Endpoint::parse_list(o.endpoint, error);
    if (!endpoints) throw FileError("--control " + o.endpoint + ": " + error);
    proto::ControlClient::Options co;
    if (o.name.empty()) o.name = default_name();
    co.name = o.name;
    co.endpoints = std::move(*endpoints);
    if (!o.tls_cert.empty() || !o.tls_key.empty() || !o.tls_ca.empty())
        co.tls = proto::TlsFiles{o.tls_cert, o.tls_key, o.tls_ca};
    co.checkpoint_public_key = o.checkpoint_public_key;
    co.log = [](std::string_view line) { std::cerr << "optgate-replay: control: " << line << "\n"; };
    std::unique_ptr<proto::ControlClient> client;
    try {
        client = std::make_unique<proto::ControlClient>(enforcement, std::move(co));
    } catch (const std::exception& e) {
        throw FileError("--control " + o.endpoint + ": " + e.what());
    }
    if (stats)
        client->set_stats_source([stats](std::vector<proto::StatEntry>& out) { stats->fill(out); }, o.stats_interval);
    else
        client->set_stats_source(nullptr, o.stats_interval);
    client->start();
    if (!client->wait_synced(o.timeout)) {
        const auto st = client->status();
        client->stop();
        throw FileError("--control " + o.endpoint + ": no snapshot from consentd within " +
                        std::to_string(o.timeout.count()) + " ms" +
                        (st.last_error.empty() ? std::string() : " (" + st.last_error + ")"));
    }
    // consentd's latest ledger checkpoint comes before its answer to the
    // features frame: the report then shows the one current at connect
    // (a consentd older than it answers nothing; the wait is bounded).
    client->wait_features(o.timeout);
    return client;
}

void StatsSource::update(const WorkerCounters& c, bool now) {
    const uint64_t t = monotonic_ns();
    if (!now && t - copied_ns_ < 100'000'000) return;
    std::lock_guard lk(mu_);
    copy_ = c;
    copied_ns_ = t;
}

void DisclosureSource::attach(Worker& worker) {
    std::lock_guard lock(mu_);
    worker_ = &worker;
}

void DisclosureSource::drain_into(DisclosureBatch& out) {
    std::lock_guard lock(mu_);
    out = DisclosureBatch{};
    if (!worker_) return;
    Worker* workers[] = {worker_};
    // The replay loop passes a quiescent state after every burst and goes
    // offline when it waits or ends, so the grace period is short; if it
    // is not over in time, the counts stay for the next drain.
    if (!drain_.drain(enforcement_.rcu(), workers, unix_ms_now(), out)) return;
    for (const auto& e : out.entries) {
        auto [it, fresh] = totals_.try_emplace({e.family, e.key, e.destination, e.identifier}, e);
        if (!fresh) {
            it->second.passed += e.passed;
            it->second.stripped += e.stripped;
        }
    }
    overflowed_ += out.overflowed;
}

std::vector<DisclosureEntry> DisclosureSource::totals() const {
    std::lock_guard lock(mu_);
    std::vector<DisclosureEntry> out;
    out.reserve(totals_.size());
    for (const auto& [k, e] : totals_) out.push_back(e);
    return out;
}

uint64_t DisclosureSource::overflowed() const {
    std::lock_guard lock(mu_);
    return overflowed_;
}

void StatsSource::fill(std::vector<proto::StatEntry>& out) {
    const auto runtime = enforcement_.runtime();  // the control thread installs it: safe here
    if (!runtime) return;
    std::lock_guard lk(mu_);
    proto::append_counters(out, copy_, *runtime);
}

boost::json::object control_report(const ControlOptions& o, const proto::ControlClient::Status& s) {
    boost::json::object j;
    j["endpoint"] = o.endpoint;
    j["name"] = o.name;
    j["connected"] = s.connected;
    j["applied_seq"] = s.applied_seq;
    j["head_seq"] = s.head_seq;
    j["stream_id"] = s.stream_id;
    j["table_version"] = s.table_version;
    j["connects"] = s.connects;
    j["connected_to"] = s.endpoint;  // the endpoint of the last connection (one of --control's)
    j["failovers"] = s.failovers;
    j["snapshots"] = s.snapshots;
    j["deltas"] = s.deltas;
    j["last_error"] = s.last_error;
    j["disclosure_reports"] = {{"sent", s.disclosures_sent},
                               {"acknowledged", s.disclosures_acked},
                               {"pending", s.disclosures_pending},
                               {"dropped", s.disclosures_dropped}};
    // The ledger's latest signed checkpoint as this data plane received it:
    // `line` into a file is what `optgatectl verify-ledger --checkpoints`
    // reads (docs/consentd.md, "Signed checkpoints").
    boost::json::object c;
    c["seq"] = s.checkpoint_seq;
    c["line"] = s.checkpoint_line;
    c["verified"] = s.checkpoint_verified && s.checkpoint_seq > 0;
    c["kept"] = s.checkpoints_kept;
    c["refused"] = s.checkpoints_refused;
    j["checkpoint"] = std::move(c);
    return j;
}

uint64_t Pacer::wait_ns(uint64_t ts_ns) noexcept {
    const uint64_t now = monotonic_ns();
    if (!started_) {
        started_ = true;
        first_ts_ = ts_ns;
        start_mono_ = now;
        return 0;
    }
    // Captures can step back in time (merged files): never wait for those.
    const uint64_t offset = ts_ns > first_ts_ ? ts_ns - first_ts_ : 0;
    const uint64_t due = start_mono_ + offset;
    return due > now ? due - now : 0;
}

}  // namespace optgate::replay
