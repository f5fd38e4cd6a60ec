// End-to-end tests with real processes: a consentd on loopback with a
// temporary ledger and data-plane socket, driven over its HTTP API, and
// optgate-replay --control as the data plane.
//
// Environment (tests/e2e/meson.build): CONSENTD, OPTGATE_REPLAY, OPTGATECTL.
#pragma once

#include <sys/types.h>

#include <boost/json.hpp>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "packet_builder.hpp"
#include "pcap_io.hpp"
#include "policy_fixture.hpp"
#include "subprocess.hpp"

namespace optgate::e2e {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

using test::ecs_policy_yaml;
using test::env;
using test::Process;
using test::run;
using test::RunResult;
using test::slurp;
using test::TempDir;

// How long a test waits for something that should happen: generous, because
// the suite runs on a busy 2-core machine and under ASan (about 3x slower).
// Waits poll for their condition, so a generous deadline costs nothing when
// things go well; only what must NOT happen is waited for with a short time.
constexpr std::chrono::milliseconds kPatience = 60000ms;

struct HttpResult {
    unsigned status = 0;
    std::string body;
    boost::json::value json() const { return boost::json::parse(body); }
};

// The ledger sequence number of a 200 answer to a consent change (fails the
// test on any other answer).
uint64_t seq_of(const HttpResult& r);

// A consentd with its own directory, policy, ledger and sockets.
class Consentd {
public:
    static constexpr const char* kToken = "e2e-admin-token-0123456789";

    // `policy_yaml`: the policy; `dataplanes_yaml`: the config's dataplanes
    // section body (indented two spaces), beyond the socket, which is set.
    // `more_yaml`: further top-level sections (e.g. "disclosures: {...}\n").
    explicit Consentd(const std::string& policy_yaml,
                      const std::string& dataplanes_yaml = "  heartbeat_interval: 100ms\n",
                      const std::string& more_yaml = "");
    ~Consentd();
    Consentd(const Consentd&) = delete;
    Consentd& operator=(const Consentd&) = delete;

    void start();  // waits for the API and the data-plane socket
    void kill(int sig);
    int wait(std::chrono::milliseconds timeout = kPatience);
    std::string log() const;

    HttpResult request(const std::string& method, const std::string& target, const std::string& body = {});
    // Convenience: PUT consent / DELETE consent / PUT binding (plus a query).
    HttpResult grant(const std::string& sub, const std::string& purpose, const std::string& query = "");
    HttpResult revoke(const std::string& sub, const std::string& purpose, const std::string& query = "");
    HttpResult bind(const std::string& address, const std::string& sub, const std::string& query = "");
    // GET /v1/dataplanes
    boost::json::array dataplanes();
    // A metric's value from GET /metrics (a line "NAME VALUE").
    double metric(const std::string& name);

    std::string socket() const { return dir.file("dp.sock"); }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
    std::string config_path() const { return dir.file("consentd.yaml"); }
    std::string database() const { return dir.file("consentd.db"); }

    TempDir dir;

private:
    std::unique_ptr<Process> proc_;
    uint16_t port_ = 0;
};

// optgate-replay --control SOCKET over `frames` (timestamps `gap` apart).
struct Replay {
    RunResult run;
    std::vector<test::PcapRecord> input, output;
    boost::json::object report;
    uint64_t counter(const std::string& name) const;
    uint64_t passed_to(const std::string& destination) const;
    uint64_t stripped_to(const std::string& destination) const;
};
Replay replay_control(const std::string& socket, const std::vector<test::Bytes>& frames,
                      const std::vector<std::string>& extra_args = {});

// A replay started in the background (--pace), for tests that act while it runs.
class PacedReplay {
public:
    PacedReplay(const std::string& socket, const std::vector<test::Bytes>& frames, std::chrono::milliseconds gap,
                const std::string& name, const std::vector<std::string>& extra_args = {});
    // Waits for the process and reads its output and report.
    Replay finish(std::chrono::milliseconds timeout = kPatience);

private:
    TempDir dir_;
    std::vector<test::PcapRecord> input_;
    std::unique_ptr<Process> proc_;
};

// A DNS query with ECS from `src` to `dst`:53; the same query with ECS made
// Padding (what a strip verdict leaves of it); one without ECS.
test::Bytes dns_with_ecs(const char* src, const char* dst);
test::Bytes dns_ecs_stripped(const char* src, const char* dst);
test::Bytes dns_without_ecs(const char* src, const char* dst);

template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = kPatience) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
        if (pred()) return true;
        std::this_thread::sleep_for(10ms);
    }
    return pred();
}

}  // namespace optgate::e2e
