// optgate: the DPDK data plane. docs/dataplane.md.
//
//   optgate [EAL options] -- (--policy FILE --consent FILE | --control ENDPOINT [...]) [options]
//
// Two ports: frames received on the subscriber port go out of the internet
// port and the other way round, each burst through the same core Worker the
// replay tool uses. The pipeline decides by source address, not by port, so
// the port roles only say where a frame leaves.
//
// One worker on the main lcore polls both ports (virtual devices and the
// single-queue NICs of a small edge have one queue; RSS across several
// workers, each with its own Worker, is the next step). The control client
// (with --control) runs on its own thread and is the consent table's only
// writer; the worker reads it lock-free and reports quiescence after every
// burst, going offline when idle so that reclamation never waits for it.
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>

#include <boost/json.hpp>
#include <boost/program_options.hpp>
#include <chrono>
#include <csignal>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <thread>
#include <unistd.h>

#include "common/report.hpp"
#include "common/static_consent.hpp"
#include "core/enforcement.hpp"
#include "core/pipeline.hpp"
#include "policy/loader.hpp"
#include "proto/control_client.hpp"

namespace po = boost::program_options;
using namespace optgate;

namespace {

constexpr uint16_t kBurst = 32;
constexpr uint16_t kRxDescriptors = 1024;
constexpr uint16_t kTxDescriptors = 1024;
constexpr unsigned kMbufs = 8191;
constexpr unsigned kMbufCache = 256;

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

struct Options {
    std::string policy, consent, stats;
    std::string control, name, bootstrap_policy, tls_cert, tls_key, tls_ca;
    uint16_t subscriber_port = 0, internet_port = 1;
    unsigned idle_exit_ms = 0;  // 0: run until signalled
    unsigned duration_s = 0;
    unsigned sync_timeout_ms = 0;
    size_t http_flows = HttpStageConfig{}.flow_capacity;
    unsigned http_idle_timeout_s = unsigned(HttpStageConfig{}.idle_timeout_ns / 1000000000ull);
};

struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

const char* kUsage =
    "usage: optgate [EAL options] -- --policy FILE --consent FILE [options]\n"
    "       optgate [EAL options] -- --control ENDPOINT [--name NAME] [--bootstrap-policy FILE] [options]\n";

Options parse_options(int argc, char** argv) {
    Options o;
    po::options_description d("optgate options (after --)");
    d.add_options()
        ("help,h", "show this help")
        ("policy", po::value(&o.policy), "static mode: policy file (docs/policy.md)")
        ("consent", po::value(&o.consent), "static mode: consent file (docs/consent-file.md)")
        ("control", po::value(&o.control), "controlled mode: consentd's Unix socket path or HOST:PORT")
        ("name", po::value(&o.name), "with --control: this data plane's name (default: optgate-<hostname>)")
        ("bootstrap-policy", po::value(&o.bootstrap_policy),
         "with --control: policy to enforce (stripping everything) until consentd's first snapshot")
        ("tls-cert", po::value(&o.tls_cert), "with --control HOST:PORT: client certificate (PEM)")
        ("tls-key", po::value(&o.tls_key), "with --control HOST:PORT: client key (PEM)")
        ("tls-ca", po::value(&o.tls_ca), "with --control HOST:PORT: CA of consentd's certificate (PEM)")
        ("sync-timeout-ms", po::value(&o.sync_timeout_ms), "with --control: wait for the first snapshot before forwarding")
        ("subscriber-port", po::value(&o.subscriber_port), "port id facing subscribers (default 0)")
        ("internet-port", po::value(&o.internet_port), "port id facing the internet (default 1)")
        ("stats", po::value(&o.stats), "write counters as JSON to this file on exit (docs/replay.md#the-report)")
        ("http-flows", po::value(&o.http_flows),
         "HTTP flows tracked (default 262144; 132 bytes each, allocated at start; docs/http.md)")
        ("http-idle-timeout", po::value(&o.http_idle_timeout_s), "seconds before an idle HTTP flow's entry may be reused (default 120)")
        ("idle-exit-ms", po::value(&o.idle_exit_ms), "exit after this many ms without a packet (tests, pcap vdevs)")
        ("duration", po::value(&o.duration_s), "exit after this many seconds");
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
    const bool static_mode = !o.policy.empty() || !o.consent.empty();
    if (static_mode == !o.control.empty())
        throw UsageError("give either --policy and --consent, or --control");
    if (static_mode && (o.policy.empty() || o.consent.empty()))
        throw UsageError("static mode needs both --policy and --consent");
    if (o.subscriber_port == o.internet_port) throw UsageError("--subscriber-port and --internet-port must differ");
    if (o.http_flows < 8 || o.http_flows > (size_t(1) << 26))
        throw UsageError("--http-flows must be between 8 and 67108864");
    if (o.http_idle_timeout_s == 0) throw UsageError("--http-idle-timeout must be at least 1 second");
    return o;
}

void setup_port(uint16_t port, rte_mempool* pool) {
    if (!rte_eth_dev_is_valid_port(port))
        throw std::runtime_error("port " + std::to_string(port) + " does not exist (" +
                                 std::to_string(rte_eth_dev_count_avail()) + " ports available)");
    rte_eth_conf conf{};
    int rc = rte_eth_dev_configure(port, 1, 1, &conf);
    if (rc < 0) throw std::runtime_error("port " + std::to_string(port) + ": configure failed: " + rte_strerror(-rc));
    uint16_t rxd = kRxDescriptors, txd = kTxDescriptors;
    rte_eth_dev_adjust_nb_rx_tx_desc(port, &rxd, &txd);
    const int socket = rte_eth_dev_socket_id(port);
    rc = rte_eth_rx_queue_setup(port, 0, rxd, socket < 0 ? rte_socket_id() : unsigned(socket), nullptr, pool);
    if (rc < 0) throw std::runtime_error("port " + std::to_string(port) + ": rx queue: " + rte_strerror(-rc));
    rc = rte_eth_tx_queue_setup(port, 0, txd, socket < 0 ? rte_socket_id() : unsigned(socket), nullptr);
    if (rc < 0) throw std::runtime_error("port " + std::to_string(port) + ": tx queue: " + rte_strerror(-rc));
    rc = rte_eth_dev_start(port);
    if (rc < 0) throw std::runtime_error("port " + std::to_string(port) + ": start failed: " + rte_strerror(-rc));
    rte_eth_promiscuous_enable(port);  // an inline box sees frames for other MACs; not all vdevs support it
}

// What the driver itself counts, beside the pipeline's counters.
struct DriverCounters {
    uint64_t rx = 0, tx = 0, tx_full_dropped = 0, multi_segment_dropped = 0;
};

// Receives a burst on `rx`, runs it through the worker, sends what it
// forwards on `tx`. Returns how many frames were received.
uint16_t forward_burst(Worker& worker, uint16_t rx, uint16_t tx, DriverCounters& dc) {
    rte_mbuf* in[kBurst];
    const uint16_t n = rte_eth_rx_burst(rx, 0, in, kBurst);
    if (n == 0) return 0;
    dc.rx += n;
    PacketRef refs[kBurst];
    rte_mbuf* mbufs[kBurst];
    uint32_t count = 0;
    const uint64_t now = monotonic_ns();
    for (uint16_t i = 0; i < n; ++i) {
        rte_mbuf* m = in[i];
        // The core needs the frame contiguous. A chained mbuf (jumbo frame)
        // that cannot be linearised is dropped: forwarding it unread could
        // leak an identifier.
        if (m->nb_segs > 1 && rte_pktmbuf_linearize(m) != 0) {
            rte_pktmbuf_free(m);
            ++dc.multi_segment_dropped;
            continue;
        }
        refs[count] = PacketRef{rte_pktmbuf_mtod(m, uint8_t*), rte_pktmbuf_data_len(m), now, Action::forward};
        mbufs[count++] = m;
    }
    worker.process_burst(refs, count, now);
    rte_mbuf* out[kBurst];
    uint16_t nout = 0;
    for (uint32_t i = 0; i < count; ++i) {
        rte_mbuf* m = mbufs[i];
        if (refs[i].action == Action::drop) {
            rte_pktmbuf_free(m);
            continue;
        }
        const uint32_t before = rte_pktmbuf_data_len(m);
        if (refs[i].len < before) rte_pktmbuf_trim(m, uint16_t(before - refs[i].len));
        out[nout++] = m;
    }
    const uint16_t sent = nout ? rte_eth_tx_burst(tx, 0, out, nout) : 0;
    dc.tx += sent;
    for (uint16_t i = sent; i < nout; ++i) rte_pktmbuf_free(out[i]);
    dc.tx_full_dropped += nout - sent;
    return n;
}

int run(const Options& o) {
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);

