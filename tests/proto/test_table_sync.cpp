// The data plane's protocol state machine (src/proto/table_sync.hpp): frames
// in, consent table and policy installed in an Enforcement, acks out.
#include <doctest/doctest.h>

#include "core/enforcement.hpp"
#include "proto/table_sync.hpp"
#include "proto_fixture.hpp"

using namespace optgate;
using namespace optgate::proto;
using namespace optgate::test_proto;

namespace {

// Feeds `bytes` (whole frames) to `sync`; returns the last step, stopping
// at the first failure.
TableSync::Step feed_bytes(TableSync& sync, const std::string& bytes) {
    TableSync::Step last;
    for (const auto& r : decode_all(bytes, Direction::to_client)) {
        last = sync.on_frame(r.frame, monotonic_ns());
        if (!last.ok) return last;
    }
    return last;
}

std::string welcome(Welcome::Mode mode, uint64_t head = 0) {
    std::string s;
    encode(s, Welcome{head, 1000, mode});
    return s;
}

std::string snapshot(uint64_t seq, const std::vector<std::pair<const char*, PurposeMask>>& entries,
                     const std::string& policy = kPolicyYaml, const std::string& stream = "s1") {
    SnapshotEncoder enc(2);  // small chunks: several per snapshot
    for (const auto& [a, m] : entries) enc.add(key(a), m);
    std::vector<std::string> frames;
    REQUIRE(enc.finish(SnapshotBegin{seq, 0, 0, stream, "tv1", "test-policy.yaml", policy}, frames));
    std::string all;
    for (const auto& f : frames) all += f;
    return all;
}

std::string delta(uint64_t seq, const std::vector<TableChange>& changes, bool final = true) {
    std::string s;
    REQUIRE(encode_delta(s, seq, final, changes));
    return s;
}

ConsentLookup look(Enforcement& e, const char* a) {
    return e.table()->lookup(SubscriberKey::make(*IpAddr::parse(a), 64));
}

}  // namespace

TEST_CASE("snapshot: policy and table installed together, acknowledged at its end") {
    Enforcement e(Enforcement::Mode::controlled);
    TableSync sync(e);
    CHECK(e.view(monotonic_ns()).health == TableHealth::not_received);
    sync.connection_started();
    CHECK(feed_bytes(sync, welcome(Welcome::Mode::snapshot, 5)).ok);
    const std::string snap = snapshot(5, {{"100.64.0.10", 1}, {"100.64.0.11", 2}, {"2001:db8:1000:1::", 3}});
    const auto frames = decode_all(snap, Direction::to_client);
    REQUIRE(frames.size() == 1 + 2 + 1);
    // Nothing is installed before the end.
    for (size_t i = 0; i + 1 < frames.size(); ++i) {
        const auto s = sync.on_frame(frames[i].frame, monotonic_ns());
        CHECK(s.ok);
        CHECK_FALSE(s.ack);
        CHECK(e.runtime() == nullptr);
    }
    const auto end = sync.on_frame(frames.back().frame, monotonic_ns());
    CHECK(end.ok);
    CHECK(end.ack);
    CHECK(end.installed);
    REQUIRE(e.runtime() != nullptr);
    CHECK(e.runtime()->policy().purposes.size() == 2);
    CHECK(e.view(monotonic_ns()).health == TableHealth::fresh);
    CHECK(look(e, "100.64.0.10").purposes == 1);
    CHECK(look(e, "100.64.0.11").purposes == 2);
    // The IPv6 key is found from any address in the /64.
    CHECK(look(e, "2001:db8:1000:1::abcd").purposes == 3);
    CHECK_FALSE(look(e, "100.64.0.12").found);
    CHECK(sync.applied_seq() == 5);
    CHECK(sync.stream_id() == "s1");
    CHECK(sync.has_table());
}

