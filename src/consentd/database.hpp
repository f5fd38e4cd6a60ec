// The ledger's database, on either store: an SQLite file (the embedded
// default, one box) or a PostgreSQL database (several consentd instances,
// docs/scale-out.md). A thin RAII layer: a connection, prepared statements
// with ?N parameters, transactions. Control plane only; one connection per
// thread.
//
// Which store a Database opens is read from its locator:
//   /var/lib/optgate/ledger.db              an SQLite file
//   postgresql://host/db?...                a PostgreSQL URI (postgres:// too)
//   postgresql:host=/run/postgresql dbname=optgate
//                                           a libpq keyword string behind "postgresql:"
//
// One statement text serves both stores: the SQL the ledger writes is the
// common dialect (UPSERT with ON CONFLICT, no INSERT OR REPLACE), and ?N
// becomes PostgreSQL's $N (pg_connection.hpp). What differs (the DDL, the
// schema checks, SQLite's WAL and checkpoints) asks backend().
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "consentd/pg_connection.hpp"

namespace optgate::consentd {

class SqliteError : public std::runtime_error {
public:
    SqliteError(int code, const std::string& what) : std::runtime_error(what), code_(code) {}
    int code() const noexcept { return code_; }

private:
    int code_;
};

enum class Backend { sqlite, postgresql };

// True for a PostgreSQL locator (above).
bool is_postgresql_locator(std::string_view locator);
// The libpq connection string of a PostgreSQL locator.
std::string postgresql_conninfo(std::string_view locator);
// A locator for messages and logs: a PostgreSQL one as "postgresql:" and
// its keywords, the password left out; an SQLite path as it is.
std::string printable_locator(std::string_view locator);

// Configures the SQLite library for this process before its first use:
// memory statistics off (SQLite otherwise takes a process-wide mutex
// around every allocation to count it; nothing here reads the counts).
// Called by Database and by the ledger writer's VFS; a no-op once SQLite
// is initialized.
void configure_sqlite() noexcept;

class Database;

class Statement {
public:
    Statement();
    Statement(sqlite3* db, std::string_view sql);
    Statement(Database& db, std::string_view sql);  // either store
    ~Statement();
    Statement(Statement&& o) noexcept;
    Statement& operator=(Statement&& o) noexcept;
    Statement(const Statement&) = delete;
    Statement& operator=(const Statement&) = delete;

    // Parameters are 1-based, as in SQLite; unbound ones are NULL. Text is
    // copied.
    Statement& bind(int i, int64_t v);
    Statement& bind(int i, std::string_view v);
    Statement& bind(int i, const std::string& v) { return bind(i, std::string_view(v)); }
    Statement& bind(int i, const char* v) { return bind(i, std::string_view(v)); }
    Statement& bind(int i, const std::optional<std::string>& v);
    Statement& bind_null(int i);
    // As bind(), without copying the text on SQLite: it must stay valid
    // until the statement's next run() or reset(), which clear the
    // bindings. For the ledger's appends, whose texts live in the event
    // being written (SQLite's copy of each was a malloc and a memcpy per
    // field). PostgreSQL copies the parameters either way.
    Statement& bind_ref(int i, std::string_view v);
    Statement& bind_ref(int i, const std::string& v) { return bind_ref(i, std::string_view(v)); }
    Statement& bind_ref(int i, const std::optional<std::string>& v);
    Statement& bind_ref(int i, std::string&&) = delete;  // a temporary would be gone by then

    // PostgreSQL: read the rows through a cursor, 10,000 at a time, when
    // step() starts inside a transaction (a whole-table walk: verify, the
    // startup load, copy-ledger), instead of the whole result at once. No
    // effect on SQLite, which steps row by row anyway.
    void stream();

    // True while a row is available; false once done (the next step() runs
    // the statement again). Throws on error.
    bool step();
    // Runs to completion (for statements that return no rows).
    void run();
    // As run(), for a statement whose only answer is success, inside a write
    // transaction: on PostgreSQL it is sent without waiting, and its answer
    // is read with the next statement that needs one, or at commit(), which
    // fails if it failed (PgConnection's pipelining). A batch of appends is
    // then one round trip to the server. Outside a transaction, and on
    // SQLite, the same as run().
    void queue();
    void reset();  // also clears bindings

