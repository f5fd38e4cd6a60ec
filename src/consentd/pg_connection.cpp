#include "consentd/pg_connection.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <memory>
#include <optional>

namespace optgate::consentd {

namespace {

// libpq's messages end with a newline.
std::string without_trailing_space(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
}

PgError result_error(PGconn* conn, const PGresult* r, std::string_view context) {
    const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
    const char* message = r ? PQresultErrorMessage(r) : nullptr;
    return {state ? state : "", without_trailing_space(std::string(context) + ": " +
                                                       (message && *message ? message : PQerrorMessage(conn)))};
}

[[noreturn]] void throw_result(PGconn* conn, const PGresult* r, std::string_view context) {
    throw result_error(conn, r, context);
}

bool succeeded(const PGresult* r) {
    const auto s = PQresultStatus(r);
    return s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK || s == PGRES_EMPTY_QUERY;
}

bool is_identifier(std::string_view s) {
    if (s.empty() || s.size() > 63) return false;
    for (char c : s)
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) return false;
    return !(s[0] >= '0' && s[0] <= '9');
}

}  // namespace

PgResult& PgResult::operator=(PgResult&& o) noexcept {
    if (this != &o) {
        PQclear(r_);
        r_ = o.r_;
        o.r_ = nullptr;
    }
    return *this;
}

std::int64_t PgResult::changes() const {
    const char* n = r_ ? PQcmdTuples(r_) : "";
    std::int64_t v = 0;
    std::from_chars(n, n + std::char_traits<char>::length(n), v);
    return v;
}

std::string_view PgResult::text(int row, int col) const {
    return {PQgetvalue(r_, row, col), size_t(PQgetlength(r_, row, col))};
}

std::optional<std::string> PgResult::opt_text(int row, int col) const {
    if (is_null(row, col)) return std::nullopt;
    return std::string(text(row, col));
}

std::int64_t PgResult::int64(int row, int col) const {
    const auto t = text(row, col);
    std::int64_t v = 0;
    const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
    if (ec != std::errc() || end != t.data() + t.size() || t.empty())
        throw PgError("", "column " + std::to_string(col) + " is not an integer: '" + std::string(t) + "'");
    return v;
}

namespace {

// Defaults for a session over TCP, each overridden by the same keyword in
// the caller's connection string (libpq keeps the last value, and the
// string is expanded after these). A writer whose network to PostgreSQL
// dies silently must find out in seconds, not after TCP's retransmission
// timeout (about 15 minutes): its requests are answered 503 meanwhile, and
// PostgreSQL must end the session (freeing the writer's lock for a
// standby) on its side too (docs/scale-out.md, "Settings for failover").
constexpr const char* kKeywords[] = {"connect_timeout",  "keepalives",       "keepalives_idle", "keepalives_interval",
                                     "keepalives_count", "tcp_user_timeout", "dbname",          nullptr};

PGconn* connect(const std::string& conninfo) {
    const char* values[] = {"10", "1", "5", "2", "3", "15000", conninfo.c_str(), nullptr};
    return PQconnectdbParams(kKeywords, values, 1);
}

bool decimal(const char* v) {
    if (!v || !*v) return false;
    for (const char* c = v; *c; ++c)
        if (*c < '0' || *c > '9') return false;
    return std::strlen(v) <= 9;
}

// The statements that give PostgreSQL's end of a TCP session the keepalives
// libpq gave ours (the defaults above, or the caller's): the server then
// ends a session whose client went silent (a dead machine, a cut network)
// in seconds, which frees its advisory locks, the writer's among them, for
// a standby. Without them that takes the server's tcp_keepalives_* (by
// default the kernel's two hours). client_connection_check_interval
// (PostgreSQL 14) makes a session waiting inside a statement, a standby in
// pg_advisory_lock, notice too, and leave the lock's queue. Empty over a
// Unix socket (no keepalives there) or with keepalives=0.
std::string server_keepalives(PGconn* c) {
    sockaddr_storage a{};
    socklen_t len = sizeof a;
    if (getsockname(PQsocket(c), reinterpret_cast<sockaddr*>(&a), &len) != 0 ||
        (a.ss_family != AF_INET && a.ss_family != AF_INET6))
        return {};
    std::string on, idle, interval, count;
    const std::unique_ptr<PQconninfoOption, decltype(&PQconninfoFree)> opts(PQconninfo(c), &PQconninfoFree);
    for (const PQconninfoOption* o = opts.get(); o && o->keyword; ++o) {
        const std::string_view k = o->keyword;
        const char* v = o->val ? o->val : "";
        if (k == "keepalives") on = v;
        if (k == "keepalives_idle") idle = v;
        if (k == "keepalives_interval") interval = v;
        if (k == "keepalives_count") count = v;
    }
    if (on == "0") return {};
    std::string sql;
    if (decimal(idle.c_str())) sql += "SET tcp_keepalives_idle = " + idle + ";";
    if (decimal(interval.c_str())) {
        sql += "SET tcp_keepalives_interval = " + interval + ";";
        if (PQserverVersion(c) >= 140000) sql += "SET client_connection_check_interval = '" + interval + "s';";
    }
    if (decimal(count.c_str())) sql += "SET tcp_keepalives_count = " + count + ";";
    return sql;
}

}  // namespace

