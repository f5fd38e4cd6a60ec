// The ledger on PostgreSQL (issue 19, docs/scale-out.md) against a real
// PostgreSQL 15 the test starts itself: the same chain and derived rows as
// on SQLite, one writer per ledger, the append-only rule, the schema check
// catching what was planted, a server restart under the writer, and the
// copy of an SQLite ledger into PostgreSQL.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "consentd/copy_ledger.hpp"
#include "consentd/ledger.hpp"
#include "consentd/policy_history.hpp"
#include "consentd/schema.hpp"
#include "consentd/verify.hpp"
#include "fixture.hpp"
#include "ledger_history.hpp"
#include "pg_server.hpp"

using namespace optgate::consentd;
using optgate::consentd::test::append_all;
using optgate::consentd::test::make;
using optgate::consentd::test::sample_history;
using test_pg::PgServer;

namespace {

int64_t count(PgConnection& c, const std::string& sql) { return c.query(sql).int64(0, 0); }

std::string conninfo_of(const std::string& locator) { return postgresql_conninfo(locator); }

// The ledger opened once the writer's lock is free. The server frees it when
// the backend of the session that held it sees that session close, a moment
// after the client closed it (on a busy machine, a longer moment).
std::unique_ptr<Ledger> open_when_free(const std::string& db) {
    const auto deadline = std::chrono::steady_clock::now() + test_pg::kPatience;
    for (;;) {
        try {
            return std::make_unique<Ledger>(db);
        } catch (const std::runtime_error& e) {
            REQUIRE_MESSAGE(std::chrono::steady_clock::now() < deadline, e.what());
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
    }
}

}  // namespace

TEST_CASE("a ledger on PostgreSQL: the chain, the derived rows, a rollback, reopening, verify-ledger") {
    PgServer pg;
    const auto db = pg.new_database("ledger");
    std::string head;
    {
        Ledger l(db);
        CHECK(l.db().postgresql());
        CHECK(l.head_seq() == 0);
        sample_history(l);
        CHECK(l.head_seq() == 7);
        head = l.head_hash();
        // A transaction that fails leaves nothing and the head where it was.
        l.begin();
        auto e = make("sub-3", Action::grant, "advertising");
        l.append(e);
        l.rollback();
        CHECK(l.head_seq() == 7);
        CHECK(l.head_hash() == head);
        std::vector<std::string> bindings;
        l.for_each_binding(
            [&](std::string_view a, std::string_view s) { bindings.push_back(std::string(a) + "=" + std::string(s)); });
        std::sort(bindings.begin(), bindings.end());
        CHECK(bindings == std::vector<std::string>{"100.64.0.1=sub-2", "2001:db8:1000:1::/64=sub-2"});
        std::vector<std::string> consents;
        l.for_each_consent(
            [&](std::string_view s, std::string_view p) { consents.push_back(std::string(s) + ":" + std::string(p)); });
        CHECK(consents == std::vector<std::string>{"sub-1:advertising"});
    }
    auto reopened = open_when_free(db);  // the lock went with the first one's session
    Ledger& again = *reopened;
    CHECK(again.head_seq() == 7);
    CHECK(again.head_hash() == head);
    append_all(again, {make("sub-3", Action::grant, "advertising")});
    const auto r = verify_ledger(db);
    CHECK_MESSAGE(r.ok, r.problem);
    CHECK(r.events == 8);
    CHECK(r.consents == 2);
    CHECK(r.bindings == 2);
    // The derived tables are checked against the events: an edit is found.
    PgConnection c(conninfo_of(db));
    c.exec("UPDATE bindings SET subscriber = 'mallory' WHERE address = '100.64.0.1'");
    const auto edited = verify_ledger(db);
    CHECK_FALSE(edited.ok);
    CHECK(edited.damage == Damage::derived);
}

TEST_CASE("one writer per PostgreSQL ledger: a second is refused until the first's session ends") {
    PgServer pg;
    const auto db = pg.new_database("ledger");
    auto first = std::make_unique<Ledger>(db);
    try {
        Ledger second(db);
        FAIL("a second writer was let in");
    } catch (const std::runtime_error& e) {
        CHECK(std::string(e.what()).find("another consentd is using") != std::string::npos);
    }
    first.reset();
    CHECK(open_when_free(db)->head_seq() == 0);
}

TEST_CASE("on PostgreSQL the events and the policy history are append-only, TRUNCATE included") {
    PgServer pg;
    const auto db = pg.new_database("ledger");
    {
        Ledger l(db);
        sample_history(l);
        l.record_policy(std::string("version: 1\n"), ReceiptIssuer{});
    }
    PgConnection c(conninfo_of(db));
    for (const char* sql :
         {"UPDATE events SET subscriber = 'x' WHERE seq = 1", "DELETE FROM events WHERE seq = 7", "TRUNCATE events",
          "UPDATE policies SET text = 'x'", "DELETE FROM policies", "TRUNCATE policies"}) {
        CAPTURE(sql);
        try {
            c.exec(sql);
            FAIL("it was let through");
        } catch (const PgError& e) {
            CHECK(std::string(e.what()).find("append-only") != std::string::npos);
        }
    }
    CHECK(count(c, "SELECT count(*) FROM events") == 7);
    CHECK(count(c, "SELECT count(*) FROM policies") == 1);
}

TEST_CASE("the PostgreSQL schema check names what was planted, dropped or redefined") {
    PgServer pg;
    const auto db = pg.new_database("ledger");
    {
        Ledger l(db);
        sample_history(l);
    }
    {
        Database d(db, Database::Mode::read_only);
        CHECK(schema_difference(d).empty());
    }
    PgConnection c(conninfo_of(db));
    struct Case {
        const char* plant;
        const char* undo;
        const char* named;
    };
    const Case cases[] = {
        {"CREATE FUNCTION keep() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$; "
         "CREATE TRIGGER keep_consents BEFORE DELETE ON consents FOR EACH ROW EXECUTE FUNCTION keep()",
         "DROP TRIGGER keep_consents ON consents; DROP FUNCTION keep()", "keep"},
        {"CREATE RULE no_revoke AS ON DELETE TO consents DO INSTEAD NOTHING", "DROP RULE no_revoke ON consents",
         "no_revoke"},
        {"CREATE VIEW everyone AS SELECT subscriber FROM consents", "DROP VIEW everyone", "everyone"},
        {"DROP TRIGGER events_append_only ON events",
         "CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events FOR EACH ROW EXECUTE FUNCTION "
         "optgate_append_only()",
         "events_append_only"},
        {"ALTER TABLE bindings ALTER COLUMN credential DROP NOT NULL",
         "ALTER TABLE bindings ALTER COLUMN credential SET NOT NULL", "bindings"},
        {"CREATE OR REPLACE FUNCTION optgate_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN "
         "NEW; END $$",
         "CREATE OR REPLACE FUNCTION optgate_append_only() RETURNS trigger LANGUAGE plpgsql AS $$\n"
         "BEGIN RAISE EXCEPTION 'the % table is append-only', TG_TABLE_NAME; END $$",
         "optgate_append_only"},
    };
    for (const auto& k : cases) {
        CAPTURE(k.plant);
        c.exec(k.plant);
        {
            Database d(db, Database::Mode::read_only);
            const auto why = schema_difference(d);
            CHECK(why.find(k.named) != std::string::npos);
        }
        const auto r = verify_ledger(db);
        CHECK_FALSE(r.ok);
        c.exec(k.undo);
        Database d(db, Database::Mode::read_only);
        CHECK_MESSAGE(schema_difference(d).empty(), schema_difference(d));
    }
}

TEST_CASE("PostgreSQL restarted under the writer: the transaction fails, the next one reconnects and goes on") {
    PgServer pg;
    const auto db = pg.new_database("ledger");
    Ledger l(db);
    sample_history(l);
    const auto session = l.db().session();
    pg.stop();
    bool failed = false;
    try {
        append_all(l, {make("sub-4", Action::grant, "advertising")});
    } catch (const std::exception&) {
        failed = true;
        l.rollback();
    }
    CHECK(failed);
    CHECK(l.head_seq() == 7);
    pg.start();
    // The lock went with the old session; begin() takes it again.
    append_all(l, {make("sub-4", Action::grant, "advertising")});
    CHECK(l.db().session() == session + 1);
    CHECK(l.head_seq() == 8);
    // Still the only writer.
    CHECK_THROWS_WITH_AS(Ledger{db}, doctest::Contains("another consentd is using"), std::runtime_error);
    const auto r = verify_ledger(db);
    CHECK_MESSAGE(r.ok, r.problem);
    CHECK(r.events == 8);
}

TEST_CASE("copy-ledger: an SQLite ledger into PostgreSQL, the chain checked on arrival") {
    PgServer pg;
    optgate::consentd::test::TempDir dir;
    const auto from = dir.file("ledger.db");
    {
        Ledger l(from);
        sample_history(l);
        l.record_policy(std::string("version: 1\n"),
                        ReceiptIssuer{std::string("US-ME"), std::string("ISP"), std::string("privacy@isp.example"),
                                      std::string("https://isp.example/privacy")});
        append_all(l, {make("sub-5", Action::grant, "analytics")});
        Database d(from, Database::Mode::read_write);
        d.exec(kDisclosureSchema);
        d.exec(kRadiusSchema);
        d.exec(
            "INSERT INTO disclosures VALUES ('sub-2', '2024-05-01', 'adnet', 'advertising', 'X-UIDH', 3, 1);"
            "INSERT INTO radius_events VALUES (6, 'bng-1', 'nas-1', 'sess-9');"
            "INSERT INTO radius_session_bindings VALUES ('bng-1', 'nas-1', 'sess-9', '100.64.0.1')");
    }
    const auto to = pg.new_database("copied");
    const auto report = copy_ledger(from, to);
    CHECK_MESSAGE(report.ok, report.problem);
    CHECK(report.events == 8);
    CHECK(report.rows.at("policies") == 1);
    CHECK(report.rows.at("disclosures") == 1);
    CHECK(report.rows.at("radius_session_bindings") == 1);
    const auto a = verify_ledger(from);
    const auto b = verify_ledger(to);
    REQUIRE_MESSAGE(b.ok, b.problem);
    CHECK(b.events == a.events);
    CHECK(b.head_hash == a.head_hash);
    CHECK(b.consents == a.consents);
    CHECK(b.bindings == a.bindings);
    CHECK(b.policies == 1);
    PgConnection c(conninfo_of(to));
    CHECK(c.query("SELECT controller_name FROM policies").text(0, 0) == "ISP");
    CHECK(count(c, "SELECT passed FROM disclosures WHERE subscriber = 'sub-2'") == 3);

    // Into a ledger that already has events: refused, nothing written.
    const auto again = copy_ledger(from, to);
    CHECK_FALSE(again.ok);
    CHECK(again.problem.find("already holds 8 events") != std::string::npos);
    CHECK(count(c, "SELECT count(*) FROM events") == 8);

    // A source whose chain is broken is not copied.
    {
        Database d(from, Database::Mode::read_write);
        d.exec("DROP TRIGGER events_append_only_update; UPDATE events SET subscriber = 'mallory' WHERE seq = 2");
    }
    const auto broken_to = pg.new_database("broken");
    const auto broken = copy_ledger(from, broken_to);
    CHECK_FALSE(broken.ok);
    CHECK(broken.problem.find("does not verify") != std::string::npos);
    PgConnection bc(conninfo_of(broken_to));
    CHECK(bc.query("SELECT 1 FROM pg_tables WHERE tablename = 'events'").rows() == 0);
}

TEST_CASE("stream(): a cursor 10,000 rows at a time inside a transaction, stopped early, run again; whole outside") {
    PgServer pg;
    const auto db = pg.new_database("rows");
    Database d(db, Database::Mode::read_write);
    d.exec("CREATE TABLE t (n BIGINT PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 25001)");
    auto st = d.prepare("SELECT n FROM t WHERE n >= ?1 ORDER BY n");
    st.stream();
    const auto walk = [&](int64_t from, int64_t stop_after) {
        st.bind(1, from);
        int64_t rows = 0, sum = 0;
        while (st.step()) {
            ++rows;
            sum += st.int64(0);
            if (rows == stop_after) {
                st.reset();  // closes the cursor mid-way
                break;
            }
        }
        return std::make_pair(rows, sum);
    };
    d.begin_read();
    CHECK(walk(1, 0) == std::make_pair(int64_t(25001), int64_t(25001) * 25002 / 2));  // three FETCHes and a short one
    CHECK(walk(1, 0).first == 25001);                                                 // the same cursor name again
    CHECK(walk(15001, 5) == std::make_pair(int64_t(5), int64_t(15001 + 15002 + 15003 + 15004 + 15005)));
    CHECK(walk(20001, 0).first == 5001);  // after a stop mid-way
    CHECK(walk(30000, 0).first == 0);     // nothing to fetch
    // Other statements run between two FETCHes of a cursor.
    st.bind(1, 1);
    REQUIRE(st.step());
    auto other = d.prepare("SELECT count(*) FROM t");
    REQUIRE(other.step());
    CHECK(other.int64(0) == 25001);
    int64_t rest = 1;
    while (st.step()) ++rest;
    CHECK(rest == 25001);
    d.end_read();
    CHECK(walk(1, 0).first == 25001);  // outside a transaction: the whole result
}

TEST_CASE("on PostgreSQL a batch of appends waits for no answer until its commit, which fails if any of them did") {
    PgServer pg;
    const auto db = pg.new_database("ledger");
    Ledger l(db);
    sample_history(l);
    const std::string head = l.head_hash();
    PgConnection admin(conninfo_of(db));
    const auto events = [&] { return count(admin, "SELECT count(*) FROM events"); };

    SUBCASE("three grants: six statements queued, one round trip at the commit") {
        l.begin();
        for (const char* s : {"sub-5", "sub-6", "sub-7"}) {
            auto e = make(s, Action::grant, "advertising");
            l.append(e);
        }
        CHECK(l.db().pg()->queued() == 6);  // each event and its derived row
        l.commit();
        CHECK(l.db().pg()->queued() == 0);
        CHECK(events() == 10);
        CHECK(count(admin, "SELECT count(*) FROM consents WHERE subscriber IN ('sub-5', 'sub-6', 'sub-7')") == 3);
    }
    SUBCASE(
        "a derived row refused mid-batch: the commit throws, nothing of the batch is kept, the next batch goes on") {
        admin.exec(
            "CREATE FUNCTION refuse_bad() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.subscriber = 'sub-bad' THEN RAISE EXCEPTION 'refused for the test'; END IF; RETURN NEW; END $$; "
            "CREATE TRIGGER refuse_bad BEFORE INSERT ON consents FOR EACH ROW EXECUTE FUNCTION refuse_bad()");
        l.begin();
        for (const char* s : {"sub-5", "sub-bad", "sub-7"}) {
            auto e = make(s, Action::grant, "advertising");
            l.append(e);  // no answer read yet: nothing throws here
        }
        CHECK_THROWS_WITH_AS(l.commit(), doctest::Contains("refused for the test"), PgError);
        CHECK_FALSE(l.in_doubt());  // the session is fine: the server said no
        l.rollback();
        CHECK(l.head_seq() == 7);
        CHECK(l.head_hash() == head);
        CHECK(events() == 7);
        admin.exec("DROP TRIGGER refuse_bad ON consents; DROP FUNCTION refuse_bad()");
        append_all(l, {make("sub-5", Action::grant, "advertising")});
        CHECK(l.head_seq() == 8);
        const auto r = verify_ledger(db);
        CHECK_MESSAGE(r.ok, r.problem);
    }
    SUBCASE("a failure whose answer was read and dropped on the way still fails the COMMIT") {
        Database& d = l.db();
        d.begin_write();
        auto st = d.prepare(
            "INSERT INTO consents (subscriber, purpose, seq, time, source, credential) "
            "VALUES (?1, 'x', 1, 't', 's', 'c')");
        st.bind(1, "sub-dup").queue();
        st.bind(1, "sub-dup").queue();  // the primary key again
        d.pg()->discard();              // as a destructor's cleanup would: the failure is read and dropped
        CHECK_THROWS_WITH_AS(d.commit(), doctest::Contains("rolled back"), PgError);
        d.rollback();
        CHECK(count(admin, "SELECT count(*) FROM consents WHERE subscriber = 'sub-dup'") == 0);
    }
}
