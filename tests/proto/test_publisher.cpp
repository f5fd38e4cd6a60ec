// The protocol end to end inside one process: consentd's publisher and
// listeners (fed by a fake ledger) and data planes built on the client
// library, over a real Unix socket. Reconnects, history, policy changes,
// malformed and oversized frames, a stalled data plane, ?wait=enforced.
#include <doctest/doctest.h>

#include "publisher_rig.hpp"
#include "raw_client.hpp"

using namespace optgate;
using namespace optgate::test_proto;
using consentd::EnforcementReport;
using proto::Goodbye;
using proto::TableChange;

namespace {

EnforcementReport wait_enforced(Rig& rig, uint64_t seq, std::chrono::milliseconds timeout) {
    std::promise<EnforcementReport> p;
    auto f = p.get_future();
    rig.on_io(
        [&] { rig.publisher->wait_enforced(seq, timeout, [&p](const EnforcementReport& r) { p.set_value(r); }); });
    return f.get();
}

std::vector<TableChange> many_changes(uint32_t base, uint32_t n, PurposeMask m) {
    std::vector<TableChange> d;
    for (uint32_t i = 0; i < n; ++i)
        d.push_back({TableChange::Op::upsert, SubscriberKey{IpAddr::from_v4_host(0x64400000u + base + i)}, m});
    return d;
}

}  // namespace

TEST_CASE("a data plane gets the table, then every commit as it commits, and acknowledges") {
    Rig rig;
    rig.ledger.upsert("100.64.0.10", 1);
    rig.ledger.upsert("2001:db8:1000:1::", 2);
    DataPlane dp(rig.endpoint(), "edge-1");
    dp.client.start();
    REQUIRE(dp.client.wait_synced(kPatience));
    CHECK(dp.look("100.64.0.10").purposes == 1);
    CHECK(dp.look("2001:db8:1000:1::77").purposes == 2);
    CHECK(dp.client.status().applied_seq == 2);
    CHECK(dp.enforcement.view(monotonic_ns()).health == TableHealth::fresh);

    const uint64_t s3 = rig.ledger.upsert("100.64.0.11", 3);
    CHECK(eventually([&] { return dp.client.status().applied_seq >= s3; }));
    CHECK(dp.look("100.64.0.11").purposes == 3);
    const uint64_t s4 = rig.ledger.erase("100.64.0.10");
    CHECK(eventually([&] { return dp.client.status().applied_seq >= s4; }));
    CHECK_FALSE(dp.look("100.64.0.10").found);

    // consentd knows what it applied.
    CHECK(eventually([&] {
        const auto d = rig.dataplanes();
        return d.size() == 1 && d[0].applied_seq == s4;
    }));
    const auto d = rig.dataplanes();
    CHECK(d[0].name == "edge-1");
    CHECK(d[0].address.starts_with("unix pid="));
    CHECK(d[0].lag == 0);
    CHECK(d[0].synced);
    CHECK(rig.metric("consentd_dataplanes_connected") == 1);
    CHECK(rig.metric("consentd_dataplane_snapshots_sent_total") == 1);

    // Heartbeats keep it in contact while nothing changes.
    const uint64_t contact = dp.client.status().last_contact_mono_ns;
    CHECK(eventually([&] { return dp.client.status().last_contact_mono_ns > contact; }));
    CHECK(eventually([&] { return rig.dataplanes()[0].last_heartbeat.has_value(); }));
}

TEST_CASE("a data plane that reconnects resumes with the deltas it missed") {
    Rig rig;
    rig.ledger.upsert("100.64.0.10", 1);
    // A slow reconnect, so that the commits below land while it is away.
    DataPlane dp(rig.endpoint(), "edge-1", 600ms);
    dp.client.start();
    REQUIRE(dp.client.wait_synced(kPatience));
    REQUIRE(rig.on_io([&] { return rig.publisher->disconnect("edge-1", "test"); }));
    CHECK(eventually([&] { return !dp.client.status().connected; }));
    rig.ledger.upsert("100.64.0.11", 2);
    rig.ledger.erase("100.64.0.10");
    const uint64_t last = rig.ledger.upsert("2001:db8:1000:5::", 3);
    CHECK(eventually([&] { return dp.client.status().applied_seq == last; }));
    const auto st = dp.client.status();
    CHECK(st.connects == 2);
    CHECK(st.snapshots == 1);  // the first one only: the rest came as deltas
    CHECK(dp.look("100.64.0.11").purposes == 2);
    CHECK_FALSE(dp.look("100.64.0.10").found);
    CHECK(dp.look("2001:db8:1000:5::1").purposes == 3);
    CHECK(rig.metric("consentd_dataplane_snapshots_sent_total") == 1);
}

