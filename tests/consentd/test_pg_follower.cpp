// Followers on PostgreSQL (issue 19, docs/scale-out.md "Followers"): a
// LedgerService that another consentd's writer feeds through the events
// table. Its table must equal the writer's, event for event, and the deltas
// its listeners hear (what its data planes apply) must add up to it; a
// follower started while the writer writes misses nothing and repeats
// nothing; changes are refused not_writer; it takes over when the writer's
// session ends, and the chain goes on.
//
// Fencing (docs/scale-out.md, "Fencing"): a consentd that cannot read the
// ledger for fence_after is out of step, and in step again once it can; a
// writer whose lock another consentd took follows that one.
#include <doctest/doctest.h>

#include <atomic>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "consentd/ledger_service.hpp"
#include "consentd/pg_connection.hpp"
#include "consentd/verify.hpp"
#include "fixture.hpp"
#include "pg_server.hpp"

using namespace optgate;
using namespace optgate::consentd;
using optgate::consentd::test::shared_policy;
using optgate::proto::TableChange;
using test_pg::kPatience;
using test_pg::PgServer;

namespace {

using Table = std::map<std::string, PurposeMask>;

AddressText A(const std::string& text) {
    std::string e;
    return *parse_address_text(text, e);
}

struct Service {
    Metrics metrics;
    std::unique_ptr<LedgerService> service;

    Service(const std::string& db, bool follow, std::chrono::milliseconds fence_after = {}) {
        LedgerService::Options options;
        options.fence_after = fence_after;
        service = std::make_unique<LedgerService>(std::make_unique<Ledger>(db, Ledger::Options{false, {}, follow}),
                                                  shared_policy(), metrics, std::move(options));
        service->start();
    }
    Outcome run(Change c) {
        std::promise<Outcome> p;
        auto f = p.get_future();
        service->submit(std::move(c), "test", [&](Outcome o) { p.set_value(std::move(o)); });
        return f.get();
    }
    Table table() {
        Table t;
        service->snapshot([&](uint64_t, const ConsentState& s) {
            s.for_each_entry([&](const SubscriberKey& k, PurposeMask m) { t[k.addr.to_string()] = m; });
        });
        return t;
    }
};

// A data plane's view: a snapshot, then every delta after it.
struct Mirror : TableListener {
    std::mutex mu;
    Table table;
    uint64_t seq = 0;
    size_t commits = 0;
    int resyncs = 0;

    void attach(LedgerService& s) {
        s.snapshot([&](uint64_t at, const ConsentState& st) {
            std::lock_guard lk(mu);
            seq = at;
            st.for_each_entry([&](const SubscriberKey& k, PurposeMask m) { table[k.addr.to_string()] = m; });
            s.add_listener(this);
        });
    }
    void on_commit(uint64_t at, const std::vector<TableChange>& changes) override {
        std::lock_guard lk(mu);
        if (at <= seq) return;  // in the snapshot already
        seq = at;
        ++commits;
        for (const auto& c : changes) {
            if (c.op == TableChange::Op::erase)
                table.erase(c.key.addr.to_string());
            else
                table[c.key.addr.to_string()] = c.purposes;
        }
    }
    void on_resync(uint64_t, const std::shared_ptr<const Policy>&, const std::string&) override { ++resyncs; }
    Table get() {
        std::lock_guard lk(mu);
        return table;
    }
};

// Random grants, revocations, binds (addresses moving between
// subscribers) and unbinds over a small space, so that most change something.
void write_randomly(Service& w, unsigned seed, int n) {
    std::mt19937 rng(seed);
    for (int i = 0; i < n; ++i) {
        const std::string sub = "sub-" + std::to_string(rng() % 40);
        const std::string addr = "100.64.9." + std::to_string(1 + rng() % 60);
        Outcome o;
        switch (rng() % 4) {
        case 0: o = w.run(ConsentChange{sub, "advertising", true, "portal", std::string("v1")}); break;
        case 1: o = w.run(ConsentChange{sub, "advertising", false, "portal", std::string("v1")}); break;
        case 2: o = w.run(BindChange{A(addr), sub, "radius"}); break;
        default: o = w.run(UnbindChange{A(addr), std::nullopt, "radius"}); break;
        }
        REQUIRE((o.status == Outcome::Status::ok || o.status == Outcome::Status::not_found));
    }
}

template <class Pred>
bool eventually(Pred pred) {
    const auto deadline = std::chrono::steady_clock::now() + kPatience;
    while (!pred()) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
}

}  // namespace

TEST_CASE("a follower started mid-stream holds the writer's table, its deltas add up, and it takes over") {
    PgServer pg;
    const auto db = pg.new_database("ledger");
    auto writer = std::make_unique<Service>(db, false);
    CHECK_FALSE(writer->service->following());
    write_randomly(*writer, 1, 200);

    // Started while two clients write: its first read and what it follows
    // after must meet without a gap or a repeat.
    std::thread t1([&] { write_randomly(*writer, 2, 300); });
    std::thread t2([&] { write_randomly(*writer, 3, 300); });
    Service follower(db, true);
    CHECK(follower.service->following());
    Mirror mirror;
    mirror.attach(*follower.service);
    t1.join();
    t2.join();

    const uint64_t head = writer->service->head_seq();
    REQUIRE(eventually([&] { return follower.service->head_seq() == head; }));
    const Table expected = writer->table();
    CHECK(expected.size() > 10);
    CHECK(follower.table() == expected);
    REQUIRE(eventually([&] { return mirror.get() == expected; }));
    CHECK(mirror.commits > 0);
    CHECK(mirror.resyncs == 0);

    // Changes at the follower are refused and record nothing.
    const auto refused = follower.run(ConsentChange{"sub-1", "advertising", true, "portal", std::string("v1")});
    CHECK(refused.status == Outcome::Status::unavailable);
    CHECK(refused.code == "not_writer");
    CHECK(follower.run(BindChange{A("100.64.9.200"), "sub-1", "radius"}).code == "not_writer");
    CHECK(writer->service->head_seq() == head);

    // The writer goes (its session, and the lock with it): the follower
    // takes over from the same head, its listeners hearing on.
    writer.reset();
    REQUIRE(eventually([&] { return !follower.service->following(); }));
    CHECK(follower.service->head_seq() == head);
    const auto b = follower.run(BindChange{A("100.64.9.200"), "sub-1", "radius"});
    REQUIRE(b.status == Outcome::Status::ok);
    CHECK(b.first_seq == head + 1);
    write_randomly(follower, 4, 50);
    CHECK(eventually([&] { return mirror.get() == follower.table(); }));
    CHECK(mirror.resyncs == 0);
    const auto r = verify_ledger(db);
    CHECK_MESSAGE(r.ok, r.problem);
    CHECK(r.events == follower.service->head_seq());
}

