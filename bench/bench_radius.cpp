// RADIUS accounting benchmark (docs/benchmarks.md, "RADIUS accounting"):
// durable bindings per second from Accounting-Requests, against the API's
// durable binding writes measured in the same run on the same consentd.
//
//   bench-radius --consentd build/src/consentd/consentd --policy tests/consentd/policy.yaml
//                [--dir DIR] [--seconds 5] [--window 1,16,64,256] [--clients 64]
//
// Each request moves one address to another subscriber, so each is one
// durable change of two events (the old holder's unbind, the new bind):
//  - RADIUS: an Interim-Update for a new session each time (Acct-Session-Id
//    counts up), `window` requests in flight over 4 UDP sockets, each
//    answered only once durable; a request unanswered for 2 s is sent again
//    (counted as a retry; its latency runs from the first send);
//  - API baseline: PUT /v1/bindings/{address} from `clients` keep-alive
//    connections, one request in flight each.
// The load generator shares the machine's cores with consentd.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/program_options.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "consentd/sha256.hpp"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace po = boost::program_options;
namespace fs = std::filesystem;
using tcp = asio::ip::tcp;
using udp = asio::ip::udp;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kToken = "bench-admin-token";
constexpr const char* kSecret = "bench-radius-secret-0123";

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

struct Daemon {
    pid_t pid = -1;
    uint16_t port = 0, radius_port = 0;

    Daemon(const std::string& exe, const std::string& dir, const std::string& policy) {
        fs::create_directories(dir);
        const std::string config = dir + "/consentd.yaml", port_file = dir + "/port";
        fs::remove(port_file);
        std::ofstream(config) << "listen: {address: 127.0.0.1, port: 0}\n"
                              << "database: " << dir << "/ledger.db\n"
                              << "policy: " << fs::absolute(policy).string() << "\n"
                              << "dataplanes: {socket: " << dir << "/dp.sock}\n"
                              << "tokens:\n  - {name: bench, role: admin, sha256: "
                              << optgate::consentd::to_hex(optgate::consentd::sha256(kToken)) << "}\n"
                              << "radius:\n  listen: {address: 127.0.0.1, port: 0}\n  clients:\n"
                              << "    - {name: bench, address: 127.0.0.1, secret: \"" << kSecret << "\"}\n";
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
        std::ifstream(port_file + ".radius") >> radius_port;
    }
    ~Daemon() {
        kill(pid, SIGTERM);
        int status = 0;
        waitpid(pid, &status, 0);
    }
    Daemon(const Daemon&) = delete;
    Daemon& operator=(const Daemon&) = delete;
};

// Address `slot`'s k-th move: 100.64.S.x cycling over 200 addresses per
// slot, and the subscriber alternates per pass, so every request moves it.
std::string address_of(unsigned slot, uint64_t k) {
    const uint32_t a = 0x64400000u + slot * 256 + uint32_t(k % 200) + 1;
    return std::to_string(a >> 24) + "." + std::to_string((a >> 16) & 255) + "." + std::to_string((a >> 8) & 255) +
           "." + std::to_string(a & 255);
}
std::string subscriber_of(unsigned slot, uint64_t k) {
    return "bench-" + std::to_string(slot) + "-" + std::to_string((k / 200) % 2);
}

struct Samples {
    std::vector<double> latencies;
    uint64_t errors = 0, retries = 0;
    uint64_t answered = 0;  // warm-up included
};

struct Result {
    double per_second = 0, p50_ms = 0, p99_ms = 0;
    uint64_t errors = 0, retries = 0;
    double bytes_per_binding = 0;  // what consentd wrote to disk (WAL and checkpoints) per answer
};

// What `pid` has caused to be written to storage so far (/proc/PID/io
// write_bytes): a measure of the pages a binding dirties that, unlike the
// rate, does not move with the machine's load.
uint64_t written_bytes(pid_t pid) {
    std::ifstream io("/proc/" + std::to_string(pid) + "/io");
    std::string key;
    uint64_t value = 0;
    while (io >> key >> value)
        if (key == "write_bytes:") return value;
    return 0;
}