TEST_CASE("deltas apply to the installed table in order; multi-part commits ack on the last part") {
    Enforcement e(Enforcement::Mode::controlled);
    TableSync sync(e);
    sync.connection_started();
    REQUIRE(feed_bytes(sync, welcome(Welcome::Mode::snapshot) + snapshot(5, {{"100.64.0.10", 1}})).ok);
    ConsentTable* installed = e.table();

    auto s = feed_bytes(sync, delta(6, {{TableChange::Op::upsert, key("100.64.0.10"), 0},
                                        {TableChange::Op::upsert, key("100.64.0.20"), 2}}));
    CHECK(s.ok);
    CHECK(s.ack);
    CHECK(sync.applied_seq() == 6);
    CHECK(e.table() == installed);  // in place, no new table
    CHECK(look(e, "100.64.0.10").purposes == 0);
    CHECK(look(e, "100.64.0.10").found);
    CHECK(look(e, "100.64.0.20").purposes == 2);

    s = feed_bytes(sync, delta(7, {{TableChange::Op::erase, key("100.64.0.20"), 0}}, false));
    CHECK(s.ok);
    CHECK_FALSE(s.ack);
    CHECK(sync.applied_seq() == 6);
    CHECK_FALSE(look(e, "100.64.0.20").found);  // visible at once
    s = feed_bytes(sync, delta(7, {{TableChange::Op::upsert, key("2001:db8:1000:7::"), 1}}, true));
    CHECK(s.ack);
    CHECK(sync.applied_seq() == 7);
    CHECK(look(e, "2001:db8:1000:7::1").purposes == 1);

    // An empty commit still moves the applied sequence (the ack is what
    // ?wait=enforced waits for).
    CHECK(feed_bytes(sync, delta(9, {})).ack);
    CHECK(sync.applied_seq() == 9);

    // Out of order: a repeat, or another seq in the middle of a part.
    CHECK_FALSE(feed_bytes(sync, delta(9, {})).ok);
    TableSync sync2(e);
    sync2.connection_started();
    REQUIRE(feed_bytes(sync2, welcome(Welcome::Mode::snapshot) + snapshot(5, {})).ok);
    REQUIRE(feed_bytes(sync2, delta(6, {{TableChange::Op::erase, key("100.64.0.1"), 0}}, false)).ok);
    CHECK_FALSE(feed_bytes(sync2, delta(8, {})).ok);
}

TEST_CASE("resume: deltas after the hello's sequence, without a snapshot") {
    Enforcement e(Enforcement::Mode::controlled);
    TableSync sync(e);
    sync.connection_started();
    REQUIRE(feed_bytes(sync, welcome(Welcome::Mode::snapshot) + snapshot(5, {{"100.64.0.10", 1}})).ok);
    // The connection drops; a new one resumes.
    sync.connection_started();
    const auto s = feed_bytes(
        sync, welcome(Welcome::Mode::resume, 6) + delta(6, {{TableChange::Op::upsert, key("100.64.0.10"), 3}}));
    CHECK(s.ok);
    CHECK(sync.applied_seq() == 6);
    CHECK(look(e, "100.64.0.10").purposes == 3);
    CHECK(sync.snapshots_applied() == 1);

    // Resuming without ever having had a table is a protocol error.
    Enforcement e2(Enforcement::Mode::controlled);
    TableSync fresh(e2);
    fresh.connection_started();
    CHECK_FALSE(feed_bytes(fresh, welcome(Welcome::Mode::resume)).ok);
}

TEST_CASE("a policy that does not load here keeps the installed state") {
    Enforcement e(Enforcement::Mode::controlled);
    TableSync sync(e);
    sync.connection_started();
    REQUIRE(feed_bytes(sync, welcome(Welcome::Mode::snapshot) + snapshot(5, {{"100.64.0.10", 1}})).ok);
    const auto before = e.runtime();
    std::string bad = kPolicyYaml;
    bad.replace(bad.find("version: 1"), 10, "version: 9");
    const auto s = feed_bytes(sync, snapshot(8, {{"100.64.0.10", 0}}, bad, "s2"));
    CHECK_FALSE(s.ok);
    CHECK(s.code == Goodbye::Code::policy_rejected);
    CHECK(s.error.find("version") != std::string::npos);
    CHECK(e.runtime() == before);
    CHECK(look(e, "100.64.0.10").purposes == 1);
    CHECK(sync.applied_seq() == 5);
    CHECK(sync.stream_id() == "s1");
}

