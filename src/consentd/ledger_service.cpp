#include "consentd/ledger_service.hpp"

#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>

#include "consentd/log.hpp"
#include "consentd/sha256.hpp"

namespace optgate::consentd {

namespace {

Outcome refused(Outcome::Status s, std::string code, std::string message) {
    Outcome o;
    o.status = s;
    o.code = std::move(code);
    o.message = std::move(message);
    return o;
}

}  // namespace

struct LedgerService::Batch {
    std::string time;
    std::vector<proto::TableChange> deltas;
    ChainHashes chain;
    std::array<uint64_t, kActionCount> counts{};
    size_t events = 0;
    // Rows of the side tables changed without an event (a Stop that ends
    // nothing still drops its session's stale candidates): commit them too.
    bool side_tables = false;
};

ConsentState load_state(Ledger& ledger, std::shared_ptr<const Policy> policy) {
    ConsentState s(std::move(policy));
    ledger.for_each_binding([&](std::string_view address, std::string_view subscriber) {
        const auto p = parse_binding_text(address);
        if (!p) throw std::runtime_error("bindings row '" + std::string(address) + "' is not a binding address");
        s.bind(*p, subscriber, nullptr);
    });
    ledger.for_each_consent([&](std::string_view subscriber, std::string_view purpose) {
        s.set_consent(subscriber, purpose, true, nullptr);
    });
    return s;
}

namespace {

// The state and the head from one read, for a consentd that does not hold
// the writer's lock: the writer appends meanwhile.
ConsentState read_state_and_head(Ledger& ledger, std::shared_ptr<const Policy> policy) {
    ReadTransaction read(ledger.db());
    ledger.reload_head();
    return load_state(ledger, std::move(policy));
}

ConsentState initial_state(Ledger& ledger, std::shared_ptr<const Policy> policy) {
    if (ledger.writer()) return load_state(ledger, std::move(policy));
    return read_state_and_head(ledger, std::move(policy));
}

// Events read per step of a follower's catch-up.
constexpr size_t kFollowBatch = 4096;
// A follower wakes at least this often: for the writer's lock, a lost
// notification, the queue and stopping.
constexpr std::chrono::milliseconds kFollowPoll{200};

}  // namespace

LedgerService::LedgerService(std::unique_ptr<Ledger> ledger, std::shared_ptr<const Policy> policy, Metrics& metrics,
                             Options options)
    : ledger_(std::move(ledger)), radius_sessions_(ledger_->db()), metrics_(metrics), options_(std::move(options)),
      state_(initial_state(*ledger_, policy)), policy_(std::move(policy)), committed_seq_(ledger_->head_seq()),
      synced_seq_(ledger_->head_seq()), following_(!ledger_->writer()) {
    // A follower records nothing: the writer records its own policy, and
    // this one's is recorded when it takes over.
    if (!following_) ledger_->record_policy(options_.policy_text, options_.receipts);
    metrics_.set_writer(!following_);
    publish_gauges();
    pg_ = ledger_->db().pg();
    confirmed_in_step(std::chrono::steady_clock::now());  // the state was just read from the ledger
}

LedgerService::~LedgerService() { stop(); }

void LedgerService::start() {
    // PostgreSQL has neither SQLite's WAL checkpoints nor a file to fsync:
    // its commit returns once the change is durable (synchronous_commit).
    if (!ledger_->db().postgresql()) {
        try {
            checkpointer_ = std::make_unique<Checkpointer>(ledger_->db(), options_.checkpoints);
        } catch (const std::exception& e) {
            // Slower commits, nothing worse: SQLite checkpoints on the writer.
            log_warning(std::string("WAL checkpoints stay on the writer thread: ") + e.what());
        }
        if (!ledger_->defer_sync())
            log_warning("cannot open the ledger's WAL file to fsync it: each commit waits for its own fsync");
    }
    syncer_ = std::thread([this] { run_sync(); });
    writer_ = std::thread([this] {
        run();
        {
            std::lock_guard lk(queue_mu_);
            run_ended_ = true;
        }
        queue_cv_.notify_all();
    });
}

void LedgerService::stop() {
    {
        std::lock_guard lk(queue_mu_);
        stopping_ = true;
    }
    queue_cv_.notify_all();
    if (writer_.joinable()) {
        end_stuck_session();
        writer_.join();
    }
    {
        std::lock_guard lk(sync_mu_);
        sync_stopping_ = true;
    }
    sync_cv_.notify_all();
    if (syncer_.joinable()) syncer_.join();
    checkpointer_.reset();
}

// A thread blocked in libpq on a server that does not answer (hung, or a
// network that holds the bytes: over a Unix socket nothing else ends the
// wait) would keep stop() from returning; the supervisor would then kill
// consentd before it closed its data planes and stored what it must. The
// writer's session is cut once the server has not answered it for
// stop_grace (a long import that is answered as it goes is left to
// finish); a follower's after a second.
void LedgerService::end_stuck_session() {
    auto* pg = ledger_->db().pg();
    if (!pg) return;
    using namespace std::chrono;
    const bool follower = following();
    const auto grace = follower ? milliseconds(1000) : options_.stop_grace;
    const auto since = steady_clock::now();
    std::unique_lock lk(queue_mu_);
    for (;;) {
        if (queue_cv_.wait_for(lk, std::min<milliseconds>(grace, milliseconds(200)), [&] { return run_ended_; }))
            return;
        auto last = since;
        if (!follower) last = std::max(last, steady_clock::time_point(nanoseconds(pg->locked_answer_ns())));
        if (steady_clock::now() - last >= grace) break;
    }
    lk.unlock();
    log_warning("stopping: the ledger's database has not answered for " + std::to_string(grace.count()) +
                " ms; ending the session with it (a change in flight is answered 503, to be retried)");
    pg->interrupt();
}

void LedgerService::submit(Change change, std::string credential, Done done) {
    // Refused at once: the client goes to the writer. A policy change is
    // installed by the follower's thread, in order with its commits.
    if (following() && !std::holds_alternative<PolicyChange>(change)) {
        done(not_writer());
        return;
    }
    {
        std::lock_guard lk(queue_mu_);
        if (!stopping_) {
            queue_.push_back({std::move(change), std::move(credential), std::move(done)});
            queue_cv_.notify_one();
            return;
        }
    }
    done(refused(Outcome::Status::unavailable, "shutting_down", "consentd is shutting down"));
}

std::shared_ptr<const Policy> LedgerService::policy() const {
    std::lock_guard lk(policy_mu_);
    return policy_;
}

uint64_t LedgerService::head_seq() const { return committed_seq_.load(std::memory_order_acquire); }

void LedgerService::add_listener(TableListener* l) {
    std::lock_guard lk(listeners_mu_);
    listeners_.push_back(l);
}

void LedgerService::remove_listener(TableListener* l) {
    std::lock_guard lk(listeners_mu_);
    std::erase(listeners_, l);
}

void LedgerService::snapshot(const std::function<void(uint64_t, const ConsentState&)>& fn) const {
    snapshot([&](uint64_t seq, const Digest&, const ConsentState& state) { fn(seq, state); });
}

void LedgerService::snapshot(const std::function<void(uint64_t, const Digest&, const ConsentState&)>& fn) const {
    std::lock_guard lk(state_mu_);
    // The state may hold a commit still being fsync'd: wait for it (the
    // writer cannot commit another while we hold the state lock), so what
    // fn sees is durable and every listener has heard it.
    const uint64_t seq = ledger_->head_seq();
    {
        std::unique_lock slk(sync_mu_);
        sync_cv_.wait(slk, [&] { return synced_seq_ >= seq; });
    }
    fn(seq, ledger_->head_digest(), state_);
}

void LedgerService::wait_sync(bool idle) {
    std::unique_lock lk(sync_mu_);
    sync_cv_.wait(lk, [&] { return to_sync_.empty() && (!idle || !syncing_); });
}

void LedgerService::sync_or_exit() const {
    try {
        ledger_->sync();
    } catch (const std::exception& e) {
        // After a failed fsync the kernel may have dropped the pages it could
        // not write: nothing since the last good fsync can be known to be on
        // disk, and memory is ahead of it. Answer nothing; let the supervisor
        // restart from what the disk holds (unanswered requests are retried).
        log_error(std::string("cannot make the ledger durable, exiting: ") + e.what());
        std::abort();
    }
}

void LedgerService::wait_durable() const {
    const uint64_t w = writes_begun_.load();
    std::unique_lock lk(sync_mu_);
    sync_cv_.wait(lk, [&] { return writes_durable_ >= w; });
}

void LedgerService::run_sync() {
    std::deque<Committed> work;
    bool fresh = false;
    for (;;) {
        {
            std::unique_lock lk(sync_mu_);
            if (!work.empty()) {
                synced_seq_ = std::max(synced_seq_, work.back().seq);
                writes_durable_ = std::max(writes_durable_, work.back().write);
                work.clear();
            }
            syncing_ = false;
            sync_cv_.notify_all();
            sync_cv_.wait(lk, [&] { return sync_stopping_ || !to_sync_.empty(); });
            if (to_sync_.empty()) return;  // stopping, and everything handed over is done
            work.swap(to_sync_);
            syncing_ = true;
            // Batches that recorded nothing after the last durable event (all
            // refused, repeats) have nothing of their own to fsync.
            fresh = work.back().seq > synced_seq_;
        }
        sync_cv_.notify_all();  // the writer may gather its next batch while we fsync
        // One fsync for every batch taken: each of them committed before it.
        if (fresh) sync_or_exit();
        for (auto& c : work) finish(c);
    }
}

void LedgerService::run() {
    if (following() && !follow()) return;
    std::vector<Pending> batch;
    for (;;) {
        // While the sync thread fsyncs the previous batch, requests queue:
        // they are the next batch (group commit).
        wait_sync(false);
        apply_advertised();
        {
            std::unique_lock lk(queue_mu_);
            const auto ready = [&] { return stopping_ || !queue_.empty() || advertise_pending_; };
            if (options_.fence_after.count() > 0 && ledger_->db().postgresql()) {
                // Idle: ask PostgreSQL now and then that this is still the
                // writer, or the publisher would close its data planes.
                if (!queue_cv_.wait_for(lk, options_.fence_after / 4, ready)) {
                    lk.unlock();
                    if (!confirm_writer()) return;
                    continue;
                }
            } else {
                queue_cv_.wait(lk, ready);
            }
            if (queue_.empty()) {
                if (stopping_) return;  // stopping, and everything queued is done
                continue;               // a name to advertise
            }
            // A policy change runs alone, so each request is judged under one
            // policy and listeners see the resync between two commits.
            if (std::holds_alternative<PolicyChange>(queue_.front().change)) {
                batch.push_back(std::move(queue_.front()));
                queue_.pop_front();
            } else {
                while (!queue_.empty() && batch.size() < options_.max_batch &&
                       !std::holds_alternative<PolicyChange>(queue_.front().change)) {
                    batch.push_back(std::move(queue_.front()));
                    queue_.pop_front();
                }
            }
        }
        const bool import = std::any_of(batch.begin(), batch.end(), [](const Pending& p) {
            return std::holds_alternative<ImportChange>(p.change);
        });
        if (std::holds_alternative<PolicyChange>(batch.front().change)) {
            wait_sync(true);  // every earlier commit durable and told to the listeners first
            install_policy(batch.front());
        } else {
            commit_batch(batch);
        }
        batch.clear();
        // An import's records were millions of small blocks: give the memory
        // back to the system rather than keep the peak for the daemon's life.
        if (import) malloc_trim(0);
    }
}

void LedgerService::commit_batch(std::vector<Pending>& batch) {
    Committed c;
    c.started = std::chrono::steady_clock::now();
    c.write = ++writes_begun_;  // before the commit can be seen
    Batch b;
    b.time = format_utc_ms(std::chrono::system_clock::now());
    c.outcomes.reserve(batch.size());
    // An import's undo journal would be as large as the import: that batch
    // reads the state again from the ledger if it fails.
    const bool undoable = std::none_of(batch.begin(), batch.end(),
                                       [](const Pending& p) { return std::holds_alternative<ImportChange>(p.change); });
    {
        std::lock_guard lk(state_mu_);
        if (state_stale_) reread_stale_state(c.failure);
        if (c.failure.empty()) {
            try {
                if (!undoable) ledger_->bulk_cache(true);  // an import: many inserts into big indexes
                ledger_->begin();
                if (ledger_->take_adopted()) adopt_commit_in_doubt();
                if (undoable) state_.begin_undo();
                for (auto& p : batch) c.outcomes.push_back(apply(p, b));
                if (b.events || b.side_tables)
                    ledger_->commit();  // written; the sync thread makes it durable
                else
                    ledger_->rollback();  // nothing accepted: end the transaction
                if (undoable) state_.end_undo();
            } catch (const std::exception& e) {
                c.failure = e.what();
                c.in_doubt = ledger_->in_doubt();
                ledger_->rollback();
                // The state may hold part of the batch: put it back as it was.
                if (undoable)
                    state_.undo();
                else
                    reload_state();
            }
            if (!undoable) small_writer_cache();
        }
        c.seq = ledger_->head_seq();
        c.subscribers = state_.subscriber_count();
        c.bindings = state_.binding_count();
        c.table_entries = state_.table_size();
    }
    if (c.failure.empty()) {
        c.deltas = std::move(b.deltas);
        c.chain = std::move(b.chain);
        c.counts = b.counts;
        c.events = b.events;
    }
    c.requests = std::move(batch);
    {
        std::lock_guard lk(sync_mu_);
        to_sync_.push_back(std::move(c));
    }
    sync_cv_.notify_all();
}

void LedgerService::small_writer_cache() {
    try {
        ledger_->bulk_cache(false);
    } catch (const std::exception& e) {
        // Commits stay correct with the big cache, only slower (Ledger::bulk_cache).
        log_warning(std::string("the ledger's page cache stays at its import size: ") + e.what());
    }
}

void LedgerService::finish(Committed& c) {
    if (c.events) {
        const auto deltas = coalesce(std::move(c.deltas));
        std::lock_guard lk(listeners_mu_);
        for (auto* l : listeners_) l->on_commit(c.seq, deltas, c.chain);
    }
    committed_seq_.store(c.seq, std::memory_order_release);
    metrics_.set_state(c.seq, c.subscribers, c.bindings, c.table_entries);
    if (c.failure.empty()) {
        if (c.events) {
            const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - c.started).count();
            metrics_.observe_commit(took, c.requests.size());
            if (took > 1.0)  // an import: worth a line in the log
                log_info("committed " + std::to_string(c.events) + " events in " + std::to_string(took) + " s");
            for (unsigned a = 0; a < kActionCount; ++a)
                if (c.counts[a]) metrics_.count_events(Action(a), c.counts[a]);
        }
        for (size_t i = 0; i < c.requests.size(); ++i) c.requests[i].done(std::move(c.outcomes[i]));
    } else {
        log_error("commit of " + std::to_string(c.requests.size()) +
                  " requests failed, nothing recorded: " + c.failure);
        metrics_.count_commit_failure();
        // In doubt, the change may be in the ledger: a retry of a grant,
        // revoke, bind or unbind that is already recorded changes nothing.
        const std::string what = c.in_doubt ? "the ledger's answer to the commit was lost; it may have been recorded, "
                                              "retry: "
                                            : "the ledger could not commit; nothing was recorded, retry: ";
        for (auto& p : c.requests)
            p.done(refused(Outcome::Status::unavailable, "ledger_unavailable", what + c.failure));
    }
}

