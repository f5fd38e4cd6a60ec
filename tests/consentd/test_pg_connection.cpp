// The PostgreSQL layer (src/consentd/pg_connection.hpp) against a real
// PostgreSQL 15 that the test starts itself: initdb in a temporary
// directory, a Unix socket only, stopped at the end (as the postgres user
// when the suite runs as root: PostgreSQL refuses to run as root).
#include <doctest/doctest.h>
#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "consentd/pg_connection.hpp"
#include "pg_server.hpp"

using namespace optgate;
using namespace optgate::consentd;
using namespace std::chrono_literals;
using test_pg::kPatience;
using test_pg::PgServer;

namespace {

template <class F>
bool eventually(F f) {
    const auto deadline = std::chrono::steady_clock::now() + kPatience;
    while (!f()) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(10ms);
    }
    return true;
}

}  // namespace

TEST_CASE("?N placeholders become $N outside literals, quoted identifiers and comments") {
    CHECK(pg_placeholders("INSERT INTO t VALUES (?1, ?2)") == "INSERT INTO t VALUES ($1, $2)");
    CHECK(pg_placeholders("SELECT '?1', \"a?2\", ?3 -- ?4\n, ?5 /* ?6 */ ?7") ==
          "SELECT '?1', \"a?2\", $3 -- ?4\n, $5 /* ?6 */ $7");
    CHECK(pg_placeholders("SELECT 'it''s ?1', ?2") == "SELECT 'it''s ?1', $2");
    CHECK(pg_placeholders("SELECT ? , ?x") == "SELECT ? , ?x");  // only ?DIGITS
    CHECK(pg_placeholders("SELECT 'unterminated ?1") == "SELECT 'unterminated ?1");
    CHECK(pg_placeholders("") == "");
}

TEST_CASE("queries: parameters, NULL, integers; errors carry PostgreSQL's SQLSTATE") {
    PgServer pg;
    PgConnection c(pg.conninfo());
    c.exec("CREATE TABLE events (seq BIGINT PRIMARY KEY, subscriber TEXT NOT NULL, purpose TEXT)");
    auto r = c.query(
        "INSERT INTO events (seq, subscriber, purpose) VALUES (?1, ?2, ?3), (?4, ?2, NULL)",
        {std::int64_t{9007199254740993}, std::string("sub-\u00e9'1"), std::string("ads"), std::int64_t{2}});
    CHECK(r.changes() == 2);
    r = c.query("SELECT seq, subscriber, purpose FROM events WHERE subscriber = ?1 ORDER BY seq",
                {std::string("sub-\u00e9'1")});
    REQUIRE(r.rows() == 2);
    CHECK(r.int64(0, 0) == 2);
    CHECK(r.is_null(0, 2));
    CHECK_FALSE(r.opt_text(0, 2).has_value());
    CHECK(r.int64(1, 0) == 9007199254740993);  // all 64 bits, no double on the way
    CHECK(r.text(1, 1) == "sub-\u00e9'1");
    CHECK(r.opt_text(1, 2) == "ads");
    CHECK_THROWS_AS(r.int64(1, 1), PgError);
    r = c.query("SELECT ?1::text IS NULL", {std::nullopt});
    CHECK(r.text(0, 0) == "t");

    const auto sqlstate_of = [&](const std::string& sql, const std::vector<PgValue>& params) {
        try {
            c.query(sql, params);
        } catch (const PgError& e) {
            return e.sqlstate();
        }
        return std::string("no error");
    };
    CHECK(sqlstate_of("INSERT INTO events (seq, subscriber) VALUES (?1, 'x')", {std::int64_t{2}}) == "23505");
    CHECK(sqlstate_of("INSERT INTO events (seq, subscriber) VALUES (?1, NULL)", {std::int64_t{3}}) == "23502");
    CHECK(sqlstate_of("SELEC 1", {}) == "42601");
    // A failed statement leaves the connection usable.
    CHECK(c.query("SELECT count(*) FROM events").int64(0, 0) == 2);
    CHECK_THROWS_WITH_AS(PgConnection("host=" + pg.dir.file("nowhere") + " user=optgate"),
                         doctest::Contains("cannot connect to PostgreSQL"), PgError);
}