PgConnection::PgConnection(const std::string& conninfo) : conn_(connect(conninfo)) {
    if (!conn_) throw PgError("", "PostgreSQL: out of memory");
    if (PQstatus(conn_) != CONNECTION_OK) {
        const std::string why = without_trailing_space(PQerrorMessage(conn_));
        PQfinish(conn_);
        conn_ = nullptr;
        throw PgError("", "cannot connect to PostgreSQL: " + why);
    }
    try {
        configure_session();
    } catch (...) {
        PQfinish(conn_);
        conn_ = nullptr;
        throw;
    }
}

void PgConnection::configure_session() {
    const std::string sql = server_keepalives(conn_);
    if (!sql.empty()) exec(sql);
}

PgConnection::~PgConnection() {
    std::lock_guard lk(socket_mu_);
    PQfinish(conn_);
}

void PgConnection::interrupt() noexcept {
    interrupted_.store(true, std::memory_order_release);
    std::lock_guard lk(socket_mu_);
    const int fd = conn_ ? PQsocket(conn_) : -1;
    // Not close(): the descriptor stays libpq's, which sees the end of the
    // stream and reports the session lost.
    if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
}

void PgConnection::exec(std::string_view sql) {
    sync();  // several statements in one string cannot join a pipeline
    const std::string text(sql);
    const auto asked = std::chrono::steady_clock::now();
    // PQexec returns the last statement's result; an error stops the rest.
    const std::unique_ptr<PGresult, decltype(&PQclear)> r(PQexec(conn_, text.c_str()), &PQclear);
    if (!r || !succeeded(r.get())) throw_result(conn_, r.get(), "PostgreSQL");
    note_answer(asked);
}

void PgConnection::note_answer(std::chrono::steady_clock::time_point asked) noexcept {
    if (locks_ == 0) return;
    locked_asked_ns_.store(asked.time_since_epoch().count(), std::memory_order_release);
    locked_answer_ns_.store(std::chrono::steady_clock::now().time_since_epoch().count(), std::memory_order_release);
}

namespace {

// libpq's text-format parameter values, NULL for SQL NULL.
struct ParamValues {
    explicit ParamValues(const std::vector<PgValue>& params) : storage(params.size()), values(params.size(), nullptr) {
        for (size_t i = 0; i < params.size(); ++i) {
            if (const auto* n = std::get_if<std::int64_t>(&params[i])) {
                storage[i] = std::to_string(*n);
                values[i] = storage[i].c_str();
            } else if (const auto* s = std::get_if<std::string>(&params[i])) {
                values[i] = s->c_str();
            }
        }
    }
    std::vector<std::string> storage;
    std::vector<const char*> values;
};

PgResult checked(PGconn* conn, PGresult* raw) {
    if (!raw || !succeeded(raw)) {
        const std::unique_ptr<PGresult, decltype(&PQclear)> owned(raw, &PQclear);
        throw_result(conn, raw, "PostgreSQL");
    }
    return PgResult(raw);
}

}  // namespace

PgResult PgConnection::query(std::string_view sql, const std::vector<PgValue>& params) {
    const std::string text = pg_placeholders(sql);
    const ParamValues v(params);
    if (queued_) {
        return join_pipeline(
            PQsendQueryParams(conn_, text.c_str(), int(params.size()), nullptr, v.values.data(), nullptr, nullptr, 0));
    }
    const auto asked = std::chrono::steady_clock::now();
    auto r = checked(
        conn_, PQexecParams(conn_, text.c_str(), int(params.size()), nullptr, v.values.data(), nullptr, nullptr, 0));
    note_answer(asked);
    return r;
}

void PgConnection::prepare(const std::string& name, std::string_view sql) {
    const std::string text = pg_placeholders(sql);
    if (queued_) {
        join_pipeline(PQsendPrepare(conn_, name.c_str(), text.c_str(), 0, nullptr));
        return;
    }
    const auto asked = std::chrono::steady_clock::now();
    checked(conn_, PQprepare(conn_, name.c_str(), text.c_str(), 0, nullptr));
    note_answer(asked);
}

