// A thin RAII layer over the SQLite C API: a connection, prepared statements,
// and one exception type carrying SQLite's message. Control plane only.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace optgate::consentd {

class SqliteError : public std::runtime_error {
public:
    SqliteError(int code, const std::string& what) : std::runtime_error(what), code_(code) {}
    int code() const noexcept { return code_; }

private:
    int code_;
};

class Statement {
public:
    Statement() = default;
    Statement(sqlite3* db, std::string_view sql);
    ~Statement();
    Statement(Statement&& o) noexcept : db_(o.db_), st_(o.st_) { o.st_ = nullptr; }
    Statement& operator=(Statement&& o) noexcept;
    Statement(const Statement&) = delete;
    Statement& operator=(const Statement&) = delete;

    // Parameters are 1-based, as in SQLite. Text is copied (SQLITE_TRANSIENT).
    Statement& bind(int i, int64_t v);
    Statement& bind(int i, std::string_view v);
    Statement& bind(int i, const std::string& v) { return bind(i, std::string_view(v)); }
    Statement& bind(int i, const char* v) { return bind(i, std::string_view(v)); }
    Statement& bind(int i, const std::optional<std::string>& v);
    Statement& bind_null(int i);

    // True while a row is available; false once done. Throws on error.
    bool step();
    // Runs to completion (for statements that return no rows).
    void run();
    void reset();  // also clears bindings

    int64_t int64(int col) const { return sqlite3_column_int64(st_, col); }
    bool is_null(int col) const { return sqlite3_column_type(st_, col) == SQLITE_NULL; }
    std::string_view text(int col) const;
    std::optional<std::string> opt_text(int col) const;

private:
    sqlite3* db_ = nullptr;
    sqlite3_stmt* st_ = nullptr;
};

class Database {
public:
    enum class Mode { read_write_create, read_write, read_only };
    // `vfs`: a registered SQLite VFS by name (wal_write_buffer.hpp); the default one when null.
    Database(const std::string& path, Mode mode, const char* vfs = nullptr);
    ~Database();
    Database(const Database&) = delete;
    Database& operator=(const Database&) = delete;

    void exec(std::string_view sql);
    Statement prepare(std::string_view sql) { return Statement(db_, sql); }
    sqlite3* handle() noexcept { return db_; }
    const std::string& path() const noexcept { return path_; }

private:
    sqlite3* db_ = nullptr;
    std::string path_;
};

[[noreturn]] void throw_sqlite(sqlite3* db, int rc, std::string_view context);

}  // namespace optgate::consentd
