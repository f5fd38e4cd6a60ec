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
#include <signal.h>

#include <atomic>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "consentd/ledger_service.hpp"
#include "consentd/peer_link.hpp"
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

    Service(const std::string& db, bool follow, std::chrono::milliseconds fence_after = {},
            std::chrono::milliseconds stop_grace = LedgerService::Options{}.stop_grace) {
        LedgerService::Options options;
        options.fence_after = fence_after;
        options.stop_grace = stop_grace;
        service = std::make_unique<LedgerService>(std::make_unique<Ledger>(db, Ledger::Options{false, {}, follow}),
                                                  shared_policy(), metrics, std::move(options));
        service->start();
    }
    // Every change is answered (a 503 if the ledger cannot be reached):
    // bounded, so that a change left unanswered fails the test and does not
    // hang it; five patiences, for the 50,000-record import under ASan on a
    // busy machine. The promise is shared with the callback, which may
    // still come after a failed wait.
    Outcome run(Change c) {
        auto p = std::make_shared<std::promise<Outcome>>();
        auto f = p->get_future();
        service->submit(std::move(c), "test", [p](Outcome o) { p->set_value(std::move(o)); });
        REQUIRE_MESSAGE(f.wait_for(5 * kPatience) == std::future_status::ready, "a change was not answered");
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
    ChainHashes chain;  // of the events after the snapshot, as heard

    void on_commit(uint64_t at, const std::vector<TableChange>& changes, const ChainHashes& hashes) override {
        std::lock_guard lk(mu);
        if (at <= seq) return;  // in the snapshot already
        seq = at;
        chain.insert(chain.end(), hashes.begin(), hashes.end());
        ++commits;
        for (const auto& c : changes) {
            if (c.op == TableChange::Op::erase)
                table.erase(c.key.addr.to_string());
            else
                table[c.key.addr.to_string()] = c.purposes;
        }
    }
    void on_resync(uint64_t, const Digest&, const std::shared_ptr<const Policy>&, const std::string&) override {
        ++resyncs;
    }
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
bool comes_true(Pred pred) {
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
    // The mirror outlives the follower that calls it (declared first).
    Mirror mirror;
    std::thread t1([&] { write_randomly(*writer, 2, 300); });
    std::thread t2([&] { write_randomly(*writer, 3, 300); });
    Service follower(db, true);
    CHECK(follower.service->following());
    mirror.attach(*follower.service);
    t1.join();
    t2.join();
    // On a busy machine the two clients may be done before the mirror
    // attached: a fresh subscriber's grant and address after it, so that
    // the mirror always has deltas to add up.
    REQUIRE(writer->run(ConsentChange{"sub-mirror", "advertising", true, "portal", std::string("v1")}).status ==
            Outcome::Status::ok);
    REQUIRE(writer->run(BindChange{A("100.64.9.250"), "sub-mirror", "radius"}).status == Outcome::Status::ok);

    const uint64_t head = writer->service->head_seq();
    REQUIRE(comes_true([&] { return follower.service->head_seq() == head; }));
    const Table expected = writer->table();
    CHECK(expected.size() > 10);
    CHECK(follower.table() == expected);
    REQUIRE(comes_true([&] { return mirror.get() == expected; }));
    CHECK(expected.count("100.64.9.250") == 1);
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
    REQUIRE(comes_true([&] { return !follower.service->following(); }));
    CHECK(follower.service->head_seq() == head);
    const auto b = follower.run(BindChange{A("100.64.9.200"), "sub-1", "radius"});
    REQUIRE(b.status == Outcome::Status::ok);
    CHECK(b.first_seq == head + 1);
    write_randomly(follower, 4, 50);
    CHECK(comes_true([&] { return mirror.get() == follower.table(); }));
    CHECK(mirror.resyncs == 0);
    const auto r = verify_ledger(db);
    CHECK_MESSAGE(r.ok, r.problem);
    CHECK(r.events == follower.service->head_seq());
    // The chain hashes it heard, following and then writing, are the
    // ledger's for every event after its first read (what its data planes'
    // resume tokens name: docs/protocol.md).
    std::vector<std::string> heard, stored;
    uint64_t first = 0;
    {
        std::lock_guard lk(mirror.mu);
        for (const auto& h : mirror.chain) heard.push_back(to_hex(h));
        first = mirror.seq - heard.size();
    }
    Database pgdb(db, Database::Mode::read_only);
    auto st = pgdb.prepare("SELECT hash FROM events WHERE seq > " + std::to_string(first) + " ORDER BY seq");
    while (st.step()) stored.emplace_back(st.text(0));
    CHECK(heard.size() > 50);
    CHECK(heard == stored);
}

TEST_CASE("fencing: out of step while the ledger cannot be read; a writer whose lock was taken follows the new one") {
    PgServer pg;
    const auto db = pg.new_database("ledger");
    const std::string conninfo = db.substr(std::string_view("postgresql:").size());
    // A pings every 750 ms when idle, B reads at least every 200 ms; 3 s
    // leaves room for a busy machine's stalls.
    auto a = std::make_unique<Service>(db, true, std::chrono::milliseconds(3000));
    REQUIRE_FALSE(a->service->following());
    Service b(db, true, std::chrono::milliseconds(3000));
    REQUIRE(b.service->following());
    a->service->advertise("consentd A");
    b.service->advertise("consentd B");
    write_randomly(*a, 5, 60);
    REQUIRE(comes_true([&] { return b.service->head_seq() == a->service->head_seq(); }));
    CHECK(comes_true([&] { return a->service->in_step() && b.service->in_step(); }));

    // PostgreSQL stops answering their reads of the events (a lock held
    // elsewhere, as good as a cut): both go out of step, and come back.
    {
        PgConnection blocker(conninfo);
        blocker.exec("BEGIN; LOCK TABLE events IN ACCESS EXCLUSIVE MODE");
        CHECK(comes_true([&] { return !a->service->in_step() && !b.service->in_step(); }));
        blocker.exec("ROLLBACK");
    }
    CHECK(comes_true([&] { return a->service->in_step() && b.service->in_step(); }));

    // A's session ends and B takes the lock (A may take it back first: end
    // the holder's session until B holds it). pg_terminate_backend waits (up
    // to its timeout, in ms) until the backend has gone, and the lock with
    // it: without the wait, the next round could still see the old holder
    // on a busy machine and spend its 20 rounds in a few milliseconds.
    PgConnection admin(conninfo);
    const auto holder = [&] {
        const auto r = admin.query(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted");
        return r.rows() ? std::string(r.text(0, 0)) : std::string();
    };
    const auto patience_ms = std::to_string(std::chrono::milliseconds(kPatience).count());
    for (int round = 0; holder() != "consentd B"; ++round) {
        REQUIRE(round < 20);
        const auto ended = admin.query("SELECT bool_and(pg_terminate_backend(pid, " + patience_ms +
                                       ")) FROM pg_locks WHERE locktype = 'advisory' AND granted");
        REQUIRE(ended.text(0, 0) != std::string_view("f"));  // NULL: nobody held it
        REQUIRE(comes_true([&] { return !holder().empty(); }));
    }
    REQUIRE(comes_true([&] { return !b.service->following(); }));
    const auto g = b.run(ConsentChange{"sub-77", "advertising", true, "portal", std::string("v1")});
    REQUIRE(g.status == Outcome::Status::ok);
    REQUIRE(b.run(BindChange{A("100.64.9.77"), "sub-77", "radius"}).status == Outcome::Status::ok);

    // A notices at its next ping and follows B: B's events in its table,
    // changes refused, in step.
    REQUIRE(comes_true([&] { return a->service->following(); }));
    REQUIRE(comes_true([&] { return a->service->head_seq() == b.service->head_seq(); }));
    CHECK(a->table() == b.table());
    CHECK(a->table().count("100.64.9.77") == 1);
    CHECK(a->run(ConsentChange{"sub-78", "advertising", true, "portal", std::string("v1")}).code == "not_writer");
    CHECK(comes_true([&] { return a->service->in_step(); }));
    const auto r = verify_ledger(db);
    CHECK_MESSAGE(r.ok, r.problem);
    CHECK(r.events == b.service->head_seq());
}

TEST_CASE("fencing: a follower back from a cut is in step only once what it missed is applied") {
    // In step means that what the follower serves is that recent: its
    // data planes hear the events it missed before it says so (and before
    // /healthz answers 200), and an answer held up during the cut, asked
    // before it, counts from when it was asked. Its session's backend is
    // stopped (SIGSTOP: a network that stops passing bytes) while the
    // writer records changes.
    PgServer pg;
    const auto db = pg.new_database("ledger");
    const std::string conninfo = db.substr(std::string_view("postgresql:").size());
    // Whether the follower said it was in step as each delta reached its
    // listeners. Declared before the services: it outlives their threads.
    struct Witness : TableListener {
        const LedgerService* follower = nullptr;
        std::mutex mu;
        std::vector<std::pair<uint64_t, bool>> heard;  // (seq, in step then)
        void on_commit(uint64_t at, const std::vector<TableChange>&, const ChainHashes&) override {
            std::lock_guard lk(mu);
            heard.emplace_back(at, follower->in_step());
        }
        void on_resync(uint64_t, const Digest&, const std::shared_ptr<const Policy>&, const std::string&) override {}
    } witness;
    Service a(db, true, std::chrono::milliseconds(3000));
    REQUIRE_FALSE(a.service->following());
    Service b(db, true, std::chrono::milliseconds(3000));
    REQUIRE(b.service->following());
    b.service->advertise("consentd B");
    witness.follower = b.service.get();
    b.service->add_listener(&witness);
    write_randomly(a, 21, 20);
    REQUIRE(comes_true([&] { return b.service->head_seq() == a.service->head_seq() && b.service->in_step(); }));

    PgConnection admin(conninfo);
    std::vector<std::string> backends;
    REQUIRE(comes_true([&] {
        const auto r = admin.query("SELECT pid FROM pg_stat_activity WHERE application_name = 'consentd B'");
        backends.clear();
        for (int i = 0; i < r.rows(); ++i) backends.emplace_back(r.text(i, 0));
        return !backends.empty();
    }));
    const auto signal_all = [&](int sig) {
        for (const auto& pid : backends) REQUIRE(::kill(std::stoi(pid), sig) == 0);
    };
    const uint64_t before = a.service->head_seq();
    signal_all(SIGSTOP);
    bool continued = false;
    try {
        write_randomly(a, 22, 20);
        REQUIRE(a.service->head_seq() > before);
        REQUIRE(comes_true([&] { return !b.service->in_step(); }));
        signal_all(SIGCONT);
        continued = true;
    } catch (...) {
        if (!continued) signal_all(SIGCONT);
        throw;
    }
    const uint64_t missed_until = a.service->head_seq();
    REQUIRE(comes_true([&] { return b.service->head_seq() == missed_until && b.service->in_step(); }));
    std::lock_guard lk(witness.mu);
    size_t missed = 0;
    for (const auto& h : witness.heard)
        if (h.first > before) {
            ++missed;
            CHECK_MESSAGE(!h.second, "event ", h.first,
                          " reached the data planes after the follower said it was in step");
        }
    CHECK(missed > 0);
    CHECK(b.table() == a.table());
}

TEST_CASE("stop() ends a writer and a follower blocked on a ledger database that does not answer") {
    PgServer pg;
    const auto db = pg.new_database("ledger");
    const std::string conninfo = db.substr(std::string_view("postgresql:").size());
    Service a(db, true, {}, std::chrono::milliseconds(1000));
    REQUIRE_FALSE(a.service->following());
    Service b(db, true);
    REQUIRE(b.service->following());
    write_randomly(a, 11, 20);
    REQUIRE(comes_true([&] { return b.service->head_seq() == a.service->head_seq(); }));

    // The server stops answering both: the writer's next change and the
    // follower's next read wait on a lock that is not released.
    PgConnection blocker(conninfo);
    blocker.exec("BEGIN; LOCK TABLE events IN ACCESS EXCLUSIVE MODE");
    auto answered = std::make_shared<std::promise<Outcome>>();  // a's stop may answer after a failed check
    auto outcome = answered->get_future();
    a.service->submit(ConsentChange{"sub-1", "advertising", true, "portal", std::string("v1")}, "test",
                      [answered](Outcome o) { answered->set_value(std::move(o)); });
    PgConnection admin(conninfo);
    REQUIRE(comes_true([&] {
        const auto r = admin.query(
            "SELECT count(DISTINCT pid) FROM pg_locks WHERE NOT granted AND relation = 'events'::regclass");
        return r.int64(0, 0) >= 2;
    }));

    auto stop_a = std::async(std::launch::async, [&] { a.service->stop(); });
    auto stop_b = std::async(std::launch::async, [&] { b.service->stop(); });
    const bool a_stopped = stop_a.wait_for(kPatience) == std::future_status::ready;
    const bool b_stopped = stop_b.wait_for(kPatience) == std::future_status::ready;
    blocker.exec("ROLLBACK");  // what did not stop can now (the test must end either way)
    stop_a.get();
    stop_b.get();
    CHECK(a_stopped);
    CHECK(b_stopped);
    // The change in flight was answered 503, and what the answer says is
    // what the ledger holds once the writer's old session is gone (its
    // advisory lock with it): "nothing was recorded" if the server never
    // had its COMMIT, "may have been recorded" if it had.
    REQUIRE(outcome.wait_for(kPatience) == std::future_status::ready);
    const auto o = outcome.get();
    CHECK(o.status == Outcome::Status::unavailable);
    CHECK(o.code == "ledger_unavailable");
    const bool in_doubt = o.message.find("may have been recorded") != std::string::npos;
    CHECK_MESSAGE((in_doubt || o.message.find("nothing was recorded") != std::string::npos), o.message);
    REQUIRE(comes_true(
        [&] { return admin.query("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").int64(0, 0) == 0; }));
    const uint64_t head = b.service->head_seq();
    const auto r = verify_ledger(db);
    CHECK_MESSAGE(r.ok, r.problem);
    if (in_doubt)
        CHECK((r.events == head || r.events == head + 1));
    else
        CHECK(r.events == head);
}

TEST_CASE("peer link: payloads split under PostgreSQL's limit and parse back; malformed ones are not ours") {
    std::vector<std::string> lines;
    lines.reserve(201);
    for (int i = 0; i < 200; ++i)
        lines.push_back("+ " + std::to_string(1000 + i) + " edge-" + std::to_string(i) + " tls CN=edge-" +
                        std::to_string(i) + " 100.64.0." + std::to_string(i % 250) + ":4711");
    lines.push_back("- 0 edge-gone");
    const std::string header = "optgate-dataplanes 1 0123456789abcdef consentd http://10.0.0.5:8080";
    const auto payloads = PeerLink::payloads(header, lines);
    CHECK(payloads.size() > 1);
    std::vector<PeerLink::Report> got;
    for (const auto& p : payloads) {
        CHECK(p.size() <= PeerLink::kMaxPayload);
        REQUIRE(PeerLink::parse(p, got));
    }
    REQUIRE(got.size() == 201);
    CHECK(got[7].instance_id == "0123456789abcdef");
    CHECK(got[7].instance == "consentd http://10.0.0.5:8080");
    CHECK(got[7].name == "edge-7");
    CHECK(got[7].address == "tls CN=edge-7 100.64.0.7:4711");
    CHECK(got[7].applied_seq == 1007);
    CHECK_FALSE(got[7].gone);
    CHECK(got[200].gone);
    CHECK(got[200].name == "edge-gone");

    for (const char* bad : {"", "hello", "optgate-dataplanes 1 id\n", "optgate-dataplanes 1 id name\n+ x edge a\n",
                            "optgate-dataplanes 1 id name\n* 1 edge a\n", "optgate-dataplanes 1 id name\n+ 1 edge a",
                            "optgate-dataplanes 1 id name\n- 0 two words\n", "optgate-dataplanes 2 id name\n"}) {
        std::vector<PeerLink::Report> none;
        CHECK_MESSAGE(!PeerLink::parse(bad, none), bad);
    }
}

TEST_CASE(
    "peer link: each consentd hears the others' data planes, not its own; gone, and everything again each second") {
    PgServer pg;
    const auto db = pg.new_database("ledger");
    const std::string conninfo = db.substr(std::string_view("postgresql:").size());
    std::mutex mu;
    std::map<std::string, PeerLink::Report> heard_by_two;  // by name
    std::vector<std::string> heard_by_one;
    PeerLink one(conninfo, "consentd one", [&](const PeerLink::Report& r) {
        std::lock_guard lk(mu);
        heard_by_one.push_back(r.name);
    });
    PeerLink two(conninfo, "consentd two", [&](const PeerLink::Report& r) {
        std::lock_guard lk(mu);
        if (r.gone)
            heard_by_two.erase(r.name);
        else
            heard_by_two[r.name] = r;
    });
    one.start();
    two.start();
    const auto two_has = [&](const std::string& name, uint64_t seq) {
        std::lock_guard lk(mu);
        const auto it = heard_by_two.find(name);
        return it != heard_by_two.end() && it->second.applied_seq == seq;
    };
    // Heard however late the other began to listen: everything goes out each second.
    one.applied("edge-1", "unix pid=1 uid=0", 5);
    REQUIRE(comes_true([&] { return two_has("edge-1", 5); }));
    {
        std::lock_guard lk(mu);
        CHECK(heard_by_two["edge-1"].instance == "consentd one");
        CHECK(heard_by_two["edge-1"].address == "unix pid=1 uid=0");
    }
    one.applied("edge-1", "unix pid=1 uid=0", 9);
    one.applied("edge-2", "100.64.0.2:4000", 9);
    REQUIRE(comes_true([&] { return two_has("edge-1", 9) && two_has("edge-2", 9); }));
    one.gone("edge-1");
    REQUIRE(comes_true([&] {
        std::lock_guard lk(mu);
        return heard_by_two.count("edge-1") == 0;
    }));
    CHECK(two_has("edge-2", 9));
    one.stop();
    two.stop();
    std::lock_guard lk(mu);
    CHECK(heard_by_one.empty());  // its own notifications are not reports
}

namespace {

std::shared_ptr<std::vector<ImportRecord>> import_records(int n) {  // n <= 50,000
    auto records = std::make_shared<std::vector<ImportRecord>>();
    for (int i = 0; i < n; ++i)
        records->push_back({size_t(i + 1),
                            "imp-" + std::to_string(i),
                            {A("100.65." + std::to_string(i / 250) + "." + std::to_string(i % 250))},
                            {"advertising"},
                            "import",
                            std::string("v1")});
    return records;
}

}  // namespace

TEST_CASE("fencing: a long import is progress, not a cut") {
    // The writer's session answers every few thousand statements, the
    // follower reads the events 4,096 at a time: neither goes out of step
    // during an import several times longer than fence_after. fence_after
    // is a quarter of what the same import took just before, with a writer
    // and a follower as below but no fencing, until the follower had it
    // all: a busy (or ASan) machine scales both, and the follower's work
    // weighs on both alike.
    PgServer pg;
    const auto records = import_records(25000);
    std::chrono::steady_clock::duration calibrated{};
    {
        const auto cal = pg.new_database("calibration");
        Service w(cal, true);
        Service f(cal, true);
        REQUIRE(f.service->following());
        const auto t0 = std::chrono::steady_clock::now();
        REQUIRE(w.run(ImportChange{records, w.service->policy()}).status == Outcome::Status::ok);
        REQUIRE(comes_true([&] { return f.service->head_seq() == w.service->head_seq(); }));
        calibrated = std::chrono::steady_clock::now() - t0;
    }
    const auto fence = std::max(std::chrono::milliseconds(500),
                                std::chrono::duration_cast<std::chrono::milliseconds>(calibrated / 4));
    const auto db = pg.new_database("ledger");
    Service a(db, true, fence);
    Service b(db, true, fence);
    REQUIRE_FALSE(a.service->following());
    REQUIRE(b.service->following());
    REQUIRE(comes_true([&] { return a.service->in_step() && b.service->in_step(); }));
    std::atomic<bool> done{false};
    std::atomic<int> samples{0}, writer_out{0}, follower_out{0};  // samples out of step
    std::thread sampler([&] {
        while (!done) {
            ++samples;
            if (!a.service->in_step()) ++writer_out;
            if (!b.service->in_step()) ++follower_out;
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
    });
    const auto t0 = std::chrono::steady_clock::now();
    const auto o = a.run(ImportChange{records, a.service->policy()});
    REQUIRE(comes_true([&] { return b.service->head_seq() == a.service->head_seq(); }));
    const auto took = std::chrono::steady_clock::now() - t0;
    done = true;
    sampler.join();
    REQUIRE(o.status == Outcome::Status::ok);
    CHECK(b.table() == a.table());
    CHECK(writer_out == 0);
    CHECK(follower_out == 0);
    // Not longer than fence_after, it would prove nothing: say so.
    WARN_MESSAGE(took > fence, "the import took ", std::chrono::duration<double>(took).count(), " s, fence_after ",
                 fence.count(), " ms, ", samples.load(), " samples");
}
