// consentd benchmark (docs/benchmarks.md, "consentd"): durable consent
// changes per second with 1, 8 and 64 concurrent keep-alive clients, the
// time to import 1M subscribers, and, in the same run, the baseline the
// group commit is measured against: raw SQLite single-row inserts, each its
// own fsync'd transaction (WAL, synchronous=FULL) on the same disk.
//
//   bench-consentd --consentd build/src/consentd/consentd --policy config/policy.example.yaml
//                  [--dir DIR] [--seconds 5] [--clients 1,8,64] [--import 1000000]
//                  [--postgresql "host=/tmp/pg user=optgate dbname=postgres"]
//
// With --postgresql, the same load and import also run on a consentd whose
// ledger is on that PostgreSQL server (a new database each), after the
// SQLite ones, with the PostgreSQL baseline (one committed single-row
// transaction each) measured in the same run.
//
// The load generator runs in this process on one thread (Boost.Beast, async),
// so it shares the machine's cores with consentd: the numbers are what one
// box does end to end, client included.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/program_options.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "consentd/database.hpp"
#include "consentd/sha256.hpp"
#include "consentd/verify.hpp"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace po = boost::program_options;
namespace fs = std::filesystem;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kToken = "bench-admin-token";

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// ---- baseline: one fsync'd transaction per row ----
double sqlite_baseline(const std::string& path, double seconds) {
    fs::remove(path);
    fs::remove(path + "-wal");
    fs::remove(path + "-shm");
    optgate::consentd::Database db(path, optgate::consentd::Database::Mode::read_write_create);
    db.exec("PRAGMA journal_mode = WAL");
    db.exec("PRAGMA synchronous = FULL");
    db.exec("CREATE TABLE events (seq INTEGER PRIMARY KEY, subscriber TEXT NOT NULL, body TEXT NOT NULL)");
    db.exec("CREATE INDEX events_by_subscriber ON events (subscriber, seq)");
    auto insert = db.prepare("INSERT INTO events (subscriber, body) VALUES (?1, ?2)");
    const std::string body(200, 'x');
    uint64_t n = 0;
    const auto start = Clock::now();
    while (seconds_since(start) < seconds) {
        db.exec("BEGIN");
        insert.bind(1, "bench-" + std::to_string(n % 1000)).bind(2, body);
        insert.run();
        db.exec("COMMIT");
        ++n;
    }
    return double(n) / seconds_since(start);
}

// ---- the same baseline on PostgreSQL: one committed single-row transaction each ----
double postgresql_baseline(const std::string& locator, double seconds) {
    optgate::consentd::Database db(locator, optgate::consentd::Database::Mode::read_write);
    db.exec("CREATE TABLE baseline (seq BIGSERIAL PRIMARY KEY, subscriber TEXT NOT NULL, body TEXT NOT NULL)");
    db.exec("CREATE INDEX baseline_by_subscriber ON baseline (subscriber, seq)");
    auto insert = db.prepare("INSERT INTO baseline (subscriber, body) VALUES (?1, ?2)");
    const std::string body(200, 'x');
    uint64_t n = 0;
    const auto start = Clock::now();
    while (seconds_since(start) < seconds) {
        db.begin_write();
        insert.bind(1, "bench-" + std::to_string(n % 1000)).bind(2, body);
        insert.run();
        db.commit();
        ++n;
    }
    return double(n) / seconds_since(start);
}

// A new, empty database on the server `admin` reaches; its consentd locator.
std::string new_postgresql_database(const std::string& admin, const std::string& name) {
    optgate::consentd::PgConnection c(admin);
    c.exec("SET client_min_messages = warning");
    c.exec("DROP DATABASE IF EXISTS " + name);
    c.exec("CREATE DATABASE " + name);
    return "postgresql:" + admin + " dbname=" + name;  // the last dbname wins
}

// ---- consentd as a child process ----
struct Daemon {
    pid_t pid = -1;
    uint16_t port = 0;