    int64_t int64(int col) const;
    bool is_null(int col) const;
    std::string_view text(int col) const;
    std::optional<std::string> opt_text(int col) const;

private:
    struct Pg;  // a PostgreSQL prepared statement, its parameters and result
    void pg_prepare();
    bool pg_fetch();
    void pg_stop() noexcept;  // forget the result, close the cursor

    sqlite3* db_ = nullptr;
    sqlite3_stmt* st_ = nullptr;
    std::unique_ptr<Pg> pg_;
};

class Database {
public:
    enum class Mode { read_write_create, read_write, read_only };
    // `locator`: an SQLite file or a PostgreSQL database (above). `vfs`: a
    // registered SQLite VFS by name (wal_write_buffer.hpp); the default one
    // when null. On PostgreSQL, read_only makes every transaction read-only
    // and the create mode changes nothing (the database must exist; the
    // ledger's tables are created by the Ledger).
    Database(const std::string& locator, Mode mode, const char* vfs = nullptr);
    ~Database();
    Database(const Database&) = delete;
    Database& operator=(const Database&) = delete;

    Backend backend() const noexcept { return pg_ ? Backend::postgresql : Backend::sqlite; }
    bool postgresql() const noexcept { return pg_ != nullptr; }

    // One or more statements without parameters.
    void exec(std::string_view sql);
    Statement prepare(std::string_view sql) { return Statement(*this, sql); }

    // A transaction that writes: SQLite takes the write lock at once (BEGIN
    // IMMEDIATE); PostgreSQL starts a read-committed one. On PostgreSQL a
    // session lost since the last transaction is connected again first
    // (reconnect()).
    void begin_write();
    // A transaction that only reads, one snapshot for all its statements.
    void begin_read();
    void commit();
    // Ends a begin_read() transaction; never throws (for destructors).
    void end_read() noexcept;
    // Never throws: a failure means the store already ended the transaction.
    void rollback() noexcept;

    // Rows the last INSERT, UPDATE or DELETE on this connection touched.
    int64_t changes() const;
    bool in_transaction() const;
    // Whether the store has a table of this name (in the current schema).
    bool has_table(std::string_view name);

    // PostgreSQL: connects again if the session was lost (including one the
    // server ended while it was idle); true if it had to and did. Statements prepare themselves again on their next
    // run.
    bool reconnect();
    // Increases with every new PostgreSQL session (for what a session
    // holds: prepared statements, advisory locks).
    uint64_t session() const noexcept { return session_; }

    sqlite3* handle() noexcept { return db_; }  // null on PostgreSQL
    PgConnection* pg() noexcept { return pg_.get(); }
    // The SQLite file, or the PostgreSQL database as "postgresql:dbname=...
    // host=..." without a password: for messages and logs.
    const std::string& path() const noexcept { return path_; }
    // What this Database was opened with (a PostgreSQL one may hold a
    // password): for opening another connection to the same store.
    const std::string& locator() const noexcept { return locator_; }

private:
    friend class Statement;
    std::string next_statement_name() { return "s" + std::to_string(++statements_); }

    // BEGIN IMMEDIATE and COMMIT on SQLite, prepared once (exec() would
    // parse them again for every commit).
    void run_cached(sqlite3_stmt*& st, const char* sql);

    sqlite3* db_ = nullptr;
    sqlite3_stmt* begin_write_ = nullptr;
    sqlite3_stmt* commit_ = nullptr;
    std::unique_ptr<PgConnection> pg_;
    std::string path_, locator_;
    uint64_t session_ = 1;
    uint64_t statements_ = 0;
    int64_t pg_changes_ = 0;
};

// One read transaction over several queries, so that they see the same
// commit; ended (nothing written) however the scope is left.
class ReadTransaction {
public:
    explicit ReadTransaction(Database& db) : db_(db) { db_.begin_read(); }
    ~ReadTransaction() { db_.end_read(); }
    ReadTransaction(const ReadTransaction&) = delete;
    ReadTransaction& operator=(const ReadTransaction&) = delete;

private:
    Database& db_;
};

[[noreturn]] void throw_sqlite(sqlite3* db, int rc, std::string_view context);

}  // namespace optgate::consentd