// Runs `ioc` for half a second of warm-up, then `seconds` measured.
Result measure(asio::io_context& ioc, Samples& s, double seconds, bool& stop) {
    asio::steady_timer t(ioc);
    Clock::time_point measure_start;
    std::vector<double> measured;
    double elapsed = seconds;
    uint64_t errors0 = 0, retries0 = 0;
    t.expires_after(std::chrono::milliseconds(500));
    t.async_wait([&](beast::error_code) {
        s.latencies.clear();
        errors0 = s.errors;
        retries0 = s.retries;
        measure_start = Clock::now();
        t.expires_after(std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds)));
        t.async_wait([&](beast::error_code) {
            measured = s.latencies;
            elapsed = seconds_since(measure_start);
            stop = true;
            ioc.stop();
        });
    });
    ioc.run();
    Result r;
    r.per_second = double(measured.size()) / elapsed;
    std::sort(measured.begin(), measured.end());
    if (!measured.empty()) {
        r.p50_ms = measured[measured.size() / 2] * 1000;
        r.p99_ms = measured[std::min(measured.size() - 1, measured.size() * 99 / 100)] * 1000;
    }
    r.errors = s.errors - errors0;
    r.retries = s.retries - retries0;
    return r;
}

// ---- API baseline: PUT /v1/bindings/{address}, one in flight per connection ----
class Conn : public std::enable_shared_from_this<Conn> {
public:
    Conn(asio::io_context& ioc, unsigned slot, const bool& stop, Samples& s)
        : stream_(ioc), slot_(slot), stop_(stop), s_(s) {}
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
        const uint64_t k = n_++;
        req_ = {};
        req_.method(http::verb::put);
        req_.target("/v1/bindings/" + address_of(slot_, k));
        req_.version(11);
        req_.set(http::field::host, "bench");
        req_.set(http::field::authorization, std::string("Bearer ") + kToken);
        req_.set(http::field::content_type, "application/json");
        req_.body() = R"({"subscriber": ")" + subscriber_of(slot_, k) + R"(", "source": "bench"})";
        req_.prepare_payload();
        sent_ = Clock::now();
        http::async_write(stream_, req_, [self = shared_from_this()](beast::error_code ec, size_t) {
            if (ec) return void(++self->s_.errors);
            self->res_ = {};
            http::async_read(self->stream_, self->buffer_, self->res_, [self](beast::error_code e, size_t) {
                if (e) return void(++self->s_.errors);
                if (self->res_.result_int() == 200) {
                    self->s_.latencies.push_back(seconds_since(self->sent_));
                    ++self->s_.answered;
                } else
                    ++self->s_.errors;
                self->send();
            });
        });
    }
    beast::tcp_stream stream_;
    beast::flat_buffer buffer_;
    http::request<http::string_body> req_;
    http::response<http::string_body> res_;
    Clock::time_point sent_;
    unsigned slot_;
    uint64_t n_ = 0;
    const bool& stop_;
    Samples& s_;
};

Result api_load(pid_t consentd, uint16_t port, unsigned clients, double seconds, unsigned first_slot) {
    const uint64_t written = written_bytes(consentd);
    asio::io_context ioc(1);
    bool stop = false;
    Samples s;
    std::vector<std::shared_ptr<Conn>> conns;
    const tcp::endpoint at(asio::ip::make_address("127.0.0.1"), port);
    for (unsigned i = 0; i < clients; ++i) {
        conns.push_back(std::make_shared<Conn>(ioc, first_slot + i, stop, s));
        conns.back()->start(at);
    }
    auto r = measure(ioc, s, seconds, stop);
    r.bytes_per_binding = double(written_bytes(consentd) - written) / double(std::max<uint64_t>(1, s.answered));
    return r;
}

// ---- RADIUS: `window` Accounting-Requests in flight ----
std::string attr(uint8_t type, std::string_view v) {
    std::string a{char(type), char(v.size() + 2)};
    return a.append(v);
}

std::array<uint8_t, 16> md5(const std::string& data) {
    std::array<uint8_t, 16> out{};
    unsigned len = 0;
    EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_md5(), nullptr);
    return out;
}

