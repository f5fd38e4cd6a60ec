// optgate: the DPDK data plane. docs/dataplane.md, docs/deploy.md.
//
//   optgate [EAL options] -- --config FILE [flags overriding the file]
//   optgate [EAL options] -- (--policy FILE --consent FILE | --control ENDPOINT [...]) [options]
//   optgate --check-config FILE
//
// Two ports, bump in the wire: frames received on the subscriber port go
// out of the internet port and the other way round, through the same core
// Worker the replay tool uses. Workers run on EAL lcores (datapath.hpp);
// the control client (with a control endpoint) runs on its own thread and is
// the consent table's only writer; a monitor thread watches for signals,
// staleness and the exit conditions.
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_log.h>
#include <rte_mbuf.h>

#include <unistd.h>
#include <boost/json.hpp>
#include <boost/program_options.hpp>
#include <chrono>
#include <csignal>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <thread>

#include "common/report.hpp"
#include "common/static_consent.hpp"
#include "common/systemd.hpp"
#include "core/disclosure.hpp"
#include "core/enforcement.hpp"
#include "dataplane/config.hpp"
#include "dataplane/datapath.hpp"
#include "dataplane/link.hpp"
#include "dataplane/log.hpp"
#include "dataplane/metrics_server.hpp"
#include "dataplane/ports.hpp"
#include "dataplane/telemetry.hpp"
#include "policy/loader.hpp"
#include "proto/checkpoint_record.hpp"
#include "proto/control_client.hpp"
#include "proto/prometheus.hpp"
#include "proto/stats.hpp"

namespace po = boost::program_options;
using namespace optgate;
using namespace optgate::dataplane;