// The commit in doubt was recorded after all (Ledger::begin found its
// events): its requests were refused and the state put back, so read the
// state again from the ledger and send data planes the table whole.
void LedgerService::adopt_commit_in_doubt() {
    log_warning("the commit whose answer was lost is in the ledger after all (head " +
                std::to_string(ledger_->head_seq()) + "): reading the state again and resending the table");
    state_ = load_state(*ledger_, state_.policy_ptr());
    std::lock_guard llk(listeners_mu_);
    for (auto* l : listeners_)
        l->on_resync(ledger_->head_seq(), ledger_->head_digest(), state_.policy_ptr(), state_.table_version());
}

void LedgerService::reload_state() {
    // The transaction rolled back, but memory may hold part of the batch:
    // rebuild it from what the ledger holds.
    try {
        state_ = load_state(*ledger_, state_.policy_ptr());
    } catch (const std::exception& e) {
        // The ledger cannot be read now (PostgreSQL down). Memory may hold
        // what was never recorded: keep none of it. Until the ledger can be
        // read again, every batch is refused and a data plane that asks
        // for the table gets an empty one: nothing consented, fail closed.
        log_error(std::string("cannot read the state again from the ledger: ") + e.what() +
                  "; refusing changes and serving an empty table until it can");
        state_ = ConsentState(state_.policy_ptr());
        state_stale_ = true;
    }
}

