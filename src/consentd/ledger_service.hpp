// The ledger writer: one thread that owns the Ledger and the ConsentState,
// and turns queued requests into durable events by group commit.
//
// submit() queues a change from any thread. The writer takes every request
// queued while its previous commit was being written (up to max_batch),
// judges each against the current state and policy, appends their events and
// derived rows in ONE transaction, commits it and hands it to the sync
// thread. That thread fsyncs the WAL (Ledger::sync()), tells the table
// listeners and only then completes the requests, while the writer already
// judges and writes the next batch: two commits in flight at most, one being
// written, one being fsync'd, so the fsync no longer adds to the writer's
// time per batch. Every batch passes through the sync thread in order, a
// batch that recorded nothing too: its answers may rest on the state an
// earlier batch made, which must be durable first. A request that fails
// validation records nothing and does not affect its batch; a commit that
// fails rolls back the whole batch, answers each request "unavailable" and
// reloads the in-memory state from the database, so memory never runs ahead
// of the disk. An fsync that fails ends the process (nothing after it can be
// known to be on disk; the supervisor restarts from what is).
//
// Every accepted request is recorded, repeats included (a grant of a purpose
// already granted is a new event: the latest notice version and channel are
// what the consents row shows). Auditors see every request; the derived state
// is the same either way.
//
// For the data-plane publisher (issue 6): add_listener() and snapshot().
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "consentd/binding_address.hpp"
#include "consentd/checkpointer.hpp"
#include "consentd/consent_state.hpp"
#include "consentd/import_parser.hpp"
#include "consentd/ledger.hpp"
#include "consentd/metrics.hpp"
#include "consentd/radius_sessions.hpp"
#include "consentd/receipt.hpp"

namespace optgate::consentd {

struct ConsentChange {
    std::string subscriber;
    std::string purpose;
    bool grant = true;
    std::string source;
    std::optional<std::string> notice_version;
};

struct BindChange {
    AddressText address;
    std::string subscriber;
    std::string source;
};

struct UnbindChange {
    AddressText address;
    std::optional<std::string> expected_subscriber;  // only unbind from this holder
    std::string source;
};

struct ImportChange {
    std::shared_ptr<const std::vector<ImportRecord>> records;
    // The policy the records were validated against; under another one the
    // writer checks them again.
    std::shared_ptr<const Policy> validated_against;
};

struct PolicyChange {
    std::shared_ptr<const Policy> policy;
    std::optional<std::string> text{};  // as read: recorded in the policy history (receipts)
};

// RADIUS accounting (radius_server.hpp, docs/radius.md): one request's
// effect on its session's bindings, in one commit, with the session kept in
// the side tables (radius_sessions.hpp). `bindings` are keys already shaped
// to the policy's key length; under a policy reloaded meanwhile, those that
// no longer fit are skipped.
struct SessionChange {
    enum class Kind : uint8_t {
        bind,         // Start, Interim-Update: bind `bindings` to `subscriber` for the session
        release,      // Stop: unbind what the session still holds (`bindings` and any other)
        release_nas,  // Accounting-On/Off: unbind every binding held through (client, nas)
    };
    Kind kind = Kind::bind;
    RadiusSession session;
    std::string subscriber;
    std::vector<Prefix> bindings;
    std::string source;
};

using Change = std::variant<ConsentChange, BindChange, UnbindChange, ImportChange, PolicyChange, SessionChange>;

struct Outcome {
    enum class Status : uint8_t { ok, invalid, not_found, conflict, unavailable };
    Status status = Status::ok;
    std::string code;  // error code, when not ok
    std::string message;

