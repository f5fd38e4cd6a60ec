#include "consentd/database.hpp"

#include <charconv>
#include <cstdio>
#include <mutex>

namespace optgate::consentd {

bool is_postgresql_locator(std::string_view locator) {
    return locator.starts_with("postgresql:") || locator.starts_with("postgres:");
}

std::string postgresql_conninfo(std::string_view locator) {
    if (locator.starts_with("postgresql://") || locator.starts_with("postgres://")) return std::string(locator);
    return std::string(locator.substr(locator.find(':') + 1));  // "postgresql:" + keyword string
}

std::string printable_locator(std::string_view locator) {
    if (!is_postgresql_locator(locator)) return std::string(locator);
    char* err = nullptr;
    PQconninfoOption* options = PQconninfoParse(postgresql_conninfo(locator).c_str(), &err);
    if (!options) {
        PQfreemem(err);
        return "postgresql:(a connection string libpq cannot read)";
    }
    std::string out = "postgresql:";
    bool first = true;
    for (const PQconninfoOption* o = options; o->keyword; ++o) {
        if (!o->val || !*o->val || std::string_view(o->keyword) == "password") continue;
        if (!first) out += ' ';
        first = false;
        out += o->keyword;
        out += '=';
        out += o->val;
    }
    PQconninfoFree(options);
    return out;
}

namespace {

// What a PostgreSQL session is called in messages: never its password.
std::string describe_session(PgConnection& c) {
    std::string d = "postgresql:dbname=";
    d += PQdb(c.handle());
    const char* host = PQhost(c.handle());
    if (host && *host) d += std::string(" host=") + host;
    const char* port = PQport(c.handle());
    if (port && *port) d += std::string(" port=") + port;
    return d;
}

}  // namespace

struct Statement::Pg {
    Database* db = nullptr;
    std::string sql;  // as written, with ?N
    std::string name;
    int params_needed = 0;
    uint64_t session = 0;  // the session it was prepared in
    std::vector<PgValue> params;
    PgResult result;
    int row = -1;
    bool executed = false;
    // stream(): read through a cursor, kStreamRows at a time.
    bool streaming = false;
    bool cursor_open = false;
    bool cursor_done = false;  // the last FETCH returned fewer rows than asked
};

namespace {

constexpr int kStreamRows = 10000;

}  // namespace

void throw_sqlite(sqlite3* db, int rc, std::string_view context) {
    std::string msg(context);
    msg += ": ";
    msg += db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    throw SqliteError(rc, msg);
}

Statement::Statement(sqlite3* db, std::string_view sql) : db_(db) {
    const int rc = sqlite3_prepare_v3(db, sql.data(), int(sql.size()), SQLITE_PREPARE_PERSISTENT, &st_, nullptr);
    if (rc != SQLITE_OK) throw_sqlite(db, rc, "preparing '" + std::string(sql.substr(0, 60)) + "'");
}

Statement::Statement(Database& db, std::string_view sql) {
    if (!db.postgresql()) {
        *this = Statement(db.handle(), sql);
        return;
    }
    pg_ = std::make_unique<Pg>();
    pg_->db = &db;
    pg_->sql = std::string(sql);
    pg_->name = db.next_statement_name();
    pg_prepare();
}

void Statement::pg_prepare() {
    pg_placeholders(pg_->sql, &pg_->params_needed);
    pg_->db->pg()->prepare(pg_->name, pg_->sql);
    pg_->session = pg_->db->session();
}

Statement::Statement() = default;

Statement::~Statement() {
    sqlite3_finalize(st_);
    if (pg_) pg_stop();
    if (pg_ && pg_->db->pg()->ok() && pg_->session == pg_->db->session()) {
        try {
            // Behind queued statements it waits its turn too, so that their
            // failure is read by the next statement that needs an answer.
            PgConnection& c = *pg_->db->pg();
            if (c.queued())
                c.send("DEALLOCATE " + pg_->name);
            else
                c.exec("DEALLOCATE " + pg_->name);
        } catch (const std::exception&) {  // NOLINT(bugprone-empty-catch): an aborted transaction; the session keeps it
        }
    }
}

Statement::Statement(Statement&& o) noexcept : db_(o.db_), st_(o.st_), pg_(std::move(o.pg_)) { o.st_ = nullptr; }

Statement& Statement::operator=(Statement&& o) noexcept {
    if (this != &o) {
        Statement gone(std::move(*this));
        db_ = o.db_;
        st_ = o.st_;
        o.st_ = nullptr;
        pg_ = std::move(o.pg_);
    }
    return *this;
}

namespace {

PgValue& parameter(std::vector<PgValue>& params, int i) {
    if (i < 1 || i > 100000) throw std::out_of_range("parameter ?" + std::to_string(i) + " out of range");
    if (params.size() < size_t(i)) params.resize(size_t(i), std::nullopt);
    return params[size_t(i) - 1];
}

}  // namespace

Statement& Statement::bind(int i, int64_t v) {
    if (pg_) {
        pg_stop();
        parameter(pg_->params, i) = v;
        return *this;
    }
    const int rc = sqlite3_bind_int64(st_, i, v);
    if (rc != SQLITE_OK) throw_sqlite(db_, rc, "binding a parameter");
    return *this;
}

Statement& Statement::bind(int i, std::string_view v) {
    if (pg_) {
        pg_stop();
        parameter(pg_->params, i) = std::string(v);
        return *this;
    }
    const int rc = sqlite3_bind_text64(st_, i, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
    if (rc != SQLITE_OK) throw_sqlite(db_, rc, "binding a parameter");
    return *this;
}

Statement& Statement::bind(int i, const std::optional<std::string>& v) {
    return v ? bind(i, std::string_view(*v)) : bind_null(i);
}

Statement& Statement::bind_ref(int i, std::string_view v) {
    if (pg_) return bind(i, v);
    const int rc = sqlite3_bind_text64(st_, i, v.data(), v.size(), SQLITE_STATIC, SQLITE_UTF8);
    if (rc != SQLITE_OK) throw_sqlite(db_, rc, "binding a parameter");
    return *this;
}

Statement& Statement::bind_ref(int i, const std::optional<std::string>& v) {
    return v ? bind_ref(i, std::string_view(*v)) : bind_null(i);
}

Statement& Statement::bind_null(int i) {
    if (pg_) {
        pg_stop();
        parameter(pg_->params, i) = std::nullopt;
        return *this;
    }
    const int rc = sqlite3_bind_null(st_, i);
    if (rc != SQLITE_OK) throw_sqlite(db_, rc, "binding a parameter");
    return *this;
}

void Statement::stream() {
    if (pg_) pg_->streaming = true;
}

void Statement::pg_stop() noexcept {
    Pg& p = *pg_;
    p.executed = false;
    p.result = PgResult();
    if (!p.cursor_open) return;
    p.cursor_open = false;
    // Gone with the transaction if that ended, or the session.
    if (!p.db->pg()->ok() || !p.db->in_transaction()) return;
    char close[64];
    std::snprintf(close, sizeof close, "CLOSE c%s", p.name.c_str());
    try {
        PgConnection& c = *p.db->pg();
        if (c.queued())
            c.send(close);  // behind them, as the destructor's DEALLOCATE
        else
            c.exec(close);
    } catch (const std::exception&) {  // NOLINT(bugprone-empty-catch): the transaction failed; its COMMIT says so
    }
}

bool Statement::pg_fetch() {
    Pg& p = *pg_;
    p.result = PgResult();
    p.result = p.db->pg()->query("FETCH FORWARD " + std::to_string(kStreamRows) + " FROM c" + p.name);
    p.cursor_done = p.result.rows() < kStreamRows;
    p.row = 0;
    return p.result.rows() > 0;
}

bool Statement::step() {
    if (pg_) {
        Pg& p = *pg_;
        if (!p.executed) {
            if (p.session != p.db->session()) pg_prepare();  // a new session since: prepare again
            if (p.params.size() < size_t(p.params_needed)) p.params.resize(size_t(p.params_needed), std::nullopt);
            p.result = PgResult();
            // Executed only once the server answered: a statement that threw
            // (the session lost, a queued statement's failure read with it)
            // runs again at its next step().
            // A cursor lives in a transaction: outside one, the whole result.
            if (p.streaming && p.db->in_transaction()) {
                p.db->pg()->query("DECLARE c" + p.name + " NO SCROLL CURSOR FOR " + p.sql, p.params);
                p.executed = true;
                p.cursor_open = true;
                if (pg_fetch()) return true;
                pg_stop();
                return false;
            }
            p.result = p.db->pg()->query_prepared(p.name, p.params);
            p.executed = true;
            p.db->pg_changes_ = p.result.changes();
            p.row = 0;
        } else {
            ++p.row;
        }
        if (p.row < p.result.rows()) return true;
        if (p.cursor_open && !p.cursor_done && pg_fetch()) return true;
        pg_stop();  // as SQLite: the next step() runs it again
        return false;
    }
    const int rc = sqlite3_step(st_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    std::string msg = std::string("executing a statement: ") + sqlite3_errmsg(db_);
    sqlite3_reset(st_);           // leave the statement reusable
    sqlite3_clear_bindings(st_);  // and holding no text of the caller's (bind_ref)
    throw SqliteError(rc, msg);
}

void Statement::run() {
    while (step()) {
    }
    reset();
}

void Statement::queue() {
    if (!pg_ || !pg_->db->in_transaction()) {
        run();
        return;
    }
    Pg& p = *pg_;
    pg_stop();
    if (p.session != p.db->session()) pg_prepare();  // a new session since: prepare again
    if (p.params.size() < size_t(p.params_needed)) p.params.resize(size_t(p.params_needed), std::nullopt);
    p.db->pg()->send_prepared(p.name, p.params);
    p.params.clear();  // as run() leaves it
}

void Statement::reset() {
    if (pg_) {
        pg_stop();
        pg_->params.clear();
        return;
    }
    sqlite3_reset(st_);
    sqlite3_clear_bindings(st_);
}

int64_t Statement::int64(int col) const {
    if (pg_) {
        if (pg_->result.is_null(pg_->row, col)) return 0;  // as SQLite reads NULL
        return pg_->result.int64(pg_->row, col);
    }
    return sqlite3_column_int64(st_, col);
}

bool Statement::is_null(int col) const {
    if (pg_) return pg_->result.is_null(pg_->row, col);
    return sqlite3_column_type(st_, col) == SQLITE_NULL;
}

std::string_view Statement::text(int col) const {
    if (pg_) return pg_->result.text(pg_->row, col);
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(st_, col));
    if (!p) return {};
    return {p, size_t(sqlite3_column_bytes(st_, col))};
}

std::optional<std::string> Statement::opt_text(int col) const {
    if (is_null(col)) return std::nullopt;
    return std::string(text(col));
}

void configure_sqlite() noexcept {
    static std::once_flag once;
    // Refused (SQLITE_MISUSE) once the library is initialized: then SQLite
    // keeps its defaults, which are correct, only slower.
    std::call_once(once, [] { sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); });
}

Database::Database(const std::string& locator, Mode mode, const char* vfs) : path_(locator), locator_(locator) {
    configure_sqlite();
    if (is_postgresql_locator(locator)) {
        pg_ = std::make_unique<PgConnection>(postgresql_conninfo(locator));
        path_ = describe_session(*pg_);
        // Quiet: NOTICEs ("relation already exists, skipping") are not ours to print.
        pg_->exec("SET client_min_messages = warning");
        if (mode == Mode::read_only) pg_->exec("SET default_transaction_read_only = on");
        return;
    }
    int flags = SQLITE_OPEN_NOMUTEX;  // one connection per thread
    switch (mode) {
    case Mode::read_write_create: flags |= SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE; break;
    case Mode::read_write: flags |= SQLITE_OPEN_READWRITE; break;
    case Mode::read_only: flags |= SQLITE_OPEN_READONLY; break;
    }
    const int rc = sqlite3_open_v2(locator.c_str(), &db_, flags, vfs);
    if (rc != SQLITE_OK) {
        std::string msg = "cannot open database '" + locator + "': " + (db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc));
        sqlite3_close(db_);
        db_ = nullptr;
        throw SqliteError(rc, msg);
    }
    sqlite3_extended_result_codes(db_, 1);
    // A reader may briefly wait for a checkpoint or the writer's lock.
    sqlite3_busy_timeout(db_, 5000);
}

