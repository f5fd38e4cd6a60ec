// A per-worker table of TCP flows (one direction: subscriber -> server),
// fixed capacity, no locks, no allocation after construction (tables of
// 1 MiB and more are mapped and populated then: no page faults later).
//
// Layout: 8-way set-associative buckets, two per key (two hash choices):
// a flow lives in either of its buckets, and a new one takes the emptier.
// With one choice a bucket overflows once 9 of its keys are held at once,
// which at half load already happens somewhere in a large table; with two,
// both buckets must be full (tests/core/test_flow_table.cpp measures the
// load at the first refusal). A separate array of 32-bit signatures (8 per
// bucket = half a cache line) is compared first, so a lookup reads one
// signature line (two when the flow is in its second bucket, or absent) and,
// on a hit, one entry; entries are 192 bytes for the HTTP stage.
//
// Time is the packets' own timestamps (PacketRef::timestamp_ns), in ticks
// of 2^20 ns (~1.05 ms), so a replayed capture behaves the same every run.
// An entry idle for longer than the idle timeout is "expired": it is still
// found and used if its flow comes back, but it is the first to be reused.
//
// insert() picks an empty way in the emptier of the two buckets; when both
// are full, it asks the caller's rank(value, idle_ticks) of every way of
// both: kKeep = never reuse (whether or not expired); else it picks, in
// order, an expired one, a rank-0 way (done with, reusable at no loss, e.g.
// flows closed a while ago), and only then, before pushing out a rank-1 way
// (live, evictable; the oldest), moves one of the 16 flows to its other
// bucket if that has room. When all 16 are kKeep and none can move, the
// insert fails and the caller decides (the HTTP stage drops the packet).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <type_traits>

#include "core/packet.hpp"
#include "core/table_memory.hpp"

namespace optgate {

struct FlowKey {
    uint8_t src[16];  // IPv4 uses the first 4 bytes; the rest stay zero
    uint8_t dst[16];
    uint16_t src_port;
    uint16_t dst_port;
    uint8_t family;
    uint8_t pad[3];

    static FlowKey from(const ParsedPacket& p) noexcept;
    bool operator==(const FlowKey& o) const noexcept { return std::memcmp(this, &o, sizeof(FlowKey)) == 0; }
};
static_assert(sizeof(FlowKey) == 40);

uint64_t flow_hash(const FlowKey& k) noexcept;

inline constexpr uint32_t flow_ticks(uint64_t ns) noexcept { return uint32_t(ns >> 20); }

template <class Value>
class FlowTable {
public:
    static constexpr unsigned kWays = 8;
    static constexpr unsigned kKeep = 2;

    struct Entry {
        FlowKey key;
        uint32_t last_seen;  // flow_ticks()
        Value value;
    };
    static_assert(std::is_trivially_copyable_v<Entry> && std::is_trivially_destructible_v<Entry>,
                  "entries live in zeroed memory");
    static constexpr size_t kBytesPerFlow = sizeof(Entry) + sizeof(uint32_t);

    struct InsertResult {
        Entry* entry = nullptr;
        bool evicted = false;  // a live flow of rank 1 was pushed out
        bool expired = false;  // an expired flow's entry was reused
        bool done = false;     // a rank-0 (closed) flow's entry was reused
        bool moved = false;    // a flow moved to its other bucket to make room
    };

    // `capacity` is rounded up to a power of two, at least one bucket.
    FlowTable(size_t capacity, uint64_t idle_timeout_ns) {
        size_t c = kWays;
        while (c < capacity) c <<= 1;
        capacity_ = c;
        bucket_mask_ = c / kWays - 1;
        const uint64_t t = idle_timeout_ns >> 20;
        timeout_ticks_ = t > 0x7fffffffu ? 0x7fffffffu : uint32_t(t == 0 ? 1 : t);
        sigs_ = static_cast<uint32_t*>(table_alloc(c * sizeof(uint32_t)));
        entries_ = static_cast<Entry*>(table_alloc(c * sizeof(Entry)));
    }
    ~FlowTable() {
        table_free(sigs_);
        table_free(entries_);
    }
    FlowTable(const FlowTable&) = delete;
    FlowTable& operator=(const FlowTable&) = delete;

    void prefetch(uint64_t hash) const noexcept {
        __builtin_prefetch(&sigs_[bucket(hash) * kWays]);
        __builtin_prefetch(&sigs_[other_bucket(hash) * kWays]);
    }
    // Once the buckets' signatures are in cache: start loading the entry a
    // find() with this hash will most likely read (if any).
    void prefetch_entry(uint64_t hash) const noexcept {
        const uint32_t sig = signature(hash);
        for (const size_t b : {bucket(hash), other_bucket(hash)})
            for (size_t i = b * kWays; i < (b + 1) * kWays; ++i)
                if (sigs_[i] == sig) {
                    __builtin_prefetch(&entries_[i]);
                    return;
                }
    }

    Entry* find(const FlowKey& k, uint64_t hash) noexcept {
        const uint32_t sig = signature(hash);
        const size_t b = bucket(hash), alt = other_bucket(hash);
        if (Entry* e = find_in(b, k, sig)) return e;
        return alt == b ? nullptr : find_in(alt, k, sig);
    }