PgResult PgConnection::query_prepared(const std::string& name, const std::vector<PgValue>& params) {
    const ParamValues v(params);
    if (queued_) {
        return join_pipeline(
            PQsendQueryPrepared(conn_, name.c_str(), int(params.size()), v.values.data(), nullptr, nullptr, 0));
    }
    const auto asked = std::chrono::steady_clock::now();
    auto r = checked(conn_,
                     PQexecPrepared(conn_, name.c_str(), int(params.size()), v.values.data(), nullptr, nullptr, 0));
    note_answer(asked);
    return r;
}

void PgConnection::enter_pipeline() {
    if (queued_ >= kMaxQueued) sync();
    if (PQpipelineStatus(conn_) == PQ_PIPELINE_OFF && PQenterPipelineMode(conn_) != 1)
        throw_result(conn_, nullptr, "PostgreSQL pipeline");
}

void PgConnection::queued_one(int sent) {
    if (sent != 1) {
        const PgError lost = result_error(conn_, nullptr, "PostgreSQL");
        discard();
        throw lost;
    }
    ++queued_;
}

PgResult PgConnection::join_pipeline(int sent) {
    queued_one(sent);
    return finish_pipeline();
}

void PgConnection::send(std::string_view sql) {
    enter_pipeline();
    const std::string text(sql);
    queued_one(PQsendQueryParams(conn_, text.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 0));
}

void PgConnection::send_prepared(const std::string& name, const std::vector<PgValue>& params) {
    enter_pipeline();
    const ParamValues v(params);
    queued_one(PQsendQueryPrepared(conn_, name.c_str(), int(params.size()), v.values.data(), nullptr, nullptr, 0));
}

void PgConnection::sync() {
    if (queued_) finish_pipeline();
}

void PgConnection::discard() noexcept {
    try {
        sync();
    } catch (const std::exception&) {  // NOLINT(bugprone-empty-catch): forgetting them is the point
    }
}

namespace {

// A failure that ends the session or says nothing of what the server did
// (no SQLSTATE: libpq's own; 08: connection; 57: the server shutting down or
// the session terminated; 58 and XX: system and internal errors), as opposed
// to the server's definite refusal of a statement.
bool session_ending(const PgError& e) {
    const std::string& s = e.sqlstate();
    return s.empty() || s.starts_with("08") || s.starts_with("57") || s.starts_with("58") || s.starts_with("XX");
}

}  // namespace

PgResult PgConnection::finish_pipeline() {
    const size_t n = queued_;
    queued_ = 0;
    // The Sync is what the last answer below answers: its question's time.
    const auto asked = std::chrono::steady_clock::now();
    if (PQpipelineSync(conn_) != 1) {
        broken_ = true;
        throw_result(conn_, nullptr, "PostgreSQL connection lost");
    }
    // Each statement's answer is its result(s) then a null; after the last
    // one, the Sync's. After a failure the rest answer PGRES_PIPELINE_ABORTED.
    std::optional<PgError> failure;
    PgResult last;
    bool last_answered = false;  // the last statement succeeded
    size_t answered = 0;         // statements whose answer ended (their null came)
    bool synced = false;
    for (;;) {
        PGresult* r = PQgetResult(conn_);
        if (!r) {
            // Past the last statement a null means libpq expects nothing
            // more (a session ending at the Sync): never wait for it.
            if (PQstatus(conn_) != CONNECTION_OK || ++answered > n) break;
            continue;
        }
        PgResult result(r);
        const auto status = PQresultStatus(r);
        if (status == PGRES_PIPELINE_SYNC) {
            synced = true;
            break;
        }
        if (status == PGRES_PIPELINE_ABORTED) continue;
        if (!succeeded(r)) {
            if (!failure) failure = result_error(conn_, r, "PostgreSQL");
            if (PQstatus(conn_) != CONNECTION_OK) break;
        } else if (answered + 1 == n) {
            last = std::move(result);
            last_answered = true;
        }
    }
    // Not back at the Sync, or a failure that ends the session: the session
    // is not to be trusted with another statement. ok() says so from now
    // on, and the next transaction starts on a new one (Database::reconnect).
    if (!synced || (failure && session_ending(*failure)) || PQexitPipelineMode(conn_) != 1) broken_ = true;
    if (!broken_) note_answer(asked);
    // The last statement's own success stands whatever came after it: a
    // COMMIT answered "COMMIT" is recorded even if the session then ended.
    if (last_answered) return last;
    if (failure) throw *failure;
    throw_result(conn_, nullptr, "PostgreSQL connection lost");
}

