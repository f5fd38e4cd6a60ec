// A thin RAII layer over libpq for the PostgreSQL ledger store (issue 19,
// docs/scale-out.md), and the two PostgreSQL features that several consentd
// instances build on:
//
//  - the writer's election: a session-level advisory lock, held while the
//    database session lives and released by PostgreSQL when it ends (the
//    process died, the network cut it, the server restarted);
//  - following the events table: LISTEN on a channel, wait_notification()
//    until a NOTIFY arrives or a deadline passes.
//
//   PgConnection c("host=/run/postgresql dbname=optgate");
//   c.exec("CREATE TABLE t (k BIGINT PRIMARY KEY, v TEXT)");
//   c.query("INSERT INTO t VALUES (?1, ?2)", {std::int64_t{1}, "one"});
//   const auto r = c.query("SELECT v FROM t WHERE k = ?1", {std::int64_t{1}});
//   r.text(0, 0) == "one"
//
// Parameters are written ?1, ?2... as in the SQLite layer (sqlite.hpp) and
// become $1, $2... outside quoted literals, identifiers and comments, so one
// statement text can serve both stores. Values travel as text (libpq's text
// format); NULL is std::nullopt. Control plane only: every call blocks.
#pragma once

#include <libpq-fe.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace optgate::consentd {

class PgError : public std::runtime_error {
public:
    // `sqlstate`: PostgreSQL's five-character error code ("23505" for a
    // unique violation), empty when the failure is not the server's answer
    // (the connection was lost, libpq could not send).
    PgError(std::string sqlstate, const std::string& what) : std::runtime_error(what), sqlstate_(std::move(sqlstate)) {}
    const std::string& sqlstate() const noexcept { return sqlstate_; }

private:
    std::string sqlstate_;
};

// A parameter: an integer, text, or NULL.
using PgValue = std::variant<std::nullopt_t, std::int64_t, std::string>;

class PgResult {
public:
    PgResult() = default;
    explicit PgResult(PGresult* r) : r_(r) {}
    ~PgResult() { PQclear(r_); }
    PgResult(PgResult&& o) noexcept : r_(o.r_) { o.r_ = nullptr; }
    PgResult& operator=(PgResult&& o) noexcept;
    PgResult(const PgResult&) = delete;
    PgResult& operator=(const PgResult&) = delete;

    int rows() const noexcept { return r_ ? PQntuples(r_) : 0; }
    // The command tag ("INSERT 0 1", "COMMIT"; "ROLLBACK" for a COMMIT of a
    // transaction that had failed).
    std::string_view command() const noexcept { return r_ ? PQcmdStatus(r_) : ""; }
    // Rows an INSERT, UPDATE or DELETE touched.
    std::int64_t changes() const;
    bool is_null(int row, int col) const { return PQgetisnull(r_, row, col) != 0; }
    std::string_view text(int row, int col) const;
    std::optional<std::string> opt_text(int row, int col) const;
    // Throws PgError if the value is not a decimal integer.
    std::int64_t int64(int row, int col) const;

private:
    PGresult* r_ = nullptr;
};

class PgConnection {
public:
    // `conninfo`: a libpq connection string or URI. Throws PgError when the
    // server cannot be reached or refuses. Over TCP, unless `conninfo` says
    // otherwise: connect_timeout 10 s, keepalives after 5 s idle every 2 s
    // (3 lost: dead), tcp_user_timeout 15 s; and the server's end of the
    // session is given the same keepalives (SET tcp_keepalives_*, and
    // client_connection_check_interval), here and after each reset().
    explicit PgConnection(const std::string& conninfo);
    ~PgConnection();
    PgConnection(const PgConnection&) = delete;
    PgConnection& operator=(const PgConnection&) = delete;

    // One or more statements without parameters.
    void exec(std::string_view sql);
    // One statement with parameters ?1..?N (params[0] is ?1).
    PgResult query(std::string_view sql, const std::vector<PgValue>& params = {});

    // A named server-side prepared statement (PQprepare): parsed and checked
    // once, run many times with query_prepared(). It lives as long as this
    // session; after reset() it must be prepared again.
    void prepare(const std::string& name, std::string_view sql);
    PgResult query_prepared(const std::string& name, const std::vector<PgValue>& params);

    // Pipelining (libpq's pipeline mode), for statements whose answer is
    // only "it worked": send() and send_prepared() queue a statement without
    // waiting for it. The next call that needs an answer (query(),
    // query_prepared(), prepare(), exec(), sync()) sends its own statement
    // behind them and reads every answer in the same round trip; the first
    // failure among them is what it throws. A batch of N events is then one
    // round trip instead of 2N. Only inside a transaction: there a failure
    // fails the transaction, whose COMMIT then reports it (query("COMMIT")
    // answers "ROLLBACK"), so no failure can be lost by being late. At most
    // kMaxQueued statements wait: the next one syncs first, which bounds
    // the memory both ends hold.
    static constexpr size_t kMaxQueued = 4096;
    void send(std::string_view sql);  // one statement, no parameters
    void send_prepared(const std::string& name, const std::vector<PgValue>& params);
    // Reads every queued answer; throws the first failure.
    void sync();
    // Reads every queued answer and forgets them, failures too (before a
    // ROLLBACK, or when the session is gone). Never throws.
    void discard() noexcept;
    size_t queued() const noexcept { return queued_; }

