// Enforcement benchmark (docs/benchmarks.md, "Enforcement"): how long until a
// consent change is enforced at the data planes, and how long a full table
// takes to reach one.
//
//   bench-enforcement --consentd build/src/consentd/consentd --policy tests/consentd/policy.yaml
//                     [--writes 1000] [--entries 1000000] [--import 1000000] [--dir DIR]
//                     [--postgresql "host=/tmp/pg user=optgate dbname=postgres"]
//
// 1. Latency, through a real consentd on loopback: sequential grants and
//    revokes with ?wait=enforced, with 1 and then 4 data planes connected
//    (client library, one thread each, in this process). Reported: consentd's
//    own measurement in the answer (API acknowledgement to the last data
//    plane's acknowledgement), and the whole request as the client sees it.
//    Baseline in the same run: the same writes without ?wait (durable write).
// 2. Snapshot, in-process: 1M entries from a table source through the
//    publisher, a Unix socket and the client library into a pre-sized table
//    (transfer + decode + apply + install), for a cached snapshot and one
//    built on demand; plus its parts (encode; decode + apply without a
//    socket) and the baseline: filling a pre-sized table from memory.
//    consentd builds snapshots from its own mirror of the table: the ledger's
//    lock is not held while it does.
// 3. Snapshot through consentd: import --import subscribers (one bound
//    address each), then connect a data plane and time it until installed.
// 4. Durable writes while a data plane stalls (it says hello, then never
//    reads): consentd must not wait for it. Sequential grants, timed as the
//    client sees them, before it connects (baseline) and once a commit larger
//    than its queue has made consentd resend it the table, which its socket
//    cannot take. (The tests assert the order of events; this is the cost.)
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <boost/program_options.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <sstream>
#include <thread>
#include <vector>

#include "consentd/dataplane_server.hpp"
#include "consentd/pg_connection.hpp"
#include "consentd/publisher.hpp"
#include "consentd/sha256.hpp"
#include "policy/loader.hpp"
#include "proto/codec.hpp"
#include "proto/control_client.hpp"
#include "proto/table_sync.hpp"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace po = boost::program_options;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace optgate;