TEST_CASE("a data plane that reconnects after the history moved on gets a snapshot") {
    Rig rig([](consentd::DataPlaneConfig& c) { c.history_commits = 2; });
    rig.ledger.upsert("100.64.0.10", 1);
    DataPlane dp(rig.endpoint(), "edge-1", 600ms);
    dp.client.start();
    REQUIRE(dp.client.wait_synced(kPatience));
    REQUIRE(rig.on_io([&] { return rig.publisher->disconnect("edge-1", "test"); }));
    CHECK(eventually([&] { return !dp.client.status().connected; }));
    uint64_t last = 0;
    for (uint32_t i = 0; i < 5; ++i) last = rig.ledger.commit(many_changes(100 + i, 1, 2));
    rig.ledger.erase("100.64.0.10");
    ++last;
    CHECK(eventually([&] { return dp.client.status().applied_seq == last; }));
    CHECK(dp.client.status().snapshots == 2);
    CHECK_FALSE(dp.look("100.64.0.10").found);
    CHECK(dp.look("100.64.0.104").purposes == 2);
    CHECK(rig.metric("consentd_dataplane_snapshots_sent_total") == 2);
}

TEST_CASE("several consentd endpoints: one that is down is skipped, and the next takes over when one goes") {
    auto a = std::make_unique<Rig>();
    Rig b;
    a->ledger.upsert("100.64.0.10", 1);
    b.ledger.upsert("100.64.0.10", 2);
    const uint64_t b_head = b.ledger.upsert("100.64.0.11", 3);
    proto::Endpoint down = b.endpoint();
    down.path = b.dir.file("nobody-listens.sock");
    const std::string a_path = a->endpoint().path, b_path = b.endpoint().path;
    DataPlane dp(a->endpoint(), "edge-1", 50ms, std::nullopt, [&](proto::ControlClient::Options& o) {
        o.endpoints = {down, a->endpoint(), b.endpoint()};
    });
    dp.client.start();
    REQUIRE(dp.client.wait_synced(kPatience));
    auto st = dp.client.status();
    CHECK(st.endpoint == a_path);
    CHECK(st.connects == 1);
    CHECK(st.failovers == 0);
    CHECK(dp.look("100.64.0.10").purposes == 1);
    CHECK(dp.logged().find("cannot connect to " + down.path) != std::string::npos);

    // a's consentd goes: the data plane moves on to b and takes b's table.
    a.reset();
    REQUIRE(eventually([&] {
        const auto s = dp.client.status();
        return s.connected && s.endpoint == b_path && s.applied_seq == b_head;
    }));
    st = dp.client.status();
    CHECK(st.connects == 2);
    CHECK(st.failovers == 1);
    CHECK(st.snapshots == 2);  // another consentd process: another stream id, so a snapshot
    CHECK(dp.look("100.64.0.10").purposes == 2);
    CHECK(dp.look("100.64.0.11").purposes == 3);
    CHECK(dp.logged().find("connected to " + b_path) != std::string::npos);
    CHECK(b.metric("consentd_dataplanes_connected") == 1);
}

TEST_CASE("several consentd endpoints, none up: the client goes round them until one comes") {
    TempDir dir;
    const std::string first = dir.file("first.sock"), second = dir.file("second.sock");
    proto::Endpoint e1, e2;
    e1.path = first;
    e2.path = second;
    DataPlane dp(e1, "edge-1", 50ms, std::nullopt, [&](proto::ControlClient::Options& o) { o.endpoints = {e1, e2}; });
    dp.client.start();
    // Both are tried (each error logged once, however often it repeats)...
    REQUIRE(eventually([&] {
        const std::string log = dp.logged();
        return log.find("cannot connect to " + first) != std::string::npos &&
               log.find("cannot connect to " + second) != std::string::npos;
    }));
    CHECK_FALSE(dp.client.status().connected);
    // ...and tried again after the pause a failed round earns.
    Rig late([&](consentd::DataPlaneConfig& c) { c.socket = second; });
    const uint64_t head = late.ledger.upsert("100.64.0.10", 1);
    REQUIRE(eventually([&] {
        const auto s = dp.client.status();
        return s.connected && s.applied_seq == head;
    }));
    CHECK(dp.client.status().endpoint == second);
    CHECK(dp.client.status().failovers == 0);  // its first welcome
    CHECK(dp.look("100.64.0.10").purposes == 1);
}