    // Makes an entry for `k` (not in the table). `release(value)` is called
    // on a reused way's old value first. The new entry's value is left as
    // it was: the caller initialises it.
    template <class Rank, class Release>
    InsertResult insert(const FlowKey& k, uint64_t hash, uint32_t now, Rank&& rank, Release&& release) noexcept {
        const size_t b = bucket(hash), alt = other_bucket(hash);
        const size_t buckets[2] = {b, alt};
        const unsigned choices = alt == b ? 1 : 2;
        size_t pick = kNone;
        unsigned pick_rank = 4;  // 0 empty, 1 expired, 2 + rank(value); 4: none yet
        // An empty way in the bucket with more of them: the two choices keep
        // the buckets even, which is what makes a full pair rare.
        unsigned most_empty = 0;
        for (unsigned c = 0; c < choices; ++c) {
            unsigned empty = 0;
            size_t first = kNone;
            for (size_t i = buckets[c] * kWays; i < (buckets[c] + 1) * kWays; ++i)
                if (sigs_[i] == 0) {
                    if (first == kNone) first = i;
                    ++empty;
                }
            if (empty > most_empty) {
                most_empty = empty;
                pick = first;
                pick_rank = 0;
            }
        }
        // Both full: the best way to reuse in either, at no loss first (an
        // expired flow, one done with).
        uint32_t pick_age = 0;
        const bool full = pick == kNone;
        for (unsigned c = 0; c < choices && full; ++c)
            for (size_t i = buckets[c] * kWays; i < (buckets[c] + 1) * kWays; ++i) {
                const uint32_t age = uint32_t(now - entries_[i].last_seen);
                // The caller may keep a flow past the idle timeout too.
                const unsigned v = rank(entries_[i].value, age);
                if (v >= kKeep) continue;
                const unsigned r = age > timeout_ticks_ ? 1 : 2 + v;
                if (r < pick_rank || (r == pick_rank && age > pick_age)) {
                    pick = i;
                    pick_rank = r;
                    pick_age = age;
                }
            }
        // Rather than push out a live flow or refuse: move one of the 16 to
        // its other bucket if that has room, which loses nothing (entries
        // are trivially copyable and no one holds a pointer to another
        // flow's entry across an insert). One step, no chains: at most 16
        // flows and 16 buckets looked at, only for buckets full of live flows.
        bool moved = false;
        if (pick == kNone || pick_rank == 3) moved = move_one(buckets, choices, pick);
        if (moved) pick_rank = 0;
        InsertResult out;
        if (pick == kNone) return out;
        out.moved = moved;
        Entry& e = entries_[pick];
        if (pick_rank > 0) {
            release(e.value);
            out.expired = pick_rank == 1;
            out.done = pick_rank == 2;
            out.evicted = pick_rank == 3;
        } else {
            ++live_;
        }
        sigs_[pick] = signature(hash);
        e.key = k;
        e.last_seen = now;
        out.entry = &e;
        return out;
    }

    void erase(Entry* e) noexcept {
        sigs_[size_t(e - entries_)] = 0;
        --live_;
    }

    bool expired(const Entry& e, uint32_t now) const noexcept { return uint32_t(now - e.last_seen) > timeout_ticks_; }

    size_t capacity() const noexcept { return capacity_; }
    // Entries in use (live or expired-but-not-reused).
    size_t size() const noexcept { return live_; }

private:
    static constexpr size_t kNone = ~size_t(0);

    // The first choice from the low bits, the second from bits 24 and up
    // (independent of the first in any table below 2^24 buckets); the
    // signature is the high 32 bits.
    size_t bucket(uint64_t hash) const noexcept { return size_t(hash) & bucket_mask_; }
    size_t other_bucket(uint64_t hash) const noexcept { return size_t(hash >> 24) & bucket_mask_; }
    // Moves a flow of `buckets` to its other bucket if that has an empty
    // way; `freed` is then the way it left.
    bool move_one(const size_t* buckets, unsigned choices, size_t& freed) noexcept {
        for (unsigned c = 0; c < choices; ++c)
            for (size_t i = buckets[c] * kWays; i < (buckets[c] + 1) * kWays; ++i) {
                const uint64_t h = flow_hash(entries_[i].key);
                const size_t to = bucket(h) == buckets[c] ? other_bucket(h) : bucket(h);
                if (to == buckets[c]) continue;
                for (size_t j = to * kWays; j < (to + 1) * kWays; ++j)
                    if (sigs_[j] == 0) {
                        entries_[j] = entries_[i];
                        sigs_[j] = sigs_[i];
                        freed = i;
                        return true;
                    }
            }
        return false;
    }
    Entry* find_in(size_t b, const FlowKey& k, uint32_t sig) noexcept {
        for (size_t i = b * kWays; i < (b + 1) * kWays; ++i)
            if (sigs_[i] == sig && entries_[i].key == k) return &entries_[i];
        return nullptr;
    }
    static uint32_t signature(uint64_t hash) noexcept { return uint32_t(hash >> 32) | 1u; }

    uint32_t* sigs_ = nullptr;  // 0: empty way
    Entry* entries_ = nullptr;
    size_t capacity_ = 0;
    size_t bucket_mask_ = 0;
    uint32_t timeout_ticks_ = 0;
    size_t live_ = 0;
};

}  // namespace optgate
