#include "e2e_support.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <openssl/sha.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>

#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "dns_builder.hpp"

namespace optgate::e2e {

namespace beast = boost::beast;
namespace http = beast::http;
namespace asio = boost::asio;

// ---- consentd ----

namespace {

std::string sha256_hex(const std::string& s) {
    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(s.data()), s.size(), d);
    static const char* hex = "0123456789abcdef";
    std::string out;
    for (unsigned char c : d) {
        out.push_back(hex[c >> 4]);
        out.push_back(hex[c & 15]);
    }
    return out;
}

}  // namespace

Consentd::Consentd(const std::string& policy_yaml, const std::string& dataplanes_yaml, const std::string& more_yaml) {
    dir.write("policy.yaml", policy_yaml);
    dir.write("consentd.yaml",
              "listen: {address: 127.0.0.1, port: 0}\n"
              "database: consentd.db\n"
              "policy: policy.yaml\n"
              "tokens:\n"
              "  - {name: e2e, role: admin, sha256: " +
                  sha256_hex(kToken) +
                  "}\n"
                  "dataplanes:\n"
                  "  socket: dp.sock\n" +
                  dataplanes_yaml + more_yaml);
}

Consentd::~Consentd() {
    if (proc_) {
        proc_->kill(SIGTERM);
        if (proc_->wait(kPatience) < 0) proc_->kill(SIGKILL);
    }
}

void Consentd::start() {
    std::error_code ec;
    fs::remove(dir.file("port"), ec);
    proc_ = std::make_unique<Process>(
        std::vector<std::string>{env("CONSENTD"), "--config", config_path(), "--port-file", dir.file("port")},
        dir.file("consentd.log"));
    const bool up = eventually([&] { return fs::exists(dir.file("port")) && fs::exists(socket()); });
    INFO("consentd log:\n" << log());
    REQUIRE(up);
    port_ = uint16_t(std::stoul(slurp(dir.file("port"))));
}

void Consentd::kill(int sig) { proc_->kill(sig); }
int Consentd::wait(std::chrono::milliseconds timeout) { return proc_->wait(timeout); }
std::string Consentd::log() const { return slurp(dir.file("consentd.log")); }

HttpResult Consentd::request(const std::string& method, const std::string& target, const std::string& body) {
    asio::io_context io;
    beast::tcp_stream stream(io);
    stream.expires_after(std::chrono::seconds(30));
    stream.connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_));
    http::request<http::string_body> req{http::string_to_verb(method), target, 11};
    req.set(http::field::host, "127.0.0.1");
    req.set(http::field::authorization, std::string("Bearer ") + kToken);
    if (!body.empty()) {
        req.set(http::field::content_type, "application/json");
        req.body() = body;
    }
    req.prepare_payload();
    http::write(stream, req);
    beast::flat_buffer buf;
    http::response<http::string_body> res;
    http::read(stream, buf, res);
    beast::error_code ec;
    stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ec);
    return {unsigned(res.result_int()), res.body()};
}

HttpResult Consentd::grant(const std::string& sub, const std::string& purpose, const std::string& query) {
    return request("PUT", "/v1/subscribers/" + sub + "/consents/" + purpose + query,
                   R"({"source": "portal", "notice_version": "2024-05"})");
}

HttpResult Consentd::revoke(const std::string& sub, const std::string& purpose, const std::string& query) {
    return request("DELETE", "/v1/subscribers/" + sub + "/consents/" + purpose + query, R"({"source": "portal"})");
}

HttpResult Consentd::bind(const std::string& address, const std::string& sub, const std::string& query) {
    return request("PUT", "/v1/bindings/" + address + query, R"({"subscriber": ")" + sub + R"(", "source": "radius"})");
}

boost::json::array Consentd::dataplanes() {
    const auto r = request("GET", "/v1/dataplanes");
    REQUIRE(r.status == 200);
    return r.json().at("dataplanes").as_array();
}

double Consentd::metric(const std::string& name) {
    const auto r = request("GET", "/metrics");
    REQUIRE(r.status == 200);
    const auto at = r.body.find("\n" + name + " ");
    REQUIRE_MESSAGE(at != std::string::npos, "no metric " << name);
    return std::stod(r.body.substr(at + name.size() + 2));
}