TEST_CASE("policy changes: same table meaning sends the policy, a new meaning resends the table") {
    Rig rig;
    rig.ledger.upsert("100.64.0.10", 1);
    DataPlane dp(rig.endpoint(), "edge-1");
    dp.client.start();
    REQUIRE(dp.client.wait_synced(kPatience));
    const std::string stream1 = dp.client.status().stream_id;
    auto collectors = [&] {
        dp.enforcement.rcu().online(dp.reader);
        const size_t n = dp.enforcement.runtime()->policy().collectors.size();
        dp.enforcement.rcu().offline(dp.reader);
        return n;
    };
    CHECK(collectors() == 2);

    const std::string more = policy_with_more_collectors();
    auto p2 = load_policy(more);
    rig.publisher->add_policy_document(p2, "test-policy.yaml", more);
    rig.ledger.set_policy(p2);
    // The runtime is installed before the client publishes its status (the
    // new stream id): wait for both, or a busy machine reads in between.
    CHECK(eventually([&] { return collectors() == 3 && dp.client.status().stream_id != stream1; }));
    CHECK(dp.client.status().snapshots == 1);
    CHECK(dp.look("100.64.0.10").purposes == 1);

    // A third purpose changes what the bits mean: a full resync.
    std::string three = more;
    three.insert(three.find("identifiers:"),
                 "  research:\n    description: Research.\n    benefit: Science.\n    data: [x]\n"
                 "    retention: 1 day\n");
    auto p3 = load_policy(three);
    rig.publisher->add_policy_document(p3, "test-policy.yaml", three);
    rig.ledger.set_policy(p3);
    CHECK(eventually([&] { return dp.client.status().snapshots == 2; }));
    const uint64_t s = rig.ledger.upsert("100.64.0.12", 4);
    CHECK(eventually([&] { return dp.client.status().applied_seq == s; }));
    CHECK(dp.look("100.64.0.12").purposes == 4);
}

TEST_CASE("a policy the data plane cannot load keeps its state and is reported") {
    Rig rig;
    rig.ledger.upsert("100.64.0.10", 1);
    DataPlane dp(rig.endpoint(), "edge-1", 200ms);
    dp.client.start();
    REQUIRE(dp.client.wait_synced(kPatience));
    // consentd's loader took it; this data plane's refuses it (here: a
    // staleness limit its loader rejects stands in for a version skew).
    std::string bad = kPolicyYaml;
    bad.replace(bad.find("staleness_limit: 30s"), 20, "staleness_limit: 0s");
    auto p2 = load_policy(kPolicyYaml);  // what consentd thinks it loaded
    rig.publisher->add_policy_document(p2, "bad.yaml", bad);
    rig.ledger.set_policy(p2);
    CHECK(eventually([&] { return dp.logged().find("does not load") != std::string::npos; }));
    CHECK(dp.look("100.64.0.10").purposes == 1);
    CHECK(dp.client.status().synced);
}

