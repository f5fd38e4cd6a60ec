// End to end with real processes: consentd (temporary ledger, Unix socket
// for data planes) and optgate-replay --control as the data plane. What a
// replay forwards is what an edge connected to that consentd would forward.
//
// The policy is ecs_policy_yaml() (tests/support/policy_fixture.hpp): advertising (bit 0) to
// example-adnet 203.0.113.0/25; the EDNS0 client subnet option is the
// identifier; staleness limit 1 s unless a test says otherwise.
#include <doctest/doctest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "e2e_support.hpp"
#include "proto/codec.hpp"

using namespace optgate;
using namespace optgate::e2e;

namespace {

const std::string kPolicy = ecs_policy_yaml("1s");

// For tests with a peer that says hello and then acknowledges nothing:
// consentd drops a data plane after ten heartbeats of silence (5 s at
// least), which on a busy machine may come before the test is done with
// it. Heartbeats 10 s apart (which a 60 s staleness limit allows) keep such
// a peer connected for 100 s.
const std::string kPatientPolicy = ecs_policy_yaml("60s");
const char* const kSlowHeartbeats = "  heartbeat_interval: 10s\n";

// Between a paced replay's two packets the test acts (revokes, stops
// consentd) once it has seen the first packet counted: the gap is all the
// time it has for that on a busy machine under ASan.
constexpr auto kPacketGap = 10000ms;

const char* const kSub = "100.64.0.10";
const char* const kAdnet = "203.0.113.53";

bool has_dataplane(Consentd& c, const std::string& name, uint64_t applied_at_least = 0) {
    for (const auto& d : c.dataplanes())
        if (d.at("name").as_string() == name && d.at("applied_seq").to_number<uint64_t>() >= applied_at_least)
            return true;
    return false;
}

bool has_line(const std::string& text, const std::string& line) {
    return ("\n" + text).find("\n" + line + "\n") != std::string::npos;
}

// True once the data plane `name` has reported `packets` packets to consentd
// (stats reports come every second).
bool counted_packets(Consentd& c, const std::string& name, int packets) {
    return has_line(c.request("GET", "/metrics").body,
                    "optgate_dp_packets{dataplane=\"" + name + "\"} " + std::to_string(packets));
}

// A bare Unix-socket peer (never reads unless asked).
struct RawPeer {
    int fd = -1;
    explicit RawPeer(const std::string& path, int rcvbuf = 0) : fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
        if (rcvbuf) ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
        REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    }
    ~RawPeer() { ::close(fd); }
    RawPeer(const RawPeer&) = delete;
    RawPeer& operator=(const RawPeer&) = delete;
    void write(const std::string& s) { (void)!::send(fd, s.data(), s.size(), MSG_NOSIGNAL); }
    // True once the peer has closed (within `timeout`).
    bool closed_within(std::chrono::milliseconds timeout = kPatience) {
        const auto end = std::chrono::steady_clock::now() + timeout;
        while (std::chrono::steady_clock::now() < end) {
            pollfd p{fd, POLLIN, 0};
            if (::poll(&p, 1, 50) > 0) {
                char buf[4096];
                if (::recv(fd, buf, sizeof buf, 0) <= 0) return true;
            }
        }
        return false;
    }
};

}  // namespace