void LedgerService::reread_stale_state(std::string& failure) {
    try {
        state_ = load_state(*ledger_, state_.policy_ptr());
    } catch (const std::exception& e) {
        failure = std::string("the ledger cannot be read to restore the state: ") + e.what();
        return;
    }
    state_stale_ = false;
    log_info("the state is read again from the ledger (head " + std::to_string(ledger_->head_seq()) +
             "): resending the table");
    std::lock_guard llk(listeners_mu_);
    for (auto* l : listeners_)
        l->on_resync(ledger_->head_seq(), ledger_->head_digest(), state_.policy_ptr(), state_.table_version());
}

void LedgerService::install_policy(Pending& p) {
    const auto& change = std::get<PolicyChange>(p.change);
    Outcome o;
    std::string failure;
    {
        std::lock_guard lk(state_mu_);
        // Recorded before any event is judged under it, or not installed.
        // Every earlier write is durable (run): this one is next.
        const uint64_t write = ++writes_begun_;
        try {
            ledger_->record_policy(change.text, options_.receipts);
        } catch (const std::exception& e) {
            failure = e.what();
        }
        if (failure.empty()) sync_or_exit();  // the record is durable before anything is judged or answered under it
        {
            std::lock_guard slk(sync_mu_);
            writes_durable_ = write;
        }
        sync_cv_.notify_all();
        if (failure.empty()) apply_policy(change.policy, o);
    }
    if (!failure.empty()) {
        log_error("cannot record the policy in the ledger's policy history, the running one is kept: " + failure);
        p.done(refused(Outcome::Status::unavailable, "ledger_unavailable",
                       "the policy could not be recorded in the ledger; the running policy is kept: " + failure));
        return;
    }
    p.done(std::move(o));
}

