// The publisher's commit history (src/consentd/commit_history.hpp): the
// floor and head, and the chain marks a resume token is checked against.
#include <doctest/doctest.h>

#include "consentd/commit_history.hpp"

using namespace optgate::consentd;

namespace {

ChainMark M(uint8_t n) {
    ChainMark m{};
    m.fill(n);
    return m;
}

// A commit ending at `seq` whose events since `from` (exclusive) are marked
// with their own sequence numbers; `bytes`: its frames' size.
Commit C(uint64_t from, uint64_t seq, size_t bytes = 10) {
    Commit c;
    c.seq = seq;
    c.frames = std::make_shared<const std::string>(bytes, 'x');
    for (uint64_t s = from + 1; s <= seq; ++s) c.chain.push_back(M(uint8_t(s)));
    return c;
}

}  // namespace

TEST_CASE("marks: every event's in [floor, head], not only the commits' ends") {
    CommitHistory h(100, 1 << 20);
    h.reset(5, M(5));
    CHECK(h.mark_at(5) == M(5));
    CHECK_FALSE(h.mark_at(4));  // below the floor
    h.append(C(5, 8));          // three events in one commit
    h.append(C(8, 9));
    CHECK(h.floor() == 5);
    CHECK(h.head() == 9);
    for (uint64_t s = 5; s <= 9; ++s) CHECK(h.mark_at(s) == M(uint8_t(s)));
    CHECK_FALSE(h.mark_at(10));   // above the head
    CHECK(h.after(6)->seq == 8);  // a table at 6 is caught up by the commit ending at 8
}

TEST_CASE("marks: a start without one, or a commit with its marks missing, leaves those sequences unmarked") {
    CommitHistory h(100, 1 << 20);
    h.reset(5, std::nullopt);
    CHECK_FALSE(h.mark_at(5));
    h.append(C(5, 7));
    CHECK_FALSE(h.mark_at(5));
    CHECK(h.mark_at(6) == M(6));
    CHECK(h.mark_at(7) == M(7));
    Commit short_chain = C(8, 9);  // says nothing of 8
    h.append(std::move(short_chain));
    for (uint64_t s = 5; s <= 9; ++s) CHECK_FALSE(h.mark_at(s));
    h.append(C(9, 10));
    CHECK_FALSE(h.mark_at(9));
    CHECK(h.mark_at(10) == M(10));
    // A reset (the table read again) starts over at its sequence.
    h.reset(12, M(12));
    CHECK(h.floor() == 12);
    CHECK_FALSE(h.mark_at(10));
    CHECK(h.mark_at(12) == M(12));
}

TEST_CASE("marks leave with the floor, and count against the byte bound") {
    CommitHistory h(2, 1 << 20);
    h.reset(0, M(0));
    h.append(C(0, 3));
    h.append(C(3, 4));
    h.append(C(4, 6));  // three commits, two kept: the floor moves to 3
    CHECK(h.floor() == 3);
    CHECK_FALSE(h.mark_at(2));
    CHECK(h.mark_at(3) == M(3));
    CHECK(h.mark_at(6) == M(6));

    // 200 bytes: frames of 20, 50 and 60 bytes (130) fit, but not with
    // their marks (7 events and the start, 16 bytes each): the oldest
    // commits go until frames and marks fit.
    CommitHistory small(100, 200);
    small.reset(0, M(0));
    small.append(C(0, 1, 20));
    small.append(C(1, 5, 50));
    CHECK(small.floor() == 0);  // 70 + 6 marks: 166
    small.append(C(5, 6, 60));
    CHECK(small.floor() == 5);  // 60 + marks 5 and 6: 92
    CHECK(small.size() == 1);
    CHECK_FALSE(small.mark_at(4));
    CHECK(small.mark_at(5) == M(5));
    CHECK(small.mark_at(6) == M(6));
    // A commit larger than the bound by itself goes too; the head's mark stays.
    small.append(C(6, 20, 10));
    CHECK(small.size() == 0);
    CHECK(small.floor() == 20);
    CHECK(small.mark_at(20) == M(20));
}