std::string accounting_request(uint8_t id, const std::string& attrs) {
    std::string p{char(4), char(id), char((20 + attrs.size()) >> 8), char((20 + attrs.size()) & 255)};
    p.append(16, '\0').append(attrs);
    const auto auth = md5(p + kSecret);
    std::memcpy(p.data() + 4, auth.data(), 16);
    return p;
}

class RadiusLoad {
public:
    RadiusLoad(asio::io_context& ioc, uint16_t port, unsigned window, unsigned first_slot, const bool& stop, Samples& s)
        : to_(asio::ip::make_address("127.0.0.1"), port), stop_(stop), s_(s), retry_(ioc) {
        const unsigned sockets = std::min(4u, window);
        for (unsigned i = 0; i < sockets; ++i) sockets_.push_back(std::make_unique<Sock>(ioc));
        for (unsigned i = 0; i < window; ++i)
            slots_.push_back({first_slot + i, i % sockets, uint8_t(i / sockets), 0, {}, {}, {}});
    }
    void start() {
        for (auto& sock : sockets_) receive(*sock);
        for (auto& slot : slots_) send(slot);
        check_retries();
    }

private:
    struct Sock {
        explicit Sock(asio::io_context& ioc) : socket(ioc, udp::endpoint(udp::v4(), 0)) {}
        udp::socket socket;
        std::array<uint8_t, 4096> buffer{};
        udp::endpoint from;
        std::vector<size_t> by_id = std::vector<size_t>(256, SIZE_MAX);
    };
    struct Slot {
        unsigned slot;
        unsigned sock;
        uint8_t id;
        uint64_t k;
        std::string packet;
        Clock::time_point first_sent, last_sent;
    };

    void send(Slot& sl) {
        if (stop_) return;
        const uint64_t k = sl.k++;
        const std::string attrs = attr(40, std::string("\0\0\0\3", 4)) + attr(1, subscriber_of(sl.slot, k)) +
                                  attr(44, "s-" + std::to_string(sl.slot) + "-" + std::to_string(k)) +
                                  attr(8, std::string(
                                              reinterpret_cast<const char*>(
                                                  asio::ip::make_address_v4(address_of(sl.slot, k)).to_bytes().data()),
                                              4));
        sl.packet = accounting_request(sl.id, attrs);
        sockets_[sl.sock]->by_id[sl.id] = size_t(&sl - slots_.data());
        sl.first_sent = sl.last_sent = Clock::now();
        sockets_[sl.sock]->socket.send_to(asio::buffer(sl.packet), to_);
    }
    void receive(Sock& sock) {
        sock.socket.async_receive_from(asio::buffer(sock.buffer), sock.from,
                                       [this, &sock](beast::error_code ec, size_t n) {
                                           if (ec || stop_) return;
                                           const size_t i = n >= 20 ? sock.by_id[sock.buffer[1]] : SIZE_MAX;
                                           if (i != SIZE_MAX && sock.buffer[0] == 5) {
                                               Slot& sl = slots_[i];
                                               // The Response Authenticator covers the request's: check it.
                                               std::string check(reinterpret_cast<const char*>(sock.buffer.data()), 4);
                                               check.append(sl.packet, 4, 16).append(kSecret);
                                               const auto want = md5(check);
                                               if (std::memcmp(want.data(), sock.buffer.data() + 4, 16) == 0) {
                                                   s_.latencies.push_back(seconds_since(sl.first_sent));
                                                   ++s_.answered;
                                                   sock.by_id[sl.id] = SIZE_MAX;
                                                   send(sl);
                                               } else {
                                                   ++s_.errors;
                                               }
                                           }
                                           receive(sock);
                                       });
    }
    void check_retries() {
        retry_.expires_after(std::chrono::milliseconds(200));
        retry_.async_wait([this](beast::error_code ec) {
            if (ec || stop_) return;
            for (auto& sl : slots_)
                if (sockets_[sl.sock]->by_id[sl.id] != SIZE_MAX && seconds_since(sl.last_sent) > 2) {
                    ++s_.retries;
                    sl.last_sent = Clock::now();
                    sockets_[sl.sock]->socket.send_to(asio::buffer(sl.packet), to_);
                }
            check_retries();
        });
    }