    rte_mempool* pool =
        rte_pktmbuf_pool_create("optgate_mbufs", kMbufs, kMbufCache, 0, RTE_MBUF_DEFAULT_BUF_SIZE, rte_socket_id());
    if (!pool) throw std::runtime_error(std::string("cannot create the mbuf pool: ") + rte_strerror(rte_errno));
    setup_port(o.subscriber_port, pool);
    setup_port(o.internet_port, pool);

    Enforcement enforcement(o.control.empty() ? Enforcement::Mode::static_table : Enforcement::Mode::controlled);
    std::unique_ptr<proto::ControlClient> client;
    if (o.control.empty()) {
        const auto loaded = install_static_consent(enforcement, o.policy, o.consent);
        std::cerr << "optgate: static consent: " << loaded.subscribers << " subscribers, " << loaded.keys
                  << " keys\n";
    } else {
        std::string why;
        const auto endpoint = proto::Endpoint::parse(o.control, why);
        if (!endpoint) throw UsageError("--control " + o.control + ": " + why);
        proto::ControlClient::Options co;
        char host[256] = "host";
        gethostname(host, sizeof host - 1);
        co.name = o.name.empty() ? std::string("optgate-") + host : o.name;
        co.endpoint = *endpoint;
        if (!o.tls_cert.empty() || !o.tls_key.empty() || !o.tls_ca.empty())
            co.tls = proto::TlsFiles{o.tls_cert, o.tls_key, o.tls_ca};
        client = std::make_unique<proto::ControlClient>(enforcement, co);
        if (!o.bootstrap_policy.empty()) {
            std::ifstream f(o.bootstrap_policy);
            if (!f) throw std::runtime_error(o.bootstrap_policy + ": cannot read");
            std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
            std::string error;
            if (!client->bootstrap(text, o.bootstrap_policy, error)) throw std::runtime_error(error);
        }
        client->start();
        if (o.sync_timeout_ms && !client->wait_synced(std::chrono::milliseconds(o.sync_timeout_ms)))
            throw std::runtime_error("no table from consentd at " + o.control + " within " +
                                     std::to_string(o.sync_timeout_ms) + " ms");
    }

