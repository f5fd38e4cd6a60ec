#include "consentd/checkpointer.hpp"

#include <stdexcept>
#include <string>

#include "consentd/ledger.hpp"
#include "consentd/log.hpp"

namespace optgate::consentd {

// The WAL file the ledger keeps holds the writer's mark and the commit that
// crosses it, so steady load never truncates and regrows it.
static_assert(int64_t(Checkpointer::Limits{}.writer_frames + 1024) * (4096 + 24) <= Ledger::kWalBytesKept);

Checkpointer::Checkpointer(Database& writer, Limits limits)
    : writer_(writer), db_(writer.path(), Database::Mode::read_write), limits_(limits), due_(limits.background_frames) {
    // A connection learns that the file is in WAL mode on its first read;
    // until then a checkpoint on it does nothing.
    auto st = db_.prepare("PRAGMA journal_mode");
    if (!st.step() || st.text(0) != "wal")
        throw std::runtime_error("'" + writer.path() + "' is not in WAL mode: no checkpoints to move");
    st.reset();
    thread_ = std::thread([this] { run(); });
    // Replaces SQLite's autocheckpoint, which is itself a WAL hook.
    sqlite3_wal_hook(writer_.handle(), &Checkpointer::on_commit, this);
}

Checkpointer::~Checkpointer() {
    sqlite3_wal_autocheckpoint(writer_.handle(), 1000);  // SQLite's default again
    {
        std::lock_guard lk(mu_);
        stopping_ = true;
    }
    cv_.notify_one();
    thread_.join();
}

int Checkpointer::on_commit(void* self, sqlite3* db, const char* schema, int frames) {
    auto& c = *static_cast<Checkpointer*>(self);
    const bool restarted = frames < c.last_frames_;  // the WAL started again from the top
    if (restarted) c.due_ = c.limits_.background_frames;
    const int added = restarted ? frames : frames - c.last_frames_;
    c.last_frames_ = frames;
    // A commit that alone fills the writer's share (a large import) goes to
    // the thread: its answer need not wait for hundreds of megabytes to be
    // copied and fsync'd. The commits after it bound the WAL as below
    // (BUSY, and on, while the thread copies).
    if (frames >= c.limits_.writer_frames && added < c.limits_.writer_frames) {
        // The commit is durable already; this only bounds the WAL. BUSY (the
        // thread is checkpointing) is fine: the next commit tries again.
        sqlite3_wal_checkpoint_v2(db, schema, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
        return SQLITE_OK;
    }
    if (frames >= c.due_) {
        c.due_ = frames + c.limits_.background_frames;
        {
            std::lock_guard lk(c.mu_);
            c.wanted_ = true;
        }
        c.cv_.notify_one();
    }
    return SQLITE_OK;
}

void Checkpointer::run() {
    bool failing = false;
    for (;;) {
        {
            std::unique_lock lk(mu_);
            cv_.wait(lk, [&] { return wanted_ || stopping_; });
            if (stopping_) return;
            wanted_ = false;
        }
        const int rc = sqlite3_wal_checkpoint_v2(db_.handle(), "main", SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
        // BUSY: the writer is checkpointing itself (past writer_frames).
        if (rc == SQLITE_OK || rc == SQLITE_BUSY) {
            if (failing) log_info("WAL checkpoints work again");
            failing = false;
            if (rc == SQLITE_OK) runs_.fetch_add(1, std::memory_order_relaxed);
        } else if (!failing) {
            // Nothing committed is at risk (it is in the WAL); the WAL grows
            // until the writer's own checkpoint at writer_frames succeeds.
            log_warning(std::string("WAL checkpoint failed, retrying after the next commits: ") +
                        sqlite3_errmsg(db_.handle()));
            failing = true;
        }
    }
}

}  // namespace optgate::consentd
