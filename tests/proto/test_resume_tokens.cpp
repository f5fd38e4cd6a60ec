// Resuming at another consentd of the same ledger (docs/protocol.md,
// "Resuming at another consentd"): two publishers, each fed the same events
// by its own fake ledger (two consentd on one PostgreSQL ledger), and a data
// plane that moves from one to the other. Also a ledger whose table was read
// again behind the feed (a commit in doubt adopted).
#include <doctest/doctest.h>

#include "publisher_rig.hpp"

using namespace optgate;
using namespace optgate::test_proto;
using proto::TableChange;

namespace {

TableChange up(const char* a, PurposeMask m) { return {TableChange::Op::upsert, key(a), m}; }
TableChange down(const char* a) { return {TableChange::Op::erase, key(a), 0}; }

// A data plane that knows `a` first, then `b`.
DataPlane& moving_dataplane(std::unique_ptr<DataPlane>& dp, const Rig& a, const Rig& b) {
    dp = std::make_unique<DataPlane>(a.endpoint(), "edge-1", 50ms, std::nullopt, [&](proto::ControlClient::Options& o) {
        o.endpoints = {a.endpoint(), b.endpoint()};
    });
    dp->client.start();
    return *dp;
}

bool at(DataPlane& dp, const std::string& endpoint, uint64_t seq) {
    const auto s = dp.client.status();
    return s.connected && s.endpoint == endpoint && s.applied_seq == seq;
}

}  // namespace

TEST_CASE(
    "a data plane that moves to another consentd of the ledger resumes by its token, whatever the commits' "
    "boundaries there") {
    auto a = std::make_unique<Rig>();
    auto b = std::make_unique<Rig>();
    Rig c;
    // The same events at all three; b and c (followers) read them in other
    // batches than a (the writer) committed them.
    const std::vector<std::vector<TableChange>> first = {
        {up("100.64.0.10", 1)}, {up("100.64.0.11", 2)}, {up("2001:db8:1000:5::", 3)}};
    const std::vector<TableChange> fourth = {up("100.64.0.10", 3), down("100.64.0.11")};
    const std::vector<TableChange> fifth = {up("100.64.0.12", 1)};
    for (const auto& e : first) a->ledger.commit(e);
    b->ledger.commit_events(first);
    c.ledger.commit_events({first[0], first[1]});
    c.ledger.commit_events({first[2], fourth});
    const std::string a_path = a->endpoint().path, b_path = b->endpoint().path, c_path = c.endpoint().path;
    DataPlane dp(a->endpoint(), "edge-1", 50ms, std::nullopt, [&](proto::ControlClient::Options& o) {
        o.endpoints = {a->endpoint(), b->endpoint(), c.endpoint()};
    });
    dp.client.start();
    REQUIRE(eventually([&] { return at(dp, a_path, 3); }));
    // a commits the fourth event on its own; the data plane is at 4, with
    // a's token for 4, when a goes. b has the fourth and fifth in one commit.
    a->ledger.commit(fourth);
    REQUIRE(eventually([&] { return at(dp, a_path, 4) && !dp.client.status().resume_token.empty(); }));
    const std::string token_at_a = dp.client.status().resume_token;
    CHECK(token_at_a.starts_with("r1:"));
    const uint64_t head = b->ledger.commit_events({fourth, fifth});
    a.reset();
    REQUIRE(eventually([&] { return at(dp, b_path, head); }));
    auto st = dp.client.status();
    CHECK(st.snapshots == 1);  // a's only: b resumed it
    CHECK(st.failovers == 1);
    CHECK(b->metric("consentd_dataplane_snapshots_sent_total") == 0);
    CHECK(b->metric("consentd_dataplane_token_resumes_total") == 1);
    CHECK(dp.holds(b->ledger.entries()));
    CHECK(dp.logged().find("resuming after 4") != std::string::npos);

    // It gets tokens at b too: when b goes, c resumes it from 5, which is
    // inside one of c's commits.
    REQUIRE(eventually([&] { return !dp.client.status().resume_token.empty(); }));
    CHECK(dp.client.status().resume_token != token_at_a);
    c.ledger.commit(fifth);
    const uint64_t c_head = c.ledger.commit({up("100.64.0.13", 2)});
    b.reset();
    REQUIRE(eventually([&] { return at(dp, c_path, c_head); }));
    st = dp.client.status();
    CHECK(st.snapshots == 1);
    CHECK(st.failovers == 2);
    CHECK(c.metric("consentd_dataplane_token_resumes_total") == 1);
    CHECK(c.metric("consentd_dataplane_snapshots_sent_total") == 0);
    CHECK(dp.holds(c.ledger.entries()));
    CHECK(dp.look("100.64.0.13").purposes == 2);
}