TEST_CASE("grant, revoke, rebind: each replay enforces what consentd holds") {
    Consentd c(kPolicy);
    c.start();
    CHECK(c.dataplanes().empty());
    const auto with_ecs = dns_with_ecs(kSub, kAdnet);
    const auto stripped = dns_ecs_stripped(kSub, kAdnet);

    seq_of(c.bind(kSub, "sub-1"));
    const uint64_t granted = seq_of(c.grant("sub-1", "advertising"));
    {
        const auto r = replay_control(c.socket(), {with_ecs}, {"--name", "e2e-replay"});
        REQUIRE(r.output.size() == 1);
        CHECK(r.output[0].data == with_ecs);
        CHECK(r.passed_to("example-adnet") == 1);
        CHECK(r.counter("verdict_pass_consent") == 1);
        const auto& control = r.report.at("control").as_object();
        CHECK(control.at("applied_seq").to_number<uint64_t>() == granted);
        CHECK(control.at("name").as_string() == "e2e-replay");
        CHECK(control.at("snapshots").to_number<uint64_t>() == 1);
    }

    seq_of(c.revoke("sub-1", "advertising"));
    {
        // Two endpoints, the first with nobody listening: the replay goes on
        // to the second (docs/protocol.md#several-consentd).
        const auto r = replay_control(c.socket() + ".down," + c.socket(), {with_ecs});
        REQUIRE(r.output.size() == 1);
        CHECK(r.output[0].data == stripped);
        CHECK(r.stripped_to("example-adnet") == 1);
        CHECK(r.counter("verdict_strip_no_consent") == 1);
        const auto& control = r.report.at("control").as_object();
        CHECK(control.at("connected_to").as_string() == c.socket());
        CHECK(control.at("failovers").to_number<uint64_t>() == 0);
        CHECK(control.at("connects").to_number<uint64_t>() == 1);
    }

    // Consent again, then the address moves to a subscriber without it: the
    // new holder does not inherit the old holder's consent.
    seq_of(c.grant("sub-1", "advertising"));
    CHECK(replay_control(c.socket(), {with_ecs}).output.at(0).data == with_ecs);
    seq_of(c.bind(kSub, "sub-2"));
    {
        const auto r = replay_control(c.socket(), {with_ecs});
        CHECK(r.output.at(0).data == stripped);
        CHECK(r.counter("verdict_strip_no_consent") == 1);
    }
    // Unbound: an unknown subscriber.
    REQUIRE(c.request("DELETE", std::string("/v1/bindings/") + kSub, "").status == 200);
    {
        const auto r = replay_control(c.socket(), {with_ecs});
        CHECK(r.output.at(0).data == stripped);
        CHECK(r.counter("verdict_strip_unknown_subscriber") == 1);
    }
}

TEST_CASE("a revoke reaches a running data plane; ?wait=enforced reports when; dataplanes are listed") {
    Consentd c(kPolicy);
    c.start();
    seq_of(c.bind(kSub, "sub-1"));
    const uint64_t granted = seq_of(c.grant("sub-1", "advertising"));
    const auto with_ecs = dns_with_ecs(kSub, kAdnet);

    PacedReplay p(c.socket(), {with_ecs, with_ecs}, kPacketGap, "e2e-paced");
    REQUIRE(eventually([&] { return has_dataplane(c, "e2e-paced", granted); }));
    {
        const auto d = c.dataplanes().at(0).as_object();
        CHECK(d.at("lag").to_number<uint64_t>() == 0);
        CHECK(d.at("synced").as_bool());
        CHECK(d.at("address").as_string().starts_with("unix pid="));
        CHECK(d.at("connected_since").is_string());
    }
    CHECK(eventually([&] { return !c.dataplanes().at(0).at("last_heartbeat").is_null(); }));
    {
        const auto r = run({env("OPTGATECTL"), "dataplanes", "--server", c.url(), "--token", Consentd::kToken});
        INFO(r.output);
        CHECK(r.exit_code == 0);
        CHECK(r.output.find("e2e-paced") != std::string::npos);
    }
    // The first packet went out with consent; revoke before the second.
    REQUIRE(eventually([&] { return counted_packets(c, "e2e-paced", 1); }));
    const auto revoked = c.revoke("sub-1", "advertising", "?wait=enforced");
    INFO(revoked.body);
    REQUIRE(revoked.status == 200);
    const auto e = revoked.json().at("enforcement").as_object();
    CHECK(e.at("status").as_string() == "enforced");
    CHECK(e.at("seq").to_number<uint64_t>() == granted + 1);
    CHECK(e.at("latency_ms").to_number<double>() >= 0);
    REQUIRE(e.at("dataplanes").as_array().size() == 1);
    CHECK(e.at("dataplanes").as_array()[0].at("name").as_string() == "e2e-paced");
    CHECK(e.at("dataplanes").as_array()[0].at("acknowledged").as_bool());

    const auto r = p.finish();
    REQUIRE(r.output.size() == 2);
    CHECK(r.output[0].data == with_ecs);
    CHECK(r.output[1].data == dns_ecs_stripped(kSub, kAdnet));
    CHECK(r.counter("verdict_pass_consent") == 1);
    CHECK(r.counter("verdict_strip_no_consent") == 1);
    CHECK(r.report.at("control").at("deltas").to_number<uint64_t>() >= 1);
    CHECK(c.metric("consentd_dataplane_enforcement_seconds_count{dataplane=\"e2e-paced\"}") >= 1);
}