Database::~Database() {
    sqlite3_finalize(begin_write_);
    sqlite3_finalize(commit_);
    sqlite3_close_v2(db_);
}

void Database::run_cached(sqlite3_stmt*& st, const char* sql) {
    if (!st) {
        const int rc = sqlite3_prepare_v2(db_, sql, -1, &st, nullptr);
        if (rc != SQLITE_OK) throw_sqlite(db_, rc, std::string("preparing '") + sql + "'");
    }
    const int rc = sqlite3_step(st);
    // The message before the reset, which would replace it.
    const std::string msg = rc == SQLITE_DONE ? std::string() : std::string("'") + sql + "': " + sqlite3_errmsg(db_);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) throw SqliteError(rc, msg);
}

void Database::exec(std::string_view sql) {
    if (pg_) {
        pg_->exec(sql);
        return;
    }
    std::string s(sql);
    char* err = nullptr;
    const int rc = sqlite3_exec(db_, s.c_str(), nullptr, nullptr, &err);
    if (rc != SQLITE_OK) {
        std::string msg = std::string("'") + s.substr(0, 60) + "': " + (err ? err : sqlite3_errstr(rc));
        sqlite3_free(err);
        throw SqliteError(rc, msg);
    }
}

void Database::begin_write() {
    if (pg_) {
        reconnect();
        pg_->send("BEGIN");  // answered with the transaction's first read, or its COMMIT
        return;
    }
    run_cached(begin_write_, "BEGIN IMMEDIATE");
}

