#include "consentd/ledger.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <stdexcept>
#include <system_error>

#include "consentd/schema.hpp"
#include "consentd/wal_write_buffer.hpp"

namespace optgate::consentd {

bool has_table(Database& db, std::string_view name) { return db.has_table(name); }

Event event_from_row(const Statement& st) {
    Event e;
    e.seq = uint64_t(st.int64(0));
    e.time = st.text(1);
    e.subscriber = st.text(2);
    const auto action = parse_action(st.text(3));
    if (!action)
        throw std::runtime_error("event " + std::to_string(e.seq) + " has an unknown action '" +
                                 std::string(st.text(3)) + "'");
    e.action = *action;
    e.purpose = st.opt_text(4);
    e.address = st.opt_text(5);
    e.source = st.text(6);
    e.notice_version = st.opt_text(7);
    e.credential = st.text(8);
    e.prev_hash = st.text(9);
    e.hash = st.text(10);
    return e;
}

void check_schema(Database& db) {
    if (!has_table(db, "meta"))
        throw std::runtime_error("'" + db.path() + "' is not a consentd ledger (no meta table)");
    auto st = db.prepare("SELECT value FROM meta WHERE key = 'schema_version'");
    if (!st.step()) throw std::runtime_error("'" + db.path() + "' has no schema_version");
    const std::string v(st.text(0));
    if (v != std::to_string(kSchemaVersion))
        throw std::runtime_error("'" + db.path() + "' has ledger schema version " + v + "; this consentd reads " +
                                 std::to_string(kSchemaVersion));
}

// The writer's connection gathers each commit's WAL frames into one write
// (wal_write_buffer.hpp); every other connection uses SQLite's default VFS.
Ledger::Ledger(const std::string& path, const Options& options)
    : db_(path, Database::Mode::read_write_create, wal_write_buffer_vfs()) {
    if (db_.postgresql())
        open_postgresql(options);
    else
        open_sqlite(path);
    policy_record_ = latest_policy_record(db_);
    insert_event_ = db_.prepare(
        "INSERT INTO events (seq, time, subscriber, action, purpose, address, source, notice_version, credential, "
        "prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)");
    upsert_consent_ = db_.prepare(
        "INSERT INTO consents (subscriber, purpose, seq, time, source, notice_version, credential) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (subscriber, purpose) DO UPDATE SET seq = excluded.seq, "
        "time = excluded.time, source = excluded.source, notice_version = excluded.notice_version, "
        "credential = excluded.credential");
    delete_consent_ = db_.prepare("DELETE FROM consents WHERE subscriber = ?1 AND purpose = ?2");
    upsert_binding_ = db_.prepare(
        "INSERT INTO bindings (address, subscriber, seq, time, source, credential) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (address) DO UPDATE SET subscriber = excluded.subscriber, "
        "seq = excluded.seq, time = excluded.time, source = excluded.source, credential = excluded.credential");
    delete_binding_ = db_.prepare("DELETE FROM bindings WHERE address = ?1");
    head_ = db_.prepare("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1");
    load_head();
}

void Ledger::open_sqlite(const std::string& path) {
    {
        auto st = db_.prepare("PRAGMA journal_mode = WAL");
        if (!st.step() || st.text(0) != "wal")
            throw std::runtime_error("'" + path + "': cannot switch the database to WAL mode");
    }
    // FULL: a commit is on disk (WAL fsync'd) before commit() returns.
    db_.exec("PRAGMA synchronous = FULL");
    bulk_cache(false);
    // A WAL grown past this (an import is one transaction) is cut back to it
    // when it starts again; below it, the file is written over in place.
    db_.exec("PRAGMA journal_size_limit = " + std::to_string(kWalBytesKept));
    // events.action's CHECK cannot fail for rows written here (append()
    // writes to_string of the enum), and SQLite evaluates its four-value IN
    // list by building a temporary index on every insert: about a sixth of
    // an event's insert. Off for this connection only: any other writer
    // (sqlite3, tools) still gets the CHECK, and verify-ledger refuses an
    // unknown action.
    db_.exec("PRAGMA ignore_check_constraints = ON");
    if (!has_table(db_, "meta")) create(kLedgerSchema);
    check_schema(db_);
    migrate_schema(db_);         // side tables of an older consentd's layout
    create_policy_history(db_);  // additive: older ledgers gain it
}

void Ledger::open_postgresql(const Options& options) {
    // One writer per ledger: the session that holds the lock. PostgreSQL
    // frees it when the session ends, however it ends.
    if (options.follow && !db_.pg()->try_lock(kWriterLock)) {
        // The writer made the schema; a follower reads, and writes nothing.
        writer_ = false;
        if (options.waiting)
            options.waiting("another consentd is the writer of " + db_.path() +
                            ": following its events, serving reads, until its session ends");
        check_schema(db_);
        return;
    }
    if (options.standby && !db_.pg()->try_lock(kWriterLock)) {
        if (options.waiting)
            options.waiting("another consentd is the writer of " + db_.path() + ": standing by until its session ends");
        // Blocks in PostgreSQL's lock queue: granted the moment the
        // holder's session ends, without polling.
        db_.pg()->lock(kWriterLock);
        locked_session_ = db_.session();
    } else {
        lock_writer();
    }
    if (!has_table(db_, "meta")) create(kPgSchema);
    check_schema(db_);
}

void Ledger::lock_writer() {
    if (!db_.pg()->try_lock(kWriterLock))
        throw std::runtime_error("another consentd is using " + db_.path() +
                                 " (it holds the ledger's writer lock, a PostgreSQL advisory lock)");
    locked_session_ = db_.session();
}

void Ledger::create(std::string_view schema) {
    db_.begin_write();
    try {
        db_.exec(schema);
        auto st = db_.prepare("INSERT INTO meta (key, value) VALUES ('schema_version', ?1), ('hash', ?2)");
        st.bind(1, std::to_string(kSchemaVersion)).bind(2, std::string_view("sha256, optgate-ledger-v1"));
        st.run();
        db_.commit();
    } catch (...) {
        db_.rollback();
        throw;
    }
}

Ledger::~Ledger() {
    if (wal_fd_ >= 0) ::close(wal_fd_);
}

bool Ledger::defer_sync() {
    if (db_.postgresql()) return false;  // a commit is durable when it returns
    if (wal_fd_ >= 0) return true;
    // The file SQLite writes the WAL to (symbolic links resolved as it does).
    const char* wal = sqlite3_filename_wal(sqlite3_db_filename(db_.handle(), "main"));
    if (!wal || !*wal) return false;
    const int fd = ::open(wal, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    // SQLite fsyncs the directory of a WAL it created at that WAL's first
    // sync; without its syncs that is ours to do, once.
    const std::string dir = std::filesystem::path(wal).parent_path().string();
    const int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    const bool dir_synced = dfd >= 0 && ::fsync(dfd) == 0;
    if (dfd >= 0) ::close(dfd);
    if (!dir_synced || ::fdatasync(fd) != 0) {
        ::close(fd);
        return false;
    }
    // The WAL file stays the same file while this connection is open (SQLite
    // deletes it only when the last connection closes), so one descriptor
    // serves for the daemon's life.
    wal_fd_ = fd;
    db_.exec("PRAGMA synchronous = NORMAL");
    return true;
}

void Ledger::sync() const {
    if (wal_fd_ < 0) return;
    // fdatasync flushes the file, whichever descriptor wrote it: every frame
    // SQLite wrote before this call, the WAL header and the file's size.
    if (::fdatasync(wal_fd_) != 0) throw std::system_error(errno, std::generic_category(), "fsync of the WAL");
}

void Ledger::load_head() {
    uint64_t seq = 0;
    std::string hex = kGenesisHash;
    if (head_.step()) {
        seq = uint64_t(head_.int64(0));
        hex = head_.text(1);
    }
    head_.reset();
    const auto d = digest_from_hex(hex);
    if (!d) throw std::runtime_error("event " + std::to_string(seq) + " has a malformed hash '" + hex + "'");
    if (seq > 0) {
        // A head that does not hash to itself means the file was edited or
        // damaged: refuse to extend it (verify-ledger says where it breaks).
        auto st = db_.prepare("SELECT " + std::string(kEventColumns) + " FROM events WHERE seq = ?1");
        st.bind(1, int64_t(seq));
        st.step();
        const Event last = event_from_row(st);
        const auto prev = digest_from_hex(last.prev_hash);
        if (!prev || !digest_equal(event_hash(*prev, last), *d))
            throw std::runtime_error("the ledger's last event (" + std::to_string(seq) +
                                     ") does not match its hash: run optgatectl verify-ledger");
    }
    seq_ = pending_seq_ = seq;
    hash_ = pending_hash_ = *d;
    hash_hex_ = pending_hash_hex_ = hex;
}

void Ledger::begin() {
    db_.begin_write();
    open_ = true;
    // A new PostgreSQL session (the old one was lost) holds no lock yet:
    // take it again before writing, or stop if another consentd took it.
    if (db_.postgresql() && locked_session_ != db_.session()) lock_writer();
    // The chain continues from our head only if nobody else appended: a
    // second writer on the same file would fork it.
    uint64_t stored = 0;
    std::string stored_hash;
    if (head_.step()) {
        stored = uint64_t(head_.int64(0));
        stored_hash = head_.text(1);
    }
    head_.reset();
    settle_in_doubt(stored, stored_hash);
    if (stored != seq_)
        throw std::runtime_error("the ledger's last event is " + std::to_string(stored) + ", expected " +
                                 std::to_string(seq_) + ": another process is writing to this database");
}

void Ledger::append(Event& e) {
    e.seq = pending_seq_ + 1;
    e.prev_hash = pending_hash_hex_;
    const Digest h = event_hash(pending_hash_, e);
    e.hash = to_hex(h);

    // The texts are the event's own (bind_ref: not copied); each statement
    // runs before this function returns.
    insert_event_.bind(1, int64_t(e.seq))
        .bind_ref(2, e.time)
        .bind_ref(3, e.subscriber)
        .bind_ref(4, to_string(e.action))
        .bind_ref(5, e.purpose)
        .bind_ref(6, e.address)
        .bind_ref(7, e.source)
        .bind_ref(8, e.notice_version)
        .bind_ref(9, e.credential)
        .bind_ref(10, e.prev_hash)
        .bind_ref(11, e.hash);
    insert_event_.queue();

    switch (e.action) {
    case Action::grant:
        upsert_consent_.bind_ref(1, e.subscriber)
            .bind_ref(2, *e.purpose)
            .bind(3, int64_t(e.seq))
            .bind_ref(4, e.time)
            .bind_ref(5, e.source)
            .bind_ref(6, e.notice_version)
            .bind_ref(7, e.credential);
        upsert_consent_.queue();
        break;
    case Action::revoke:
        delete_consent_.bind_ref(1, e.subscriber).bind_ref(2, *e.purpose);
        delete_consent_.queue();
        break;
    case Action::bind:
        upsert_binding_.bind_ref(1, *e.address)
            .bind_ref(2, e.subscriber)
            .bind(3, int64_t(e.seq))
            .bind_ref(4, e.time)
            .bind_ref(5, e.source)
            .bind_ref(6, e.credential);
        upsert_binding_.queue();
        break;
    case Action::unbind:
        delete_binding_.bind_ref(1, *e.address);
        delete_binding_.queue();
        break;
    }
    pending_seq_ = e.seq;
    pending_hash_ = h;
    pending_hash_hex_ = e.hash;
}

void Ledger::commit() {
    // Followers wake on it (LISTEN); delivered only if the commit is.
    if (db_.postgresql() && pending_seq_ != seq_)
        db_.pg()->send("SELECT pg_notify('" + std::string(kChannel) + "', '')");
    try {
        db_.commit();
    } catch (...) {
        // The session went with the COMMIT: PostgreSQL may have recorded it.
        if (db_.postgresql() && !db_.pg()->ok()) in_doubt_.emplace(pending_seq_, pending_hash_hex_);
        throw;
    }
    open_ = false;
    seq_ = pending_seq_;
    hash_ = pending_hash_;
    hash_hex_ = pending_hash_hex_;
}

void Ledger::rollback() noexcept {
    pending_seq_ = seq_;
    pending_hash_ = hash_;
    pending_hash_hex_ = hash_hex_;
    if (!open_) return;
    open_ = false;
    db_.rollback();
}

bool Ledger::take_writer_lock() {
    // Held by this session, or lost with an earlier one: take it again.
    if (writer_ && locked_session_ == db_.session()) return true;
    writer_ = db_.pg()->try_lock(kWriterLock);
    if (writer_) locked_session_ = db_.session();
    return writer_;
}

void Ledger::settle_in_doubt(uint64_t stored, const std::string& stored_hash) {
    if (!in_doubt_) return;
    if (stored != seq_ && stored == in_doubt_->first && stored_hash == in_doubt_->second) {
        const auto d = digest_from_hex(stored_hash);
        if (!d) throw std::runtime_error("event " + std::to_string(stored) + " has a malformed hash");
        seq_ = pending_seq_ = stored;
        hash_ = pending_hash_ = *d;
        hash_hex_ = pending_hash_hex_ = stored_hash;
        adopted_ = true;
    }
    in_doubt_.reset();  // recorded (adopted) or not (the head is ours)
}

bool Ledger::writer_in_step() {
    if (!db_.postgresql()) return true;
    ReadTransaction read(db_);  // a lost session is opened again here, before the lock is asked for
    uint64_t stored = 0;
    std::string stored_hash;
    bool locked = false;
    try {
        locked = take_writer_lock();
        if (locked && head_.step()) {
            stored = uint64_t(head_.int64(0));
            stored_hash = head_.text(1);
        }
    } catch (...) {
        head_.reset();  // before the transaction ends
        throw;
    }
    head_.reset();
    // A commit whose answer was lost may be the head: ours, not another
    // writer's (the caller takes it in when take_adopted() says so).
    if (locked) settle_in_doubt(stored, stored_hash);
    return locked && stored == seq_ && stored_hash == (stored ? hash_hex_ : std::string());
}

void Ledger::events_from(uint64_t seq, size_t limit, const std::function<void(const Event&)>& fn) {
    ReadTransaction read(db_);
    auto st = db_.prepare("SELECT " + std::string(kEventColumns) +
                          " FROM events WHERE seq >= ?1 ORDER BY seq LIMIT ?2");
    st.bind(1, int64_t(seq)).bind(2, int64_t(limit));
    while (st.step()) fn(event_from_row(st));
}

void Ledger::follow_to(const Event& e) {
    const auto d = digest_from_hex(e.hash);
    if (!d) throw std::runtime_error("event " + std::to_string(e.seq) + " has a malformed hash '" + e.hash + "'");
    seq_ = pending_seq_ = e.seq;
    hash_ = pending_hash_ = *d;
    hash_hex_ = pending_hash_hex_ = e.hash;
}

std::string Ledger::writer_name() {
    // An advisory lock on a bigint key: its high half is classid, its low
    // half objid (objsubid 1), in the current database.
    const auto key = uint64_t(kWriterLock);
    const auto r = db_.pg()->query(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND l.classid = CAST(?1 AS oid) "
        "AND l.objid = CAST(?2 AS oid) AND l.database = (SELECT oid FROM pg_database WHERE datname = "
        "current_database())",
        {int64_t(key >> 32), int64_t(key & 0xffffffffU)});
    return r.rows() == 1 && !r.is_null(0, 0) ? std::string(r.text(0, 0)) : std::string();
}

void Ledger::advertise(const std::string& name) {
    db_.pg()->query("SELECT set_config('application_name', ?1, false)", {name});
}

void Ledger::record_policy(const std::optional<std::string>& text, const ReceiptIssuer& issuer) {
    policy_record_ = append_policy_record(db_, seq_ + 1, text, issuer);
}

// The writer's page cache is SQLite's pcache1, and every COMMIT truncates
// it to the database's size. When a B-tree split reordered its new pages
// in that transaction (balance_nonroot: most commits of random keys), the
// cache's largest key is the lock-byte page's number (262,145 for 4 KiB
// pages: a temporary key for the swap), and below a database of 1 GiB the
// truncate then walks every hash slot and every cached page: a cost in
// proportion to the cache, paid per commit. At 16,384 pages it was a fifth
// of the writer thread's time under RADIUS load (docs/benchmarks.md, "The
// writer's page cache and the WAL's length"). So the cache stays small
// between bulk writes; an import or a rebuild of the derived tables, whose
// many inserts into large indexes gain from a big cache and commit once,
// gets the big one.
void Ledger::bulk_cache(bool bulk) {
    if (db_.postgresql()) return;
    db_.exec(bulk ? "PRAGMA cache_size = -65536"  // 64 MiB
                  : "PRAGMA cache_size = " + std::to_string(kWriterCachePages));
}

void Ledger::rebuild_derived(const LedgerFold& fold) {
    bulk_cache(true);
    try {
        db_.begin_write();
    } catch (...) {
        bulk_cache(false);
        throw;
    }
    try {
        db_.exec("DELETE FROM consents; DELETE FROM bindings");
        for (const auto& [key, c] : fold.consents()) {
            upsert_consent_.bind(1, c.subscriber)
                .bind(2, c.purpose)
                .bind(3, int64_t(c.seq))
                .bind(4, c.time)
                .bind(5, c.source)
                .bind(6, c.notice_version)
                .bind(7, c.credential);
            upsert_consent_.queue();
        }
        for (const auto& [address, b] : fold.bindings()) {
            upsert_binding_.bind(1, b.address)
                .bind(2, b.subscriber)
                .bind(3, int64_t(b.seq))
                .bind(4, b.time)
                .bind(5, b.source)
                .bind(6, b.credential);
            upsert_binding_.queue();
        }
        db_.commit();
    } catch (...) {
        db_.rollback();
        bulk_cache(false);
        throw;
    }
    bulk_cache(false);
}

void Ledger::for_each_row(std::string_view sql, const std::function<void(std::string_view, std::string_view)>& fn) {
    // In a transaction of its own unless in one already: one snapshot, and
    // on PostgreSQL a cursor rather than every row in memory at once.
    const bool own = !db_.in_transaction();
    if (own) db_.begin_read();
    try {
        auto st = db_.prepare(sql);
        st.stream();
        while (st.step()) fn(st.text(0), st.text(1));
    } catch (...) {
        if (own) db_.end_read();
        throw;
    }
    if (own) db_.end_read();
}

void Ledger::for_each_binding(const std::function<void(std::string_view, std::string_view)>& fn) {
    for_each_row("SELECT address, subscriber FROM bindings", fn);
}

void Ledger::for_each_consent(const std::function<void(std::string_view, std::string_view)>& fn) {
    for_each_row("SELECT subscriber, purpose FROM consents", fn);
}

}  // namespace optgate::consentd