TEST_CASE("consentd stops: once the staleness limit passes, the data plane strips everything") {
    // A 3 s limit (30 heartbeats) so that the first packet is fresh even on
    // a machine too busy to send every heartbeat within 1 s, and packets
    // 20 s apart, so that the second is stale however long the test takes,
    // within 17 s, to see the first one counted and kill consentd.
    constexpr auto kStaleGap = 20000ms;
    Consentd c(ecs_policy_yaml("3s"));
    c.start();
    seq_of(c.bind(kSub, "sub-1"));
    const uint64_t granted = seq_of(c.grant("sub-1", "advertising"));
    const auto with_ecs = dns_with_ecs(kSub, kAdnet);
    // Without disclosure accounting: at its end a replay waits up to 60 s
    // for consentd to acknowledge its last disclosure report, and this
    // consentd is gone for good (the disclosure tests restart theirs).
    PacedReplay p(c.socket(), {with_ecs, with_ecs}, kStaleGap, "e2e-stale", {"--disclosure-entries", "0"});
    REQUIRE(eventually([&] { return has_dataplane(c, "e2e-stale", granted); }));
    // The first packet passed with consent before consentd goes.
    REQUIRE(eventually([&] {
        return has_line(c.request("GET", "/metrics").body,
                        "optgate_dp_verdict_pass_consent{dataplane=\"e2e-stale\"} 1");
    }));
    c.kill(SIGKILL);
    c.wait();
    const auto r = p.finish();
    REQUIRE(r.output.size() == 2);
    CHECK(r.output[0].data == with_ecs);                        // fresh: consent holds
    CHECK(r.output[1].data == dns_ecs_stripped(kSub, kAdnet));  // kStaleGap later: stale
    CHECK(r.counter("verdict_pass_consent") == 1);
    CHECK(r.counter("verdict_strip_table_stale") == 1);
    CHECK_FALSE(r.report.at("control").at("connected").as_bool());
}

TEST_CASE("a data plane that never reads does not hold up the API; it is resynced, then dropped") {
    // 30000 subscribers in one commit: far more than the stalled peer's queue.
    std::string ndjson;
    for (uint32_t i = 0; i < 30000; ++i)
        ndjson += R"({"subscriber": "imp-)" + std::to_string(i) + R"(", "addresses": [")" +
                  IpAddr::from_v4_host(0x64410000u + i).to_string() +
                  R"("], "consents": ["advertising"], "notice_version": "v1"})" + "\n";

    // Slow heartbeats: what drops the stalled peer is the write timeout, once
    // the table resent to it fills its socket, never its silence.
    Consentd c(kPatientPolicy, std::string(kSlowHeartbeats) + "  max_queue_bytes: 65536\n  write_timeout: 1s\n");
    c.start();
    RawPeer stalled(c.socket(), 4096);
    std::string h;
    proto::encode(h, proto::Hello{"e2e-stalled", 0, ""});
    stalled.write(h);
    REQUIRE(eventually([&] { return has_dataplane(c, "e2e-stalled"); }));

    // Durable changes while it reads and acknowledges none of them: the API
    // answers each, and the data plane is still connected, behind.
    uint64_t seq = 0;
    for (int i = 0; i < 10; ++i) seq = seq_of(c.grant("sub-" + std::to_string(i), "analytics"));
    {
        const auto d = c.dataplanes();
        REQUIRE(d.size() == 1);
        CHECK(d[0].at("name").as_string() == "e2e-stalled");
        CHECK(d[0].at("applied_seq").to_number<uint64_t>() < seq);
    }

    // One commit larger than its queue: the table is resent to it, and it
    // cannot take that in without reading.
    REQUIRE(c.request("POST", "/v1/import?format=ndjson", ndjson).status == 200);
    for (int i = 10; i < 30; ++i) seq_of(c.grant("sub-" + std::to_string(i), "analytics"));
    CHECK(eventually([&] { return c.metric("consentd_dataplane_resyncs_total") >= 1; }));
    CHECK(eventually([&] { return !has_dataplane(c, "e2e-stalled"); }));
    CHECK(stalled.closed_within());
    CHECK(c.log().find("not reading") != std::string::npos);

    // Everyone else still gets the whole table.
    const auto r = replay_control(c.socket(), {dns_with_ecs("100.65.0.7", kAdnet)});
    CHECK(r.counter("verdict_pass_consent") == 1);
}