    udp::endpoint to_;
    const bool& stop_;
    Samples& s_;
    asio::steady_timer retry_;
    std::vector<std::unique_ptr<Sock>> sockets_;
    std::vector<Slot> slots_;
};

Result radius_load(pid_t consentd, uint16_t port, unsigned window, double seconds, unsigned first_slot) {
    const uint64_t written = written_bytes(consentd);
    asio::io_context ioc(1);
    bool stop = false;
    Samples s;
    RadiusLoad load(ioc, port, window, first_slot, stop, s);
    load.start();
    auto r = measure(ioc, s, seconds, stop);
    r.bytes_per_binding = double(written_bytes(consentd) - written) / double(std::max<uint64_t>(1, s.answered));
    return r;
}

int bench_main(int argc, char** argv) {
    po::options_description opts("bench-radius");
    opts.add_options()("help,h", "this help")("consentd", po::value<std::string>()->required(), "the consentd binary")(
        "policy", po::value<std::string>()->required(), "a policy whose subscribers include 100.64.0.0/16")(
        "dir", po::value<std::string>()->default_value(""), "work directory (default: a new one under /var/tmp)")(
        "seconds", po::value<double>()->default_value(5), "measured seconds per run")(
        "window", po::value<std::string>()->default_value("1,16,64,256"), "RADIUS requests in flight")(
        "clients", po::value<unsigned>()->default_value(64), "API connections for the baseline");
    po::variables_map vm;
    try {
        po::store(po::parse_command_line(argc, argv, opts), vm);
        if (vm.count("help")) {
            std::cout << opts;
            return 0;
        }
        po::notify(vm);
    } catch (const po::error& e) {
        std::fprintf(stderr, "bench-radius: %s\n", e.what());
        return 2;
    }
    std::string dir = vm["dir"].as<std::string>();
    if (dir.empty()) {
        std::string t = "/var/tmp/bench-radius-XXXXXX";
        dir = mkdtemp(t.data());
    }
    const double seconds = vm["seconds"].as<double>();
    Daemon d(vm["consentd"].as<std::string>(), dir, vm["policy"].as<std::string>());
    std::printf("# RADIUS accounting benchmark (%u cores), work dir %s\n\n", std::thread::hardware_concurrency(),
                dir.c_str());
    // Slots 0..255 for the API, 256.. for RADIUS: distinct addresses.
    const unsigned clients = vm["clients"].as<unsigned>();
    const auto base = api_load(d.pid, d.port, clients, seconds, 0);
    std::printf(
        "baseline: API PUT /v1/bindings, %u connections: %.0f durable bindings/s, p50 %.2f ms, p99 %.2f ms, "
        "%.0f bytes written per binding, %llu errors\n\n",
        clients, base.per_second, base.p50_ms, base.p99_ms, base.bytes_per_binding,
        static_cast<unsigned long long>(base.errors));
    std::printf(
        "| in flight | durable bindings/s | x API | p50 ms | p99 ms | bytes written/binding | retries | errors |\n");
    std::printf(
        "|----------:|-------------------:|------:|-------:|-------:|----------------------:|--------:|-------:|\n");
    std::fflush(stdout);
    std::stringstream levels(vm["window"].as<std::string>());
    std::string level;
    unsigned first_slot = 256;  // each run its own addresses and sessions
    while (std::getline(levels, level, ',')) {
        const unsigned window = unsigned(std::stoul(level));
        const auto r = radius_load(d.pid, d.radius_port, window, seconds, first_slot);
        first_slot += window;
        std::printf("| %9u | %18.0f | %5.2f | %6.2f | %6.2f | %21.0f | %7llu | %6llu |\n", window, r.per_second,
                    r.per_second / base.per_second, r.p50_ms, r.p99_ms, r.bytes_per_binding,
                    static_cast<unsigned long long>(r.retries), static_cast<unsigned long long>(r.errors));
        std::fflush(stdout);
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return bench_main(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench-radius: %s\n", e.what());
        return 1;
    }
}