    // `store`: the config's ledger lines; empty: an SQLite ledger in `dir`.
    Daemon(const std::string& exe, const std::string& dir, const std::string& policy, std::string store = {}) {
        fs::create_directories(dir);
        const std::string config = dir + "/consentd.yaml", port_file = dir + "/port";
        fs::remove(port_file);
        if (store.empty()) store = "database: " + dir + "/ledger.db\n";
        std::ofstream(config) << "listen: {address: 127.0.0.1, port: 0}\n"
                              << store << "policy: " << fs::absolute(policy).string() << "\n"
                              << "dataplanes: {socket: " << dir << "/dp.sock}\n"
                              << "tokens:\n  - {name: bench, role: admin, sha256: "
                              << optgate::consentd::to_hex(optgate::consentd::sha256(kToken)) << "}\n";
        pid = fork();  // NOLINT(cppcoreguidelines-prefer-member-initializer): once the config is written
        if (pid == 0) {
            const std::string log = dir + "/consentd.log";
            std::freopen(log.c_str(), "a", stderr);
            execl(exe.c_str(), exe.c_str(), "--config", config.c_str(), "--port-file", port_file.c_str(), nullptr);
            _exit(127);
        }
        const auto start = Clock::now();
        while (!fs::exists(port_file)) {
            int status = 0;
            if (waitpid(pid, &status, WNOHANG) == pid) throw std::runtime_error("consentd exited; see " + dir);
            if (seconds_since(start) > 60) throw std::runtime_error("consentd did not start");
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        std::ifstream(port_file) >> port;
    }
    ~Daemon() {
        kill(pid, SIGTERM);
        int status = 0;
        waitpid(pid, &status, 0);
    }
    Daemon(const Daemon&) = delete;
    Daemon& operator=(const Daemon&) = delete;
    long rss_kib() const {
        std::ifstream in("/proc/" + std::to_string(pid) + "/status");
        std::string line;
        while (std::getline(in, line))
            if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
        return 0;
    }
};

// ---- the load: N keep-alive connections, each one request at a time ----
class Conn : public std::enable_shared_from_this<Conn> {
public:
    Conn(asio::io_context& ioc, int id, const bool& stop, std::vector<double>& latencies, uint64_t& errors)
        : stream_(ioc), id_(id), stop_(stop), latencies_(latencies), errors_(errors) {}

    void start(const tcp::endpoint& at) {
        stream_.async_connect(at, [self = shared_from_this()](beast::error_code ec) {
            if (ec) return;
            self->stream_.socket().set_option(tcp::no_delay(true));
            self->send();
        });
    }

private:
    void send() {
        if (stop_) return;
        // Each connection cycles over its own 500 subscribers, granting on
        // the first pass and revoking on the next: every request is a change.
        const uint64_t k = n_++;
        const bool grant = (k / 500) % 2 == 0;
        req_ = {};
        req_.method(grant ? http::verb::put : http::verb::delete_);
        req_.target("/v1/subscribers/bench-" + std::to_string(id_) + "-" + std::to_string(k % 500) +
                    "/consents/advertising");
        req_.version(11);
        req_.set(http::field::host, "bench");
        req_.set(http::field::authorization, std::string("Bearer ") + kToken);
        req_.set(http::field::content_type, "application/json");
        req_.body() = R"({"source": "bench", "notice_version": "2024-05"})";
        req_.prepare_payload();
        sent_ = Clock::now();
        http::async_write(stream_, req_, [self = shared_from_this()](beast::error_code ec, size_t) {
            if (ec) return self->fail();
            self->res_ = {};
            http::async_read(self->stream_, self->buffer_, self->res_, [self](beast::error_code e, size_t) {
                if (e) return self->fail();
                if (self->res_.result_int() == 200)
                    self->latencies_.push_back(seconds_since(self->sent_));
                else
                    ++self->errors_;
                self->send();
            });
        });
    }
    void fail() { ++errors_; }

    beast::tcp_stream stream_;
    beast::flat_buffer buffer_;
    http::request<http::string_body> req_;
    http::response<http::string_body> res_;
    Clock::time_point sent_;
    int id_;
    uint64_t n_ = 0;
    const bool& stop_;
    std::vector<double>& latencies_;
    uint64_t& errors_;
};

struct LoadResult {
    double per_second = 0, p50_ms = 0, p99_ms = 0;
    uint64_t errors = 0;
};

LoadResult run_load(uint16_t port, int clients, double seconds, int round) {
    asio::io_context ioc(1);
    bool stop = false;
    std::vector<double> samples, measured;
    uint64_t errors = 0;
    std::vector<std::shared_ptr<Conn>> conns;
    const tcp::endpoint at(asio::ip::make_address("127.0.0.1"), port);
    for (int i = 0; i < clients; ++i) {
        conns.push_back(std::make_shared<Conn>(ioc, round * 1000 + i, stop, samples, errors));
        conns.back()->start(at);
    }
    // Half a second of warm-up, then `seconds` measured. Connections push
    // into `samples`; the window is what it holds between the two timers.
    asio::steady_timer t(ioc);
    Clock::time_point measure_start;
    double elapsed = seconds;
    t.expires_after(std::chrono::milliseconds(500));
    t.async_wait([&](beast::error_code) {
        samples.clear();
        measure_start = Clock::now();
        t.expires_after(std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds)));
        t.async_wait([&](beast::error_code) {
            measured = samples;
            elapsed = seconds_since(measure_start);
            stop = true;
        });
    });
    ioc.run();
    LoadResult r;
    r.per_second = double(measured.size()) / elapsed;
    std::sort(measured.begin(), measured.end());
    if (!measured.empty()) {
        r.p50_ms = measured[measured.size() / 2] * 1000;
        r.p99_ms = measured[std::min(measured.size() - 1, measured.size() * 99 / 100)] * 1000;
    }
    r.errors = errors;
    return r;
}

