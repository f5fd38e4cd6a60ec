// The ledger: a database (SQLite, WAL, every commit fsync'd; or PostgreSQL,
// database.hpp) holding the
// append-only `events` table, their hash chain, and the derived `consents`
// and `bindings` tables kept in the same transaction as each event
// (docs/consentd.md, "Ledger schema").
//
// Ledger is the single writer. It owns the chain head: append() assigns each
// event its sequence number and hashes, and rollback() forgets what the
// failed transaction appended.
//
// Deferred sync (defer_sync(), LedgerService's pipeline): commit() then
// writes the transaction's WAL frames without the fsync (synchronous=NORMAL)
// and sync() makes every commit so far durable, from another thread while
// this one prepares and commits the next transaction. Nothing may be taken
// as durable (answered, published) before the sync() that follows its
// commit() has returned.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>

#include "consentd/database.hpp"
#include "consentd/event.hpp"
#include "consentd/fold.hpp"
#include "consentd/policy_history.hpp"

namespace optgate::consentd {

inline constexpr int kSchemaVersion = 1;

// The columns event_from_row() reads, in order.
inline constexpr std::string_view kEventColumns =
    "seq, time, subscriber, action, purpose, address, source, notice_version, credential, prev_hash, hash";
// Throws std::runtime_error on an action that is not one of the four.
Event event_from_row(const Statement& st);

// Throws std::runtime_error unless `db` holds a consentd ledger of this
// schema version.
void check_schema(Database& db);
bool has_table(Database& db, std::string_view name);

class Ledger {
public:
    // Creates the file and schema on first use.
    // PostgreSQL, `standby`: when another consentd holds the writer's
    // lock, wait until PostgreSQL grants it (the holder's session ended)
    // rather than refuse. `waiting` is called once if it has to wait.
    struct Options {
        bool standby = false;
        std::function<void(const std::string& why)> waiting;
        // PostgreSQL, `follow`: when another consentd is the writer, open
        // as a follower instead of waiting: writer() stays false until
        // take_writer_lock() succeeds, and nothing is written meanwhile.
        bool follow = false;
    };
    explicit Ledger(const std::string& path) : Ledger(path, Options{}) {}
    Ledger(const std::string& path, const Options& options);
    ~Ledger();
    Ledger(const Ledger&) = delete;
    Ledger& operator=(const Ledger&) = delete;

    uint64_t head_seq() const noexcept { return seq_; }
    const std::string& head_hash() const noexcept { return hash_hex_; }
    const Digest& head_digest() const noexcept { return hash_; }
    // The chain hash of the event append() wrote last (inside the open
    // transaction).
    const Digest& appended_digest() const noexcept { return pending_hash_; }

    // One transaction: begin(), append()..., commit(). Every call may throw
    // SqliteError; after one, call rollback().
    void begin();
    void append(Event& e);  // fills seq, prev_hash, hash; writes the event and its derived row
    void commit();          // durable once it returns, or, with defer_sync(), once sync() returns
    void rollback() noexcept;

    // PostgreSQL: the last commit() failed because the session was lost
    // with the COMMIT in flight, so the server may have recorded it. The
    // next begin() or writer_in_step() finds out: if the ledger ends with
    // that commit's last event, the head moves to it and take_adopted() is
    // true once.
    bool in_doubt() const noexcept { return in_doubt_.has_value(); }
    bool take_adopted() noexcept { return std::exchange(adopted_, false); }

    // Commits stop waiting for their fsync; sync() does it. False (and
    // commits stay synchronous=FULL) if the WAL file cannot be opened.
    // Between transactions.
    bool defer_sync();
    // Every transaction committed before the call is durable once it
    // returns (fdatasync of the WAL). The one member safe to call from
    // another thread, concurrently with any other. No-op without
    // defer_sync(). Throws std::system_error if the fsync fails: what the
    // WAL holds is then not known to be on disk.
    void sync() const;

    // The policy history (policy_history.hpp): `text` (nullopt: not known)
    // and the receipt issuer, in force from the next event. Between
    // transactions only.
    void record_policy(const std::optional<std::string>& text, const ReceiptIssuer& issuer);
    // The record in force for the next event; null when there is none.
    const std::shared_ptr<const PolicyRecord>& policy_record() const noexcept { return policy_record_; }