    uint64_t first_seq = 0;  // events recorded (none: 0)
    uint64_t last_seq = 0;
    size_t events = 0;
    std::string time;
    bool changed = false;  // the derived state changed (not a repeat)
    std::string subscriber;
    std::string address;                             // bind/unbind: the binding's stored text
    std::optional<std::string> previous_subscriber;  // bind: who held the address
    bool table_resync = false;                       // policy: the table's meaning changed
    std::optional<ReceiptSource> receipt{};          // grant, revoke: its receipt (docs/receipts.md)
    size_t bound = 0, unbound = 0;                   // session: bind and unbind events among `events`
};

// The chain hashes of a commit's events, oldest first: the last one is the
// hash at the commit's sequence (docs/consentd.md, "Ledger schema").
using ChainHashes = std::vector<Digest>;

// Hears what each commit did to the consent table. Called in commit order,
// once the commit is durable, on the sync thread (on_commit) or the writer
// (on_resync, on_policy), never two at once: do not block, do not call back
// into the service.
class TableListener {
public:
    virtual ~TableListener() = default;
    // After each commit that recorded events: its last sequence number,
    // the table changes it caused (at most one per key; possibly none) and
    // the chain hash of each of its events.
    virtual void on_commit(uint64_t seq, const std::vector<proto::TableChange>& changes, const ChainHashes& chain) = 0;
    // After a policy change altered the table's meaning (purposes, key
    // length, subscriber prefixes), or the state was read again from the
    // ledger (a commit in doubt adopted, a failed read recovered): the
    // table was recomputed as of `seq`, whose chain hash is `head`; resend
    // it whole.
    virtual void on_resync(uint64_t seq, const Digest& head, const std::shared_ptr<const Policy>& policy,
                           const std::string& table_version) = 0;
    // After a policy change that leaves the table's meaning alone (same
    // table_version; e.g. collectors, identifiers or limits changed): data
    // planes need the new policy, not a new table.
    virtual void on_policy(uint64_t /*seq*/, const std::shared_ptr<const Policy>& /*policy*/,
                           const std::string& /*table_version*/) {}
};

class LedgerService {
public:
    struct Options {
        size_t max_batch = 4096;
        // The policy's text as read, and consentd's `receipts:` config: the
        // service records them in the policy history before any event is
        // judged under the policy (nullopt text: recorded as unknown).
        std::optional<std::string> policy_text{};
        ReceiptIssuer receipts{};
        // WAL checkpoints on a thread of their own (checkpointer.hpp) while
        // the writer runs.
        Checkpointer::Limits checkpoints{};
        // PostgreSQL (docs/scale-out.md, "Fencing"): how long this consentd
        // may go without confirming that it holds the whole ledger before
        // in_step() is false. 0: always in step (SQLite: the file is the
        // ledger, nobody else writes it).
        std::chrono::milliseconds fence_after{0};
        // PostgreSQL: how long stop() gives the writer to commit and answer
        // what is queued before it cuts the session, if the server does not
        // answer meanwhile (end_stuck_session). A follower, which has
        // nothing to finish, gets a second.
        std::chrono::milliseconds stop_grace{20000};
    };

    // Loads the in-memory state from the ledger's derived tables.
    LedgerService(std::unique_ptr<Ledger> ledger, std::shared_ptr<const Policy> policy, Metrics& metrics,
                  Options options);
    ~LedgerService();
    LedgerService(const LedgerService&) = delete;
    LedgerService& operator=(const LedgerService&) = delete;

    // Starts the writer and the checkpointer.
    void start();
    // Finishes every queued request, then stops the writer. On PostgreSQL,
    // a writer (or follower) still blocked on the server after stop_grace
    // has its session cut (PgConnection::interrupt): its batch in flight
    // is answered 503, and the stop ends.
    void stop();

    // Called once the outcome is durable (or refused), on the ledger's sync
    // thread (a policy change: on the writer): hand it to your own executor.
    using Done = std::function<void(Outcome)>;
    // `credential` is the token name recorded on the events.
    void submit(Change change, std::string credential, Done done);

    std::shared_ptr<const Policy> policy() const;
    uint64_t head_seq() const;

    void add_listener(TableListener* l);
    void remove_listener(TableListener* l);
    // Runs fn(seq, state) with the state lock held: a consistent table as of
    // commit `seq` (state.for_each_entry), with no commit in between, and
    // durable: it waits for the sync of the commits before it (at most one
    // fsync). Listeners may hear commits up to `seq` after it; ignore them.
    // Pair it with add_listener() under the same call to miss nothing.
    void snapshot(const std::function<void(uint64_t seq, const ConsentState& state)>& fn) const;
    // The same, with the chain hash at `seq`.
    void snapshot(const std::function<void(uint64_t seq, const Digest& head, const ConsentState& state)>& fn) const;
    // Waits until every ledger write begun so far is durable (at most the
    // fsync in flight and the batch being written). A reader of the ledger
    // calls it after its read and before answering: no answer then shows a
    // change that a crash could still take back (LedgerReader).
    void wait_durable() const;