namespace {

// NOLINTNEXTLINE(cppcoreguidelines-avoid-non-const-global-variables): a signal handler can only reach a global
volatile std::sig_atomic_t g_signal = 0;
void on_signal(int sig) { g_signal = sig; }
// NOLINTNEXTLINE(cppcoreguidelines-avoid-non-const-global-variables): as g_signal
volatile std::sig_atomic_t g_stall = 0;
void on_stall(int) { g_stall = 1; }

struct RunLimits {
    unsigned idle_exit_ms = 0;  // 0: run until signalled
    unsigned duration_s = 0;
    int stall_worker = -1;  // tests: the worker SIGUSR2 stalls (Datapath::stall_for_test)
};

struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

constexpr const char* kUsage =
    "usage: optgate [EAL options] -- --config FILE [options]\n"
    "       optgate [EAL options] -- --policy FILE --consent FILE [options]\n"
    "       optgate [EAL options] -- --control ENDPOINT [--name NAME] [--bootstrap-policy FILE] [options]\n"
    "       optgate --check-config FILE\n";

std::vector<unsigned> parse_lcores(const std::string& text) {
    std::vector<unsigned> out;
    std::stringstream ss(text);
    std::string item;
    while (std::getline(ss, item, ',')) {
        size_t used = 0;
        unsigned long n = 0;
        try {
            n = std::stoul(item, &used);
        } catch (const std::exception&) {
            used = 0;
        }
        if (used != item.size() || item.empty() || n >= RTE_MAX_LCORE)
            throw UsageError("--worker-lcores: '" + item + "' is not an lcore id");
        out.push_back(unsigned(n));
    }
    return out;
}

// The file first (if any), then every flag given on the command line.
Config parse_options(int argc, char** argv, RunLimits& limits) {
    std::string config_file, lcores, steering, log_level;
    Config flags;
    uint64_t http_idle = 0, sync_ms = 0, idle_sleep_us = 0, disclosure_interval_s = 0;
    unsigned metrics_port = 0;
    po::options_description d("optgate options (after --)");
    d.add_options()("help,h", "show this help")(
        "config", po::value(&config_file),
        "the configuration file (config/optgate.example.yaml); flags below override it")(
        "policy", po::value(&flags.policy), "static mode: policy file (docs/policy.md)")(
        "consent", po::value(&flags.consent), "static mode: consent file (docs/consent-file.md)")(
        "control", po::value(&flags.control),
        "controlled mode: consentd's Unix socket path or HOST:PORT; several, comma-separated, are tried in turn")(
        "name", po::value(&flags.name), "with --control: this data plane's name (default: optgate-<hostname>)")(
        "bootstrap-policy", po::value(&flags.bootstrap_policy),
        "with --control: policy to enforce (stripping everything) until consentd's first snapshot")(
        "tls-cert", po::value(&flags.tls_cert), "with --control HOST:PORT: client certificate (PEM)")(
        "tls-key", po::value(&flags.tls_key), "with --control HOST:PORT: client key (PEM)")(
        "tls-ca", po::value(&flags.tls_ca), "with --control HOST:PORT: CA of consentd's certificate (PEM)")(
        "checkpoint-public-key", po::value(&flags.checkpoint_public_key),
        "with --control: consentd's checkpoint public key (PEM); ledger checkpoints that do not verify are refused")(
        "sync-timeout-ms", po::value(&sync_ms), "with --control: wait for the first snapshot before forwarding")(
        "subscriber-port", po::value(&flags.subscriber_port), "port id or device name facing subscribers (default 0)")(
        "internet-port", po::value(&flags.internet_port), "port id or device name facing the internet (default 1)")(
        "worker-lcores", po::value(&lcores),
        "comma-separated EAL lcores that run workers (default: all but the main lcore)")(
        "steering", po::value(&steering), "auto, rss or software (docs/dataplane.md#workers)")(
        "burst", po::value(&flags.burst), "frames per receive burst (1..64, default 32)")(
        "mbufs", po::value(&flags.mbufs), "mbufs in the pool (default: computed)")(
        "idle-sleep-us", po::value(&idle_sleep_us), "sleep this long when idle (default 0: poll)")(
        "stats", po::value(&flags.stats_file),
        "write counters as JSON to this file on exit (docs/replay.md#the-report)")(
        "http-flows", po::value(&flags.http_flows),
        "HTTP flows tracked per worker (default 262144; 196 bytes each, allocated at start; docs/http.md)")(
        "http-idle-timeout", po::value(&http_idle),
        "seconds before an idle HTTP flow's entry may be reused (default 120)")(
        "disclosure-interval", po::value(&disclosure_interval_s),
        "seconds between drains of the disclosure counts (default 60; docs/pipeline.md#disclosure-accounting)")(
        "disclosure-entries", po::value(&flags.disclosure_entries),
        "disclosure table slots per worker (default 65536; two tables of 40 bytes a slot; 0: off)")(
        "fragment-datagrams", po::value(&flags.fragment_datagrams),
        "fragmented datagrams held for reassembly per worker (default 256; docs/pipeline.md#fragments)")(
        "fragment-memory", po::value(&flags.fragment_memory),
        "bytes of fragment copies held for reassembly per worker (default 4194304)")(
        "metrics-address", po::value(&flags.metrics_address),
        "address of the Prometheus endpoint (default 127.0.0.1; docs/dataplane.md#prometheus)")(
        "metrics-port", po::value(&metrics_port), "port of the Prometheus endpoint (default 9477; 0: any)")(
        "no-metrics", "no Prometheus endpoint")(
        "no-link-propagation", "leave the other port up when one loses its link (docs/deploy.md#link-faults)")(
        "log-level", po::value(&log_level), "error, warning, info (default) or debug")(
        "idle-exit-ms", po::value(&limits.idle_exit_ms),
        "exit after this many ms without a packet (tests, pcap vdevs)")("duration", po::value(&limits.duration_s),
                                                                        "exit after this many seconds")(
        "test-stall-worker", po::value(&limits.stall_worker),
        "tests only: on SIGUSR2, this worker stops making progress (systemd's watchdog then stops)");
    po::variables_map vm;
    try {
        po::store(po::command_line_parser(argc, argv).options(d).run(), vm);
        po::notify(vm);
    } catch (const po::error& e) {
        throw UsageError(e.what());
    }
    if (vm.count("help")) {
        std::cout << kUsage << d;
        std::exit(0);
    }
    Config c;
    if (!config_file.empty()) {
        auto loaded = load_config_file(config_file);
        for (const auto& w : loaded.warnings) log(Level::warning, w.to_string());
        c = std::move(loaded.config);
    }
    const auto given = [&](const char* name) { return vm.count(name) > 0; };
    // Mode flags replace the file's mode as a whole.
    if (given("policy") || given("consent")) {
        c.control.clear();
        c.policy = flags.policy;
        c.consent = flags.consent;
    }
    if (given("control")) {
        c.policy.clear();
        c.consent.clear();
        c.control = flags.control;
    }
    if (given("name")) c.name = flags.name;
    if (given("bootstrap-policy")) c.bootstrap_policy = flags.bootstrap_policy;
    if (given("tls-cert")) c.tls_cert = flags.tls_cert;
    if (given("tls-key")) c.tls_key = flags.tls_key;
    if (given("tls-ca")) c.tls_ca = flags.tls_ca;
    if (given("checkpoint-public-key")) c.checkpoint_public_key = flags.checkpoint_public_key;
    if (given("sync-timeout-ms")) c.sync_timeout = std::chrono::milliseconds(sync_ms);
    if (given("subscriber-port")) c.subscriber_port = flags.subscriber_port;
    if (given("internet-port")) c.internet_port = flags.internet_port;
    if (given("worker-lcores")) c.worker_lcores = parse_lcores(lcores);
    if (given("steering")) {
        if (steering == "auto")
            c.steering = Steering::automatic;
        else if (steering == "rss")
            c.steering = Steering::rss;
        else if (steering == "software")
            c.steering = Steering::software;
        else
            throw UsageError("--steering must be auto, rss or software");
    }
    if (given("burst")) c.burst = flags.burst;
    if (given("mbufs")) c.mbufs = flags.mbufs;
    if (given("idle-sleep-us")) c.idle_sleep = std::chrono::microseconds(idle_sleep_us);
    if (given("stats")) c.stats_file = flags.stats_file;
    if (given("http-flows")) c.http_flows = flags.http_flows;
    if (given("http-idle-timeout")) c.http_idle_timeout = std::chrono::seconds(http_idle);
    if (given("disclosure-interval")) c.disclosure_interval = std::chrono::seconds(disclosure_interval_s);
    if (given("disclosure-entries")) c.disclosure_entries = flags.disclosure_entries;
    if (given("fragment-datagrams")) c.fragment_datagrams = flags.fragment_datagrams;
    if (given("fragment-memory")) c.fragment_memory = flags.fragment_memory;
    if (given("metrics-address")) c.metrics_address = flags.metrics_address;
    if (given("metrics-port")) {
        if (metrics_port > 65535) throw UsageError("--metrics-port must be between 0 and 65535");
        c.metrics_port = uint16_t(metrics_port);
    }
    if (given("no-metrics")) c.metrics = false;
    if (given("no-link-propagation")) c.link_propagation = false;
    if (given("log-level")) c.log_level = log_level;
    if (const std::string why = validate(c); !why.empty()) throw UsageError(why);
    if (!set_log_level(c.log_level)) throw UsageError("--log-level must be error, warning, info or debug");
    return c;
}

void print_policy_error(const policy::PolicyError& e) {
    const std::string text = e.what();
    std::cerr << text << (text.empty() || text.back() != '\n' ? "\n" : "");
}

// `optgate --check-config FILE`: the file, and the policy (and consent) it
// names, without starting EAL. Exit 0 if usable, 2 otherwise.
int check_config(const std::string& path) {
    try {
        const auto loaded = load_config_file(path);
        for (const auto& w : loaded.warnings) std::cerr << w.to_string() << "\n";
        const Config& c = loaded.config;
        if (!c.policy.empty()) {
            Enforcement e(Enforcement::Mode::static_table);
            const auto s = install_static_consent(e, c.policy, c.consent);
            std::cout << path << ": ok (static: " << s.subscribers << " subscribers from " << c.consent << ")\n";
        } else {
            if (!c.bootstrap_policy.empty()) policy::load_policy_file(c.bootstrap_policy);
            std::cout << path << ": ok (controlled by " << c.control << ")\n";
        }
        return 0;
    } catch (const policy::PolicyError& e) {
        print_policy_error(e);
    } catch (const std::exception& e) {
        std::cerr << "optgate: " << path << ": " << e.what() << "\n";
    }
    return 2;
}

std::vector<unsigned> worker_lcores(const Config& c) {
    std::vector<unsigned> lcores;
    if (c.worker_lcores.empty()) {
        // Every worker lcore but the main one: the control client and the
        // monitor run on the main lcore's CPU, and a worker polling there
        // would delay every acknowledgement (measured: 0.06 ms -> 4-11 ms
        // p50 from commit to ack). With a single lcore it is the worker.
        unsigned l = 0;
        RTE_LCORE_FOREACH_WORKER(l) lcores.push_back(l);
        if (lcores.empty()) lcores.push_back(rte_get_main_lcore());
        return lcores;
    }
    for (unsigned l : c.worker_lcores) {
        if (!rte_lcore_is_enabled(l))
            throw UsageError("worker lcore " + std::to_string(l) + " is not among EAL's lcores (-l/--lcores)");
        lcores.push_back(l);
    }
    return lcores;
}

// Enough mbufs for every descriptor ring, every worker's bursts and rings,
// and the per-lcore caches (docs/deploy.md#sizing).
unsigned mbufs_needed(const Config& c, const QueuePlan& plan, unsigned workers) {
    const uint64_t per_port = uint64_t(plan.rx_queues) * c.rx_descriptors + uint64_t(plan.tx_queues) * c.tx_descriptors;
    const uint64_t rings = plan.steering == Steering::software && workers > 1 ? uint64_t(workers + 2) * c.ring_size : 0;
    const uint64_t n = 2 * per_port + rings + uint64_t(workers) * (4 * c.burst + c.mbuf_cache) + 1024;
    return unsigned(std::min<uint64_t>(n, 1u << 28));
}

int worker_main(void* arg) {
    auto* p = static_cast<std::pair<Datapath*, unsigned>*>(arg);
    p->first->run_worker(p->second);
    return 0;
}

std::string_view health_text(TableHealth h) {
    switch (h) {
    case TableHealth::fresh: return "fresh";
    case TableHealth::stale: return "stale: stripping every identifier until consentd is heard again";
    case TableHealth::not_received: return "no table from consentd yet: stripping every identifier";
    }
    return "?";
}

// systemd's watchdog (WatchdogSec=, docs/deploy.md#watchdog): WATCHDOG=1
// every interval while every worker advances. A worker that stops is logged
// once, and without pings systemd restarts the unit.
class WatchdogPinger {
public:
    WatchdogPinger(const Datapath& dp, uint64_t start)
        : dp_(dp), interval_ns_(uint64_t(systemd::watchdog_interval().count()) * 1000), next_(start + interval_ns_),
          counts_(dp.workers()) {}

