// The SQLite ledger: chain continuity across transactions and reopenings,
// rollback, derived rows, and verify_ledger() catching each kind of damage.
#include <doctest/doctest.h>

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "consentd/ledger.hpp"
#include "consentd/schema.hpp"
#include "consentd/verify.hpp"
#include "fixture.hpp"
#include "ledger_history.hpp"

using namespace optgate::consentd;
using optgate::consentd::test::append_all;
using optgate::consentd::test::make;
using optgate::consentd::test::sample_history;
using optgate::consentd::test::TempDir;

TEST_CASE("appends chain across transactions and survive reopening") {
    TempDir dir;
    const auto path = dir.file("ledger.db");
    std::string head;
    {
        Ledger l(path);
        CHECK(l.head_seq() == 0);
        CHECK(l.head_hash() == kGenesisHash);
        sample_history(l);
        CHECK(l.head_seq() == 7);
        head = l.head_hash();
    }
    Ledger l(path);
    CHECK(l.head_seq() == 7);
    CHECK(l.head_hash() == head);
    Event e = make("sub-3", Action::grant, "advertising");
    append_all(l, {e});
    CHECK(l.head_seq() == 8);

    const auto r = verify_ledger(path);
    CHECK_MESSAGE(r.ok, r.problem);
    CHECK(r.events == 8);
    CHECK(r.head_hash == l.head_hash());
    CHECK(r.consents == 2);  // sub-1 advertising, sub-3 advertising
    CHECK(r.bindings == 2);
    CHECK(r.subscribers == 3);
}

TEST_CASE("derived rows follow the fold") {
    TempDir dir;
    Ledger l(dir.file("ledger.db"));
    sample_history(l);
    std::map<std::string, std::string> bindings;
    l.for_each_binding([&](std::string_view a, std::string_view s) { bindings[std::string(a)] = s; });
    CHECK(bindings == std::map<std::string, std::string>{{"100.64.0.1", "sub-2"}, {"2001:db8:1000:1::/64", "sub-2"}});
    std::vector<std::string> consents;
    l.for_each_consent(
        [&](std::string_view s, std::string_view p) { consents.push_back(std::string(s) + "/" + std::string(p)); });
    CHECK(consents == std::vector<std::string>{"sub-1/advertising"});
}

TEST_CASE("a rolled-back transaction leaves no trace and the chain continues") {
    TempDir dir;
    const auto path = dir.file("ledger.db");
    Ledger l(path);
    append_all(l, {make("sub-1", Action::grant, "advertising")});
    const std::string head = l.head_hash();
    l.begin();
    Event e = make("sub-1", Action::grant, "analytics");
    l.append(e);
    CHECK(e.seq == 2);
    l.rollback();
    CHECK(l.head_seq() == 1);
    CHECK(l.head_hash() == head);
    Event f = make("sub-1", Action::revoke, "advertising");
    l.begin();
    l.append(f);
    l.commit();
    CHECK(f.seq == 2);
    CHECK(f.prev_hash == head);
    const auto r = verify_ledger(path);
    CHECK_MESSAGE(r.ok, r.problem);
    CHECK(r.consents == 0);
}

TEST_CASE("the events table refuses updates and deletes") {
    TempDir dir;
    Ledger l(dir.file("ledger.db"));
    sample_history(l);
    CHECK_THROWS_AS(l.db().exec("UPDATE events SET subscriber = 'x' WHERE seq = 1"), SqliteError);
    CHECK_THROWS_AS(l.db().exec("DELETE FROM events WHERE seq = 7"), SqliteError);
}

TEST_CASE("a second writer on the same file is detected before it forks the chain") {
    TempDir dir;
    const auto path = dir.file("ledger.db");
    Ledger a(path);
    Ledger b(path);
    append_all(a, {make("sub-1", Action::grant, "advertising")});
    CHECK_THROWS(b.begin());
    b.rollback();
    CHECK(verify_ledger(path).ok);
}