TEST_CASE("data plane stats: a replay's counters in GET /metrics while it runs, and once it is gone") {
    Consentd c(kPolicy);
    c.start();
    seq_of(c.bind(kSub, "sub-1"));
    seq_of(c.grant("sub-1", "advertising"));
    const auto with_ecs = dns_with_ecs(kSub, kAdnet);
    auto metrics = [&] { return c.request("GET", "/metrics").body; };

    PacedReplay p(c.socket(), {with_ecs, with_ecs}, kPacketGap, "e2e-stats");
    // Between its two packets: the first one, counted under the report's names.
    REQUIRE(eventually([&] { return has_line(metrics(), R"(optgate_dp_packets{dataplane="e2e-stats"} 1)"); }));
    {
        const std::string m = metrics();
        INFO(m);
        CHECK(has_line(m, "# TYPE optgate_dp_packets counter"));
        CHECK(has_line(m, R"(optgate_dataplane_up{dataplane="e2e-stats"} 1)"));
        CHECK(has_line(m, R"(optgate_dp_verdict_pass_consent{dataplane="e2e-stats"} 1)"));
        CHECK(has_line(m, R"(optgate_dp_destination_passed{dataplane="e2e-stats",destination="example-adnet"} 1)"));
        CHECK(has_line(m, R"(optgate_dp_identifier_passed{dataplane="e2e-stats",identifier="EDNS client subnet"} 1)"));
        CHECK(has_line(m, R"(optgate_dp_control_synced{dataplane="e2e-stats"} 1)"));
    }
    {
        const auto d = c.dataplanes().at(0).as_object();
        CHECK(d.at("stats_age_ms").to_number<uint64_t>() < 5000);
        CHECK(d.at("stats_entries").to_number<uint64_t>() > 80);
        CHECK_FALSE(d.contains("stats"));
        const auto full = c.request("GET", "/v1/dataplanes?stats=true");
        REQUIRE(full.status == 200);
        bool packets = false;
        const auto body = full.json();
        for (const auto& e : body.at("dataplanes").at(0).at("stats").as_array())
            packets = packets || (e.at("name").as_string() == "packets" && e.at("value").to_number<uint64_t>() == 1);
        CHECK(packets);
        CHECK(c.request("GET", "/v1/dataplanes?stats=yes").status == 400);
        const auto r = run({env("OPTGATECTL"), "dataplanes", "--server", c.url(), "--token", Consentd::kToken});
        INFO(r.output);
        CHECK(r.exit_code == 0);
        CHECK(r.output.find("STATS AGE") != std::string::npos);
    }

    const auto r = p.finish();
    CHECK(r.counter("packets") == 2);
    // Gone: its final counts (flushed before it stopped), with up 0.
    REQUIRE(eventually([&] { return has_line(metrics(), R"(optgate_dataplane_up{dataplane="e2e-stats"} 0)"); }));
    CHECK(has_line(metrics(), R"(optgate_dp_packets{dataplane="e2e-stats"} 2)"));
    const auto list = c.request("GET", "/v1/dataplanes").json();
    CHECK(list.at("dataplanes").as_array().empty());
    REQUIRE(list.at("disconnected").as_array().size() == 1);
    CHECK(list.at("disconnected").at(0).at("name").as_string() == "e2e-stats");
    const auto ctl = run({env("OPTGATECTL"), "dataplanes", "--server", c.url(), "--token", Consentd::kToken});
    INFO(ctl.output);
    CHECK(ctl.output.find("recently disconnected") != std::string::npos);
    CHECK(ctl.output.find("e2e-stats") != std::string::npos);

    // A malformed report closes that connection, like any malformed frame.
    RawPeer bad(c.socket());
    std::string h;
    proto::encode(h, proto::Hello{"e2e-bad-stats", 0, ""});
    const std::string payload = std::string{0, 0, 0, 1, 1, 2} + "Rx" + std::string(8, '\0') + std::string(2, '\0');
    bad.write(h +
              std::string{char(proto::kMagic0), char(proto::kMagic1), char(proto::kVersion),
                          char(proto::FrameType::stats), 0, 0, 0, char(payload.size())} +
              payload);
    CHECK(bad.closed_within());
    CHECK(c.metric("consentd_dataplane_protocol_errors_total") >= 1);
    CHECK(c.log().find("malformed frame: stats entry") != std::string::npos);
}

