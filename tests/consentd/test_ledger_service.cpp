// The writer: group commit of concurrent requests, what each request records,
// the listener interface, refusals, and a failed commit leaving memory equal
// to the disk.
#include <doctest/doctest.h>

#include <atomic>
#include <functional>
#include <future>
#include <map>

#include "consentd/ledger_reader.hpp"
#include "consentd/ledger_service.hpp"
#include "consentd/schema.hpp"
#include "consentd/verify.hpp"
#include "fixture.hpp"

using namespace optgate;
using namespace optgate::consentd;
using optgate::consentd::test::shared_policy;
using optgate::consentd::test::TempDir;
using optgate::proto::TableChange;

namespace {

AddressText A(const char* text) {
    std::string e;
    return *parse_address_text(text, e);
}

struct Recorder : TableListener {
    std::vector<std::pair<uint64_t, std::vector<TableChange>>> commits;
    ChainHashes chain;  // every commit's, in order
    int resyncs = 0, policies = 0;
    void on_commit(uint64_t seq, const std::vector<TableChange>& d, const ChainHashes& c) override {
        commits.emplace_back(seq, d);
        chain.insert(chain.end(), c.begin(), c.end());
    }
    void on_resync(uint64_t, const Digest&, const std::shared_ptr<const Policy>&, const std::string&) override {
        ++resyncs;
    }
    void on_policy(uint64_t, const std::shared_ptr<const Policy>&, const std::string&) override { ++policies; }
};

struct ServiceHarness {
    TempDir dir;
    std::string path = dir.file("ledger.db");
    Metrics metrics;
    std::unique_ptr<LedgerService> service;
    Ledger* ledger = nullptr;  // the service's; touch it only inside snapshot(), which excludes the writer

    explicit ServiceHarness(size_t max_batch = 4096) { open(max_batch); }
    void open(size_t max_batch = 4096) {
        auto l = std::make_unique<Ledger>(path);
        ledger = l.get();
        service = std::make_unique<LedgerService>(std::move(l), shared_policy(), metrics,
                                                  LedgerService::Options{max_batch});
        service->start();
    }
    // The writer connection's PRAGMA cache_size (Ledger::bulk_cache).
    int64_t writer_cache() {
        int64_t pages = 0;
        service->snapshot([&](uint64_t, const ConsentState&) {
            auto st = ledger->db().prepare("PRAGMA cache_size");
            if (st.step()) pages = st.int64(0);
        });
        return pages;
    }
    Outcome run(Change c) {
        std::promise<Outcome> p;
        auto f = p.get_future();
        service->submit(std::move(c), "test", [&](Outcome o) { p.set_value(std::move(o)); });
        return f.get();
    }
    Outcome grant(const char* sub, const char* purpose, bool grant = true) {
        return run(ConsentChange{sub, purpose, grant, "portal", std::string("v1")});
    }
    Outcome bind(const char* addr, const char* sub) { return run(BindChange{A(addr), sub, "radius"}); }
    std::map<std::string, PurposeMask> table() {
        std::map<std::string, PurposeMask> t;
        service->snapshot([&](uint64_t, const ConsentState& s) {
            s.for_each_entry([&](const SubscriberKey& k, PurposeMask m) { t[k.addr.to_string()] = m; });
        });
        return t;
    }
};

}  // namespace

