// WAL checkpoints off the writer's thread (checkpointer.hpp): the thread
// copies the WAL into the database file, the writer bounds the WAL when the
// thread lags, and the ledger stays whole either way.
#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "consentd/checkpointer.hpp"
#include "consentd/ledger.hpp"
#include "consentd/verify.hpp"
#include "fixture.hpp"

using namespace optgate::consentd;
using optgate::consentd::test::TempDir;

namespace {

// One commit of `events` binds, each of a new address to its own subscriber.
void commit_binds(Ledger& l, int commit, int events) {
    l.begin();
    for (int i = 0; i < events; ++i) {
        const int n = commit * events + i;
        Event e;
        e.time = "2024-05-01T12:00:00.000Z";
        e.subscriber = "sub-" + std::to_string(n);
        e.action = Action::bind;
        e.address = "100.64." + std::to_string(n / 250) + "." + std::to_string(n % 250 + 1);
        e.source = "radius";
        e.credential = "test";
        l.append(e);
    }
    l.commit();
}

uint64_t file_size(const std::string& path) {
    std::error_code ec;
    const auto n = std::filesystem::file_size(path, ec);
    return ec ? 0 : n;
}

}  // namespace

TEST_CASE("the checkpointer's thread copies the WAL into the database file") {
    TempDir dir;
    const auto path = dir.file("ledger.db");
    {
        Ledger l(path);
        const uint64_t before = file_size(path);
        // The writer never checkpoints here: whatever reaches the file, the thread copied.
        Checkpointer c(l.db(), {.background_frames = 8, .writer_frames = 1 << 30});
        for (int i = 0; i < 100; ++i) commit_binds(l, i, 10);
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
        while ((c.runs() == 0 || file_size(path) <= before + uint64_t(16) * 4096) &&
               std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        CHECK(c.runs() > 0);
        CHECK(file_size(path) > before + uint64_t(16) * 4096);
        CHECK(l.head_seq() == 1000);
    }
    Ledger reopened(path);
    CHECK(reopened.head_seq() == 1000);
    const auto v = verify_ledger(path);
    CHECK_MESSAGE(v.ok, v.problem);
}

TEST_CASE("past writer_frames the writer checkpoints itself and the WAL starts again") {
    TempDir dir;
    const auto path = dir.file("ledger.db");
    Ledger l(path);
    {
        // The thread is never woken: only the writer's own checkpoints bound the WAL.
        Checkpointer c(l.db(), {.background_frames = 1 << 30, .writer_frames = 32});
        for (int i = 0; i < 300; ++i) commit_binds(l, i, 5);
        CHECK(c.runs() == 0);
    }
    // 300 commits of several pages each would be megabytes; restarted at
    // 32 frames, the WAL holds at most 32 frames and one commit.
    const uint64_t frame = 4096 + 24;
    CHECK(file_size(path + "-wal") < 64 * frame);
    CHECK(l.head_seq() == 1500);
    const auto v = verify_ledger(path);
    CHECK_MESSAGE(v.ok, v.problem);
}

TEST_CASE("a commit that alone passes writer_frames is copied by the thread, not by the writer") {
    TempDir dir;
    const auto path = dir.file("ledger.db");
    Ledger l(path);
    const uint64_t before = file_size(path);
    // One commit of 2,000 binds is hundreds of frames, past writer_frames on
    // its own: an import. Its answer must not wait for the copy, so the
    // writer leaves it to the thread.
    Checkpointer c(l.db(), {.background_frames = 8, .writer_frames = 32});
    commit_binds(l, 0, 2000);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (c.runs() == 0 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    CHECK(c.runs() == 1);
    CHECK(file_size(path) > before + uint64_t(32) * 4096);
    // Commits go on after it, and the ledger is whole.
    for (int i = 400; i < 420; ++i) commit_binds(l, i, 5);  // binds 2,000 to 2,099
    CHECK(l.head_seq() == 2100);
    const auto v = verify_ledger(path);
    CHECK_MESSAGE(v.ok, v.problem);
}
