#include "consentd/sqlite.hpp"

namespace optgate::consentd {

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

Statement::~Statement() { sqlite3_finalize(st_); }

Statement& Statement::operator=(Statement&& o) noexcept {
    if (this != &o) {
        sqlite3_finalize(st_);
        db_ = o.db_;
        st_ = o.st_;
        o.st_ = nullptr;
    }
    return *this;
}

Statement& Statement::bind(int i, int64_t v) {
    const int rc = sqlite3_bind_int64(st_, i, v);
    if (rc != SQLITE_OK) throw_sqlite(db_, rc, "binding a parameter");
    return *this;
}

Statement& Statement::bind(int i, std::string_view v) {
    const int rc = sqlite3_bind_text64(st_, i, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
    if (rc != SQLITE_OK) throw_sqlite(db_, rc, "binding a parameter");
    return *this;
}

Statement& Statement::bind(int i, const std::optional<std::string>& v) {
    return v ? bind(i, std::string_view(*v)) : bind_null(i);
}

Statement& Statement::bind_null(int i) {
    const int rc = sqlite3_bind_null(st_, i);
    if (rc != SQLITE_OK) throw_sqlite(db_, rc, "binding a parameter");
    return *this;
}

bool Statement::step() {
    const int rc = sqlite3_step(st_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    std::string msg = std::string("executing a statement: ") + sqlite3_errmsg(db_);
    sqlite3_reset(st_);  // leave the statement reusable
    throw SqliteError(rc, msg);
}

void Statement::run() {
    while (step()) {
    }
    reset();
}

void Statement::reset() {
    sqlite3_reset(st_);
    sqlite3_clear_bindings(st_);
}

std::string_view Statement::text(int col) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(st_, col));
    if (!p) return {};
    return {p, size_t(sqlite3_column_bytes(st_, col))};
}

std::optional<std::string> Statement::opt_text(int col) const {
    if (is_null(col)) return std::nullopt;
    return std::string(text(col));
}

Database::Database(const std::string& path, Mode mode, const char* vfs) : path_(path) {
    int flags = SQLITE_OPEN_NOMUTEX;  // one connection per thread
    switch (mode) {
    case Mode::read_write_create: flags |= SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE; break;
    case Mode::read_write: flags |= SQLITE_OPEN_READWRITE; break;
    case Mode::read_only: flags |= SQLITE_OPEN_READONLY; break;
    }
    const int rc = sqlite3_open_v2(path.c_str(), &db_, flags, vfs);
    if (rc != SQLITE_OK) {
        std::string msg = "cannot open database '" + path + "': " + (db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc));
        sqlite3_close(db_);
        db_ = nullptr;
        throw SqliteError(rc, msg);
    }
    sqlite3_extended_result_codes(db_, 1);
    // A reader may briefly wait for a checkpoint or the writer's lock.
    sqlite3_busy_timeout(db_, 5000);
}

Database::~Database() { sqlite3_close_v2(db_); }

void Database::exec(std::string_view sql) {
    std::string s(sql);
    char* err = nullptr;
    const int rc = sqlite3_exec(db_, s.c_str(), nullptr, nullptr, &err);
    if (rc != SQLITE_OK) {
        std::string msg = std::string("'") + s.substr(0, 60) + "': " + (err ? err : sqlite3_errstr(rc));
        sqlite3_free(err);
        throw SqliteError(rc, msg);
    }
}

}  // namespace optgate::consentd