void LedgerService::apply_policy(const std::shared_ptr<const Policy>& policy, Outcome& o) {
    o.table_resync = state_.set_policy(policy);
    {
        std::lock_guard plk(policy_mu_);
        policy_ = policy;
    }
    {
        std::lock_guard llk(listeners_mu_);
        for (auto* l : listeners_) {
            if (o.table_resync)
                l->on_resync(ledger_->head_seq(), ledger_->head_digest(), policy, state_.table_version());
            else
                l->on_policy(ledger_->head_seq(), policy, state_.table_version());
        }
    }
    publish_gauges();
}

// ---- following (docs/scale-out.md, "Followers") ----

void LedgerService::advertise(std::string name) {
    {
        std::lock_guard lk(queue_mu_);
        advertised_ = std::move(name);
        advertise_pending_ = true;
    }
    queue_cv_.notify_all();
}

void LedgerService::apply_advertised() {
    if (!ledger_->db().postgresql()) return;
    std::string name;
    {
        std::lock_guard lk(queue_mu_);
        // A new session (the old one was lost) has PostgreSQL's default name.
        if (!advertise_pending_ && advertised_session_ == ledger_->db().session()) return;
        advertise_pending_ = false;
        name = advertised_;
    }
    if (name.empty()) return;
    try {
        ledger_->advertise(name);
        advertised_session_ = ledger_->db().session();
    } catch (const std::exception& e) {
        // Followers then cannot name this writer; nothing else depends on it.
        log_warning(std::string("cannot set this consentd's name on its PostgreSQL session: ") + e.what());
        advertised_session_ = ledger_->db().session();
    }
}