TEST_CASE("malformed and oversized frames close that connection; consentd carries on") {
    Consentd c(kPolicy);
    c.start();
    {
        RawPeer garbage(c.socket());
        garbage.write("GET / HTTP/1.1\r\nHost: consentd\r\n\r\n");
        CHECK(garbage.closed_within());
    }
    {
        RawPeer oversized(c.socket());
        oversized.write(std::string{char(proto::kMagic0), char(proto::kMagic1), char(proto::kVersion), char(0x01),
                                    char(0x40), char(0), char(0), char(0)});
        CHECK(oversized.closed_within());
    }
    {
        RawPeer truncated(c.socket());
        std::string h;
        proto::encode(h, proto::Hello{"e2e-half", 0, ""});
        truncated.write(h.substr(0, 5));
    }
    CHECK(c.request("GET", "/healthz").status == 200);
    CHECK(c.metric("consentd_dataplane_protocol_errors_total") >= 2);
    seq_of(c.bind(kSub, "sub-1"));
    seq_of(c.grant("sub-1", "advertising"));
    CHECK(replay_control(c.socket(), {dns_with_ecs(kSub, kAdnet)}).counter("verdict_pass_consent") == 1);
    c.kill(SIGTERM);
    CHECK(c.wait() == 0);
    CHECK(c.log().find("malformed frame") != std::string::npos);
}

TEST_CASE("consentd refuses plain TCP beyond loopback, and heartbeats too slow for the staleness limit") {
    {
        Consentd c(kPolicy, "  tcp: {address: 0.0.0.0, port: 8471}\n");
        const auto r = run({env("CONSENTD"), "--check-config", c.config_path()});
        INFO(r.output);
        CHECK(r.exit_code == 1);
        CHECK(r.output.find("needs 'tls'") != std::string::npos);
        const auto started = run({env("CONSENTD"), "--config", c.config_path()});
        CHECK(started.exit_code == 1);
    }
    {
        Consentd c(kPolicy, "  heartbeat_interval: 500ms\n");  // staleness 1 s: too slow
        const auto r = run({env("CONSENTD"), "--check-config", c.config_path()});
        INFO(r.output);
        CHECK(r.exit_code == 1);
        CHECK(r.output.find("heartbeat_interval") != std::string::npos);
    }
}

TEST_CASE("?wait=enforced: bad parameters change nothing; no data planes is said; reload checked against heartbeats") {
    Consentd c(kPolicy);
    c.start();
    seq_of(c.bind(kSub, "sub-1"));
    // Refused before the body is read: nothing is recorded.
    for (const char* q : {"?wait=applied", "?timeout=2s", "?wait=enforced&timeout=2h", "?wait=enforced&timeout=x"}) {
        const auto r = c.grant("sub-1", "advertising", q);
        INFO(q << " -> " << r.body);
        CHECK(r.status == 400);
        CHECK(r.json().at("error").at("code").as_string() == "invalid_parameter");
    }
    const auto shown = c.request("GET", "/v1/subscribers/sub-1");
    CHECK(shown.json().at("consents").as_array().empty());

    const auto r = c.grant("sub-1", "advertising", "?wait=enforced&timeout=500ms");
    INFO(r.body);
    REQUIRE(r.status == 200);
    CHECK(r.json().at("enforcement").at("status").as_string() == "no_dataplanes");
    CHECK(c.metric("consentd_enforced_waits_total{result=\"no_dataplanes\"}") == 1);

    // A policy whose staleness limit three heartbeats (100 ms) do not fit in.
    const std::string tight = ecs_policy_yaml("250ms");
    c.dir.write("policy.yaml", tight);
    const auto reload = c.request("POST", "/v1/policy/reload");
    INFO(reload.body);
    CHECK(reload.status == 422);
    CHECK(reload.body.find("heartbeat_interval") != std::string::npos);
    // The running policy is kept: a data plane still gets the 1 s limit's policy.
    const auto rep = replay_control(c.socket(), {dns_with_ecs(kSub, kAdnet)});
    CHECK(rep.counter("verdict_pass_consent") == 1);
}