namespace {

constexpr const char* kToken = "bench-enforcement-token";

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

double percentile(std::vector<double> v, double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    const size_t i = std::min(v.size() - 1, size_t(std::lround(p * double(v.size() - 1))));
    return v[i];
}

std::string slurp(const std::string& path) {
    std::ifstream f(path);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

// ---- consentd as a child process ----
struct Consentd {
    pid_t pid = -1;
    uint16_t port = 0;
    std::string dir, socket;

    // `dataplanes`: more of the config's dataplanes section (indented two spaces).
    // `store`: the config's ledger lines; empty: an SQLite ledger in `d`.
    Consentd(const std::string& binary, const std::string& policy, const std::string& d,
             const std::string& dataplanes = "", const std::string& store = "")
        : dir(d) {
        fs::create_directories(dir);
        socket = dir + "/dp.sock";
        std::ofstream(dir + "/consentd.yaml")
            << "listen: {address: 127.0.0.1, port: 0}\n"
            << (store.empty() ? "database: " + dir + "/bench.db\n" : store)
            << "policy: " << fs::absolute(policy).string() << "\n"
            << "tokens:\n  - {name: bench, role: admin, sha256: " << consentd::to_hex(consentd::sha256(kToken)) << "}\n"
            << "limits: {max_import_bytes: 1073741824}\n"
            << "dataplanes:\n  socket: " << socket << "\n"
            << dataplanes;
        for (const char* f : {"/bench.db", "/bench.db-wal", "/bench.db-shm", "/port"}) fs::remove(dir + f);
        pid = fork();  // NOLINT(cppcoreguidelines-prefer-member-initializer): once the config is written
        if (pid == 0) {
            const std::string log = dir + "/consentd.log";
            if (!freopen(log.c_str(), "w", stderr)) _exit(126);
            const std::string cfg = dir + "/consentd.yaml", portfile = dir + "/port";
            execl(binary.c_str(), binary.c_str(), "--config", cfg.c_str(), "--port-file", portfile.c_str(),
                  static_cast<char*>(nullptr));
            _exit(127);
        }
        for (int i = 0; i < 2000 && !(fs::exists(dir + "/port") && fs::exists(socket)); ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        if (!fs::exists(dir + "/port"))
            throw std::runtime_error("consentd did not start; see " + dir + "/consentd.log");
        port = uint16_t(std::stoul(slurp(dir + "/port")));
    }
    ~Consentd() {
        if (pid > 0) {
            kill(pid, SIGTERM);
            waitpid(pid, nullptr, 0);
        }
    }
    Consentd(const Consentd&) = delete;
    Consentd& operator=(const Consentd&) = delete;
};

// One keep-alive HTTP connection.
class Api {
public:
    explicit Api(uint16_t port) : stream_(io_) {
        stream_.connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
        stream_.socket().set_option(asio::ip::tcp::no_delay(true));
    }
    std::pair<unsigned, std::string> call(http::verb verb, const std::string& target, const std::string& body,
                                          const char* type = "application/json") {
        http::request<http::string_body> req{verb, target, 11};
        req.set(http::field::host, "127.0.0.1");
        req.set(http::field::authorization, std::string("Bearer ") + kToken);
        req.set(http::field::content_type, type);
        req.body() = body;
        req.prepare_payload();
        http::write(stream_, req);
        http::response_parser<http::string_body> parser;
        parser.body_limit(1ull << 30);
        http::read(stream_, buf_, parser);
        return {parser.get().result_int(), parser.get().body()};
    }

private:
    asio::io_context io_;
    beast::tcp_stream stream_;
    beast::flat_buffer buf_;
};

struct DataPlane {
    Enforcement enforcement{Enforcement::Mode::controlled};
    proto::ControlClient client;
    DataPlane(const std::string& socket, const std::string& name) : client(enforcement, options(socket, name)) {}
    static proto::ControlClient::Options options(const std::string& socket, const std::string& name) {
        proto::ControlClient::Options o;
        o.name = name;
        o.endpoints.resize(1);
        o.endpoints[0].kind = proto::Endpoint::Kind::unix_socket;
        o.endpoints[0].path = socket;
        o.log = [](std::string_view) {};
        return o;
    }
};

// ---- 1. enforcement latency through consentd ----
void latency(Consentd& c, int writes) {
    Api api(c.port);
    api.call(http::verb::put, "/v1/bindings/100.64.0.10", R"({"subscriber": "bench-sub", "source": "bench"})");
    std::vector<std::unique_ptr<DataPlane>> dps;
    auto write = [&](int i, const char* query) {
        const bool grant = i % 2 == 0;
        const std::string target = "/v1/subscribers/bench-sub/consents/advertising" + std::string(query);
        return api.call(grant ? http::verb::put : http::verb::delete_, target,
                        grant ? R"({"source": "bench", "notice_version": "v1"})" : R"({"source": "bench"})");
    };
    std::printf("\n1. enforcement latency, consentd on loopback, %d sequential writes per row (ms)\n", writes);
    std::printf("%-38s %8s %8s %8s %8s\n", "", "p50", "p90", "p99", "max");
    auto row = [](const char* what, const std::vector<double>& v) {
        std::printf("%-38s %8.3f %8.3f %8.3f %8.3f\n", what, percentile(v, 0.5), percentile(v, 0.9),
                    percentile(v, 0.99), percentile(v, 1.0));
    };
    for (int n : {1, 4}) {
        while (int(dps.size()) < n) {
            dps.push_back(std::make_unique<DataPlane>(c.socket, "bench-dp-" + std::to_string(dps.size())));
            dps.back()->client.start();
            if (!dps.back()->client.wait_synced(std::chrono::seconds(10))) throw std::runtime_error("no snapshot");
        }
        std::vector<double> base, server, commit, whole;
        for (int i = 0; i < writes; ++i) {
            const auto t0 = Clock::now();
            write(i, "");
            base.push_back(ms_since(t0));
        }
        int timeouts = 0;
        for (int i = 0; i < writes; ++i) {
            const auto t0 = Clock::now();
            const auto [status, body] = write(i, "?wait=enforced");
            whole.push_back(ms_since(t0));
            const auto e = boost::json::parse(body).at("enforcement");
            if (e.at("status").as_string() != "enforced") ++timeouts;
            server.push_back(e.at("latency_ms").to_number<double>());
            if (const auto* since = e.as_object().if_contains("since_commit_ms"))
                commit.push_back(since->to_number<double>());
        }
        std::printf("-- %d data plane%s%s\n", n, n > 1 ? "s" : "",
                    timeouts ? (" (" + std::to_string(timeouts) + " timeouts)").c_str() : "");
        row("baseline: durable write, no wait", base);
        row("API ack -> last data plane ack", server);
        row("durable commit -> last data plane ack", commit);
        row("write + wait=enforced (client)", whole);
    }
    for (auto& d : dps) d->client.stop();
}

// ---- 2. snapshot in-process ----
struct MemorySource : consentd::TableSource {
    std::shared_ptr<const Policy> policy;
    std::string version;
    std::vector<std::pair<SubscriberKey, PurposeMask>> entries;
    std::mutex mu;
    uint64_t seq = 1;
    void snapshot(consentd::SnapshotSink& sink) override {
        std::lock_guard lk(mu);
        sink.begin(seq, std::nullopt, policy, version);
        for (const auto& [k, m] : entries) sink.add(k, m);
    }
};

void snapshot_in_process(const std::string& policy_file, uint32_t n, const std::string& dir) {
    const std::string text = slurp(policy_file);
    MemorySource src;
    src.policy = std::make_shared<const Policy>(policy::load_policy_text(text, policy_file).policy);
    src.version = consentd::table_version(*src.policy);
    src.entries.reserve(n);
    for (uint32_t i = 0; i < n; ++i)  // 100.64.0.0/10 holds 4M addresses
        src.entries.push_back({SubscriberKey{IpAddr::from_v4_host(0x64400001u + i)}, PurposeMask(1 + i % 3)});

    std::printf("\n2. snapshot of %u entries, in-process (ms)\n", n);
    // Baseline: the floor of applying, a pre-sized table filled from memory.
    {
        QsbrDomain rcu;
        const auto t0 = Clock::now();
        ConsentTable t(rcu, n);
        for (const auto& [k, m] : src.entries) t.upsert(k, m);
        std::printf("%-52s %9.1f\n", "baseline: fill a pre-sized table from memory", ms_since(t0));
    }
    std::vector<std::string> frames;
    {
        const auto t0 = Clock::now();
        proto::SnapshotEncoder enc;
        for (const auto& [k, m] : src.entries) enc.add(k, m);
        enc.finish(proto::SnapshotBegin{1, 0, 0, "bench", src.version, policy_file, text}, frames);
        size_t bytes = 0;
        for (const auto& f : frames) bytes += f.size();
        std::printf("%-52s %9.1f  (%zu frames, %.1f MB)\n", "encode (consentd's snapshot thread)", ms_since(t0),
                    frames.size(), double(bytes) / 1e6);
    }
    {
        Enforcement e(Enforcement::Mode::controlled);
        proto::TableSync sync(e);
        sync.connection_started();
        std::string w;
        proto::encode(w, proto::Welcome{1, 1000, proto::Welcome::Mode::snapshot});
        frames.insert(frames.begin(), w);
        const auto t0 = Clock::now();
        for (const auto& f : frames) {
            const auto r = proto::decode({reinterpret_cast<const uint8_t*>(f.data()), f.size()},
                                         proto::Direction::to_client);
            sync.on_frame(r.frame, monotonic_ns());
        }
        std::printf("%-52s %9.1f  (%zu entries installed)\n", "decode + policy load + apply + install, no socket",
                    ms_since(t0), e.table()->size());
    }
    // The whole path: publisher, Unix socket, client library.
    asio::io_context ioc;
    consentd::DataPlaneConfig cfg;
    cfg.socket = dir + "/inproc.sock";
    cfg.history_commits = 0;  // a commit makes the cached snapshot unusable: the next one is built
    consentd::Publisher pub(ioc, src, cfg);
    pub.add_policy_document(src.policy, policy_file, text);
    auto t_build = Clock::now();
    pub.start();  // builds the first snapshot
    const double build_ms = ms_since(t_build);
    consentd::DataPlaneServer server(ioc, pub);
    server.start();
    auto work = asio::make_work_guard(ioc);
    std::thread io([&] { ioc.run(); });
    std::printf("%-52s %9.1f\n", "publisher start: read table, fill mirror, encode", build_ms);
    for (const char* kind : {"cached snapshot", "snapshot built on demand"}) {
        if (std::string(kind) == "snapshot built on demand") {
            // A commit makes the cached snapshot old: the next hello waits for a build.
            std::lock_guard lk(src.mu);
            ++src.seq;
            pub.on_commit(src.seq, {}, {});
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        DataPlane dp(cfg.socket, "bench-snapshot");
        const auto t0 = Clock::now();
        dp.client.start();
        if (!dp.client.wait_synced(std::chrono::seconds(60))) throw std::runtime_error("no snapshot");
        const double ms = ms_since(t0);
        std::printf("%-52s %9.1f\n", (std::string("connect -> installed, ") + kind).c_str(), ms);
        dp.client.stop();
    }
    asio::post(ioc, [&] {
        server.stop();
        pub.stop();
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    work.reset();
    ioc.stop();
    io.join();
}

// ---- 3. snapshot through consentd ----
void snapshot_consentd(Consentd& c, uint32_t n) {
    Api api(c.port);
    std::string body;
    body.reserve(size_t(n) * 100);
    for (uint32_t i = 0; i < n; ++i) {
        body += R"({"subscriber":"s)";
        body += std::to_string(i);
        body += R"(","addresses":[")";
        body += IpAddr::from_v4_host(0x64400001u + i).to_string();
        body += R"("],"consents":["advertising"],"notice_version":"v1"})";
        body += '\n';
    }
    const auto t0 = Clock::now();
    const auto [status, answer] = api.call(http::verb::post, "/v1/import?format=ndjson", body);
    if (status != 200) throw std::runtime_error("import failed: " + answer);
    const uint64_t head = boost::json::parse(answer).at("last_seq").to_number<uint64_t>();
    std::printf("\n3. snapshot of a %u-subscriber table through consentd (import took %.1f s)\n", n,
                ms_since(t0) / 1000);
    for (int run = 0; run < 3; ++run) {
        DataPlane dp(c.socket, "bench-big-" + std::to_string(run));
        const auto t1 = Clock::now();
        dp.client.start();
        // Until the data plane has everything up to the import's last event.
        while (dp.client.status().applied_seq < head) {
            if (ms_since(t1) > 120000) throw std::runtime_error("the data plane did not catch up");
            std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
        const double ms = ms_since(t1);
        const auto st = dp.client.status();
        std::printf("   connect -> table at seq %llu installed (%llu snapshot, %llu deltas): %.1f ms\n",
                    static_cast<unsigned long long>(st.applied_seq), static_cast<unsigned long long>(st.snapshots),
                    static_cast<unsigned long long>(st.deltas), ms);
        dp.client.stop();
    }
    // consentd's own account of building it (the first connect waited for it).
    // Not a structured binding: clang 14 (clang-tidy) cannot capture one in `value`.
    const auto reply = api.call(http::verb::get, "/metrics", "");
    const unsigned mstatus = reply.first;
    const std::string& metrics = reply.second;
    auto value = [&](const std::string& name) {
        const auto at = metrics.find("\n" + name + " ");
        return at == std::string::npos ? 0.0 : std::stod(metrics.substr(at + name.size() + 2));
    };
    const double builds = value("consentd_dataplane_snapshot_build_seconds_count");
    if (mstatus == 200 && builds > 0)
        std::printf("   consentd snapshot builds: %.0f, mean %.1f ms (copy its mirror of the table + encode)\n", builds,
                    1000 * value("consentd_dataplane_snapshot_build_seconds_sum") / builds);
}

// ---- 4. durable writes while a data plane stalls ----
void stalled(Consentd& c, int writes) {
    Api api(c.port);
    auto grants = [&](const char* tag) {
        std::vector<double> v;
        for (int i = 0; i < writes; ++i) {
            const auto t0 = Clock::now();
            const auto [status, body] = api.call(
                http::verb::put, "/v1/subscribers/" + std::string(tag) + std::to_string(i) + "/consents/advertising",
                R"({"source": "bench", "notice_version": "v1"})");
            if (status != 200) throw std::runtime_error("grant failed: " + body);
            v.push_back(ms_since(t0));
        }
        return v;
    };
    auto listed = [&] {
        return api.call(http::verb::get, "/v1/dataplanes", "").second.find("bench-stalled") != std::string::npos;
    };
    std::printf("\n4. durable writes while a data plane stalls, %d sequential grants per row (ms)\n", writes);
    std::printf("%-38s %8s %8s %8s %8s\n", "", "p50", "p90", "p99", "max");
    auto row = [](const char* what, const std::vector<double>& v) {
        std::printf("%-38s %8.3f %8.3f %8.3f %8.3f\n", what, percentile(v, 0.5), percentile(v, 0.9),
                    percentile(v, 0.99), percentile(v, 1.0));
    };
    row("baseline: no data plane", grants("base-"));

    // A peer with a small receive buffer that says hello and never reads.
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int rcvbuf = 4096;
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, c.socket.c_str(), sizeof a.sun_path - 1);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) throw std::runtime_error("connect failed");
    std::string hello;
    proto::encode(hello, proto::Hello{"bench-stalled", 0, ""});
    if (::send(fd, hello.data(), hello.size(), MSG_NOSIGNAL) != ssize_t(hello.size()))
        throw std::runtime_error("hello not sent");
    while (!listed()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    // One commit far larger than its queue: consentd resends it the table.
    std::string ndjson;
    for (uint32_t i = 0; i < 30000; ++i)
        ndjson += R"({"subscriber":"imp-)" + std::to_string(i) + R"(","addresses":[")" +
                  IpAddr::from_v4_host(0x64410000u + i).to_string() +
                  R"("],"consents":["advertising"],"notice_version":"v1"})" + "\n";
    if (api.call(http::verb::post, "/v1/import?format=ndjson", ndjson, "application/x-ndjson").first != 200)
        throw std::runtime_error("import failed");
    const auto during = grants("stalled-");
    const bool still = listed();
    row(still ? "a data plane stalled (still connected)" : "a data plane stalled (dropped meanwhile)", during);
    ::close(fd);
}

}  // namespace