TEST_CASE("malformed, oversized and out-of-place frames close that connection only") {
    Rig rig;
    rig.ledger.upsert("100.64.0.10", 1);
    DataPlane dp(rig.endpoint(), "edge-1");
    dp.client.start();
    REQUIRE(dp.client.wait_synced(kPatience));
    bool closed = false;
    std::string msg;

    SUBCASE("not our protocol at all") {
        RawClient raw(rig.config.socket);
        raw.write("GET /v1/dataplanes HTTP/1.1\r\nHost: x\r\n\r\n");
        const auto got = raw.read_all(kPatience, closed);
        CHECK(closed);
        CHECK(goodbye_in(got, &msg) == Goodbye::Code::protocol_error);
        CHECK(msg.find("magic") != std::string::npos);
    }
    SUBCASE("an oversized frame is refused from its header") {
        RawClient raw(rig.config.socket);
        std::string h = {char(proto::kMagic0),
                         char(proto::kMagic1),
                         char(proto::kVersion),
                         char(0x01),
                         char(0x7f),
                         char(0xff),
                         char(0xff),
                         char(0xff)};
        raw.write(h);  // no payload follows: it is not waited for
        const auto got = raw.read_all(kPatience, closed);
        CHECK(closed);
        CHECK(goodbye_in(got, &msg) == Goodbye::Code::protocol_error);
        CHECK(msg.find("larger") != std::string::npos);
    }
    SUBCASE("a frame only consentd may send") {
        RawClient raw(rig.config.socket);
        std::string w;
        proto::encode(w, proto::Heartbeat{1, 2});
        raw.write(hello("raw") + w);
        const auto got = raw.read_all(kPatience, closed);
        CHECK(closed);
        CHECK(goodbye_in(got, &msg) == Goodbye::Code::protocol_error);
        CHECK(msg.find("direction") != std::string::npos);
    }
    SUBCASE("ack before hello, hello twice, an ack of what was never sent") {
        std::string a;
        proto::encode(a, proto::Ack{1});
        {
            RawClient raw(rig.config.socket);
            raw.write(a);
            CHECK(goodbye_in(raw.read_all(kPatience, closed)) == Goodbye::Code::protocol_error);
            CHECK(closed);
        }
        {
            RawClient raw(rig.config.socket);
            raw.write(hello("raw") + hello("raw"));
            CHECK(goodbye_in(raw.read_all(kPatience, closed), &msg) == Goodbye::Code::protocol_error);
            CHECK(closed);
        }
        {
            RawClient raw(rig.config.socket);
            std::string far;
            proto::encode(far, proto::Ack{1000});
            raw.write(hello("raw"));
            raw.read_at_least(1, kPatience);  // welcome arrived
            raw.write(far);
            CHECK(goodbye_in(raw.read_all(kPatience, closed), &msg) == Goodbye::Code::protocol_error);
            CHECK(msg.find("never sent") != std::string::npos);
            CHECK(closed);
        }
    }
    SUBCASE("a corrupted hello: bad name, trailing bytes") {
        std::string h = hello("edge-9");
        h[proto::kHeaderSize + 1] = '/';
        RawClient raw(rig.config.socket);
        raw.write(h);
        CHECK(goodbye_in(raw.read_all(kPatience, closed)) == Goodbye::Code::protocol_error);
        CHECK(closed);
    }
    SUBCASE("half a frame, then the peer goes away") {
        RawClient raw(rig.config.socket);
        const std::string h = hello("half");
        raw.write(h.substr(0, h.size() / 2));
    }
    // The good data plane saw none of it.
    const uint64_t s = rig.ledger.upsert("100.64.0.11", 2);
    CHECK(eventually([&] { return dp.client.status().applied_seq == s; }));
    CHECK(dp.client.status().connects == 1);
    CHECK(eventually([&] { return rig.dataplanes().size() == 1; }));
}