Outcome LedgerService::not_writer() const {
    std::string name;
    {
        std::lock_guard lk(writer_name_mu_);
        name = writer_name_;
    }
    return refused(
        Outcome::Status::unavailable, "not_writer",
        "this consentd follows the ledger and records no changes: send them to the writer" +
            (name.empty() ? std::string(" (another consentd on this ledger; it has not named itself)") : ", " + name));
}

void LedgerService::answer_while_following(std::vector<Pending>& taken) {
    for (auto& p : taken) {
        if (!std::holds_alternative<PolicyChange>(p.change)) {
            p.done(not_writer());  // submitted before following() was read
            continue;
        }
        // Installed here and not recorded: the ledger's policy history is
        // the writer's (this one's is recorded when it takes over).
        Outcome o;
        {
            std::lock_guard lk(state_mu_);
            apply_policy(std::get<PolicyChange>(p.change).policy, o);
        }
        p.done(std::move(o));
    }
    taken.clear();
}

bool LedgerService::follow() {
    log_info("following the ledger from event " + std::to_string(ledger_->head_seq()) +
             ": serving reads and data planes, changes go to the writer");
    uint64_t listening = 0;  // the session that LISTENs
    auto named = std::chrono::steady_clock::time_point{};
    bool failing = false;
    std::vector<Pending> taken;
    for (;;) {
        {
            std::lock_guard lk(queue_mu_);
            while (!queue_.empty()) {
                taken.push_back(std::move(queue_.front()));
                queue_.pop_front();
            }
            if (stopping_) {
                for (auto& p : taken)
                    p.done(refused(Outcome::Status::unavailable, "shutting_down", "consentd is shutting down"));
                return false;
            }
        }
        answer_while_following(taken);
        try {
            auto& db = ledger_->db();
            catch_up();  // reconnects a lost session (its read)
            if (listening != db.session()) {
                // A new session listens from now: what came before it is read next.
                db.pg()->listen(Ledger::kChannel);
                listening = db.session();
                catch_up();
            }
            apply_advertised();
            if (ledger_->take_writer_lock()) {
                catch_up();  // nobody else appends now: this reaches the true head
                ledger_->record_policy(options_.policy_text, options_.receipts);
                db.pg()->exec("UNLISTEN *");
                following_.store(false, std::memory_order_release);
                metrics_.set_writer(true);
                log_info("took the writer's lock at event " + std::to_string(ledger_->head_seq()) +
                         ": recording changes");
                return true;
            }
            const auto now = std::chrono::steady_clock::now();
            if (now - named >= std::chrono::seconds(1)) {
                auto name = ledger_->writer_name();
                std::lock_guard lk(writer_name_mu_);
                writer_name_ = std::move(name);
                named = now;
            }
            // Woken by the writer's commit, or by the poll: then read.
            if (db.pg()->wait_notification(kFollowPoll))
                while (db.pg()->wait_notification(std::chrono::milliseconds(0))) {
                }
            if (failing) log_info("following the ledger again at event " + std::to_string(ledger_->head_seq()));
            failing = false;
        } catch (const std::exception& e) {
            if (!failing && !ledger_->db().pg()->interrupted())
                log_error(std::string("following the ledger: ") + e.what() + "; trying again every " +
                          std::to_string(kFollowPoll.count()) + " ms");
            failing = true;
            std::unique_lock lk(queue_mu_);
            queue_cv_.wait_for(lk, kFollowPoll, [&] { return stopping_ || !queue_.empty(); });
        }
    }
}

void LedgerService::catch_up() {
    for (;;) {
        const uint64_t head = ledger_->head_seq();
        std::vector<Event> events;
        // In step as of when it asked, not when the answer came (an answer
        // held up in the network is old news), and only once what the
        // answer holds is applied: in step means what it serves is that
        // recent. A long catch-up, an import, is progress, not a cut.
        const auto asked = std::chrono::steady_clock::now();
        // From the head itself: it must still be there as this consentd read
        // it, or the ledger is not the one it follows any more.
        ledger_->events_from(head, kFollowBatch + 1, [&](const Event& e) { events.push_back(e); });
        size_t i = 0;
        if (head > 0) {
            if (events.empty() || events[0].seq != head || events[0].hash != ledger_->head_hash()) {
                // Restored from a backup, or edited: what this consentd
                // holds and told its data planes is not the ledger's.
                log_error("the ledger no longer holds event " + std::to_string(head) +
                          " as this consentd read it (restored from an older backup, or edited): exiting, to be "
                          "started again from what the ledger holds (optgatectl verify-ledger)");
                std::abort();
            }
            i = 1;
        }
        if (i == events.size()) {
            confirmed_in_step(asked);
            return;
        }
        std::vector<proto::TableChange> deltas;
        ChainHashes chain;
        uint64_t seq = 0;
        {
            std::lock_guard lk(state_mu_);
            for (; i < events.size(); ++i) {
                const Event& e = events[i];
                const auto prev = digest_from_hex(ledger_->head_hash());
                const auto hash = digest_from_hex(e.hash);
                if (e.seq != ledger_->head_seq() + 1 || e.prev_hash != ledger_->head_hash() || !prev || !hash ||
                    !digest_equal(event_hash(*prev, e), *hash)) {
                    log_error("event " + std::to_string(e.seq) + " does not chain from event " +
                              std::to_string(ledger_->head_seq()) +
                              ": exiting rather than serve it (optgatectl verify-ledger)");
                    std::abort();
                }
                switch (e.action) {
                case Action::grant:
                case Action::revoke:
                    state_.set_consent(e.subscriber, e.purpose.value_or(""), e.action == Action::grant, &deltas);
                    break;
                case Action::bind:
                case Action::unbind: {
                    const auto p = parse_binding_text(e.address.value_or(""));
                    if (!p) {
                        log_error("event " + std::to_string(e.seq) + " binds '" + e.address.value_or("") +
                                  "', not a binding address: exiting (optgatectl verify-ledger)");
                        std::abort();
                    }
                    if (e.action == Action::bind)
                        state_.bind(*p, e.subscriber, &deltas);
                    else
                        state_.unbind(*p, &deltas);
                    break;
                }
                }
                ledger_->follow_to(e);
                chain.push_back(*hash);
            }
            seq = mark_head_durable();
        }
        const auto changes = coalesce(std::move(deltas));
        std::lock_guard llk(listeners_mu_);
        for (auto* l : listeners_) l->on_commit(seq, changes, chain);
        confirmed_in_step(asked);
    }
}