    HttpStageConfig http;
    http.flow_capacity = o.http_flows;
    http.idle_timeout_ns = uint64_t(o.http_idle_timeout_s) * 1000000000ull;
    Worker worker(enforcement, http);
    DriverCounters dc;
    const uint64_t start = monotonic_ns();
    uint64_t last_packet = start;
    std::cerr << "optgate: forwarding between port " << o.subscriber_port << " (subscribers) and port "
              << o.internet_port << " (internet)\n";
    while (!g_stop) {
        const uint16_t got = forward_burst(worker, o.subscriber_port, o.internet_port, dc) +
                             forward_burst(worker, o.internet_port, o.subscriber_port, dc);
        const uint64_t now = monotonic_ns();
        if (got) {
            last_packet = now;
            continue;
        }
        worker.idle();
        if (o.idle_exit_ms && now - last_packet > uint64_t(o.idle_exit_ms) * 1000000) break;
        if (o.duration_s && now - start > uint64_t(o.duration_s) * 1000000000) break;
        rte_pause();
    }
    worker.idle();
    if (client) client->stop();

    for (uint16_t port : {o.subscriber_port, o.internet_port}) {
        rte_eth_dev_stop(port);  // flushes pcap vdevs
        rte_eth_dev_close(port);
    }
    const auto runtime = enforcement.runtime();
    if (runtime) std::cout << report::human_summary(worker.counters(), *runtime);
    std::cout << "driver: " << dc.rx << " received, " << dc.tx << " sent, " << dc.tx_full_dropped
              << " dropped on full tx queues, " << dc.multi_segment_dropped << " unlinearisable jumbo frames dropped\n";
    if (!o.stats.empty() && runtime) {
        auto j = report::to_json(worker.counters(), *runtime);
        j["driver"] = boost::json::object{{"rx", dc.rx},
                                          {"tx", dc.tx},
                                          {"tx_full_dropped", dc.tx_full_dropped},
                                          {"multi_segment_dropped", dc.multi_segment_dropped}};
        std::ofstream f(o.stats);
        f << boost::json::serialize(j) << "\n";
        if (!f) throw std::runtime_error(o.stats + ": cannot write");
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    const int consumed = rte_eal_init(argc, argv);
    if (consumed < 0) {
        std::cerr << "optgate: EAL initialisation failed: " << rte_strerror(rte_errno) << "\n" << kUsage;
        return 2;
    }
    argc -= consumed;
    argv += consumed;
    int status = 2;
    try {
        status = run(parse_options(argc, argv));
    } catch (const UsageError& e) {
        std::cerr << "optgate: " << e.what() << "\n" << kUsage;
    } catch (const policy::PolicyError& e) {
        std::cerr << e.what();
    } catch (const std::exception& e) {
        std::cerr << "optgate: " << e.what() << "\n";
    }
    rte_eal_cleanup();
    return status;
}
