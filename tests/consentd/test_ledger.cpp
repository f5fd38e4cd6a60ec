// The SQLite ledger: chain continuity across transactions and reopenings,
// rollback, derived rows, and verify_ledger() catching each kind of damage.
#include <doctest/doctest.h>

#include <map>

#include "consentd/ledger.hpp"
#include "consentd/verify.hpp"
#include "fixture.hpp"

using namespace optgate::consentd;
using optgate::consentd::test::TempDir;

namespace {

Event make(std::string subscriber, Action a, std::optional<std::string> what, std::string source = "portal") {
    Event e;
    e.time = "2024-05-01T12:00:00.000Z";
    e.subscriber = std::move(subscriber);
    e.action = a;
    if (a == Action::grant || a == Action::revoke) {
        e.purpose = std::move(what);
        if (a == Action::grant) e.notice_version = "v1";
    } else {
        e.address = std::move(what);
    }
    e.source = std::move(source);
    e.credential = "test";
    return e;
}

void append_all(Ledger& l, std::vector<Event> events) {
    l.begin();
    for (auto& e : events) l.append(e);
    l.commit();
}

// Sample history: sub-1 grants two purposes, revokes one; 100.64.0.1 moves
// from sub-1 to sub-2.
void sample_history(Ledger& l) {
    append_all(l, {make("sub-1", Action::grant, "advertising"), make("sub-1", Action::grant, "analytics"),
                   make("sub-1", Action::bind, "100.64.0.1")});
    append_all(l, {make("sub-1", Action::revoke, "analytics"), make("sub-1", Action::unbind, "100.64.0.1"),
                   make("sub-2", Action::bind, "100.64.0.1"), make("sub-2", Action::bind, "2001:db8:1000:1::/64")});
}

}  // namespace

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

namespace {

// Runs SQL on the file with the append-only triggers out of the way, as
// someone editing the database by hand would.
void tamper(const std::string& path, const std::string& sql) {
    Database db(path, Database::Mode::read_write);
    db.exec("DROP TRIGGER events_append_only_update");
    db.exec("DROP TRIGGER events_append_only_delete");
    db.exec(sql);
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