TEST_CASE("each request records its events and answers once durable") {
    ServiceHarness h;
    auto g = h.grant("sub-1", "advertising");
    CHECK(g.status == Outcome::Status::ok);
    CHECK(g.first_seq == 1);
    CHECK(g.changed);
    auto again = h.grant("sub-1", "advertising");
    CHECK(again.status == Outcome::Status::ok);
    CHECK(again.last_seq == 2);  // repeats are recorded
    CHECK_FALSE(again.changed);

    auto b = h.bind("100.64.0.1", "sub-1");
    CHECK(b.address == "100.64.0.1");
    CHECK_FALSE(b.previous_subscriber);
    CHECK(h.table() == std::map<std::string, PurposeMask>{{"100.64.0.1", 1}});

    // The address moves: the old holder's unbind is its own event.
    auto moved = h.bind("100.64.0.1", "sub-2");
    CHECK(moved.events == 2);
    CHECK(moved.previous_subscriber == "sub-1");
    CHECK(moved.first_seq == 4);
    CHECK(moved.last_seq == 5);
    CHECK(h.table() == std::map<std::string, PurposeMask>{{"100.64.0.1", 0}});

    auto u = h.run(UnbindChange{A("100.64.0.1"), std::string("sub-1"), "radius"});
    CHECK(u.status == Outcome::Status::conflict);
    CHECK(u.code == "bound_to_other");
    u = h.run(UnbindChange{A("100.64.0.1"), std::nullopt, "radius"});
    CHECK(u.status == Outcome::Status::ok);
    CHECK(u.subscriber == "sub-2");
    u = h.run(UnbindChange{A("100.64.0.1"), std::nullopt, "radius"});
    CHECK(u.status == Outcome::Status::not_found);
    CHECK(h.service->head_seq() == 6);

    const auto r = verify_ledger(h.path);
    CHECK_MESSAGE(r.ok, r.problem);
    CHECK(r.events == 6);
}

TEST_CASE("refusals record nothing") {
    ServiceHarness h;
    CHECK(h.grant("sub-1", "spam").code == "unknown_purpose");
    CHECK(h.grant("sub-1", "spam", false).code == "unknown_purpose");
    CHECK(h.bind("203.0.113.5", "sub-1").code == "not_a_subscriber_address");
    CHECK(h.bind("2001:db8:1000:10::/60", "sub-1").code == "invalid_address");
    CHECK(h.service->head_seq() == 0);
}

TEST_CASE("concurrent requests share commits, and listeners see every change") {
    ServiceHarness h;
    Recorder rec;
    h.service->add_listener(&rec);
    constexpr int kClients = 16, kEach = 50;
    std::vector<std::thread> clients;
    clients.reserve(kClients);
    std::atomic<int> refused{0};  // doctest asserts belong on the test's thread
    for (int c = 0; c < kClients; ++c)
        clients.emplace_back([&, c] {
            const std::string sub = "sub-" + std::to_string(c);
            const std::string addr = "100.64.1." + std::to_string(c);
            if (h.run(BindChange{A(addr.c_str()), sub, "radius"}).status != Outcome::Status::ok) ++refused;
            for (int i = 0; i < kEach; ++i)
                if (h.run(ConsentChange{sub, i % 2 ? "analytics" : "advertising", i % 4 < 2, "portal", "v1"}).status !=
                    Outcome::Status::ok)
                    ++refused;
        });
    for (auto& t : clients) t.join();
    CHECK(refused == 0);
    const uint64_t total = uint64_t{kClients} * (kEach + 1);
    CHECK(h.service->head_seq() == total);
    // Fewer commits than events: requests waited for one fsync together.
    CHECK(rec.commits.size() < total);
    CHECK(rec.commits.back().first == total);
    // Replaying the deltas gives the table.
    std::map<std::string, PurposeMask> replay;
    uint64_t previous = 0;
    for (const auto& [seq, deltas] : rec.commits) {
        CHECK(seq > previous);
        previous = seq;
        for (const auto& d : deltas) {
            if (d.op == TableChange::Op::upsert)
                replay[d.key.addr.to_string()] = d.purposes;
            else
                replay.erase(d.key.addr.to_string());
        }
    }
    CHECK(replay == h.table());
    // Each client ends with i = 48 granting advertising and i = 49 granting analytics.
    CHECK(replay["100.64.1.3"] == 0b11);
    h.service->remove_listener(&rec);
    CHECK(verify_ledger(h.path).ok);
    // The chain hashes heard with the commits are every event's, in order
    // (what resume tokens name: docs/protocol.md).
    Database db(h.path, Database::Mode::read_only);
    auto st = db.prepare("SELECT hash FROM events ORDER BY seq");
    std::vector<std::string> stored;
    while (st.step()) stored.emplace_back(st.text(0));
    REQUIRE(rec.chain.size() == total);
    REQUIRE(stored.size() == total);
    size_t same = 0;
    for (size_t i = 0; i < total; ++i) same += to_hex(rec.chain[i]) == stored[i];
    CHECK(same == total);
}