    // ---- followers (Ledger::Options::follow; docs/scale-out.md, "Followers") ----
    // True while another consentd is the writer: this one applies the
    // events it appends (LISTEN/NOTIFY, and a catch-up by sequence) to the
    // state and tells the listeners, as if they were its own commits, and
    // answers changes 503 `not_writer`, naming the writer. A policy change
    // is installed in memory only (the writer records its own). Once the
    // writer's lock is free it takes it, applies what is left, records its
    // policy and serves changes.
    bool following() const noexcept { return following_.load(std::memory_order_acquire); }
    // How this consentd names itself to followers while it is the writer
    // (PostgreSQL: the session's application_name), e.g. "consentd
    // http://10.0.0.5:8080". Any thread.
    void advertise(std::string name);

    // ---- fencing (docs/scale-out.md, "Fencing") ----
    // False once this consentd has gone Options::fence_after without
    // confirming that its state is the ledger's. A follower confirms with
    // each read of the events (at least every 200 ms). The writer confirms
    // with every answer PostgreSQL gives the session that holds the
    // writer's lock (nobody else can append meanwhile); idle, it asks every
    // fence_after / 4 whether it still holds the lock and the head, and
    // follows whoever took them. Cut off from PostgreSQL, another consentd
    // may be recording changes this one cannot see: its data planes must go
    // to an instance that can (the publisher closes them) or go stale and
    // strip. Any thread.
    bool in_step() const noexcept;

private:
    struct Pending {
        Change change;
        std::string credential;
        Done done;
    };
    struct Batch;
    // A batch handed from the writer to the sync thread.
    struct Committed {
        std::vector<Pending> requests;
        std::vector<Outcome> outcomes;
        std::string failure;    // the commit failed: every request is refused with it
        bool in_doubt = false;  // PostgreSQL lost the session with the COMMIT in flight
        uint64_t seq = 0;       // the ledger's head after this batch
        std::vector<proto::TableChange> deltas;
        ChainHashes chain;  // of its events
        std::array<uint64_t, kActionCount> counts{};
        size_t events = 0;
        size_t subscribers = 0, bindings = 0, table_entries = 0;  // gauges, as of this batch
        std::chrono::steady_clock::time_point started;
        uint64_t write = 0;  // its number among the writes (writes_begun_)
    };

    void run();
    // stop()'s part on PostgreSQL (stop() above).
    void end_stuck_session();
    void run_sync();
    // After an import's batch: the writer's page cache small again.
    void small_writer_cache();
    // Waits until the sync thread has taken every batch handed to it
    // (`idle`: and finished it).
    void wait_sync(bool idle);
    void commit_batch(std::vector<Pending>& batch);
    void finish(Committed& c);
    void install_policy(Pending& p);
    void adopt_commit_in_doubt();
    Outcome apply(Pending& p, Batch& b);
    Outcome apply_consent(const ConsentChange& c, const std::string& credential, Batch& b);
    Outcome apply_bind(const BindChange& c, const std::string& credential, Batch& b);
    Outcome apply_unbind(const UnbindChange& c, const std::string& credential, Batch& b);
    Outcome apply_import(const ImportChange& c, const std::string& credential, Batch& b);
    Outcome apply_session(const SessionChange& c, const std::string& credential, Batch& b);
    // Appends a bind of `binding` to `subscriber`, unbinding any other holder
    // first; returns that holder.
    std::optional<std::string> record_bind(const Prefix& binding, const std::string& subscriber,
                                           const std::string& source, const std::string& credential, Batch& b);
    uint64_t record(Event& e, Batch& b);
    // After a failed batch that cannot be undone in memory (an import):
    // the state read again from the ledger, or, if it cannot be read, an
    // empty one marked stale (state_stale_).
    void reload_state();
    // A stale state read again from the ledger, and the data planes sent
    // the table whole; `failure` says why not.
    void reread_stale_state(std::string& failure);
    void publish_gauges();
    // Installs a policy in memory and tells the listeners (state_mu_ held).
    void apply_policy(const std::shared_ptr<const Policy>& policy, Outcome& o);
    // Following: until this consentd holds the writer's lock (true) or stops (false).
    bool follow();
    // Applies what the writer appended after the head, in order, checking
    // the chain; the listeners hear each read as one commit.
    void catch_up();
    // The queued requests while following: policies installed, the rest refused.
    void answer_while_following(std::vector<Pending>& taken);
    Outcome not_writer() const;
    // advertise()'s name, set on the session if it changed (or the session did).
    void apply_advertised();
    void sync_or_exit() const;