TEST_CASE("the writer's election: one advisory lock holder; a lost session frees it") {
    PgServer pg;
    constexpr std::int64_t kWriter = 0x6f70746761746531;  // "optgate1"
    auto first = std::make_unique<PgConnection>(pg.conninfo());
    PgConnection second(pg.conninfo());
    PgConnection admin(pg.conninfo());
    REQUIRE(first->try_lock(kWriter));
    CHECK(first->try_lock(kWriter));  // held: taking it again succeeds (and counts)
    CHECK_FALSE(second.try_lock(kWriter));

    // unlock() gives back one count; the lock is free after the last.
    first->unlock(kWriter);
    CHECK_FALSE(second.try_lock(kWriter));
    first->unlock(kWriter);
    REQUIRE(second.try_lock(kWriter));
    CHECK_FALSE(first->try_lock(kWriter));
    second.unlock(kWriter);
    REQUIRE(first->try_lock(kWriter));

    // The holder's session ends without unlocking (its process killed, the
    // network cut): PostgreSQL frees the lock, and another may take it.
    const int pid = first->backend_pid();
    REQUIRE(admin.query("SELECT pg_terminate_backend(?1)", {std::int64_t{pid}}).text(0, 0) == "t");
    CHECK(eventually([&] { return second.try_lock(kWriter); }));
    // The old holder learns it at its next statement.
    CHECK_THROWS_AS(first->query("SELECT 1"), PgError);
    CHECK_FALSE(first->ok());
}

TEST_CASE("answers on a session holding a lock are dated (the writer's fencing); others are not") {
    PgServer pg;
    constexpr std::int64_t kWriter = 0x6f70746761746531;
    PgConnection holder(pg.conninfo());
    PgConnection other(pg.conninfo());
    holder.query("SELECT 1");
    CHECK(holder.locked_answer_ns() == 0);  // no lock yet
    REQUIRE(holder.try_lock(kWriter));
    const auto locked = holder.locked_answer_ns();
    CHECK(locked > 0);
    holder.exec("SELECT 1");
    const auto later = holder.locked_answer_ns();
    CHECK(later >= locked);
    holder.exec("BEGIN");
    holder.send("SELECT 2");
    holder.sync();  // a pipeline's answers count too
    holder.exec("COMMIT");
    CHECK(holder.locked_answer_ns() >= later);
    CHECK_FALSE(other.try_lock(kWriter));
    other.query("SELECT 1");
    CHECK(other.locked_answer_ns() == 0);  // a refused lock is no lock

    // Given back: answers no longer count.
    holder.unlock(kWriter);
    const auto released = holder.locked_answer_ns();
    std::this_thread::sleep_for(2ms);
    holder.query("SELECT 1");
    CHECK(holder.locked_answer_ns() == released);

    // A new session holds nothing: the date is gone with the old one.
    REQUIRE(holder.try_lock(kWriter));
    CHECK(holder.locked_answer_ns() > released);
    PgConnection admin(pg.conninfo());
    REQUIRE(admin.query("SELECT pg_terminate_backend(?1)", {std::int64_t{holder.backend_pid()}}).text(0, 0) == "t");
    CHECK_THROWS_AS(holder.query("SELECT 1"), PgError);
    REQUIRE(eventually([&] { return holder.reset(); }));
    CHECK(holder.locked_answer_ns() == 0);
    holder.query("SELECT 1");
    CHECK(holder.locked_answer_ns() == 0);
}

TEST_CASE("fencing dates an answer when its question was sent, not when the answer came") {
    // The server answers each question below a second after it reaches it:
    // the answer comes at least that long after the question was sent. The
    // session held the lock when the question arrived; nothing says it
    // still did when the answer did (docs/scale-out.md, "Fencing").
    PgServer pg;
    constexpr std::int64_t kWriter = 0x6f70746761746531;
    PgConnection holder(pg.conninfo());
    REQUIRE(holder.try_lock(kWriter));
    const auto ns = [] { return std::chrono::steady_clock::now().time_since_epoch().count(); };
    const auto check = [&](const std::string& how, auto ask) {
        INFO(how);
        const auto before = ns();
        ask();
        const auto after = ns();
        const auto asked = holder.locked_asked_ns(), answered = holder.locked_answer_ns();
        CHECK(asked >= before);
        CHECK(answered <= after);
        // 0.9 s, not 1: the steady clock may be slewed by NTP (at most
        // 0.05 %); a busy machine only makes the gap longer.
        CHECK(answered - asked >= std::chrono::nanoseconds(900ms).count());
    };
    check("a query", [&] { holder.query("SELECT pg_sleep(1)"); });
    check("exec", [&] { holder.exec("SELECT pg_sleep(1)"); });
    holder.exec("BEGIN");
    check("a pipeline", [&] {
        holder.send("SELECT pg_sleep(1)");
        holder.sync();
    });
    holder.exec("COMMIT");
    holder.prepare("sleep", "SELECT pg_sleep(1)");
    check("a prepared statement", [&] { holder.query_prepared("sleep", {}); });
}