    void tick(uint64_t now) {
        if (!interval_ns_ || now < next_) return;
        next_ = now + interval_ns_;
        for (unsigned i = 0; i < dp_.workers(); ++i) counts_[i] = dp_.progress(i);
        size_t stalled = 0;
        if (progress_.advanced(counts_, stalled)) {
            systemd::notify("WATCHDOG=1");
            logged_ = false;
        } else if (!logged_) {
            log(Level::error, "worker " + std::to_string(stalled) + " (lcore " +
                                  std::to_string(dp_.lcore_of(unsigned(stalled))) + ") made no progress for " +
                                  std::to_string(interval_ns_ / 1000000) +
                                  " ms: not pinging systemd's watchdog, which restarts optgate");
            logged_ = true;
        }
    }

private:
    const Datapath& dp_;
    const uint64_t interval_ns_;  // 0: no watchdog
    uint64_t next_;
    std::vector<uint64_t> counts_;
    systemd::ProgressCheck progress_;
    bool logged_ = false;
};

// Signals, exit conditions, staleness transitions (logged once each),
// systemd's watchdog and, every 100 ms, the links (null: not propagated).
void monitor(Datapath& dp, Enforcement& enforcement, const RunLimits& limits, LinkPropagation* links) {
    const uint64_t start = monotonic_ns();
    TableHealth last = TableHealth::fresh;
    bool first = true;
    WatchdogPinger watchdog(dp, start);
    unsigned ticks = 0;
    while (!dp.stopping()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        const uint64_t now = monotonic_ns();
        if (g_signal) {
            log(Level::info, std::string("signal ") + (g_signal == SIGINT ? "SIGINT" : "SIGTERM") + ": draining");
            systemd::notify("STOPPING=1");
            dp.stop();
            break;
        }
        if (g_stall && limits.stall_worker >= 0 && unsigned(limits.stall_worker) < dp.workers()) {
            g_stall = 0;
            log(Level::warning, "test: stalling worker " + std::to_string(limits.stall_worker));
            dp.stall_for_test(unsigned(limits.stall_worker));
        }
        watchdog.tick(now);
        if (links && ++ticks % 20 == 0) links->tick();
        if (limits.duration_s && now - start > uint64_t(limits.duration_s) * 1000000000ull) dp.stop();
        if (limits.idle_exit_ms) {
            const uint64_t last_rx = std::max(dp.last_rx_ns(), start);
            if (now - last_rx > uint64_t(limits.idle_exit_ms) * 1000000ull) dp.stop();
        }
        if (enforcement.mode() == Enforcement::Mode::controlled && enforcement.runtime()) {
            const TableHealth h = enforcement.view(now).health;
            if (h != last || first) {
                if (!first || h != TableHealth::fresh)
                    log(h == TableHealth::stale ? Level::warning : Level::info,
                        std::string("consent table ") + std::string(health_text(h)));
                last = h;
                first = false;
            }
        }
    }
}

// What consentd's /metrics shows for this data plane (docs/consentd.md):
// the pipeline's counters, the driver's, per worker and per port. Runs on
// the control client's thread; reads only what workers publish.
void report_stats(std::vector<proto::StatEntry>& out, const Datapath& dp, const Enforcement& enforcement,
                  const uint16_t (&ports)[2]) {
    using proto::StatKind;
    auto counters = std::make_unique<WorkerCounters>();
    DriverCounters dc;
    dp.read_stats(*counters, dc);
    if (const auto runtime = enforcement.runtime()) proto::append_counters(out, *counters, *runtime);
#define OPTGATE_X(name, summary) out.push_back({"driver_" #name, dc.name, StatKind::counter, "", ""});
    OPTGATE_DRIVER_COUNTERS(OPTGATE_X)
#undef OPTGATE_X
    out.push_back({"workers", dp.workers(), StatKind::gauge, "", ""});
    // table_stale, table_entries and control_* come from the control client itself.
    auto one = std::make_unique<WorkerCounters>();
    for (unsigned i = 0; i < dp.workers(); ++i) {
        DriverCounters wd;
        dp.read_worker(i, *one, wd);
        const std::string w = std::to_string(i);
        out.push_back({"worker_packets", one->get(Counter::packets), StatKind::counter, "worker", w});
        out.push_back({"worker_steered_in", wd.steered_in, StatKind::counter, "worker", w});
    }
    static constexpr const char* kRole[2] = {"subscriber", "internet"};
    for (unsigned r = 0; r < 2; ++r) {
        rte_eth_stats st{};
        if (rte_eth_stats_get(ports[r], &st) != 0) continue;
        out.push_back({"port_rx_packets", st.ipackets, StatKind::counter, "port", kRole[r]});
        out.push_back({"port_tx_packets", st.opackets, StatKind::counter, "port", kRole[r]});
        out.push_back({"port_rx_missed", st.imissed, StatKind::counter, "port", kRole[r]});
        out.push_back({"port_rx_errors", st.ierrors, StatKind::counter, "port", kRole[r]});
        out.push_back({"port_tx_errors", st.oerrors, StatKind::counter, "port", kRole[r]});
        out.push_back({"port_rx_nombuf", st.rx_nombuf, StatKind::counter, "port", kRole[r]});
    }
}

// What optgate's own endpoint shows (docs/dataplane.md#prometheus): the
// entries consentd shows for it, and the control client's, read here so that
// they stay visible while consentd is unreachable; control_connected only
// here (consentd cannot report that it is unreachable). The endpoint's thread.
std::string render_own_metrics(const Datapath& dp, const Enforcement& enforcement, const proto::ControlClient* client,
                               const uint16_t (&ports)[2], std::string_view name) {
    using proto::StatKind;
    std::vector<proto::StatEntry> out;
    report_stats(out, dp, enforcement, ports);
    const auto add = [&](const char* n, uint64_t v, StatKind k) { out.push_back({n, v, k, {}, {}}); };
    add("table_stale", enforcement.view(monotonic_ns()).health == TableHealth::stale, StatKind::gauge);
    if (client) {
        const auto s = client->status();
        add("control_connected", s.connected, StatKind::gauge);
        add("control_synced", s.synced, StatKind::gauge);
        add("control_applied_seq", s.applied_seq, StatKind::gauge);
        add("control_head_seq", s.head_seq, StatKind::gauge);
        add("control_connects", s.connects, StatKind::counter);
        add("control_failovers", s.failovers, StatKind::counter);
        add("control_snapshots", s.snapshots, StatKind::counter);
        add("control_deltas", s.deltas, StatKind::counter);
        add("control_entries_refused", s.entries_refused, StatKind::counter);
        add("control_pseudonym_keys", s.pseudonym_keys, StatKind::gauge);
        add("table_entries", s.table_entries, StatKind::gauge);
        add("control_checkpoints", s.checkpoints_kept, StatKind::counter);
        add("control_checkpoints_refused", s.checkpoints_refused, StatKind::counter);
        if (s.checkpoint_seq) {
            add("control_checkpoint_seq", s.checkpoint_seq, StatKind::gauge);
            add("control_checkpoint_age_seconds",
                proto::checkpoint_age_seconds(s.checkpoint_received_unix_ms, unix_ms_now()), StatKind::gauge);
        }
    }
    std::string text;
    proto::render_stats(text, std::move(out), name);
    return text;
}

int run(const Config& c, const RunLimits& limits) {
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    if (limits.stall_worker >= 0) std::signal(SIGUSR2, on_stall);

    const uint16_t subscriber = resolve_port(c.subscriber_port);
    const uint16_t internet = resolve_port(c.internet_port);
    if (subscriber == internet) throw UsageError("the subscriber and internet ports are the same port");
    const auto lcores = worker_lcores(c);
    const QueuePlan plan = plan_queues(subscriber, internet, unsigned(lcores.size()), c.steering);
    const unsigned mbufs = c.mbufs ? c.mbufs : mbufs_needed(c, plan, unsigned(lcores.size()));
    rte_mempool* pool = rte_pktmbuf_pool_create("optgate_mbufs", mbufs, std::min(c.mbuf_cache, 512u), 0,
                                                uint16_t(RTE_MBUF_DEFAULT_BUF_SIZE), int(rte_socket_id()));
    if (!pool)
        throw std::runtime_error("cannot create a pool of " + std::to_string(mbufs) +
                                 " mbufs: " + rte_strerror(rte_errno) + " (EAL -m / hugepages; docs/deploy.md)");
    setup_port(subscriber, plan, c, pool);
    setup_port(internet, plan, c, pool);
    const std::string steering = lcores.size() == 1 ? "none" : std::string(to_string(plan.steering));
    log(Level::info, std::to_string(lcores.size()) + " worker(s), steering " + steering + ": " + plan.why + "; " +
                         std::to_string(mbufs) + " mbufs");

    Enforcement enforcement(c.control.empty() ? Enforcement::Mode::static_table : Enforcement::Mode::controlled);
    // Drains the workers' disclosure counts for consentd (the client's thread;
    // declared before the client, which may call it until it stops).
    DisclosureDrain disclosure_drain(unix_ms_now());
    std::unique_ptr<proto::ControlClient> client;
    char host[256] = "host";
    gethostname(host, sizeof host - 1);
    const std::string name = c.name.empty() ? std::string("optgate-") + host : c.name;
    if (c.control.empty()) {
        const auto loaded = install_static_consent(enforcement, c.policy, c.consent);
        log(Level::info, "static consent: " + std::to_string(loaded.subscribers) + " subscribers, " +
                             std::to_string(loaded.keys) + " keys");
    } else {
        std::string why;
        auto endpoints = proto::Endpoint::parse_list(c.control, why);
        if (!endpoints) throw UsageError("control endpoint " + c.control + ": " + why);
        proto::ControlClient::Options co;
        co.name = name;
        co.endpoints = std::move(*endpoints);
        co.log = [](std::string_view line) { log(Level::info, std::string(line)); };
        if (!c.tls_cert.empty()) co.tls = proto::TlsFiles{c.tls_cert, c.tls_key, c.tls_ca};
        co.checkpoint_public_key = c.checkpoint_public_key;
        client = std::make_unique<proto::ControlClient>(enforcement, co);
        if (!c.bootstrap_policy.empty()) {
            std::ifstream f(c.bootstrap_policy);
            if (!f) throw std::runtime_error(c.bootstrap_policy + ": cannot read");
            std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
            std::string error;
            if (!client->bootstrap(text, c.bootstrap_policy, error)) throw std::runtime_error(error);
        }
        client->start();
        if (c.sync_timeout.count() && !client->wait_synced(c.sync_timeout))
            throw std::runtime_error("no table from consentd at " + c.control + " within " +
                                     std::to_string(c.sync_timeout.count()) + " ms");
    }

    Datapath dp(enforcement, c, plan, subscriber, internet, lcores);
    TelemetrySource telemetry{&dp, &enforcement, {}};
    if (client)
        telemetry.control = [&client](uint64_t& seq, uint64_t& entries, bool& connected) {
            const auto s = client->status();
            seq = s.applied_seq;
            entries = s.table_entries;
            connected = s.connected;
        };
    if (!register_telemetry(&telemetry)) log(Level::warning, "telemetry commands not registered");
    const uint16_t ports[2] = {subscriber, internet};
    // Declared after what it reads, so it stops first. A data plane that
    // cannot open its endpoint still forwards: the scrape's `up` says it.
    std::unique_ptr<MetricsServer> metrics;
    if (c.metrics) {
        try {
            metrics = std::make_unique<MetricsServer>(c.metrics_address, c.metrics_port, [&, ports] {
                return render_own_metrics(dp, enforcement, client.get(), ports, name);
            });
            const bool v6 = c.metrics_address.find(':') != std::string::npos;
            log(Level::info, "metrics: listening on " + (v6 ? "[" + c.metrics_address + "]" : c.metrics_address) + ":" +
                                 std::to_string(metrics->port()) + " (GET /metrics)");
        } catch (const std::exception& e) {
            log(Level::error, std::string(e.what()) + "; forwarding without a Prometheus endpoint");
        }
    }
    if (client) {
        client->set_stats_source([&dp, &enforcement, ports](
                                     std::vector<proto::StatEntry>& out) { report_stats(out, dp, enforcement, ports); },
                                 c.stats_interval);
        if (c.disclosure_entries)
            client->set_disclosure_source(
                [&dp, &enforcement, &disclosure_drain](DisclosureBatch& batch) {
                    disclosure_drain.drain(enforcement.rcu(), dp.core_workers(), unix_ms_now(), batch);
                },
                c.disclosure_interval);
    }

    std::vector<std::pair<Datapath*, unsigned>> args;
    args.reserve(lcores.size());
    for (unsigned i = 0; i < lcores.size(); ++i) args.emplace_back(&dp, i);
    const unsigned main_lcore = rte_get_main_lcore();
    int main_worker = -1;
    for (unsigned i = 0; i < lcores.size(); ++i)
        if (lcores[i] == main_lcore) main_worker = int(i);
    for (unsigned i = 0; i < lcores.size(); ++i) {
        if (int(i) == main_worker) continue;
        if (rte_eal_remote_launch(worker_main, &args[i], lcores[i]) != 0) {
            // Stop the workers already running before the datapath goes;
            // the ones that never ran count as drained.
            for (unsigned j = 0; j < lcores.size(); ++j)
                if (j >= i || int(j) == main_worker) dp.abandon(j);
            dp.stop();
            rte_eal_mp_wait_lcore();
            unregister_telemetry();
            throw std::runtime_error("cannot launch a worker on lcore " + std::to_string(lcores[i]));
        }
    }
    const std::string forwarding = "forwarding between port " + std::to_string(subscriber) +
                                   " (subscribers) and port " + std::to_string(internet) + " (internet)";
    log(Level::info, forwarding);
    if (!enforcement.runtime())
        log(Level::warning,
            "no policy yet: every frame is dropped until consentd's first snapshot "
            "(no_policy_dropped); control.bootstrap_policy forwards them with every identifier "
            "stripped instead");
    systemd::notify("READY=1\nSTATUS=" + forwarding);
    std::optional<LinkPropagation> links;
    if (c.link_propagation)
        links.emplace(subscriber, internet,
                      [](bool warning, const std::string& line) { log(warning ? Level::warning : Level::info, line); });
    if (main_worker >= 0) {
        std::thread watcher([&] { monitor(dp, enforcement, limits, links ? &*links : nullptr); });
        dp.run_worker(unsigned(main_worker));
        watcher.join();
    } else {
        monitor(dp, enforcement, limits, links ? &*links : nullptr);
    }
    links.reset();  // a port it took down is up again
    rte_eal_mp_wait_lcore();
    unregister_telemetry();
    if (client) {
        client->flush_stats(std::chrono::milliseconds(1000));  // consentd keeps the final counts
        // The workers are offline now: the last disclosure counts, acknowledged
        // once consentd has stored them (after its clock margin). Bounded, so
        // that a stop while consentd is away does not hang (docs/dataplane.md).
        if (c.disclosure_entries && !client->flush_disclosures(std::chrono::seconds(10)))
            log(Level::warning, "consentd did not acknowledge every disclosure report within 10 s: they are lost");
        client->stop();
    }

    metrics.reset();  // it reads the ports' counters
    for (uint16_t port : {subscriber, internet}) {
        rte_eth_dev_stop(port);  // flushes pcap vdevs
        rte_eth_dev_close(port);
    }
    auto counters = std::make_unique<WorkerCounters>();
    DriverCounters dc;
    dp.final_stats(*counters, dc);
    const auto runtime = enforcement.runtime();
    if (runtime) std::cout << report::human_summary(*counters, *runtime);
    std::string summary;
#define OPTGATE_X(name, text) summary += (summary.empty() ? "driver: " : ", ") + std::to_string(dc.name) + " " text;
    OPTGATE_DRIVER_COUNTERS(OPTGATE_X)
#undef OPTGATE_X
    std::cout << summary << "\n";
    if (!c.stats_file.empty()) {
        // Without a policy (no table ever arrived, no bootstrap_policy) the
        // counters still say what happened: every frame no_policy_dropped.
        auto j = runtime ? report::to_json(*counters, *runtime) : report::counters_to_json(*counters);
        boost::json::object driver;
#define OPTGATE_X(name, summary) driver[#name] = dc.name;
        OPTGATE_DRIVER_COUNTERS(OPTGATE_X)
#undef OPTGATE_X
        driver["steered"] = dc.steered_out;
        driver["workers"] = lcores.size();
        driver["steering"] = steering;
        j["driver"] = std::move(driver);
        boost::json::array per_worker;
        for (unsigned i = 0; i < dp.workers(); ++i) {
            const auto& wd = dp.final_driver(i);
            per_worker.push_back(boost::json::object{{"lcore", dp.lcore_of(i)},
                                                     {"rx", wd.rx},
                                                     {"tx", wd.tx},
                                                     {"steered_in", wd.steered_in},
                                                     {"steered_out", wd.steered_out},
                                                     {"packets", dp.final_counters(i).get(Counter::packets)}});
        }
        j["per_worker"] = std::move(per_worker);
        std::ofstream f(c.stats_file);
        f << boost::json::serialize(j) << "\n";
        if (!f) throw std::runtime_error(c.stats_file + ": cannot write");
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    // Without EAL: validate a configuration file.
    for (int i = 1; i + 1 < argc; ++i)
        if (std::string_view(argv[i]) == "--check-config") return check_config(argv[i + 1]);
    init_logging();
    const int consumed = rte_eal_init(argc, argv);
    if (consumed < 0) {
        log(Level::error, std::string("EAL initialisation failed: ") + rte_strerror(rte_errno));
        std::cerr << kUsage;
        return 2;
    }
    argc -= consumed;
    argv += consumed;
    int status = 2;
    try {
        RunLimits limits;
        const Config config = parse_options(argc, argv, limits);
        status = run(config, limits);
    } catch (const UsageError& e) {
        log(Level::error, e.what());
        std::cerr << kUsage;
    } catch (const policy::PolicyError& e) {
        print_policy_error(e);
    } catch (const std::exception& e) {
        log(Level::error, e.what());
    }
    rte_eal_cleanup();
    return status;
}
