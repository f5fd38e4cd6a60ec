// The WAL write buffer (src/consentd/wal_write_buffer.hpp): a commit's frames
// go to the file in one write, before any other connection can see them, and
// a write that fails fails the COMMIT.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "consentd/database.hpp"
#include "consentd/wal_write_buffer.hpp"
#include "fixture.hpp"

using namespace optgate::consentd;
using optgate::consentd::test::TempDir;

namespace {

int64_t one(Database& db, const std::string& sql) {
    auto st = db.prepare(sql);
    REQUIRE(st.step());
    return st.int64(0);
}

std::string text(Database& db, const std::string& sql) {
    auto st = db.prepare(sql);
    REQUIRE(st.step());
    return std::string(st.text(0));
}

// A writer as consentd's ledger opens it.
struct Writer : Database {
    explicit Writer(const std::string& path)
        : Database(path, Database::Mode::read_write_create, wal_write_buffer_vfs()) {
        setup(*this);
    }
    static void setup(Database& w);
};

void Writer::setup(Database& w) {
    w.exec("PRAGMA journal_mode = WAL");
    w.exec("PRAGMA synchronous = NORMAL");  // as consentd's writer once its sync thread runs
    w.exec("CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v BLOB NOT NULL)");
}

}  // namespace

TEST_CASE("wal write buffer: a commit is one write, seen at once by connections on the default VFS") {
    REQUIRE(wal_write_buffer_vfs() != nullptr);
    TempDir dir;
    const auto path = dir.file("t.db");
    Writer w(path);
    Database r(path, Database::Mode::read_only);
    Database checkpointer(path, Database::Mode::read_write);
    int64_t rows = 0;
    uint64_t restarts = 0;
    for (int i = 0; i < 300; ++i) {
        const auto before = wal_write_buffer_stats();
        w.exec("BEGIN IMMEDIATE");
        // Twenty rows of 500 bytes: several pages, well under one write's 124 KiB.
        w.exec(
            "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 20) "
            "INSERT INTO t (v) SELECT randomblob(500) FROM n");
        w.exec("COMMIT");
        rows += 20;
        const auto after = wal_write_buffer_stats();
        // SQLite asked for two writes per frame (and a header when the WAL restarts) ...
        CHECK(after.writes_asked - before.writes_asked >= 6);
        // ... and the file got one (two when the WAL starts again after a
        // checkpoint: SQLite syncs the new WAL header before any frame).
        const auto made = after.writes_made - before.writes_made;
        CHECK(made >= 1);
        CHECK(made <= 2);
        restarts += made - 1;
        // Every byte asked for was written, once.
        CHECK(after.bytes_made - before.bytes_made == after.bytes_asked - before.bytes_asked);
        // Another connection sees the commit as soon as COMMIT returned.
        CHECK(one(r, "SELECT count(*) FROM t") == rows);
        // Checkpoints in between make the writer start the WAL again from its header.
        if (i % 40 == 39) checkpointer.exec("PRAGMA wal_checkpoint(PASSIVE)");
    }
    CHECK(restarts <= 300 / 40);
    CHECK(text(checkpointer, "PRAGMA integrity_check") == "ok");
    CHECK(one(checkpointer, "SELECT count(*) FROM t") == rows);
}

TEST_CASE("wal write buffer: a large commit goes out in 124 KiB writes and reads back whole") {
    TempDir dir;
    const auto path = dir.file("t.db");
    {
        Writer w(path);
        const auto before = wal_write_buffer_stats();
        // 4 MiB in one transaction: past the 1 MiB buffer, so some frames go
        // out before the commit frame, in order.
        w.exec("BEGIN IMMEDIATE");
        w.exec(
            "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 1024) "
            "INSERT INTO t (v) SELECT randomblob(4096) FROM n");
        w.exec("COMMIT");
        const auto after = wal_write_buffer_stats();
        const auto made = after.writes_made - before.writes_made;
        CHECK(made >= 4 * 1024 / 124);
        CHECK(made <= 4 * 1024 / 124 + 12);
        CHECK(after.writes_asked - before.writes_asked > 10 * made);
        CHECK(after.bytes_made - before.bytes_made == after.bytes_asked - before.bytes_asked);
        Database r(path, Database::Mode::read_only);
        CHECK(one(r, "SELECT count(*) FROM t WHERE length(v) = 4096") == 1024);
    }
    // Closed and opened again on the default VFS: the WAL recovers to the same rows.
    Database d(path, Database::Mode::read_write);
    CHECK(text(d, "PRAGMA integrity_check") == "ok");
    CHECK(one(d, "SELECT count(*) FROM t") == 1024);
}

TEST_CASE("wal write buffer: a write that fails fails the COMMIT, and the file keeps what was committed") {
    TempDir dir;
    const auto path = dir.file("t.db");
    {
        Writer w(path);
        w.exec("INSERT INTO t (v) SELECT randomblob(100)");
    }
    // In a child: a file size limit just past what the files hold makes the
    // next large write fail (EFBIG, with SIGXFSZ ignored).
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        int status = 1;
        try {
            Writer w(path);
            w.exec("INSERT INTO t (v) SELECT randomblob(100)");  // committed
            signal(SIGXFSZ, SIG_IGN);
            const auto wal = std::filesystem::file_size(path + "-wal");
            const auto db = std::filesystem::file_size(path);
            rlimit limit{};
            limit.rlim_cur = limit.rlim_max = rlim_t(std::max(wal, db) + 64UL * 1024);
            setrlimit(RLIMIT_FSIZE, &limit);
            w.exec("BEGIN IMMEDIATE");
            w.exec(
                "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 64) "
                "INSERT INTO t (v) SELECT randomblob(4000) FROM n");
            try {
                w.exec("COMMIT");
                status = 2;  // it should not have committed
            } catch (const SqliteError&) {
                status = 0;
            }
            sqlite3_exec(w.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
        } catch (...) {
            status = 3;
        }
        _exit(status);
    }
    int status = -1;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    CHECK_MESSAGE(WEXITSTATUS(status) == 0, "child status " << WEXITSTATUS(status));
    Database d(path, Database::Mode::read_write);
    CHECK(text(d, "PRAGMA integrity_check") == "ok");
    CHECK(one(d, "SELECT count(*) FROM t") == 2);  // both small commits, nothing of the failed one
}