TEST_CASE("following the events table: LISTEN/NOTIFY, delivered at commit") {
    PgServer pg;
    PgConnection follower(pg.conninfo());
    PgConnection writer(pg.conninfo());
    follower.listen("optgate_events");
    CHECK_THROWS_AS(follower.listen("bad channel; DROP TABLE x"), PgError);

    CHECK_FALSE(follower.wait_notification(0ms).has_value());
    writer.query("SELECT pg_notify('optgate_events', ?1)", {std::string("41")});
    auto n = follower.wait_notification(kPatience);
    REQUIRE(n);
    CHECK(n->channel == "optgate_events");
    CHECK(n->payload == "41");
    CHECK(n->sender_pid == writer.backend_pid());

    // Inside a transaction the notification waits for the commit: a follower
    // never hears of an event it cannot read yet.
    writer.exec("BEGIN");
    writer.query("SELECT pg_notify('optgate_events', ?1)", {std::string("42")});
    CHECK_FALSE(follower.wait_notification(100ms).has_value());
    writer.exec("COMMIT");
    n = follower.wait_notification(kPatience);
    REQUIRE(n);
    CHECK(n->payload == "42");
    // A rolled-back transaction notifies nobody.
    writer.exec("BEGIN; NOTIFY optgate_events, '43'; ROLLBACK");
    writer.query("SELECT pg_notify('optgate_events', ?1)", {std::string("44")});
    n = follower.wait_notification(kPatience);
    REQUIRE(n);
    CHECK(n->payload == "44");
}

TEST_CASE("a PostgreSQL restart: waiting and querying sessions fail; new ones work once it is back") {
    PgServer pg;
    PgConnection follower(pg.conninfo());
    follower.listen("optgate_events");
    PgConnection c(pg.conninfo());
    c.exec("CREATE TABLE kept (k BIGINT PRIMARY KEY)");
    c.query("INSERT INTO kept VALUES (?1)", {std::int64_t{1}});
    pg.stop();
    CHECK_THROWS_AS(follower.wait_notification(kPatience), PgError);
    CHECK_THROWS_AS(c.query("SELECT 1"), PgError);
    CHECK_THROWS_AS(PgConnection(pg.conninfo()), PgError);
    pg.start();
    PgConnection again(pg.conninfo());
    CHECK(again.query("SELECT count(*) FROM kept").int64(0, 0) == 1);  // committed before the stop
}

TEST_CASE("TCP keepalive and timeout defaults, each overridden by the connection string") {
    PgServer pg;
    const auto option = [](PgConnection& c, std::string_view keyword) {
        std::string value;
        PQconninfoOption* options = PQconninfo(c.handle());
        for (const PQconninfoOption* o = options; o && o->keyword; ++o)
            if (keyword == o->keyword && o->val) value = o->val;
        PQconninfoFree(options);
        return value;
    };
    PgConnection defaults(pg.conninfo());
    CHECK(option(defaults, "keepalives_idle") == "5");
    CHECK(option(defaults, "keepalives_interval") == "2");
    CHECK(option(defaults, "keepalives_count") == "3");
    CHECK(option(defaults, "tcp_user_timeout") == "15000");
    CHECK(option(defaults, "connect_timeout") == "10");
    CHECK(option(defaults, "dbname") == "postgres");  // the string's own keywords still apply
    PgConnection own(pg.conninfo() + " keepalives_idle=30 connect_timeout=3");
    CHECK(option(own, "keepalives_idle") == "30");
    CHECK(option(own, "connect_timeout") == "3");
    CHECK(option(own, "keepalives_count") == "3");
}