TEST_CASE("state survives a restart") {
    ServiceHarness h;
    h.grant("sub-1", "analytics");
    h.bind("2001:db8:1000:5::1", "sub-1");
    const auto before = h.table();
    CHECK(before == std::map<std::string, PurposeMask>{{"2001:db8:1000:5::", 2}});
    h.service.reset();
    h.open();
    CHECK(h.table() == before);
    CHECK(h.service->head_seq() == 2);
}

TEST_CASE("an import is one batch of events; a policy change resyncs") {
    ServiceHarness h;
    Recorder rec;
    h.service->add_listener(&rec);
    h.bind("100.64.0.7", "old-holder");
    auto records = std::make_shared<std::vector<ImportRecord>>();
    records->push_back(
        {1, "imp-1", {A("100.64.0.7"), A("2001:db8:1000:7::/64")}, {"advertising", "analytics"}, "import", "v9"});
    records->push_back({2, "imp-2", {A("100.64.0.8")}, {}, "import", std::nullopt});
    const auto policy = h.service->policy();
    auto o = h.run(ImportChange{records, policy});
    CHECK(o.status == Outcome::Status::ok);
    CHECK(o.events == 6);  // unbind old-holder, 3 binds, 2 grants
    CHECK(h.table() ==
          std::map<std::string, PurposeMask>{{"100.64.0.7", 3}, {"2001:db8:1000:7::", 3}, {"100.64.0.8", 0}});
    // After the import's transaction (which had the big page cache) the writer's cache is small again.
    CHECK(h.writer_cache() == Ledger::kWriterCachePages);

    Policy changed = *policy;
    std::swap(changed.purposes[0], changed.purposes[1]);
    auto p = h.run(PolicyChange{std::make_shared<const Policy>(changed)});
    CHECK(p.table_resync);
    CHECK(rec.resyncs == 1);
    // A change the table does not see (a description) reaches listeners as a policy only.
    Policy reworded = changed;
    reworded.purposes[0].description = "new words";
    CHECK_FALSE(h.run(PolicyChange{std::make_shared<const Policy>(reworded)}).table_resync);
    CHECK(rec.resyncs == 1);
    CHECK(rec.policies == 1);
    CHECK(h.service->policy()->purposes[0].name == "analytics");
    // The import was validated under the old policy object: checked again, still valid.
    auto records2 = std::make_shared<std::vector<ImportRecord>>();
    records2->push_back({1, "imp-3", {A("100.64.0.9")}, {"carrier-marketing"}, "import", "v9"});
    CHECK(h.run(ImportChange{records2, policy}).status == Outcome::Status::ok);
    // Under a policy without carrier-marketing it is refused as a whole.
    Policy fewer = changed;
    fewer.purposes.pop_back();
    h.run(PolicyChange{std::make_shared<const Policy>(fewer)});
    auto refused = h.run(ImportChange{records2, policy});
    CHECK(refused.status == Outcome::Status::conflict);
    CHECK(refused.code == "policy_changed");
    CHECK(h.writer_cache() == Ledger::kWriterCachePages);
    h.service->remove_listener(&rec);
    CHECK(verify_ledger(h.path).ok);
}

TEST_CASE("a failed commit answers unavailable and memory follows the disk") {
    ServiceHarness h;
    h.grant("sub-1", "advertising");
    h.bind("100.64.0.1", "sub-1");
    // Another writer appends behind the service's back: its next commit must
    // refuse rather than fork the chain.
    {
        Ledger other(h.path);
        other.begin();
        Event e;
        e.time = "2024-01-01T00:00:00.000Z";
        e.subscriber = "intruder";
        e.action = Action::grant;
        e.purpose = "analytics";
        e.source = "x";
        e.notice_version = "v";
        e.credential = "x";
        other.append(e);
        other.commit();
    }
    auto o = h.grant("sub-1", "analytics");
    CHECK(o.status == Outcome::Status::unavailable);
    CHECK(h.table() == std::map<std::string, PurposeMask>{{"100.64.0.1", 1}});
    CHECK(h.metrics.render().find("consentd_commit_failures_total 1") != std::string::npos);
}