bool PgConnection::reset() {
    queued_ = 0;  // gone with the session (libpq leaves pipeline mode too)
    broken_ = false;
    locks_ = 0;  // and its locks
    locked_answer_ns_.store(0, std::memory_order_release);
    locked_asked_ns_.store(0, std::memory_order_release);
    {
        // Bounded by connect_timeout (connect() above), Unix sockets included.
        std::lock_guard lk(socket_mu_);
        if (interrupted_.load(std::memory_order_acquire)) return false;
        PQreset(conn_);
        if (!ok()) return false;
    }
    // Outside the lock: interrupt() may end this statement as any other.
    try {
        configure_session();  // a new session: the server's side of its keepalives again
    } catch (const PgError&) {
        return ok();  // the session failed again at once; the next statement says why
    }
    return true;
}

bool PgConnection::try_lock(std::int64_t key) {
    const auto asked = std::chrono::steady_clock::now();
    const auto r = query("SELECT pg_try_advisory_lock(?1)", {key});
    if (r.rows() != 1 || r.text(0, 0) != "t") return false;
    ++locks_;
    note_answer(asked);
    return true;
}

void PgConnection::lock(std::int64_t key) {
    const auto asked = std::chrono::steady_clock::now();
    query("SELECT pg_advisory_lock(?1)", {key});
    ++locks_;
    note_answer(asked);
}

void PgConnection::unlock(std::int64_t key) {
    query("SELECT pg_advisory_unlock(?1)", {key});
    if (locks_ > 0) --locks_;
}

void PgConnection::listen(std::string_view channel) {
    if (!is_identifier(channel))
        throw PgError("", "'" + std::string(channel) + "' is not a channel name (letters, digits, '_')");
    exec("LISTEN " + std::string(channel));
}

std::optional<PgConnection::Notification> PgConnection::wait_notification(std::chrono::milliseconds timeout,
                                                                          int wake_fd) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        if (PQconsumeInput(conn_) == 0) throw_result(conn_, nullptr, "PostgreSQL connection lost");
        if (PGnotify* n = PQnotifies(conn_)) {
            Notification out{n->relname ? n->relname : "", n->extra ? n->extra : "", n->be_pid};
            PQfreemem(n);
            return out;
        }
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
                                                                                std::chrono::steady_clock::now());
        if (left.count() <= 0) return std::nullopt;
        pollfd p[2] = {{PQsocket(conn_), POLLIN, 0}, {wake_fd, POLLIN, 0}};
        if (p[0].fd < 0) throw_result(conn_, nullptr, "PostgreSQL connection lost");
        if (::poll(p, wake_fd >= 0 ? 2 : 1, int(left.count())) < 0 && errno != EINTR)
            throw PgError("", std::string("poll on the PostgreSQL connection: ") + std::strerror(errno));
        if (wake_fd >= 0 && (p[1].revents & POLLIN)) return std::nullopt;
    }
}

std::string pg_placeholders(std::string_view sql, int* max_param) {
    if (max_param) *max_param = 0;
    std::string out;
    out.reserve(sql.size());
    size_t i = 0;
    const auto copy_until = [&](std::string_view end) {
        const size_t at = sql.find(end, i);
        const size_t stop = at == std::string_view::npos ? sql.size() : at + end.size();
        out.append(sql.substr(i, stop - i));
        i = stop;
    };
    while (i < sql.size()) {
        const char c = sql[i];
        if (c == '\'' || c == '"') {
            // A doubled quote inside is two literals back to back: the same text.
            out.push_back(c);
            ++i;
            copy_until(std::string_view(&c, 1));
        } else if (c == '-' && i + 1 < sql.size() && sql[i + 1] == '-') {
            copy_until("\n");
        } else if (c == '/' && i + 1 < sql.size() && sql[i + 1] == '*') {
            out.append("/*");
            i += 2;
            copy_until("*/");
        } else if (c == '?' && i + 1 < sql.size() && sql[i + 1] >= '0' && sql[i + 1] <= '9') {
            out.push_back('$');
            ++i;
            int n = 0;
            for (size_t j = i; j < sql.size() && sql[j] >= '0' && sql[j] <= '9' && n < 100000; ++j)
                n = n * 10 + (sql[j] - '0');
            if (max_param && n > *max_param) *max_param = n;
        } else {
            out.push_back(c);
            ++i;
        }
    }
    return out;
}

}  // namespace optgate::consentd