    // After the session was lost (the server restarted, the network cut it):
    // connects again with the same parameters. True if the new session is
    // up. Everything the old one held is gone: prepared statements, LISTEN,
    // advisory locks, an open transaction.
    bool reset();

    // From any thread: ends this session's blocking calls now, and its
    // reconnects for good. The socket is shut down, so a call waiting for
    // the server (one that hangs, or a network that holds the bytes: over a
    // Unix socket nothing else would ever end the wait) fails as if the
    // session were lost, and reset() no longer connects. For stopping a
    // thread that may be blocked in libpq (LedgerService::stop). The
    // connection must outlive the call.
    void interrupt() noexcept;
    bool interrupted() const noexcept { return interrupted_.load(std::memory_order_acquire); }

    // The writer's election (a session-level advisory lock on `key`): true
    // if this session holds it now. It stays held until unlock() or until
    // the session ends.
    bool try_lock(std::int64_t key);
    // The same, waiting in PostgreSQL's lock queue until it is granted.
    void lock(std::int64_t key);
    void unlock(std::int64_t key);

    // LISTEN on `channel` (an identifier: letters, digits, '_').
    void listen(std::string_view channel);
    struct Notification {
        std::string channel, payload;
        int sender_pid = 0;
    };
    // The next notification on a channel this session listens to, waiting
    // up to `timeout` for one; nullopt when none came. Throws PgError when
    // the connection is lost meanwhile.
    // `wake_fd` (an eventfd, say; -1: none): returns nullopt early once it
    // is readable (the caller drains it).
    std::optional<Notification> wait_notification(std::chrono::milliseconds timeout, int wake_fd = -1);

    // The server process serving this session (pg_backend_pid()).
    int backend_pid() const { return PQbackendPID(conn_); }
    // False once the session is lost, or once a pipeline's answers said it
    // is ending (the server shutting down, the session terminated) even
    // before libpq has seen the socket close: reset() it.
    bool ok() const { return !broken_ && PQstatus(conn_) == CONNECTION_OK; }
    PGconn* handle() noexcept { return conn_; }

    // Steady-clock nanoseconds of the server's last answer on this session
    // while it held an advisory lock that try_lock() took (0: never, or
    // since reset()): has the server answered lately (stopping reads it).
    std::int64_t locked_answer_ns() const noexcept { return locked_answer_ns_.load(std::memory_order_acquire); }
    // The same answer dated when its question was sent. A session that
    // answers still held its locks when the question reached the server;
    // an answer held up on the way back proves nothing about the time
    // since. The writer's fencing reads this one (docs/scale-out.md,
    // "Fencing"). Any thread.
    std::int64_t locked_asked_ns() const noexcept { return locked_asked_ns_.load(std::memory_order_acquire); }

private:
    void note_answer(std::chrono::steady_clock::time_point asked) noexcept;
    void enter_pipeline();
    // After a PQsend* call (its return value): counts the statement as
    // queued, or, if it could not be sent, forgets the pipeline and throws.
    void queued_one(int sent);
    // A statement whose answer the caller needs, sent behind the queued
    // ones: reads them all and returns its result.
    PgResult join_pipeline(int sent);
    // Sends Sync and reads the answers of the queued statements; returns
    // the last one's result. Throws the first failure, or the loss of the
    // session.
    PgResult finish_pipeline();

    PGconn* conn_ = nullptr;
    // Held while conn_'s socket may be closed or replaced (reset(), the
    // destructor), so that interrupt() never shuts a descriptor that has
    // been closed and perhaps reused for something else.
    std::mutex socket_mu_;
    void configure_session();  // the server's side of the keepalives (constructor, reset())
    std::atomic<bool> interrupted_{false};
    size_t queued_ = 0;    // statements sent in pipeline mode, answers not read
    bool broken_ = false;  // see ok()
    int locks_ = 0;        // advisory locks try_lock() took on this session
    std::atomic<std::int64_t> locked_answer_ns_{0};
    std::atomic<std::int64_t> locked_asked_ns_{0};
};

// `sql` with ?N parameters as PostgreSQL's $N, leaving quoted literals
// ('...'), quoted identifiers ("...") and comments (-- and /* */) as they
// are. (Dollar-quoted text is not recognised: the ledger's SQL has none.)
// `max_param`, when given, receives the highest N seen (0: none).
std::string pg_placeholders(std::string_view sql, int* max_param = nullptr);

}  // namespace optgate::consentd