TEST_CASE("bind_ref writes the caller's text and keeps none of it once run") {
    TempDir dir;
    Database db(dir.file("t.db"), Database::Mode::read_write_create);
    db.exec("CREATE TABLE t (a TEXT, b TEXT)");
    auto ins = db.prepare("INSERT INTO t (a, b) VALUES (?1, ?2)");
    {
        std::string a = "first text, long enough to be heap-allocated by std::string";
        const std::optional<std::string> b = "second";
        ins.bind_ref(1, a).bind_ref(2, b);
        ins.run();
        a.assign(a.size(), 'x');  // the caller's buffer changes after the run
    }
    // run() cleared the bindings: nothing bound now is NULL, not the old text.
    ins.bind_ref(1, std::string_view("third"));
    ins.run();
    auto sel = db.prepare("SELECT a, b FROM t ORDER BY rowid");
    REQUIRE(sel.step());
    CHECK(sel.text(0) == "first text, long enough to be heap-allocated by std::string");
    CHECK(sel.text(1) == "second");
    REQUIRE(sel.step());
    CHECK(sel.text(0) == "third");
    CHECK(sel.is_null(1));
    CHECK_FALSE(sel.step());
}

namespace {

// `run` must throw a SqliteError whose primary code is `code` and whose
// message names the statement (`statement`).
void check_sqlite_error(const std::function<void()>& run, int code, std::string_view statement) {
    INFO(statement);
    try {
        run();
        FAIL("no error");
    } catch (const SqliteError& e) {
        CHECK((e.code() & 0xff) == code);
        CHECK(std::string_view(e.what()).find(statement) != std::string_view::npos);
    }
}

}  // namespace

TEST_CASE("the prepared BEGIN IMMEDIATE and COMMIT report failures and stay usable") {
    TempDir dir;
    const auto path = dir.file("t.db");
    Database a(path, Database::Mode::read_write_create);
    a.exec("PRAGMA journal_mode = WAL");
    a.exec("CREATE TABLE t (x INTEGER PRIMARY KEY)");
    Database b(path, Database::Mode::read_write);
    b.exec("PRAGMA busy_timeout = 0");
    a.begin_write();
    // The write lock is a's: b's prepared BEGIN IMMEDIATE fails with BUSY.
    check_sqlite_error([&] { b.begin_write(); }, SQLITE_BUSY, "BEGIN IMMEDIATE");
    a.exec("INSERT INTO t VALUES (1)");
    a.commit();
    // The same prepared statements, used again on both connections.
    b.begin_write();
    b.exec("INSERT INTO t VALUES (2)");
    b.commit();
    a.begin_write();
    a.exec("INSERT INTO t VALUES (3)");
    a.commit();
    {
        auto st = b.prepare("SELECT count(*) FROM t");
        REQUIRE(st.step());
        CHECK(st.int64(0) == 3);
    }
    // A COMMIT that fails (a deferred constraint) throws with the reason,
    // leaves the transaction to roll back, and the next one commits.
    a.exec("PRAGMA foreign_keys = ON");
    a.exec("CREATE TABLE c (p INTEGER REFERENCES t (x) DEFERRABLE INITIALLY DEFERRED)");
    a.begin_write();
    a.exec("INSERT INTO c VALUES (99)");
    check_sqlite_error([&] { a.commit(); }, SQLITE_CONSTRAINT, "COMMIT");
    a.rollback();
    a.begin_write();
    a.exec("INSERT INTO c VALUES (1)");
    a.commit();
    auto st = b.prepare("SELECT count(*) FROM c");
    REQUIRE(st.step());
    CHECK(st.int64(0) == 1);
}

namespace {

// Runs SQL on the file with the append-only triggers out of the way, and
// puts them back as they were, as someone editing the database by hand and
// covering their tracks would (the schema check would name a missing one).
void tamper(const std::string& path, const std::string& sql) {
    Database db(path, Database::Mode::read_write);
    std::vector<std::string> triggers;
    {
        auto st = db.prepare("SELECT sql FROM sqlite_schema WHERE name LIKE 'events_append_only_%'");
        while (st.step()) triggers.emplace_back(st.text(0));
    }
    REQUIRE(triggers.size() == 2);
    db.exec("DROP TRIGGER events_append_only_update");
    db.exec("DROP TRIGGER events_append_only_delete");
    db.exec(sql);
    for (const auto& t : triggers) db.exec(t);
}

std::string damaged(const std::string& sql) {
    TempDir dir;
    const auto path = dir.file("ledger.db");
    {
        Ledger l(path);
        sample_history(l);
        REQUIRE(verify_ledger(path).ok);
    }
    tamper(path, sql);
    const auto r = verify_ledger(path);
    CHECK_FALSE(r.ok);
    return r.problem;
}

}  // namespace

