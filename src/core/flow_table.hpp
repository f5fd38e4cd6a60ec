// A per-worker table of TCP flows (one direction: subscriber -> server),
// fixed capacity, no locks, no allocation after construction (tables of
// 1 MiB and more are mapped and populated then: no page faults later).
//
// Layout: 8-way set-associative buckets. A separate array of 32-bit
// signatures (8 per bucket = half a cache line) is compared first, so a
// lookup reads one signature line and, on a hit, one entry; entries are
// 128 bytes for the HTTP stage (key 40, last-seen 4, padding 4, value 80).
//
// Time is the packets' own timestamps (PacketRef::timestamp_ns), in ticks
// of 2^20 ns (~1.05 ms), so a replayed capture behaves the same every run.
// An entry idle for longer than the idle timeout is "expired": it is still
// found and used if its flow comes back, but it is the first to be reused.
//
// insert() asks the caller's rank(value, idle_ticks) of every used way:
// kKeep = never reuse (whether or not expired); else it picks, in order, an
// empty way, an expired one, a rank-0 way (done with, reusable at no loss,
// e.g. flows closed a while ago), then a rank-1 way (live, evictable),
// oldest first. When every way is kKeep the insert fails and the caller
// decides (the HTTP stage drops the packet).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <type_traits>

#include "core/packet.hpp"

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

// Zeroed storage; large arrays are mapped and populated at once.
void* flow_table_alloc(size_t bytes);
void flow_table_free(void* p) noexcept;

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
    };

    // `capacity` is rounded up to a power of two, at least one bucket.
    FlowTable(size_t capacity, uint64_t idle_timeout_ns) {
        size_t c = kWays;
        while (c < capacity) c <<= 1;
        capacity_ = c;
        bucket_mask_ = c / kWays - 1;
        const uint64_t t = idle_timeout_ns >> 20;
        timeout_ticks_ = t > 0x7fffffffu ? 0x7fffffffu : uint32_t(t == 0 ? 1 : t);
        sigs_ = static_cast<uint32_t*>(flow_table_alloc(c * sizeof(uint32_t)));
        entries_ = static_cast<Entry*>(flow_table_alloc(c * sizeof(Entry)));
    }
    ~FlowTable() {
        flow_table_free(sigs_);
        flow_table_free(entries_);
    }
    FlowTable(const FlowTable&) = delete;
    FlowTable& operator=(const FlowTable&) = delete;

    void prefetch(uint64_t hash) const noexcept { __builtin_prefetch(&sigs_[bucket(hash) * kWays]); }
    // Once the bucket's signatures are in cache: start loading the entry a
    // find() with this hash will most likely read (if any).
    void prefetch_entry(uint64_t hash) const noexcept {
        const size_t base = bucket(hash) * kWays;
        const uint32_t sig = signature(hash);
        for (unsigned w = 0; w < kWays; ++w)
            if (sigs_[base + w] == sig) {
                __builtin_prefetch(&entries_[base + w]);
                return;
            }
    }

    Entry* find(const FlowKey& k, uint64_t hash) noexcept {
        const size_t base = bucket(hash) * kWays;
        const uint32_t sig = signature(hash);
        for (unsigned w = 0; w < kWays; ++w)
            if (sigs_[base + w] == sig && entries_[base + w].key == k) return &entries_[base + w];
        return nullptr;
    }

    // Makes an entry for `k` (not in the table). `release(value)` is called
    // on a reused way's old value first. The new entry's value is left as
    // it was: the caller initialises it.
    template <class Rank, class Release>
    InsertResult insert(const FlowKey& k, uint64_t hash, uint32_t now, Rank&& rank, Release&& release) noexcept {
        const size_t base = bucket(hash) * kWays;
        size_t pick = kWays;
        unsigned pick_rank = 4;  // 0 empty, 1 expired, 2 + rank(value); 4: none yet
        uint32_t pick_age = 0;
        for (unsigned w = 0; w < kWays; ++w) {
            unsigned r = 0;  // an empty way
            uint32_t age = 0;
            if (sigs_[base + w] != 0) {
                age = uint32_t(now - entries_[base + w].last_seen);
                // The caller may keep a flow past the idle timeout too.
                const unsigned v = rank(entries_[base + w].value, age);
                if (v >= kKeep) continue;
                r = age > timeout_ticks_ ? 1 : 2 + v;
            }
            if (r < pick_rank || (r == pick_rank && age > pick_age)) {
                pick = w;
                pick_rank = r;
                pick_age = age;
                if (r == 0) break;
            }
        }
        InsertResult out;
        if (pick == kWays) return out;
        Entry& e = entries_[base + pick];
        if (pick_rank > 0) {
            release(e.value);
            out.expired = pick_rank == 1;
            out.done = pick_rank == 2;
            out.evicted = pick_rank == 3;
        } else {
            ++live_;
        }
        sigs_[base + pick] = signature(hash);
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
    size_t bucket(uint64_t hash) const noexcept { return size_t(hash) & bucket_mask_; }
    static uint32_t signature(uint64_t hash) noexcept { return uint32_t(hash >> 32) | 1u; }

    uint32_t* sigs_ = nullptr;  // 0: empty way
    Entry* entries_ = nullptr;
    size_t capacity_ = 0;
    size_t bucket_mask_ = 0;
    uint32_t timeout_ticks_ = 0;
    size_t live_ = 0;
};

}  // namespace optgate