TEST_CASE("a data plane that stops reading: resynced, then dropped; the others stay fast") {
    // Once the stalled peer's socket is full, its queue overflows three
    // commits (2000 changes, 20 kB each) later, long before the write timeout
    // would drop it even on a busy machine. Slow heartbeats: silence (ten
    // heartbeats) never drops the stalled peer, which acknowledges nothing;
    // the write timeout does, once it has been sent more than its socket
    // holds.
    constexpr uint32_t kChanges = 2000, kCommits = 40;
    Rig rig([](consentd::DataPlaneConfig& c) {
        c.max_queue_bytes = 64u << 10;
        c.write_timeout = 10s;
        c.heartbeat_interval = 10s;
    });
    DataPlane fast(rig.endpoint(), "edge-fast");
    fast.client.start();
    REQUIRE(fast.client.wait_synced(kPatience));
    RawClient stalled(rig.config.socket, 4096);
    REQUIRE(stalled.write(hello("edge-stalled")));
    REQUIRE(eventually([&] { return rig.dataplanes().size() == 2; }));
    auto acknowledged = [&](const char* name, uint64_t seq) {
        for (const auto& d : rig.dataplanes())
            if (d.name == name) return d.applied_seq >= seq;
        return false;
    };

    // ?wait=enforced cannot be met while the stalled one is connected.
    const uint64_t first = rig.ledger.commit(many_changes(0, 1, 1));
    REQUIRE(eventually([&] { return acknowledged("edge-fast", first); }));
    const auto stuck = wait_enforced(rig, first, 300ms);
    CHECK(stuck.status == EnforcementReport::Status::timeout);
    REQUIRE(stuck.dataplanes.size() == 2);
    for (const auto& r : stuck.dataplanes) CHECK(r.acknowledged == (r.name == "edge-fast"));

    // The ledger's writer never waits for a data plane (encoding the changes
    // is all it does), and the fast one gets every commit while the other
    // one stalls. (How long a commit takes meanwhile: bench-enforcement.)
    uint64_t last = first;
    for (uint32_t i = 0; i < kCommits; ++i) {
        last = rig.ledger.commit(many_changes(i * kChanges, kChanges, 1 + i % 3));
        REQUIRE(eventually([&] { return fast.client.status().applied_seq >= last; }));
    }

    // It fell behind: resent the table (resync), then closed for not reading.
    CHECK(eventually([&] { return rig.metric("consentd_dataplane_resyncs_total") >= 1; }));
    CHECK(eventually([&] { return rig.dataplanes().size() == 1; }));
    CHECK(rig.dataplanes()[0].name == "edge-fast");
    const auto ok = wait_enforced(rig, last, kPatience);
    CHECK(ok.status == EnforcementReport::Status::enforced);

    // The fast one has every entry of the last commit.
    CHECK(fast.look("100.64.0.1").found);
    CHECK(fast.look(IpAddr::from_v4_host(0x64400000u + kCommits * kChanges - 1).to_string().c_str()).purposes ==
          1 + (kCommits - 1) % 3);
}

TEST_CASE("?wait=enforced: all connected data planes, disconnects, none at all") {
    Rig rig;
    // Nobody connected: said so, at once.
    const uint64_t s1 = rig.ledger.upsert("100.64.0.10", 1);
    const auto none = wait_enforced(rig, s1, 1000ms);
    CHECK(none.status == EnforcementReport::Status::no_dataplanes);
    CHECK(none.dataplanes.empty());

    DataPlane a(rig.endpoint(), "edge-a");
    DataPlane b(rig.endpoint(), "edge-b");
    a.client.start();
    b.client.start();
    REQUIRE(a.client.wait_synced(kPatience));
    REQUIRE(b.client.wait_synced(kPatience));
    REQUIRE(eventually([&] { return rig.dataplanes().size() == 2; }));

    // Waiting from the API's answer: both acknowledge.
    std::promise<EnforcementReport> p;
    auto f = p.get_future();
    uint64_t s2 = 0;
    rig.on_io([&] {});
    s2 = rig.ledger.upsert("100.64.0.11", 2);
    rig.on_io(
        [&] { rig.publisher->wait_enforced(s2, kPatience, [&p](const EnforcementReport& r) { p.set_value(r); }); });
    const auto r = f.get();
    CHECK(r.status == EnforcementReport::Status::enforced);
    CHECK(r.seq == s2);
    REQUIRE(r.dataplanes.size() == 2);
    for (const auto& row : r.dataplanes) {
        CHECK(row.acknowledged);
        CHECK(row.applied_seq >= s2);
    }
    CHECK(r.latency_ms >= 0);
    const auto j = r.to_json();
    CHECK(j.at("status").as_string() == "enforced");
    CHECK(j.at("dataplanes").as_array().size() == 2);
    // Commit-to-acknowledgement latency, per data plane: both acknowledged s2.
    CHECK(rig.metric("consentd_dataplane_enforcement_seconds_count{dataplane=\"edge-a\"}") >= 1);
    CHECK(rig.metric("consentd_dataplane_enforcement_seconds_count{dataplane=\"edge-b\"}") >= 1);
    CHECK(rig.metrics().find("consentd_dataplane_enforcement_seconds_bucket{dataplane=\"edge-a\",le=\"+Inf\"}") !=
          std::string::npos);

    // One goes away while a wait is pending: it is reported, the wait ends.
    b.client.stop();
    CHECK(eventually([&] { return rig.dataplanes().size() == 1; }));
    const auto r2 = wait_enforced(rig, s2, kPatience);
    CHECK(r2.status == EnforcementReport::Status::enforced);
    CHECK(r2.latency_ms == 0);  // already applied
    CHECK(rig.metric("consentd_dataplanes_connected") == 1);
}