TEST_CASE("optgatectl --wait: exit 0 when enforced or nobody to wait for, 3 when a data plane does not confirm") {
    Consentd c(kPatientPolicy, kSlowHeartbeats);
    c.start();
    auto ctl = [&](std::vector<std::string> args) {
        std::vector<std::string> argv{env("OPTGATECTL")};
        argv.insert(argv.end(), args.begin(), args.end());
        argv.insert(argv.end(), {"--server", c.url(), "--token", Consentd::kToken});
        return run(argv);
    };
    auto r = ctl({"bind", kSub, "sub-1", "--wait=500ms"});
    INFO(r.output);
    CHECK(r.exit_code == 0);
    CHECK(r.output.find("no_dataplanes") != std::string::npos);

    {
        // A data plane that says hello and then never acknowledges anything.
        RawPeer silent(c.socket());
        std::string h;
        proto::encode(h, proto::Hello{"e2e-silent", 0, ""});
        silent.write(h);
        REQUIRE(eventually([&] { return has_dataplane(c, "e2e-silent"); }));
        r = ctl({"grant", "sub-1", "advertising", "--source", "portal", "--notice-version", "v1", "--wait=300ms"});
        INFO(r.output);
        CHECK(r.exit_code == 3);
        CHECK(r.output.find("not every data plane confirmed") != std::string::npos);
        // Recorded all the same.
        const auto shown = c.request("GET", "/v1/subscribers/sub-1");
        CHECK(shown.json().at("consents").as_array().size() == 1);
    }
    // A bad timeout is refused before anything is recorded.
    r = ctl({"revoke", "sub-1", "advertising", "--source", "portal", "--wait=2h"});
    INFO(r.output);
    CHECK(r.exit_code == 1);
    CHECK(c.request("GET", "/v1/subscribers/sub-1").json().at("consents").as_array().size() == 1);
    // With the silent peer gone, a wait has nobody to wait for.
    REQUIRE(eventually([&] { return c.dataplanes().empty(); }));
    r = ctl({"revoke", "sub-1", "advertising", "--source", "portal", "--wait"});
    INFO(r.output);
    CHECK(r.exit_code == 0);
    CHECK(c.request("GET", "/v1/subscribers/sub-1").json().at("consents").as_array().empty());
}

TEST_CASE("RADIUS accounting: a Start makes the data plane enforce its subscriber's consent; a Stop strips") {
    const std::string secret = "e2e-radius-secret-0123";
    Consentd c(kPolicy,
               "  heartbeat_interval: 100ms\n"
               "radius:\n"
               "  listen: {address: 127.0.0.1, port: 0}\n"
               "  clients:\n"
               "    - {name: bng-e2e, address: 127.0.0.1, secret: \"" +
                   secret + "\"}\n");
    c.start();
    const std::string port = slurp(c.dir.file("port.radius"));
    const char* radclient_env = std::getenv("RADCLIENT");
    const std::string radclient = radclient_env ? radclient_env : "/usr/bin/radclient";
    // radclient (freeradius-utils) sends the request and exits 0 once answered.
    auto account = [&](const std::string& status) {
        c.dir.write("request.txt",
                    "Acct-Status-Type = " + status +
                        ", User-Name = \"sub-r\", Acct-Session-Id = \"e2e-1\", Framed-IP-Address = " + kSub + "\n");
        const auto r = run({radclient, "-x", "-r", "1", "-t", "30", "-f", c.dir.file("request.txt"),
                            "127.0.0.1:" + std::to_string(std::stoul(port)), "acct", secret},
                           120000ms);
        INFO(r.output);
        REQUIRE(r.exit_code == 0);
        CHECK(r.output.find("Received Accounting-Response") != std::string::npos);
    };
    const auto with_ecs = dns_with_ecs(kSub, kAdnet);
    const auto stripped = dns_ecs_stripped(kSub, kAdnet);
    seq_of(c.grant("sub-r", "advertising"));
    {
        const auto r = replay_control(c.socket(), {with_ecs});
        CHECK(r.output.at(0).data == stripped);
        CHECK(r.counter("verdict_strip_unknown_subscriber") == 1);
    }
    account("Start");  // answered once the bind is durable: the next snapshot has it
    {
        const auto r = replay_control(c.socket(), {with_ecs});
        CHECK(r.output.at(0).data == with_ecs);
        CHECK(r.counter("verdict_pass_consent") == 1);
    }
    account("Stop");
    {
        const auto r = replay_control(c.socket(), {with_ecs});
        CHECK(r.output.at(0).data == stripped);
        CHECK(r.counter("verdict_strip_unknown_subscriber") == 1);
    }
}