TEST_CASE("snapshot counts must add up; chunks outside a snapshot are refused") {
    Enforcement e(Enforcement::Mode::controlled);
    TableSync sync(e);
    sync.connection_started();
    REQUIRE(feed_bytes(sync, welcome(Welcome::Mode::snapshot)).ok);
    std::string s;
    encode(s, SnapshotBegin{3, 1, 0, "s", "tv", "p", kPolicyYaml});
    const std::vector<TableChange> two = {{TableChange::Op::upsert, key("100.64.0.1"), 1},
                                          {TableChange::Op::upsert, key("100.64.0.2"), 1}};
    encode_snapshot_chunk(s, two);  // two entries, one announced
    CHECK_FALSE(feed_bytes(sync, s).ok);

    sync.connection_started();
    REQUIRE(feed_bytes(sync, welcome(Welcome::Mode::snapshot)).ok);
    std::string t;
    encode(t, SnapshotBegin{3, 2, 0, "s", "tv", "p", kPolicyYaml});
    encode_snapshot_chunk(t, std::span(two).first(1));
    encode(t, SnapshotEnd{3, 2});  // one entry short
    CHECK_FALSE(feed_bytes(sync, t).ok);
    CHECK(e.runtime() == nullptr);

    sync.connection_started();
    std::string c;
    encode_snapshot_chunk(c, two);
    CHECK_FALSE(feed_bytes(sync, welcome(Welcome::Mode::snapshot) + c).ok);
}

TEST_CASE("a snapshot in the middle of the stream replaces the table (resync)") {
    Enforcement e(Enforcement::Mode::controlled);
    TableSync sync(e);
    sync.connection_started();
    REQUIRE(
        feed_bytes(sync, welcome(Welcome::Mode::snapshot) + snapshot(5, {{"100.64.0.10", 1}, {"100.64.0.11", 1}})).ok);
    // A part of a commit, then consentd restarts the table.
    REQUIRE(feed_bytes(sync, delta(6, {{TableChange::Op::erase, key("100.64.0.10"), 0}}, false)).ok);
    const auto s = feed_bytes(sync, snapshot(9, {{"100.64.0.12", 2}}, kPolicyYaml, "s3"));
    CHECK(s.ok);
    CHECK(sync.applied_seq() == 9);
    CHECK(sync.stream_id() == "s3");
    CHECK_FALSE(look(e, "100.64.0.11").found);
    CHECK(look(e, "100.64.0.12").purposes == 2);
}

TEST_CASE("policy update: same table, new policy") {
    Enforcement e(Enforcement::Mode::controlled);
    TableSync sync(e);
    sync.connection_started();
    REQUIRE(
        feed_bytes(sync, welcome(Welcome::Mode::snapshot) + snapshot(5, {{"100.64.0.10", 1}, {"2001:db8:1000:1::", 2}}))
            .ok);
    const ConsentTable* old_table = e.table();
    std::string p;
    REQUIRE(encode(p, PolicyUpdate{5, "s2", "tv1", "test-policy.yaml", policy_with_more_collectors()}));
    const auto s = feed_bytes(sync, p);
    CHECK(s.ok);
    CHECK(s.installed);
    CHECK(e.table() != old_table);
    CHECK(e.runtime()->policy().collectors.size() == 3);
    CHECK(look(e, "100.64.0.10").purposes == 1);
    CHECK(look(e, "2001:db8:1000:1::").purposes == 2);
    CHECK(e.table()->size() == 2);
    CHECK(sync.stream_id() == "s2");
    // Another table version needs a snapshot, not a policy update.
    std::string q;
    REQUIRE(encode(q, PolicyUpdate{5, "s3", "tv2", "test-policy.yaml", kPolicyYaml}));
    CHECK_FALSE(feed_bytes(sync, q).ok);
}