TEST_CASE("a ledger restored from an older backup: the same sequence with another chain gets a snapshot") {
    auto a = std::make_unique<Rig>();
    Rig b;
    a->ledger.commit({up("100.64.0.10", 1)});
    b.ledger.commit({up("100.64.0.10", 1)});
    const uint64_t a_head = a->ledger.commit({up("100.64.0.11", 2)});
    // b holds event 1 as a did, then another event 2 (what a restored
    // ledger took after the backup), and more.
    b.ledger.commit({up("100.64.0.11", 1)});
    const uint64_t b_head = b.ledger.commit({up("100.64.0.12", 3)});
    REQUIRE(a_head == 2);
    std::unique_ptr<DataPlane> holder;
    DataPlane& dp = moving_dataplane(holder, *a, b);
    REQUIRE(eventually([&] { return at(dp, a->endpoint().path, a_head) && !dp.client.status().resume_token.empty(); }));
    a.reset();
    REQUIRE(eventually([&] { return at(dp, b.endpoint().path, b_head); }));
    CHECK(dp.client.status().snapshots == 2);
    CHECK(b.metric("consentd_dataplane_snapshots_sent_total") == 1);
    CHECK(b.metric("consentd_dataplane_token_resumes_total") == 0);
    // What b's ledger says, not what a's did: 100.64.0.11 has purpose 1 only.
    CHECK(dp.holds(b.ledger.entries()));
    CHECK(dp.look("100.64.0.11").purposes == 1);
}

TEST_CASE("a token for a sequence the other consentd's history does not reach gets a snapshot") {
    auto a = std::make_unique<Rig>();
    a->ledger.commit({up("100.64.0.10", 1)});
    std::unique_ptr<DataPlane> holder;
    // b started later (its history begins at its first snapshot, seq 3):
    // the data plane at 1 cannot be caught up from it.
    Rig b([](consentd::DataPlaneConfig&) {}, nullptr,
          [](FakeLedger& l) {
              l.commit({up("100.64.0.10", 1)});
              l.commit({up("100.64.0.11", 2)});
              l.commit({up("100.64.0.12", 3)});
          });
    DataPlane& dp = moving_dataplane(holder, *a, b);
    REQUIRE(eventually([&] { return at(dp, a->endpoint().path, 1) && !dp.client.status().resume_token.empty(); }));
    a.reset();
    REQUIRE(eventually([&] { return at(dp, b.endpoint().path, 3); }));
    CHECK(dp.client.status().snapshots == 2);
    CHECK(b.metric("consentd_dataplane_token_resumes_total") == 0);
    CHECK(dp.holds(b.ledger.entries()));
}

TEST_CASE("the table read again behind the feed (a commit in doubt adopted) reaches every data plane") {
    Rig rig;
    rig.ledger.upsert("100.64.0.10", 1);
    DataPlane dp(rig.endpoint(), "edge-1");
    dp.client.start();
    REQUIRE(dp.client.wait_synced(kPatience));
    // The ledger took a revocation and a new binding it never sent as a
    // commit, and says so with a resync under the same policy.
    rig.ledger.adopt({down("100.64.0.10"), up("100.64.0.11", 2)});
    REQUIRE(eventually([&] { return dp.client.status().applied_seq == rig.ledger.seq(); }));
    CHECK_FALSE(dp.look("100.64.0.10").found);
    CHECK(dp.look("100.64.0.11").purposes == 2);
    CHECK(dp.client.status().snapshots == 2);
    // The stream goes on from there: the next commit comes as a delta.
    const uint64_t next = rig.ledger.upsert("100.64.0.12", 1);
    REQUIRE(eventually([&] { return dp.client.status().applied_seq == next; }));
    CHECK(dp.client.status().snapshots == 2);
    CHECK(dp.holds(rig.ledger.entries()));
}