TEST_CASE("verify finds the first inconsistency of each kind") {
    CHECK(damaged("UPDATE events SET subscriber = 'sub-9' WHERE seq = 2").find("event 2 has hash") == 0);
    CHECK(damaged("UPDATE events SET prev_hash = hash WHERE seq = 3").find("event 3 has prev_hash") == 0);
    CHECK(damaged("DELETE FROM events WHERE seq = 4").find("event 5 follows event 3") == 0);
    CHECK(damaged("DELETE FROM events WHERE seq = 7").find("bindings row '2001:db8:1000:1::/64' exists") == 0);
    CHECK(damaged("DELETE FROM consents").find("event 1 grants 'advertising' to 'sub-1'") == 0);
    CHECK(damaged("INSERT INTO consents VALUES ('sub-1', 'analytics', 2, 't', 'portal', 'v1', 'test')")
              .find("consents row ('sub-1', 'analytics') exists") == 0);
    CHECK(damaged("UPDATE bindings SET subscriber = 'sub-1' WHERE address = '100.64.0.1'")
              .find("bindings row '100.64.0.1' names subscriber 'sub-1'") == 0);
    CHECK(damaged("UPDATE consents SET notice_version = 'v9'")
              .find("consents row ('sub-1', 'advertising') has "
                    "notice_version 'v9'") == 0);
}

TEST_CASE("the schema holds only what consentd creates") {
    TempDir dir;
    const auto path = dir.file("ledger.db");
    Ledger l(path);
    sample_history(l);
    auto& db = l.db();
    CHECK(schema_difference(db).empty());
    db.exec(kRadiusSchema);  // what the service adds when missing
    db.exec(kDisclosureSchema);
    CHECK(schema_difference(db).empty());
    db.exec("ANALYZE");  // SQLite's statistics: allowed
    CHECK(schema_difference(db).empty());

    db.exec("CREATE TRIGGER keep AFTER DELETE ON consents BEGIN SELECT 1; END");
    CHECK(schema_difference(db) ==
          "the ledger holds trigger 'keep' on table 'consents', which consentd did not create (remove it with "
          "sqlite3 after finding out who added it)");
    CHECK(verify_ledger(path).problem == schema_difference(db));
    CHECK(verify_ledger(path).damage == Damage::schema);
    db.exec("DROP TRIGGER keep");
    // One of ours under its name, another definition: an index on other columns.
    db.exec("DROP INDEX bindings_by_subscriber");
    CHECK(schema_difference(db) ==
          "the ledger has no index 'bindings_by_subscriber' on table 'bindings', which "
          "consentd creates with every ledger");
    db.exec("CREATE INDEX bindings_by_subscriber ON bindings (seq)");
    CHECK(schema_difference(db).find("the ledger's index 'bindings_by_subscriber' on table 'bindings' is not the "
                                     "index consentd created") == 0);
    db.exec("DROP INDEX bindings_by_subscriber");
    // Reindented, the same definition.
    db.exec("CREATE   INDEX bindings_by_subscriber\n   ON bindings (subscriber)");
    CHECK(schema_difference(db).empty());
    CHECK(verify_ledger(path).ok);
}

TEST_CASE("the startup check rebuilds derived tables only when asked, and nothing else") {
    TempDir dir;
    const auto path = dir.file("ledger.db");
    Ledger l(path);
    sample_history(l);
    l.db().exec("INSERT INTO consents VALUES ('sub-3', 'analytics', 2, 't', 'portal', 'v1', 'test')");
    l.db().exec("DELETE FROM bindings WHERE address = '100.64.0.1'");

    auto c = check_ledger_at_start(l, false);
    CHECK_FALSE(c.report.ok);
    CHECK(c.report.damage == Damage::derived);
    CHECK(c.report.problem.find("consents row ('sub-3', 'analytics') exists") == 0);
    CHECK(c.rebuilt.empty());

    c = check_ledger_at_start(l, true);
    CHECK_MESSAGE(c.report.ok, c.report.problem);
    CHECK(c.rebuilt.find("consents row ('sub-3', 'analytics') exists") == 0);
    CHECK(c.report.consents == 1);
    CHECK(c.report.bindings == 2);
    CHECK(verify_ledger(path).ok);
    std::map<std::string, std::string> bound;
    l.for_each_binding([&](std::string_view a, std::string_view s) { bound.emplace(a, s); });
    CHECK(bound == std::map<std::string, std::string>{{"100.64.0.1", "sub-2"}, {"2001:db8:1000:1::/64", "sub-2"}});
    // The chain goes on from the same head.
    append_all(l, {make("sub-3", Action::grant, "advertising")});
    CHECK(verify_ledger(path).ok);

    // A planted schema object is not a derived row: never rebuilt.
    l.db().exec("CREATE VIEW v AS SELECT * FROM consents");
    c = check_ledger_at_start(l, true);
    CHECK_FALSE(c.report.ok);
    CHECK(c.report.damage == Damage::schema);
    CHECK(c.rebuilt.empty());
}