TEST_CASE("resume tokens: said in hello while the table is at their sequence, refused anywhere else") {
    Enforcement e(Enforcement::Mode::controlled);
    TableSync sync(e);
    auto token = [](uint64_t seq, const std::string& t) {
        std::string s;
        REQUIRE(encode(s, ResumeToken{seq, t}));
        return s;
    };
    sync.connection_started();
    // Before the table: refused (consentd sends one only after a table).
    REQUIRE(feed_bytes(sync, welcome(Welcome::Mode::snapshot)).ok);
    CHECK_FALSE(feed_bytes(sync, token(0, "t0")).ok);
    sync.connection_started();
    REQUIRE(feed_bytes(sync, welcome(Welcome::Mode::snapshot) + snapshot(5, {{"100.64.0.10", 1}})).ok);
    CHECK(sync.hello_stream_id() == "s1");  // no token yet: the stream id
    REQUIRE(feed_bytes(sync, token(5, "t5")).ok);
    CHECK(sync.hello_stream_id() == "t5");
    CHECK(sync.stream_id() == "s1");
    // A delta moves the table on: the token for 5 no longer says what it holds.
    REQUIRE(feed_bytes(sync, delta(6, {{TableChange::Op::upsert, key("100.64.0.11"), 2}})).ok);
    CHECK(sync.hello_stream_id() == "s1");
    REQUIRE(feed_bytes(sync, token(6, "t6")).ok);
    CHECK(sync.hello_stream_id() == "t6");
    // It outlives the connection: the next hello says it.
    sync.connection_started();
    CHECK(sync.hello_stream_id() == "t6");
    REQUIRE(feed_bytes(sync, welcome(Welcome::Mode::resume, 6)).ok);
    // A token for another sequence than the table's, or inside a commit in
    // parts, is consentd's idea of another table: the connection ends.
    CHECK_FALSE(feed_bytes(sync, token(5, "t5")).ok);
    sync.connection_started();
    REQUIRE(feed_bytes(sync, welcome(Welcome::Mode::resume, 6)).ok);
    REQUIRE(feed_bytes(sync, delta(7, {{TableChange::Op::upsert, key("100.64.0.12"), 1}}, false)).ok);
    CHECK_FALSE(feed_bytes(sync, token(6, "t6")).ok);
    CHECK(sync.hello_stream_id() == "t6");  // still at 6: the part of 7 is dropped with the connection
    // A policy update names another policy: the token it had is dropped.
    sync.connection_started();
    REQUIRE(feed_bytes(sync, welcome(Welcome::Mode::resume, 6)).ok);
    std::string p;
    REQUIRE(encode(p, PolicyUpdate{6, "s2", "tv1", "test-policy.yaml", policy_with_more_collectors()}));
    REQUIRE(feed_bytes(sync, p).ok);
    CHECK(sync.hello_stream_id() == "s2");
    REQUIRE(feed_bytes(sync, token(6, "t6b")).ok);
    CHECK(sync.hello_stream_id() == "t6b");
    // So does a snapshot, even one that is not installed.
    REQUIRE(feed_bytes(sync, snapshot(7, {{"100.64.0.10", 1}}, "not: [a policy")).ok == false);
    CHECK(sync.hello_stream_id() == "s2");
}

TEST_CASE("freshness: contact only counts once a table from consentd is installed") {
    Enforcement e(Enforcement::Mode::controlled);
    TableSync sync(e);
    std::string error;
    REQUIRE(sync.bootstrap(kPolicyYaml, "local-policy.yaml", error));
    // A local policy, never heard from consentd: strip everything as "not
    // received" (not dropped for want of a policy).
    CHECK(e.runtime() != nullptr);
    CHECK(e.view(monotonic_ns()).health == TableHealth::not_received);
    sync.connection_started();
    REQUIRE(feed_bytes(sync, welcome(Welcome::Mode::snapshot)).ok);
    std::string hb;
    encode(hb, Heartbeat{0, 0});
    CHECK(feed_bytes(sync, hb).ack);
    CHECK(e.view(monotonic_ns()).health == TableHealth::not_received);
    REQUIRE(feed_bytes(sync, snapshot(1, {{"100.64.0.10", 1}})).ok);
    CHECK(e.view(monotonic_ns()).health == TableHealth::fresh);
    // 30 s after the last frame, the table is stale.
    CHECK(e.view(monotonic_ns() + 31'000'000'000ull).health == TableHealth::stale);
    CHECK(feed_bytes(sync, hb).ack);
    CHECK(e.view(monotonic_ns()).health == TableHealth::fresh);

    std::string bad_error;
    TableSync other(e);
    CHECK_FALSE(other.bootstrap("version: 2\n", "bad.yaml", bad_error));
    CHECK(bad_error.find("bad.yaml") != std::string::npos);
}