TEST_CASE("snapshots come from consentd's mirror of the table, through commits and a table-changing policy") {
    // A short history: later data planes need snapshots built on demand.
    Rig rig([](consentd::DataPlaneConfig& c) { c.history_commits = 3; });
    std::mt19937 rng(7);
    auto churn = [&](int n) {
        uint64_t last = 0;
        for (int i = 0; i < n; ++i) {
            std::vector<TableChange> d;
            for (int j = 0; j < 20; ++j) {
                const uint32_t host = 0x64400000u + 1 + rng() % 500;
                const SubscriberKey k = (rng() % 4 == 0)
                                            ? key(("2001:db8:1000:" + std::to_string(rng() % 300) + "::").c_str())
                                            : SubscriberKey{IpAddr::from_v4_host(host)};
                if (rng() % 3 == 0)
                    d.push_back({TableChange::Op::erase, k, 0});
                else
                    d.push_back({TableChange::Op::upsert, k, PurposeMask(rng() % 4)});
            }
            last = rig.ledger.commit(consentd::coalesce(d));
        }
        return last;
    };
    churn(30);
    DataPlane a(rig.endpoint(), "edge-a");
    a.client.start();
    REQUIRE(a.client.wait_synced(kPatience));
    CHECK(a.holds(rig.ledger.entries()));

    uint64_t last = churn(30);
    DataPlane b(rig.endpoint(), "edge-b");
    b.client.start();
    REQUIRE(eventually([&] { return b.client.status().applied_seq == last; }));
    CHECK(b.holds(rig.ledger.entries()));

    // A policy that changes the table's meaning: consentd re-reads the table
    // (here: the same entries), commits keep coming meanwhile.
    std::string three = kPolicyYaml;
    three.insert(three.find("identifiers:"),
                 "  research:\n    description: Research.\n    benefit: Science.\n    data: [x]\n"
                 "    retention: 1 day\n");
    auto p3 = load_policy(three);
    rig.publisher->add_policy_document(p3, "test-policy.yaml", three);
    rig.ledger.set_policy(p3);
    last = churn(10);
    DataPlane c(rig.endpoint(), "edge-c");
    c.client.start();
    REQUIRE(eventually([&] { return c.client.status().applied_seq == last; }));
    const auto table = rig.ledger.entries();
    CHECK(c.holds(table));
    CHECK(eventually([&] { return a.client.status().applied_seq == last && b.client.status().applied_seq == last; }));
    CHECK(a.holds(table));
    CHECK(b.holds(table));
    CHECK(a.client.status().snapshots == 2);  // the first, and the policy's
}

TEST_CASE("a second connection with the same name replaces the first") {
    Rig rig;
    DataPlane a(rig.endpoint(), "edge-1");
    a.client.start();
    REQUIRE(a.client.wait_synced(kPatience));
    RawClient dup(rig.config.socket);
    dup.write(hello("edge-1"));
    CHECK(eventually([&] { return a.logged().find("replaced") != std::string::npos; }));
    // The first reconnects and replaces the impostor in turn; consentd ends
    // with one edge-1.
    CHECK(eventually([&] {
        const auto d = rig.dataplanes();
        return d.size() == 1 && d[0].name == "edge-1";
    }));
}

TEST_CASE("a data plane acknowledges a change only once every worker has passed a quiescent point") {
    Rig rig;
    DataPlane dp(rig.endpoint(), "edge-1");
    dp.client.start();
    REQUIRE(dp.client.wait_synced(kPatience));
    REQUIRE(eventually([&] { return rig.dataplanes().size() == 1; }));

    // A worker inside a burst: it may still hold what it read before.
    const auto worker = dp.enforcement.rcu().register_reader();
    const uint64_t s = rig.ledger.upsert("100.64.0.11", 3);
    CHECK(eventually([&] { return dp.client.status().applied_seq >= s; }));  // applied to the table...
    std::this_thread::sleep_for(300ms);
    CHECK(rig.dataplanes()[0].applied_seq < s);  // ...but not acknowledged to consentd
    dp.enforcement.rcu().offline(worker);        // the burst ends, the worker idles
    CHECK(eventually([&] { return rig.dataplanes()[0].applied_seq >= s; }));
    dp.enforcement.rcu().unregister_reader(worker);
}