int main(int argc, char** argv) {
    std::string consentd_bin, policy, dir = "/tmp/bench-enforcement", postgresql;
    int writes = 1000;
    uint32_t entries = 1000000, import = 1000000;
    po::options_description opts("bench-enforcement");
    opts.add_options()("help,h", "this help")("consentd", po::value(&consentd_bin), "consentd binary")(
        "policy", po::value(&policy), "policy file")("writes", po::value(&writes), "writes per latency row (1000)")(
        "entries", po::value(&entries), "in-process snapshot entries (1000000)")(
        "import", po::value(&import), "subscribers imported for the consentd snapshot (1000000; 0: skip)")(
        "dir", po::value(&dir), "scratch directory (/tmp/bench-enforcement)")(
        "postgresql", po::value(&postgresql),
        "also the latency rows with the ledger on PostgreSQL: a libpq connection string to a server that may "
        "create databases");
    po::variables_map vm;
    po::store(po::parse_command_line(argc, argv, opts), vm);
    po::notify(vm);
    if (vm.count("help") || consentd_bin.empty() || policy.empty()) {
        std::cout << opts;
        return vm.count("help") ? 0 : 2;
    }
    std::signal(SIGPIPE, SIG_IGN);
    try {
        fs::create_directories(dir);
        std::printf("bench-enforcement: %u hardware threads\n", std::thread::hardware_concurrency());
        {
            Consentd c(consentd_bin, policy, dir + "/latency");
            latency(c, writes);
        }
        if (!postgresql.empty()) {
            // The same rows with the ledger on PostgreSQL (a new database).
            consentd::PgConnection admin(postgresql);
            admin.exec("SET client_min_messages = warning");
            admin.exec("DROP DATABASE IF EXISTS bench_enforcement");
            admin.exec("CREATE DATABASE bench_enforcement");
            std::printf("\n-- the ledger on PostgreSQL");
            Consentd c(consentd_bin, policy, dir + "/latency-pg", "",
                       "ledger: {backend: postgresql, dsn: \"" + postgresql +
                           " dbname=bench_enforcement\"}\npseudonym_keys: " + dir + "/latency-pg/pseudonym-keys\n");
            latency(c, writes);
        }
        snapshot_in_process(policy, entries, dir);
        if (import) {
            Consentd c(consentd_bin, policy, dir + "/snapshot");
            snapshot_consentd(c, import);
        }
        {
            // Queue and timeout as in the tests: the stalled peer stays
            // connected (for 30 s) while the grants run.
            Consentd c(consentd_bin, policy, dir + "/stalled", "  max_queue_bytes: 65536\n  write_timeout: 30s\n");
            stalled(c, std::min(writes, 1000));
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench-enforcement: %s\n", e.what());
        return 1;
    }
    return 0;
}