// The head as the ledger holds it now is committed and durable (read from
// PostgreSQL, not written by this consentd's syncer): what snapshot() waits
// for. Under state_mu_; returns the head.
uint64_t LedgerService::mark_head_durable() {
    const uint64_t seq = ledger_->head_seq();
    committed_seq_.store(seq, std::memory_order_release);
    {
        std::lock_guard slk(sync_mu_);
        synced_seq_ = seq;
    }
    sync_cv_.notify_all();
    publish_gauges();
    return seq;
}

// ---- fencing (docs/scale-out.md, "Fencing") ----

void LedgerService::confirmed_in_step(std::chrono::steady_clock::time_point asked) noexcept {
    in_step_at_.store(asked.time_since_epoch().count(), std::memory_order_release);
}

bool LedgerService::in_step() const noexcept {
    if (options_.fence_after.count() <= 0) return true;
    int64_t ns = in_step_at_.load(std::memory_order_acquire);
    if (pg_) ns = std::max(ns, pg_->locked_asked_ns());
    const auto at = std::chrono::steady_clock::time_point(std::chrono::steady_clock::duration(ns));
    return std::chrono::steady_clock::now() - at <= options_.fence_after;
}

bool LedgerService::confirm_writer() {
    bool held = false;
    try {
        held = ledger_->writer_in_step();
    } catch (const std::exception& e) {
        if (!confirm_failing_)
            log_error(std::string("cannot confirm with PostgreSQL that this consentd is still the writer: ") +
                      e.what() + "; its data planes are closed once this has lasted " +
                      std::to_string(options_.fence_after.count()) + " ms");
        confirm_failing_ = true;
        return true;
    }
    if (held) {
        if (ledger_->take_adopted()) {
            // The commit whose answer was lost is the head: ours, taken in
            // here as the next batch would (and as durable as any commit).
            std::lock_guard lk(state_mu_);
            try {
                adopt_commit_in_doubt();
            } catch (const std::exception& e) {
                log_error(std::string("cannot read the state with the commit whose answer was lost: ") + e.what());
                reload_state();  // or none, refusing changes until it can be read (state_stale_)
            }
            mark_head_durable();
        }
        if (confirm_failing_) log_info("PostgreSQL confirms again that this consentd is the writer");
        confirm_failing_ = false;
        return true;  // its answers, on the session holding the lock, were the confirmation
    }
    // Another consentd took the lock while this one's session was lost (or
    // appended between two of its sessions): follow it rather than refuse
    // every change.
    confirm_failing_ = false;
    log_warning("another consentd took the writer's lock, or appended after event " +
                std::to_string(ledger_->head_seq()) + ": following it");
    following_.store(true, std::memory_order_release);
    metrics_.set_writer(false);
    {
        std::lock_guard lk(state_mu_);
        if (state_stale_) {
            // Memory holds nothing (reload_state failed): read the state
            // and the head whole, and resend the table.
            try {
                state_ = read_state_and_head(*ledger_, state_.policy_ptr());
                state_stale_ = false;
                // The head moved with the state: what snapshot() waits for
                // is what was just read, already durable in the ledger.
                mark_head_durable();
            } catch (const std::exception& e) {
                log_error(std::string("cannot read the state from the ledger: ") + e.what() + "; trying again");
                following_.store(false, std::memory_order_release);
                metrics_.set_writer(true);
                return true;
            }
            std::lock_guard llk(listeners_mu_);
            for (auto* l : listeners_)
                l->on_resync(ledger_->head_seq(), ledger_->head_digest(), state_.policy_ptr(), state_.table_version());
        }
    }
    return follow();
}

void LedgerService::publish_gauges() {
    metrics_.set_state(ledger_->head_seq(), state_.subscriber_count(), state_.binding_count(), state_.table_size());
}

uint64_t LedgerService::record(Event& e, Batch& b) {
    ledger_->append(e);
    b.chain.push_back(ledger_->appended_digest());
    ++b.counts[unsigned(e.action)];
    ++b.events;
    return e.seq;
}