// ---- import ----
std::string import_body(size_t subscribers) {
    std::string body;
    body.reserve(subscribers * 120);
    for (size_t i = 0; i < subscribers; ++i) {
        // 100.64.0.0/10 holds 4M addresses: one each, from 100.64.0.1 up.
        const uint32_t a = 0x64400001u + uint32_t(i);
        char line[200];
        const int n = std::snprintf(line, sizeof line,
                                    "{\"subscriber\":\"imp-%07zu\",\"addresses\":[\"%u.%u.%u.%u\"]%s}\n", i, a >> 24,
                                    (a >> 16) & 255, (a >> 8) & 255, a & 255,
                                    i % 2 ? ",\"consents\":[\"advertising\"],\"notice_version\":\"2024-05\"" : "");
        body.append(line, size_t(n));
    }
    return body;
}

double run_import(uint16_t port, const std::string& body, std::string& answer) {
    asio::io_context ioc;
    beast::tcp_stream stream(ioc);
    stream.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    stream.expires_after(std::chrono::minutes(30));
    http::request<http::string_body> req{http::verb::post, "/v1/import", 11};
    req.set(http::field::host, "bench");
    req.set(http::field::authorization, std::string("Bearer ") + kToken);
    req.set(http::field::content_type, "application/x-ndjson");
    req.body() = body;
    req.prepare_payload();
    const auto start = Clock::now();
    http::write(stream, req);
    beast::flat_buffer buffer;
    http::response<http::string_body> res;
    http::read(stream, buffer, res);
    const double t = seconds_since(start);
    answer = std::to_string(res.result_int()) + " " + res.body();
    return t;
}

std::string cpu_model() {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
    return "unknown";
}

