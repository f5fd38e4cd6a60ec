// WAL checkpoints off the ledger writer's thread (docs/consentd.md,
// "Durability and group commit").
//
// A checkpoint copies committed pages from the WAL into the database file and
// fsyncs it. SQLite runs one by default inside the COMMIT that takes the WAL
// past 1,000 frames, on the committing thread: a second fsync and megabytes
// of writes while every request of the next batch waits. The Checkpointer
// replaces that: the writer's connection only notes the WAL's length after
// each commit and wakes this thread, which checkpoints on its own connection
// (PASSIVE: it never takes the writer's lock, so commits go on meanwhile).
//
// Under steady load the WAL never becomes fully copied between two commits,
// so SQLite cannot start it again from the top and it would grow; past
// `writer_frames` the committing thread therefore checkpoints itself, as
// SQLite's default would, copying only what the checkpointer has not yet
// (usually one commit or two) before the WAL restarts. A commit that alone
// adds `writer_frames` (a large import) is the exception: the thread copies
// it, so that its answer does not wait for the copy.
//
// Durability is unchanged: a commit is durable when its WAL frames are
// fsync'd (synchronous=FULL), before the writer answers anyone; a checkpoint
// only moves durable pages, and SQLite makes that crash-safe.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

#include "consentd/database.hpp"

namespace optgate::consentd {

class Checkpointer {
public:
    struct Limits {
        int background_frames = 1000;  // new WAL frames that wake the thread (SQLite's own default)
        // WAL length at which the writer checkpoints itself (256 MiB of 4 KiB
        // pages). Each such checkpoint holds the writer for the copy and two
        // fsyncs (about 9 ms under RADIUS load): a longer WAL makes them
        // rarer, and they set the answers' p99 (docs/benchmarks.md, "The
        // writer's page cache and the WAL's length"). The ledger keeps a WAL
        // file this long (Ledger::kWalBytesKept), so it is written over, not
        // regrown.
        int writer_frames = 65536;
    };

    // Opens a second connection to `writer`'s database, starts the thread and
    // takes over `writer`'s WAL hook. Call between transactions, on the
    // thread that owns `writer`, before its commits begin.
    Checkpointer(Database& writer, Limits limits);
    // Stops the thread and gives `writer` back SQLite's own checkpoints.
    ~Checkpointer();
    Checkpointer(const Checkpointer&) = delete;
    Checkpointer& operator=(const Checkpointer&) = delete;

    // Checkpoints this thread completed (for tests and metrics).
    uint64_t runs() const noexcept { return runs_.load(std::memory_order_relaxed); }

private:
    static int on_commit(void* self, sqlite3* db, const char* schema, int frames);
    void run();

    Database& writer_;
    Database db_;
    const Limits limits_;
    int due_;              // WAL length that wakes the thread next (writer's thread only)
    int last_frames_ = 0;  // the WAL's length after the previous commit (writer's thread only)

    std::mutex mu_;
    std::condition_variable cv_;
    bool wanted_ = false, stopping_ = false;
    std::atomic<uint64_t> runs_{0};
    std::thread thread_;
};

}  // namespace optgate::consentd