Outcome LedgerService::apply(Pending& p, Batch& b) {
    return std::visit(
        [&](const auto& c) -> Outcome {
            using T = std::decay_t<decltype(c)>;
            if constexpr (std::is_same_v<T, ConsentChange>)
                return apply_consent(c, p.credential, b);
            else if constexpr (std::is_same_v<T, BindChange>)
                return apply_bind(c, p.credential, b);
            else if constexpr (std::is_same_v<T, UnbindChange>)
                return apply_unbind(c, p.credential, b);
            else if constexpr (std::is_same_v<T, ImportChange>)
                return apply_import(c, p.credential, b);
            else if constexpr (std::is_same_v<T, SessionChange>)
                return apply_session(c, p.credential, b);
            else
                return refused(Outcome::Status::invalid, "internal", "policy changes do not commit");
        },
        p.change);
}

Outcome LedgerService::apply_consent(const ConsentChange& c, const std::string& credential, Batch& b) {
    // A purpose the policy dropped can still be revoked: withdrawing must
    // always work.
    if (!state_.policy().purpose_index(c.purpose) && (c.grant || !state_.granted(c.subscriber, c.purpose)))
        return refused(Outcome::Status::not_found, "unknown_purpose",
                       "purpose '" + c.purpose + "' is not defined by the policy (GET /v1/purposes lists them)");
    Event e;
    e.time = b.time;
    e.subscriber = c.subscriber;
    e.action = c.grant ? Action::grant : Action::revoke;
    e.purpose = c.purpose;
    e.source = c.source;
    e.notice_version = c.notice_version;
    e.credential = credential;
    Outcome o;
    o.first_seq = o.last_seq = record(e, b);
    o.events = 1;
    o.time = b.time;
    o.subscriber = c.subscriber;
    o.changed = state_.set_consent(c.subscriber, c.purpose, c.grant, &b.deltas);
    o.receipt = ReceiptSource{e, ledger_->policy_record(), state_.policy_ptr()};
    return o;
}

std::optional<std::string> LedgerService::record_bind(const Prefix& binding, const std::string& subscriber,
                                                      const std::string& source, const std::string& credential,
                                                      Batch& b) {
    std::optional<std::string> previous;
    if (const std::string* h = state_.holder(binding)) previous = *h;
    const std::string address = binding_text(binding);
    if (previous && *previous != subscriber) {
        // The old holder's loss of the address is its own event, in its own
        // history; the table entry changes once, to the new holder's mask.
        Event u;
        u.time = b.time;
        u.subscriber = *previous;
        u.action = Action::unbind;
        u.address = address;
        u.source = source;
        u.credential = credential;
        record(u, b);
        state_.unbind(binding, &b.deltas);
    }
    Event e;
    e.time = b.time;
    e.subscriber = subscriber;
    e.action = Action::bind;
    e.address = address;
    e.source = source;
    e.credential = credential;
    record(e, b);
    state_.bind(binding, subscriber, &b.deltas);
    return previous;
}

Outcome LedgerService::apply_bind(const BindChange& c, const std::string& credential, Batch& b) {
    AddressProblem problem = AddressProblem::none;
    std::string error;
    const auto binding = binding_for_bind(c.address, state_.policy(), problem, error);
    if (!binding)
        return refused(Outcome::Status::invalid,
                       problem == AddressProblem::not_subscriber ? "not_a_subscriber_address" : "invalid_address",
                       error);
    Outcome o;
    const size_t before = b.events;
    const auto previous = record_bind(*binding, c.subscriber, c.source, credential, b);
    o.events = b.events - before;
    o.last_seq = ledger_->head_seq() + b.events;
    o.first_seq = o.last_seq - o.events + 1;
    o.time = b.time;
    o.subscriber = c.subscriber;
    o.address = binding_text(*binding);
    o.changed = previous != c.subscriber;
    if (previous && *previous != c.subscriber) o.previous_subscriber = previous;
    return o;
}

Outcome LedgerService::apply_unbind(const UnbindChange& c, const std::string& credential, Batch& b) {
    std::string error;
    const auto binding = binding_for_unbind(c.address, state_.policy(), error);
    if (!binding) return refused(Outcome::Status::invalid, "invalid_address", error);
    const std::string address = binding_text(*binding);
    const std::string* holder = state_.holder(*binding);
    if (!holder) return refused(Outcome::Status::not_found, "not_bound", address + " is not bound");
    if (c.expected_subscriber && *c.expected_subscriber != *holder)
        return refused(
            Outcome::Status::conflict, "bound_to_other",
            address + " is bound to another subscriber than '" + *c.expected_subscriber + "'; nothing changed");
    Event e;
    e.time = b.time;
    e.subscriber = *holder;
    e.action = Action::unbind;
    e.address = address;
    e.source = c.source;
    e.credential = credential;
    Outcome o;
    o.subscriber = *holder;
    o.first_seq = o.last_seq = record(e, b);
    state_.unbind(*binding, &b.deltas);
    o.events = 1;
    o.time = b.time;
    o.address = address;
    o.changed = true;
    return o;
}