    std::unique_ptr<Ledger> ledger_;
    RadiusSessions radius_sessions_;  // side tables, created when the ledger opens
    Metrics& metrics_;
    Options options_;

    mutable std::mutex state_mu_;  // state_, policy_ (writes); the writer's transaction
    ConsentState state_;
    bool state_stale_ = false;  // reload_state() failed: state_ is empty until read again (state_mu_)

    mutable std::mutex listeners_mu_;  // listeners_, and calls to them
    std::vector<TableListener*> listeners_;

    mutable std::mutex policy_mu_;  // readers of policy_ from other threads
    std::shared_ptr<const Policy> policy_;

    std::mutex queue_mu_;
    std::condition_variable queue_cv_;
    std::deque<Pending> queue_;
    bool stopping_ = false;
    bool run_ended_ = false;                      // the writer thread's run() returned
    std::atomic<uint64_t> committed_seq_{0};      // durable and told to the listeners
    std::unique_ptr<Checkpointer> checkpointer_;  // while the writer runs
    std::thread writer_;

    // The writer's hand-off to the sync thread (docs/consentd.md, "Durability
    // and group commit").
    mutable std::mutex sync_mu_;
    mutable std::condition_variable sync_cv_;  // work for the sync thread, and progress for the others
    std::deque<Committed> to_sync_;
    bool syncing_ = false;        // the sync thread holds batches it took
    bool sync_stopping_ = false;  // the writer is gone: finish what is queued, then stop
    uint64_t synced_seq_ = 0;     // durable and told to the listeners (sync_mu_)
    // Ledger writes (batches, policy records) are numbered as they begin,
    // before anything of them is visible to a reader, and become durable in
    // that order: a reader that has seen a write waits for its number.
    std::atomic<uint64_t> writes_begun_{0};
    uint64_t writes_durable_ = 0;  // sync_mu_
    std::thread syncer_;

    std::atomic<bool> following_{false};
    // Steady-clock nanoseconds of the last confirmation (in_step()): when a
    // follower asked for the events it has since applied; the writer's
    // session also counts each answer while it holds the lock, as of its
    // question (PgConnection::locked_asked_ns).
    std::atomic<int64_t> in_step_at_{0};
    const PgConnection* pg_ = nullptr;  // the ledger's session (PostgreSQL), stable for its life
    void confirmed_in_step(std::chrono::steady_clock::time_point asked) noexcept;
    uint64_t mark_head_durable();  // state_mu_ held
    // The writer, idle for fence_after / 4: confirms it is in step, or,
    // if another consentd took the lock, follows it. False: stopping.
    bool confirm_writer();
    bool confirm_failing_ = false;     // writer thread: logged once per outage
    std::string advertised_;           // queue_mu_
    bool advertise_pending_ = false;   // queue_mu_: the writer thread sets it on the session
    uint64_t advertised_session_ = 0;  // writer thread: the session it was set on
    mutable std::mutex writer_name_mu_;
    std::string writer_name_;  // following: what the writer calls itself (writer_name_mu_)
};

// Builds the in-memory state from the ledger's derived tables.
ConsentState load_state(Ledger& ledger, std::shared_ptr<const Policy> policy);

}  // namespace optgate::consentd