uint64_t seq_of(const HttpResult& r) {
    INFO(r.body);
    REQUIRE(r.status == 200);
    return r.json().at("seq").to_number<uint64_t>();
}

// ---- replays ----

uint64_t Replay::counter(const std::string& name) const {
    return report.at("counters").as_object().at(name).to_number<uint64_t>();
}

namespace {
uint64_t destination_field(const boost::json::object& report, const std::string& name, const char* field) {
    for (const auto& d : report.at("destinations").as_array())
        if (d.at("name").as_string() == name) return d.at(field).to_number<uint64_t>();
    throw std::runtime_error("no destination '" + name + "' in the report");
}

std::vector<test::PcapRecord> records(const std::vector<test::Bytes>& frames, std::chrono::milliseconds gap) {
    std::vector<test::PcapRecord> r;
    uint64_t ts = 1'700'000'000'000'000'000ull;
    for (const auto& f : frames) {
        r.push_back({ts, f});
        ts += uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(gap).count());
    }
    return r;
}

Replay read_replay(const TempDir& dir, RunResult run, std::vector<test::PcapRecord> input) {
    Replay r;
    r.run = std::move(run);
    r.input = std::move(input);
    INFO("optgate-replay said:\n" << r.run.output);
    REQUIRE(r.run.exit_code == 0);
    r.output = test::read_pcap(dir.file("out.pcap"));
    r.report = boost::json::parse(slurp(dir.file("report.json"))).as_object();
    return r;
}
}  // namespace

uint64_t Replay::passed_to(const std::string& d) const { return destination_field(report, d, "identifiers_passed"); }
uint64_t Replay::stripped_to(const std::string& d) const {
    return destination_field(report, d, "identifiers_stripped");
}

Replay replay_control(const std::string& socket, const std::vector<test::Bytes>& frames,
                      const std::vector<std::string>& extra_args) {
    TempDir tmp;
    auto input = records(frames, 1ms);
    test::write_pcap(tmp.file("in.pcap"), input);
    std::vector<std::string> argv{env("OPTGATE_REPLAY"),  "--control", socket, "--quiet", "--report",
                                  tmp.file("report.json")};
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    argv.push_back(tmp.file("in.pcap"));
    argv.push_back(tmp.file("out.pcap"));
    return read_replay(tmp, run(argv), std::move(input));
}

PacedReplay::PacedReplay(const std::string& socket, const std::vector<test::Bytes>& frames,
                         std::chrono::milliseconds gap, const std::string& name,
                         const std::vector<std::string>& extra_args) {
    input_ = records(frames, gap);
    test::write_pcap(dir_.file("in.pcap"), input_);
    std::vector<std::string> argv{
        env("OPTGATE_REPLAY"),   "--control", socket, "--name", name, "--pace", "--quiet", "--report",
        dir_.file("report.json")};
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    argv.push_back(dir_.file("in.pcap"));
    argv.push_back(dir_.file("out.pcap"));
    proc_ = std::make_unique<Process>(argv, dir_.file("replay.log"));
}

Replay PacedReplay::finish(std::chrono::milliseconds timeout) {
    RunResult r;
    r.exit_code = proc_->wait(timeout);
    r.output = proc_->output();
    return read_replay(dir_, std::move(r), input_);
}

// ---- packets ----

namespace {
test::Bytes dns_with(const char* src, const char* dst, std::vector<test::EdnsOption> options) {
    using namespace test;
    return PacketBuilder()
        .ipv4(src, dst)
        .udp(40000, 53)
        .payload(
            dns_query({.id = 0x4242, .qname = "www.example.org", .edns_udp_size = 1232, .options = std::move(options)}))
        .build();
}
}  // namespace

test::Bytes dns_with_ecs(const char* src, const char* dst) { return dns_with(src, dst, {test::kEcs4}); }

test::Bytes dns_ecs_stripped(const char* src, const char* dst) {
    return dns_with(src, dst, {padding_for(test::kEcs4)});
}

test::Bytes dns_without_ecs(const char* src, const char* dst) { return dns_with(src, dst, {}); }

}  // namespace optgate::e2e