void Database::begin_read() {
    if (pg_) {
        reconnect();
        pg_->exec("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY");
        return;
    }
    exec("BEGIN");
}

void Database::commit() {
    if (!pg_) {
        run_cached(commit_, "COMMIT");
        return;
    }
    // Sent behind the queued statements. A transaction that failed answers
    // COMMIT with "ROLLBACK" and no error: that must not pass for success.
    const PgResult r = pg_->query("COMMIT");
    if (r.command() != "COMMIT")
        throw PgError("25P02", "PostgreSQL: the transaction had failed and was rolled back (" +
                                   std::string(r.command()) + "), nothing was recorded");
}

void Database::end_read() noexcept {
    if (pg_) {
        pg_->discard();
        if (pg_->ok()) PQclear(PQexec(pg_->handle(), "COMMIT"));
        return;
    }
    sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr);
}

void Database::rollback() noexcept {
    if (pg_) {
        // On a lost session there is nothing to roll back: the server did.
        pg_->discard();
        if (pg_->ok()) PQclear(PQexec(pg_->handle(), "ROLLBACK"));
        return;
    }
    // Fails only if SQLite already rolled back (e.g. after SQLITE_FULL).
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
}

int64_t Database::changes() const { return pg_ ? pg_changes_ : sqlite3_changes64(db_); }