Outcome LedgerService::apply_import(const ImportChange& c, const std::string& credential, Batch& b) {
    const Policy& policy = state_.policy();
    if (c.validated_against.get() != &policy) {
        for (const auto& r : *c.records)
            if (auto e = check_import_record(r, policy); !e.empty())
                return refused(Outcome::Status::conflict, "policy_changed",
                               "the policy was reloaded while the import was read, and under it line " +
                                   std::to_string(r.line) + " is invalid: " + e + "; nothing was imported");
    }
    const size_t before = b.events;
    size_t addresses = 0, events = 0;
    for (const auto& r : *c.records) {
        addresses += r.addresses.size();
        events += r.addresses.size() + r.consents.size();
    }
    state_.reserve(c.records->size(), addresses);
    b.chain.reserve(b.chain.size() + events);
    b.deltas.reserve(b.deltas.size() + events);
    for (const auto& r : *c.records) {
        for (const auto& a : r.addresses) {
            AddressProblem problem = AddressProblem::none;
            std::string error;
            record_bind(*binding_for_bind(a, policy, problem, error), r.subscriber, r.source, credential, b);
        }
        for (const auto& purpose : r.consents) {
            Event e;
            e.time = b.time;
            e.subscriber = r.subscriber;
            e.action = Action::grant;
            e.purpose = purpose;
            e.source = r.source;
            e.notice_version = r.notice_version;
            e.credential = credential;
            record(e, b);
            state_.set_consent(r.subscriber, purpose, true, &b.deltas);
        }
    }
    Outcome o;
    o.events = b.events - before;
    o.last_seq = ledger_->head_seq() + b.events;
    o.first_seq = o.events ? o.last_seq - o.events + 1 : 0;
    o.time = b.time;
    o.changed = o.events > 0;
    return o;
}

Outcome LedgerService::apply_session(const SessionChange& c, const std::string& credential, Batch& b) {
    Outcome o;
    o.time = b.time;
    o.subscriber = c.subscriber;
    const size_t before = b.events;
    // Every event this request makes is noted with its Acct-Session-Id.
    auto note_since = [&](size_t from) {
        for (size_t i = from; i < b.events; ++i) radius_sessions_.note_event(ledger_->head_seq() + i + 1, c.session);
    };
    auto unbind = [&](const Prefix& binding, const std::string& address, const std::string& holder) {
        Event e;
        e.time = b.time;
        e.subscriber = holder;
        e.action = Action::unbind;
        e.address = address;
        e.source = c.source;
        e.credential = credential;
        record(e, b);
        state_.unbind(binding, &b.deltas);
        ++o.unbound;
    };
    switch (c.kind) {
    case SessionChange::Kind::bind:
        for (const auto& key : c.bindings) {
            if (!binding_active(key, state_.policy())) continue;  // a reload since the listener shaped it
            const std::string address = binding_text(key);
            const std::string* holder = state_.holder(key);
            // An Interim-Update repeats the Start: nothing new to record.
            if (holder && *holder == c.subscriber) {
                const auto h = radius_sessions_.holder(address);
                if (h && h->session == c.session) continue;
            }
            const size_t from = b.events;
            const auto previous = record_bind(key, c.subscriber, c.source, credential, b);
            radius_sessions_.hold(address, c.session);
            note_since(from);
            ++o.bound;
            if (previous && *previous != c.subscriber) ++o.unbound;
        }
        break;
    case SessionChange::Kind::release: {
        // The Stop's addresses and whatever else the session still holds
        // (a Stop need not repeat every address of its Start).
        std::vector<Prefix> keys = c.bindings;
        for (const auto& held : radius_sessions_.held_by(c.session))
            if (const auto key = parse_binding_text(held.first)) keys.push_back(*key);
        for (const auto& key : keys) {
            const std::string address = binding_text(key);
            const auto h = radius_sessions_.holder(address);
            // Only the session that holds the binding may end it: a Stop that
            // comes after the address went to another session (or was
            // rebound through the API) changes nothing.
            if (!h || h->session != c.session) continue;
            const std::string* holder = state_.holder(key);
            if (!holder || *holder != h->subscriber) continue;
            const size_t from = b.events;
            unbind(key, address, h->subscriber);
            note_since(from);
        }
        if (radius_sessions_.forget(c.session) > 0) b.side_tables = true;  // the session is over
        break;
    }
    case SessionChange::Kind::release_nas:
        for (const auto& [address, subscriber] : radius_sessions_.held_by(c.session.client, c.session.nas)) {
            const auto key = parse_binding_text(address);
            const std::string* holder = key ? state_.holder(*key) : nullptr;
            if (!holder || *holder != subscriber) continue;
            const size_t from = b.events;
            unbind(*key, address, subscriber);
            note_since(from);
        }
        if (radius_sessions_.forget_all(c.session.client, c.session.nas) > 0) b.side_tables = true;
        break;
    }
    o.events = b.events - before;
    o.last_seq = ledger_->head_seq() + b.events;
    o.first_seq = o.events ? o.last_seq - o.events + 1 : 0;
    o.changed = o.events > 0;
    return o;
}

}  // namespace optgate::consentd