    // The derived rows, for loading the in-memory state at startup.
    void for_each_binding(const std::function<void(std::string_view address, std::string_view subscriber)>& fn);
    void for_each_consent(const std::function<void(std::string_view subscriber, std::string_view purpose)>& fn);

    // Replaces the consents and bindings tables with `fold`'s rows, in one
    // transaction (consentd --rebuild-derived-tables). Between transactions.
    void rebuild_derived(const LedgerFold& fold);

    Database& db() noexcept { return db_; }

    // SQLite: the writer connection's page cache, kWriterCachePages
    // between bulk writes and 64 MiB with `bulk` (an import's transaction;
    // ledger.cpp says why). No-op on PostgreSQL. Throws SqliteError.
    static constexpr int kWriterCachePages = 2048;  // 8 MiB of 4 KiB pages
    // SQLite's journal_size_limit: the WAL file's length kept between
    // restarts, above the writer's checkpoint mark (Checkpointer::Limits:
    // 65,536 frames of 4,120 bytes, 270 MB) so steady load never regrows it.
    static constexpr int64_t kWalBytesKept = int64_t(288) << 20;
    void bulk_cache(bool bulk);

    // ---- following another writer (PostgreSQL, Options::follow; docs/scale-out.md) ----
    // False while another consentd holds the writer's lock.
    bool writer() const noexcept { return writer_; }
    // True once this session holds the writer's lock. The head stays where
    // the follower left it: read the rest (events_from) before appending,
    // which begin() checks. Between transactions.
    bool take_writer_lock();
    // The writer's check that what it holds is the whole ledger
    // (docs/scale-out.md, "Fencing"): this session holds the writer's lock
    // (taken again if an earlier session lost it) and the stored head is
    // this Ledger's. False: another consentd took the lock, or appended
    // between two sessions. Throws when PostgreSQL cannot be asked. A
    // round trip; between transactions. Always true on SQLite.
    bool writer_in_step();
    // The events from `seq` on (that one included; from the first when 0),
    // at most `limit`, in order, in one read of their own.
    void events_from(uint64_t seq, size_t limit, const std::function<void(const Event&)>& fn);
    // The head moves to `e`, an event the follower read and checked to
    // chain from the head (prev_hash) and to hash to e.hash.
    void follow_to(const Event& e);
    // Reads the head again (a follower's state loaded in the same read).
    void reload_head() { load_head(); }
    // What the session holding the writer's lock calls itself
    // (application_name, set by advertise()); empty when none holds it.
    std::string writer_name();
    // This session's application_name: how followers name the writer.
    void advertise(const std::string& name);
    // The channel every commit notifies on PostgreSQL (pg_notify, sent in
    // the commit's transaction: heard once it is committed).
    static constexpr std::string_view kChannel = "optgate_ledger";

    // The advisory lock key of the writer's election on PostgreSQL (one
    // ledger per database: PostgreSQL scopes advisory locks to a database).
    static constexpr int64_t kWriterLock = 0x6f70746761746501;  // "optgate" 1

private:
    void open_sqlite(const std::string& path);
    void open_postgresql(const Options& options);
    void lock_writer();
    void create(std::string_view schema);  // a new ledger: tables and meta rows
    void for_each_row(std::string_view sql, const std::function<void(std::string_view, std::string_view)>& fn);
    void load_head();

    Database db_;
    Statement insert_event_, upsert_consent_, delete_consent_, upsert_binding_, delete_binding_, head_;
    uint64_t seq_ = 0;  // committed head
    Digest hash_{};
    std::string hash_hex_ = kGenesisHash;
    uint64_t pending_seq_ = 0;  // head inside the open transaction
    Digest pending_hash_{};
    std::string pending_hash_hex_ = kGenesisHash;
    bool open_ = false;
    int wal_fd_ = -1;  // defer_sync(): the WAL file, for sync()
    std::shared_ptr<const PolicyRecord> policy_record_;
    uint64_t locked_session_ = 0;                               // PostgreSQL: the session holding kWriterLock
    std::optional<std::pair<uint64_t, std::string>> in_doubt_;  // seq and hash of a commit in doubt
    // With the stored head read: a commit in doubt found there is adopted
    // (the head moves to it, adopted_); either way it is no longer in doubt.
    void settle_in_doubt(uint64_t stored, const std::string& stored_hash);
    bool adopted_ = false;
    bool writer_ = true;  // false: following another writer (Options::follow)
};

}  // namespace optgate::consentd