TEST_CASE("pipelining: queued statements are answered with the next query, in one transaction") {
    PgServer pg;
    PgConnection c(pg.conninfo());
    c.exec("CREATE TABLE t (k BIGINT PRIMARY KEY)");
    c.prepare("ins", "INSERT INTO t VALUES (?1)");
    const auto rows = [&] { return c.query("SELECT count(*) FROM t").int64(0, 0); };

    SUBCASE("answered with the next query, committed by query(\"COMMIT\")") {
        c.send("BEGIN");
        for (std::int64_t k = 1; k <= 3; ++k) c.send_prepared("ins", {k});
        CHECK(c.queued() == 4);
        CHECK(rows() == 3);  // the count rides behind them: it sees all three
        CHECK(c.queued() == 0);
        c.send_prepared("ins", {std::int64_t{4}});
        CHECK(c.query("COMMIT").command() == "COMMIT");
        CHECK(rows() == 4);
    }
    SUBCASE("a failure among them is thrown by the next query; the transaction's COMMIT answers ROLLBACK") {
        c.send_prepared("ins", {std::int64_t{1}});  // outside a transaction: committed by the Sync
        c.sync();
        c.send("BEGIN");
        c.send_prepared("ins", {std::int64_t{2}});
        c.send_prepared("ins", {std::int64_t{1}});  // a duplicate key
        c.send_prepared("ins", {std::int64_t{3}});
        try {
            c.query("SELECT 1");
            FAIL("the duplicate went unnoticed");
        } catch (const PgError& e) {
            CHECK(e.sqlstate() == "23505");
        }
        CHECK(c.queued() == 0);
        // Nothing after the failure ran, and the transaction cannot commit:
        // PostgreSQL answers its COMMIT with ROLLBACK and no error.
        CHECK(c.query("COMMIT").command() == "ROLLBACK");
        CHECK(rows() == 1);
    }
    SUBCASE("at most kMaxQueued wait; every one of a longer run is written") {
        c.send("BEGIN");
        const std::int64_t n = 2 * std::int64_t(PgConnection::kMaxQueued) + 17;
        size_t most = 0;
        for (std::int64_t k = 1; k <= n; ++k) {
            c.send_prepared("ins", {k});
            most = std::max(most, c.queued());
        }
        CHECK(most == PgConnection::kMaxQueued);
        CHECK(c.query("COMMIT").command() == "COMMIT");
        CHECK(rows() == n);
    }
    SUBCASE("exec() of several statements answers the queued ones first") {
        c.send("BEGIN");
        c.send_prepared("ins", {std::int64_t{7}});
        c.exec("INSERT INTO t VALUES (8); INSERT INTO t VALUES (9)");
        c.exec("COMMIT");
        CHECK(rows() == 3);
    }
    SUBCASE(
        "a session that ends inside a pipeline: the failure is thrown, ok() is false, the COMMIT before it stands") {
        c.send("BEGIN");
        c.send_prepared("ins", {std::int64_t{1}});
        c.send("COMMIT");
        try {
            c.query("SELECT pg_terminate_backend(pg_backend_pid())");  // FATAL 57P01 for this session
            FAIL("the session's end went unnoticed");
        } catch (const PgError& e) {
            CHECK(e.sqlstate() == "57P01");
        }
        CHECK_FALSE(c.ok());  // so the next transaction starts on a new session
        REQUIRE(c.reset());
        CHECK(c.ok());
        CHECK(rows() == 1);  // the COMMIT before it stands
    }
    SUBCASE("the session lost with statements queued: sync() throws, discard() does not, reset() starts clean") {
        PgConnection admin(pg.conninfo());
        c.send("BEGIN");
        c.send_prepared("ins", {std::int64_t{1}});
        admin.query("SELECT pg_terminate_backend(?1)", {std::int64_t{c.backend_pid()}});
        CHECK(eventually([&] {
            return admin.query("SELECT count(*) FROM pg_stat_activity WHERE pid = ?1", {std::int64_t{c.backend_pid()}})
                       .int64(0, 0) == 0;
        }));
        // libpq may notice at the send or only at the Sync: either throws.
        CHECK_THROWS_AS(
            [&] {
                c.send_prepared("ins", {std::int64_t{2}});
                c.sync();
            }(),
            PgError);
        CHECK_FALSE(c.ok());
        CHECK(c.queued() == 0);
        c.discard();  // nothing left; never throws
        REQUIRE(c.reset());
        CHECK(c.queued() == 0);
        CHECK(c.query("SELECT count(*) FROM t").int64(0, 0) == 0);
    }
}