namespace {
int64_t cache_size(Database& db) {
    auto st = db.prepare("PRAGMA cache_size");
    REQUIRE(st.step());
    return st.int64(0);
}
}  // namespace

TEST_CASE("the writer's page cache is small between bulk writes, and large for one; its WAL file is kept long") {
    TempDir dir;
    const auto path = dir.file("ledger.db");
    {
        Ledger l(path);
        CHECK(cache_size(l.db()) == Ledger::kWriterCachePages);
        {
            auto st = l.db().prepare("PRAGMA journal_size_limit");
            REQUIRE(st.step());
            CHECK(st.int64(0) == Ledger::kWalBytesKept);
        }
        l.bulk_cache(true);
        CHECK(cache_size(l.db()) == -65536);
        l.bulk_cache(false);
        CHECK(cache_size(l.db()) == Ledger::kWriterCachePages);
        sample_history(l);
        // A rebuild of the derived tables gets the big cache for its
        // transaction and gives it back, also when it fails.
        l.db().exec("DELETE FROM bindings");
        CHECK(check_ledger_at_start(l, true).report.ok);
        CHECK(cache_size(l.db()) == Ledger::kWriterCachePages);
        l.db().exec("PRAGMA busy_timeout = 0");
        Database other(path, Database::Mode::read_write);
        other.begin_write();  // the write lock is taken: the rebuild fails
        CHECK_THROWS_AS(l.rebuild_derived(LedgerFold{}), SqliteError);
        CHECK(cache_size(l.db()) == Ledger::kWriterCachePages);
        other.rollback();
    }
    // An existing ledger opens with the small cache too.
    Ledger reopened(path);
    CHECK(cache_size(reopened.db()) == Ledger::kWriterCachePages);
}

TEST_CASE("a recomputed chain over an inconsistent history still fails the fold") {
    // Someone rewrites history and recomputes every hash: the chain verifies,
    // but an unbind of an address the subscriber does not hold is caught.
    TempDir dir;
    const auto path = dir.file("ledger.db");
    {
        Ledger l(path);
        append_all(l, {make("sub-1", Action::bind, "100.64.0.1"), make("sub-2", Action::unbind, "100.64.0.1")});
    }
    const auto r = verify_ledger(path);
    CHECK_FALSE(r.ok);
    CHECK(r.problem == "event 2 unbinds 100.64.0.1 from 'sub-2' but 'sub-1' holds it");
}

TEST_CASE("the fold") {
    LedgerFold f;
    Event g = make("sub-1", Action::grant, "advertising");
    g.seq = 1;
    CHECK(f.apply(g).empty());
    Event g2 = make("sub-1", Action::grant, "advertising", "call-centre");
    g2.seq = 2;
    g2.notice_version = "v2";
    CHECK(f.apply(g2).empty());
    REQUIRE(f.consents().size() == 1);
    const auto& row = f.consents().begin()->second;
    CHECK(row.seq == 2);  // the latest grant is the record
    CHECK(row.source == "call-centre");
    CHECK(row.notice_version == "v2");

    Event b = make("sub-1", Action::bind, "100.64.0.1");
    b.seq = 3;
    CHECK(f.apply(b).empty());
    Event b2 = make("sub-2", Action::bind, "100.64.0.1");
    b2.seq = 4;
    CHECK(f.apply(b2) == "binds 100.64.0.1 to 'sub-2' while 'sub-1' holds it (no unbind recorded first)");
    Event u = make("sub-2", Action::unbind, "100.64.0.9");
    u.seq = 5;
    CHECK(f.apply(u) == "unbinds 100.64.0.9, which is not bound");
    Event r = make("sub-1", Action::revoke, "advertising");
    r.seq = 6;
    CHECK(f.apply(r).empty());
    CHECK(f.consents().empty());
}