int bench_main(int argc, char** argv) {
    po::options_description opts("bench-consentd");
    opts.add_options()("help,h", "this help")("consentd", po::value<std::string>()->required(), "the consentd binary")(
        "policy", po::value<std::string>()->required(), "a policy with an 'advertising' purpose")(
        "dir", po::value<std::string>()->default_value(""), "work directory (default: a new one under /var/tmp)")(
        "seconds", po::value<double>()->default_value(5), "measured seconds per concurrency level")(
        "clients", po::value<std::string>()->default_value("1,8,64"), "concurrency levels")(
        "import", po::value<size_t>()->default_value(1000000), "subscribers to import (0: skip)")(
        "postgresql", po::value<std::string>()->default_value(""),
        "also on PostgreSQL: a libpq connection string to a server that may create databases "
        "(\"host=/tmp/pg user=optgate dbname=postgres\")");
    po::variables_map vm;
    try {
        po::store(po::parse_command_line(argc, argv, opts), vm);
        if (vm.count("help")) {
            std::cout << opts;
            return 0;
        }
        po::notify(vm);
    } catch (const po::error& e) {
        std::fprintf(stderr, "bench-consentd: %s\n", e.what());
        return 2;
    }
    std::string dir = vm["dir"].as<std::string>();
    if (dir.empty()) {
        std::string t = "/var/tmp/bench-consentd-XXXXXX";
        dir = mkdtemp(t.data());
    }
    fs::create_directories(dir);
    const double seconds = vm["seconds"].as<double>();

    std::printf("# consentd benchmark\nmachine: %u cores, %s\nwork dir: %s\n\n", std::thread::hardware_concurrency(),
                cpu_model().c_str(), dir.c_str());

    const double baseline = sqlite_baseline(dir + "/baseline.db", seconds);
    std::printf("baseline: raw SQLite, one fsync'd single-row transaction each: %.0f rows/s\n\n", baseline);
    std::fflush(stdout);

    // The stores measured: SQLite always, PostgreSQL when asked. `ledger`
    // makes a new ledger for one daemon: its config lines and locator.
    struct Ledger {
        std::string yaml, locator;
    };
    struct Store {
        std::string name;
        std::function<Ledger(const std::string& what)> ledger;
        double baseline;
    };
    const std::string admin = vm["postgresql"].as<std::string>();
    std::vector<Store> stores{{"SQLite",
                               [&dir](const std::string& what) {
                                   const std::string path = dir + "/" + what + "/ledger.db";
                                   return Ledger{"database: " + path + "\n", path};
                               },
                               baseline}};
    if (!admin.empty()) {
        const double pg_baseline = postgresql_baseline(new_postgresql_database(admin, "bench_baseline"), seconds);
        std::printf("baseline: raw PostgreSQL, one committed single-row transaction each: %.0f rows/s\n\n",
                    pg_baseline);
        stores.push_back({"PostgreSQL",
                          [&admin, &dir](const std::string& what) {
                              std::string name = "bench_" + what;
                              std::replace(name.begin(), name.end(), '-', '_');
                              const auto locator = new_postgresql_database(admin, name);
                              return Ledger{"ledger: {backend: postgresql, dsn: \"" +
                                                locator.substr(std::string_view("postgresql:").size()) +
                                                "\"}\npseudonym_keys: " + dir + "/" + what + "-pg/pseudonym-keys\n",
                                            locator};
                          },
                          pg_baseline});
    }
    const auto sub_dir = [](const Store& store, const std::string& what) {
        return store.name == "SQLite" ? what : what + "-pg";
    };
    for (const auto& store : stores) {
        const std::string sub = sub_dir(store, "changes");
        const std::string work = (fs::path(dir) / sub).string();
        Daemon d(vm["consentd"].as<std::string>(), work, vm["policy"].as<std::string>(), store.ledger(sub).yaml);
        std::printf("%s:\n\n| clients | durable changes/s | x baseline | p50 ms | p99 ms | errors |\n",
                    store.name.c_str());
        std::printf("|--------:|------------------:|-----------:|-------:|-------:|-------:|\n");
        std::stringstream levels(vm["clients"].as<std::string>());
        std::string level;
        int round = 0;
        while (std::getline(levels, level, ',')) {
            const int clients = std::stoi(level);
            const auto r = run_load(d.port, clients, seconds, round++);
            std::printf("| %7d | %17.0f | %10.1f | %6.2f | %6.2f | %6llu |\n", clients, r.per_second,
                        r.per_second / store.baseline, r.p50_ms, r.p99_ms, static_cast<unsigned long long>(r.errors));
            std::fflush(stdout);
        }
        std::printf("\n");
    }

    const size_t n = vm["import"].as<size_t>();
    for (const auto& store : stores) {
        if (!n) break;
        const std::string sub = sub_dir(store, "import");
        const Ledger ledger = store.ledger(sub);
        const std::string work = (fs::path(dir) / sub).string();
        {
            Daemon d(vm["consentd"].as<std::string>(), work, vm["policy"].as<std::string>(), ledger.yaml);
            const std::string body = import_body(n);
            std::string answer;
            const double t = run_import(d.port, body, answer);
            std::printf(
                "%s import: %zu subscribers (%zu MB NDJSON, one address each, half with one consent): %.1f s "
                "(%.0f subscribers/s)\n  answer: %s",
                store.name.c_str(), n, body.size() >> 20, t, double(n) / t, answer.c_str());
            std::printf("  consentd RSS after import: %ld MiB", d.rss_kib() >> 10);
            if (store.name == "SQLite")
                std::printf("; ledger file: %ju MiB", uintmax_t(fs::file_size(ledger.locator) >> 20));
            std::printf("\n");
        }
        {
            // A restart over the imported ledger: how long until the API
            // answers, and what the in-memory state of the subscribers costs.
            const auto restart = Clock::now();
            Daemon d(vm["consentd"].as<std::string>(), work, vm["policy"].as<std::string>(), ledger.yaml);
            std::printf("  restart over that ledger: listening after %.1f s, RSS %ld MiB\n", seconds_since(restart),
                        d.rss_kib() >> 10);
        }
        const auto start = Clock::now();
        const auto v = optgate::consentd::verify_ledger(ledger.locator);
        std::printf("  verify-ledger: %s in %.1f s (%llu events)\n\n", v.ok ? "ok" : v.problem.c_str(),
                    seconds_since(start), static_cast<unsigned long long>(v.events));
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return bench_main(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench-consentd: %s\n", e.what());
        return 1;
    }
}
