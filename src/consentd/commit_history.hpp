// The publisher's stream of commits (docs/protocol.md, "Resuming"): the
// sequence it is at (head) and, bounded by count and bytes, every commit
// since `floor`, each encoded once as the delta frames data planes get.
//
// A data plane whose table is this stream's as of a seq in [floor, head]
// resumes with the commits after it; so does a snapshot taken in that range.
// Trimming the oldest moves the floor up; a table-changing policy restarts
// it (the deltas from before cannot be applied to a table of the new
// meaning).
//
// It also keeps the ledger's chain hash (its first 16 bytes, a mark) at
// every sequence in [floor, head] it was told of: a data plane that comes
// from another consentd of the ledger with a token naming the hash at its
// sequence resumes only if the hash here is the same (docs/protocol.md,
// "Resuming at another consentd"). A table read at any sequence in a
// commit's range is caught up by that commit: its deltas are each key's
// final value.
//
// Also read for latencies: when each commit was handed to the publisher.
//
// Owned by the Publisher, io thread only (not thread-safe).
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace optgate::consentd {

using Frames = std::shared_ptr<const std::string>;
// The first 16 bytes of an event's chain hash.
using ChainMark = std::array<uint8_t, 16>;

struct Commit {
    uint64_t seq = 0;
    Frames frames;  // its delta frames, shared by every data plane
    std::chrono::steady_clock::time_point committed;
    // The mark of each of its events, oldest first (the last at `seq`),
    // moved into the history by append(); empty or short: not known.
    std::vector<ChainMark> chain;
};

class CommitHistory {
public:
    using const_iterator = std::deque<Commit>::const_iterator;

    CommitHistory(size_t max_commits, size_t max_bytes) : max_commits_(max_commits), max_bytes_(max_bytes) {}

    // Starts the stream at `seq` (the first snapshot's, or the ledger's
    // head when the table was read again), empty; `mark`: the chain's at
    // `seq`, if known.
    void reset(uint64_t seq, std::optional<ChainMark> mark);
    // The next commit (its seq above head): head moves to it, then the
    // oldest go while over either bound.
    void append(Commit c);

    uint64_t head() const noexcept { return head_; }
    uint64_t floor() const noexcept { return floor_; }
    // Whether every commit after `seq` is here (so a table as of `seq`
    // catches up from the history alone).
    bool covers(uint64_t seq) const noexcept { return seq >= floor_ && seq <= head_; }
    size_t size() const noexcept { return commits_.size(); }

    // The commits after `seq`, oldest first, to end().
    const_iterator after(uint64_t seq) const;
    const_iterator end() const noexcept { return commits_.end(); }
    // The commit `seq` itself, or null if it is not here.
    const Commit* find(uint64_t seq) const;
    // The chain's mark at `seq`, when `seq` is in [floor, head] and it was
    // told of it.
    std::optional<ChainMark> mark_at(uint64_t seq) const;

private:
    void drop_marks_below_floor();

    size_t max_commits_, max_bytes_;
    uint64_t head_ = 0;
    uint64_t floor_ = 0;  // every commit after this is in commits_
    std::deque<Commit> commits_;
    size_t bytes_ = 0;
    // marks_[i] is the mark at marks_from_ + i; the last one at head_.
    std::deque<ChainMark> marks_;
    uint64_t marks_from_ = 1;
};

}  // namespace optgate::consentd