TEST_CASE("fencing: out of step while the ledger cannot be read; a writer whose lock was taken follows the new one") {
    PgServer pg;
    const auto db = pg.new_database("ledger");
    const std::string conninfo = db.substr(std::string_view("postgresql:").size());
    // A pings every 500 ms when idle, B reads at least every 200 ms.
    auto a = std::make_unique<Service>(db, true, std::chrono::milliseconds(2000));
    REQUIRE_FALSE(a->service->following());
    Service b(db, true, std::chrono::milliseconds(600));
    REQUIRE(b.service->following());
    a->service->advertise("consentd A");
    b.service->advertise("consentd B");
    write_randomly(*a, 5, 60);
    REQUIRE(eventually([&] { return b.service->head_seq() == a->service->head_seq(); }));
    CHECK(a->service->in_step());
    CHECK(b.service->in_step());

    // A long import is progress, not a cut: the writer's session answers
    // every few thousand statements, the follower reads the events batch
    // by batch; neither goes out of step meanwhile.
    {
        auto records = std::make_shared<std::vector<ImportRecord>>();
        for (int i = 0; i < 50000; ++i)  // 100.65.0.0 to 100.65.199.249
            records->push_back({size_t(i + 1),
                                "imp-" + std::to_string(i),
                                {A("100.65." + std::to_string(i / 250) + "." + std::to_string(i % 250))},
                                {"advertising"},
                                "import",
                                std::string("v1")});
        std::atomic<bool> done{false};
        std::atomic<int> samples{0}, out_of_step{0};
        std::thread sampler([&] {
            while (!done) {
                ++samples;
                if (!a->service->in_step() || !b.service->in_step()) ++out_of_step;
                std::this_thread::sleep_for(std::chrono::milliseconds(20));
            }
        });
        const auto t0 = std::chrono::steady_clock::now();
        const auto o = a->run(ImportChange{records, a->service->policy()});
        REQUIRE(eventually([&] { return b.service->head_seq() == a->service->head_seq(); }));
        const auto took = std::chrono::steady_clock::now() - t0;
        done = true;
        sampler.join();
        REQUIRE(o.status == Outcome::Status::ok);
        CHECK(out_of_step == 0);
        // Shorter than A's fence_after, it would prove nothing: say so.
        WARN_MESSAGE(took > std::chrono::milliseconds(2000), "the import took only ",
                     std::chrono::duration<double>(took).count(), " s, ", samples.load(), " samples");
    }

    // PostgreSQL stops answering their reads of the events (a lock held
    // elsewhere, as good as a cut): both go out of step, and come back.
    {
        PgConnection blocker(conninfo);
        blocker.exec("BEGIN; LOCK TABLE events IN ACCESS EXCLUSIVE MODE");
        CHECK(eventually([&] { return !a->service->in_step() && !b.service->in_step(); }));
        blocker.exec("ROLLBACK");
    }
    CHECK(eventually([&] { return a->service->in_step() && b.service->in_step(); }));

    // A's session ends and B takes the lock (A may take it back first: end
    // the holder's session until B holds it).
    PgConnection admin(conninfo);
    const auto holder = [&] {
        const auto r = admin.query(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted");
        return r.rows() ? std::string(r.text(0, 0)) : std::string();
    };
    for (int round = 0; holder() != "consentd B"; ++round) {
        REQUIRE(round < 20);
        admin.exec("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted");
        REQUIRE(eventually([&] { return !holder().empty(); }));
    }
    REQUIRE(eventually([&] { return !b.service->following(); }));
    const auto g = b.run(ConsentChange{"sub-77", "advertising", true, "portal", std::string("v1")});
    REQUIRE(g.status == Outcome::Status::ok);
    REQUIRE(b.run(BindChange{A("100.64.9.77"), "sub-77", "radius"}).status == Outcome::Status::ok);

    // A notices at its next ping and follows B: B's events in its table,
    // changes refused, in step.
    REQUIRE(eventually([&] { return a->service->following(); }));
    REQUIRE(eventually([&] { return a->service->head_seq() == b.service->head_seq(); }));
    CHECK(a->table() == b.table());
    CHECK(a->table().count("100.64.9.77") == 1);
    CHECK(a->run(ConsentChange{"sub-78", "advertising", true, "portal", std::string("v1")}).code == "not_writer");
    CHECK(eventually([&] { return a->service->in_step(); }));
    const auto r = verify_ledger(db);
    CHECK_MESSAGE(r.ok, r.problem);
    CHECK(r.events == b.service->head_seq());
}