// Eight clients bind 40 addresses each (to sub-0 and sub-1 in turn) while
// `read` runs in a loop on a thread of its own. Listeners hear a commit once
// it is durable; read(heard) returns true when what it read is ahead of
// heard() (the last commit they heard), i.e. not durable yet. Returns how
// many reads were ahead, having checked that reads ran and that every bind
// was accepted and heard.
int reads_ahead_during_binds(ServiceHarness& h,
                             const std::function<bool(const std::function<uint64_t()>& heard)>& read) {
    struct Heard : TableListener {
        std::atomic<uint64_t> last{0};
        void on_commit(uint64_t seq, const std::vector<TableChange>&, const ChainHashes&) override { last.store(seq); }
        void on_resync(uint64_t, const Digest&, const std::shared_ptr<const Policy>&, const std::string&) override {}
    } heard;
    h.service->add_listener(&heard);
    const std::function<uint64_t()> newest = [&] { return heard.last.load(); };
    constexpr int kClients = 8, kEach = 40;
    std::atomic<bool> done{false};
    std::atomic<int> ahead{0}, reads{0}, refused{0};
    std::thread reader([&] {
        while (!done) {
            if (read(newest)) ++ahead;
            ++reads;
        }
    });
    std::vector<std::thread> clients;
    clients.reserve(kClients);
    for (int c = 0; c < kClients; ++c)
        clients.emplace_back([&, c] {
            for (int i = 0; i < kEach; ++i) {
                const std::string addr = "100.64." + std::to_string(2 + c) + "." + std::to_string(i);
                if (h.run(BindChange{A(addr.c_str()), "sub-" + std::to_string(i % 2), "radius"}).status !=
                    Outcome::Status::ok)
                    ++refused;
            }
        });
    for (auto& t : clients) t.join();
    done = true;
    reader.join();
    h.service->remove_listener(&heard);
    CHECK(refused == 0);
    CHECK(reads > 0);
    CHECK(heard.last.load() == uint64_t{kClients} * kEach);
    return ahead;
}

TEST_CASE("a snapshot waits for the sync: what it shows is durable and every listener has heard it") {
    // The writer commits a batch while the sync thread fsyncs the one
    // before; a snapshot taken between the two must not show the newer
    // batch before it is synced, or a data plane would enforce it (and the
    // publisher, having no commit up to the snapshot's sequence, would read
    // again forever).
    ServiceHarness h;
    CHECK(reads_ahead_during_binds(h, [&](const auto& heard) {
              bool ahead = false;
              h.service->snapshot([&](uint64_t seq, const ConsentState&) { ahead = seq > heard(); });
              return ahead;
          }) == 0);
    CHECK(verify_ledger(h.path).ok);
}

TEST_CASE("a reader that waits for durability never answers a commit before its fsync") {
    // A WAL reader sees a commit as soon as it is written, while the sync
    // thread may still be fsyncing it: the API and the privacy page would
    // show a change a crash could take back. Their readers wait
    // (wait_durable) after reading.
    ServiceHarness h;
    LedgerReader reader(h.path, [&] { h.service->wait_durable(); });
    int turn = 0;
    CHECK(reads_ahead_during_binds(h, [&](const auto& heard) {
              const auto r = reader.subscriber(++turn % 2 ? "sub-1" : "sub-0", 1);
              return r && !r->history.empty() && r->history.back().seq > heard();
          }) == 0);
}

namespace {

SessionChange session(SessionChange::Kind kind, const char* nas, const char* id, const char* subscriber,
                      std::initializer_list<const char*> addresses) {
    SessionChange c;
    c.kind = kind;
    c.session = RadiusSession{"bng", nas, id};
    c.subscriber = subscriber;
    for (const char* a : addresses) c.bindings.push_back(*parse_binding_text(a));
    c.source = "radius:bng";
    return c;
}

int64_t count(const std::string& path, const std::string& sql) {
    Database db(path, Database::Mode::read_only);
    auto st = db.prepare(sql);
    REQUIRE(st.step());
    return st.int64(0);
}

int64_t candidates(const std::string& path) { return count(path, "SELECT count(*) FROM radius_session_bindings"); }

}  // namespace