bool Database::in_transaction() const {
    // A lost session holds no transaction (the server ended it), whatever
    // libpq's state: the next begin_*() connects again.
    if (pg_) return pg_->ok() && (pg_->queued() > 0 || PQtransactionStatus(pg_->handle()) != PQTRANS_IDLE);
    return sqlite3_get_autocommit(db_) == 0;
}

bool Database::has_table(std::string_view name) {
    auto st = prepare(pg_ ? "SELECT 1 FROM pg_tables WHERE schemaname = current_schema() AND tablename = ?1"
                          : "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1");
    st.bind(1, name);
    return st.step();
}

bool Database::reconnect() {
    if (!pg_) return false;
    // An idle session the server ended (a restart) is still "ok" to libpq
    // until it reads: read what is there now, without waiting, so that the
    // first transaction after a restart starts on a new session instead of
    // failing on the old one. Twice: a server that ends a session sends a
    // FATAL message, then closes; the second read meets the close.
    for (int i = 0; i < 2 && pg_->ok() && pg_->queued() == 0; ++i) PQconsumeInput(pg_->handle());
    if (pg_->ok()) return false;
    if (!pg_->reset()) return false;  // still down: the next statement says so
    ++session_;
    pg_->exec("SET client_min_messages = warning");
    return true;
}

}  // namespace optgate::consentd