TEST_CASE("RADIUS sessions: a Stop ends only what its session still holds, and its candidates go") {
    using K = SessionChange::Kind;
    ServiceHarness h;
    auto o = h.run(session(K::bind, "nas-1", "s1", "sub-a", {"100.64.0.1"}));
    CHECK(o.bound == 1);
    // The address goes to another subscriber's session: s1's row stays, no longer matching.
    o = h.run(session(K::bind, "nas-1", "s2", "sub-b", {"100.64.0.1"}));
    CHECK(o.bound == 1);
    CHECK(o.unbound == 1);
    CHECK(candidates(h.path) == 2);
    // An Interim-Update of s2 repeating the Start records nothing.
    CHECK(h.run(session(K::bind, "nas-1", "s2", "sub-b", {"100.64.0.1"})).events == 0);

    // s1's late Stop changes nothing, and takes its stale row with it.
    o = h.run(session(K::release, "nas-1", "s1", "sub-a", {}));
    CHECK(o.events == 0);
    CHECK(candidates(h.path) == 1);
    CHECK(h.table().count("100.64.0.1") == 1);

    // A binding rebound through the API since is no longer the session's.
    h.run(session(K::bind, "nas-1", "s3", "sub-c", {"100.64.0.2"}));
    h.bind("100.64.0.2", "sub-c");
    o = h.run(session(K::release, "nas-1", "s3", "sub-c", {"100.64.0.2"}));
    CHECK(o.events == 0);
    CHECK(h.table().count("100.64.0.2") == 1);

    // The same session on another NAS is another session.
    h.run(session(K::bind, "nas-2", "s2", "sub-d", {"100.64.0.3"}));
    // Accounting-On from nas-1 ends s2 there (the Stop never came), not nas-2's.
    o = h.run(session(K::release_nas, "nas-1", "", "", {}));
    CHECK(o.unbound == 1);
    CHECK(h.table().count("100.64.0.1") == 0);
    CHECK(h.table().count("100.64.0.3") == 1);
    CHECK(candidates(h.path) == 1);  // nas-2's
    // A Stop without addresses finds what the session bound.
    o = h.run(session(K::release, "nas-2", "s2", "sub-d", {}));
    CHECK(o.unbound == 1);
    CHECK(candidates(h.path) == 0);
    // Every event the sessions made is attributed to its session.
    CHECK(count(h.path, "SELECT count(*) FROM radius_events") == 7);
    CHECK(count(h.path,
                "SELECT count(*) FROM radius_events r JOIN events e ON e.seq = r.seq "
                "WHERE e.source = 'radius:bng'") == 7);
    const auto r = verify_ledger(h.path);
    CHECK_MESSAGE(r.ok, r.problem);
}

TEST_CASE("RADIUS sessions: a ledger with the older radius_sessions table is migrated when it opens") {
    using K = SessionChange::Kind;
    ServiceHarness h;
    h.run(session(K::bind, "nas-1", "s1", "sub-a", {"100.64.0.1"}));
    h.run(session(K::bind, "nas-1", "s1", "sub-a", {"100.64.0.4"}));  // an Interim adds an address
    h.run(session(K::bind, "nas-1", "s2", "sub-b", {"100.64.0.5"}));
    h.service.reset();
    {
        // What consentd before 2026-12-05 kept: one row per binding a session
        // made, with the seq of its bind event.
        Database db(h.path, Database::Mode::read_write);
        db.exec(kLegacyRadiusSchema);
        db.exec(
            "INSERT INTO radius_sessions (address, client, nas, session_id, subscriber, seq) "
            "SELECT s.address, s.client, s.nas, s.session_id, b.subscriber, b.seq FROM radius_session_bindings s "
            "JOIN bindings b ON b.address = s.address");
        db.exec("DROP TABLE radius_session_bindings");
        CHECK(schema_difference(db).empty());  // accepted until a consentd opens it
    }
    const auto before = verify_ledger(h.path);
    CHECK_MESSAGE(before.ok, before.problem);
    CHECK(count(h.path, "SELECT count(*) FROM radius_sessions") == 3);

    h.open();
    CHECK(count(h.path, "SELECT count(*) FROM sqlite_schema WHERE name LIKE 'radius_sessions%'") == 0);
    CHECK(candidates(h.path) == 3);
    // s1's Stop, naming none of its addresses, still ends both.
    const auto o = h.run(session(K::release, "nas-1", "s1", "sub-a", {}));
    CHECK(o.unbound == 2);
    CHECK(h.table().count("100.64.0.5") == 1);
    const auto after = verify_ledger(h.path);
    CHECK_MESSAGE(after.ok, after.problem);
}
