// The consent table: subscriber key -> purpose bitmask.
//
// Keys are an IPv4 address or an IPv6 address masked to the policy's key
// length (a delegated prefix). Readers (packet path, any number of threads)
// take no lock; one writer applies upserts, deletes and clears while they
// read. Each change is visible to the next lookup that starts after the
// writer's store.
//
// Layout: two open-addressing tables with linear probing, load factor <= 1/2.
//  - IPv4: one 8-byte atomic word per slot, key in the high half, mask in the
//    low half, so a reader sees a whole entry or none: 16.8 bytes per entry at
//    1M entries (measured by tests/core/test_consent_table.cpp).
//  - IPv6: 24-byte slots (key, atomic mask, atomic state). A slot's key is
//    written once, before the slot is published, and never rewritten while
//    the array is live, so readers never see a torn key.
// Growth and tombstone clean-up build a new array, publish it with one atomic
// pointer store and retire the old one through the QSBR domain.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "core/addr.hpp"
#include "core/big_endian.hpp"
#include "core/policy.hpp"
#include "core/rcu.hpp"

namespace optgate {

// A subscriber key: the IPv4 address, or the IPv6 address masked to the key
// length. Built only through make(), which applies the mask.
struct SubscriberKey {
    IpAddr addr;
    static SubscriberKey make(const IpAddr& a, unsigned ipv6_key_length) noexcept {
        return {a.family == Family::v6 ? a.masked(ipv6_key_length) : a};
    }
    friend bool operator==(const SubscriberKey&, const SubscriberKey&) = default;
};

struct ConsentLookup {
    bool found = false;  // the subscriber key is in the table
    PurposeMask purposes = 0;
};

class ConsentTable {
public:
    explicit ConsentTable(QsbrDomain& rcu, size_t expected_v4_entries = 0);
    ~ConsentTable();
    ConsentTable(const ConsentTable&) = delete;
    ConsentTable& operator=(const ConsentTable&) = delete;

    // ---- readers: lock-free, any registered QSBR reader thread ----
    ConsentLookup lookup_v4(uint32_t host_order_addr) const noexcept;
    // `hi`/`lo`: the 128-bit address in host order, already masked.
    ConsentLookup lookup_v6(uint64_t hi, uint64_t lo) const noexcept;
    ConsentLookup lookup(const SubscriberKey& key) const noexcept;
    // Start loading the slot a lookup of this key will read first, so that a
    // later stage of the same burst finds it in cache.
    void prefetch_v4(uint32_t host_order_addr) const noexcept;
    void prefetch_v6(uint64_t hi, uint64_t lo) const noexcept;

    // ---- writer: one thread ----
    // Returns false only for the two reserved IPv4 keys (0.0.0.0 and
    // 255.255.255.255), which can never be subscribers.
    bool upsert(const SubscriberKey& key, PurposeMask purposes);
    bool erase(const SubscriberKey& key);
    void clear();
    // Pre-sizes both families (used before loading a snapshot).
    void reserve(size_t v4_entries, size_t v6_entries = 0);

    size_t size() const noexcept { return v4_live_ + v6_live_; }
    size_t size_v4() const noexcept { return v4_live_; }
    size_t size_v6() const noexcept { return v6_live_; }
    // Bytes held by the slot arrays (what grows with entries).
    size_t memory_bytes() const noexcept;

    // Calls fn(key, purposes) for every entry (writer thread only).
    template <class Fn>
    void for_each(Fn&& fn) const;

    // An IPv6 key as the table holds it: the address (16 bytes, network
    // order) masked to its first `key_length` bits (1..128), as two
    // host-order words. The packet path, the writer and the client library
    // all split keys here.
    static void split_v6(const uint8_t* address, uint64_t& hi, uint64_t& lo, unsigned key_length = 128) noexcept {
        hi = big_endian::load64(address);
        lo = big_endian::load64(address + 8);
        if (key_length <= 64) {
            if (key_length < 64) hi &= ~(~uint64_t(0) >> key_length);
            lo = 0;
        } else if (key_length < 128) {
            lo &= ~(~uint64_t(0) >> (key_length - 64));
        }
    }

private:
    static constexpr uint64_t kV4Empty = 0;                     // key 0.0.0.0
    static constexpr uint64_t kV4TombstoneKey = 0xffffffffull;  // key 255.255.255.255

    struct V4Array {
        size_t mask;  // capacity - 1
        std::atomic<uint64_t> slots[1];
    };
    struct V6Slot {
        uint64_t hi, lo;
        std::atomic<uint32_t> purposes;
        std::atomic<uint32_t> state;  // 0 empty, 1 live, 2 tombstone
    };
    struct V6Array {
        size_t mask;
        V6Slot slots[1];
    };

    void rebuild_v4(size_t capacity);
    void rebuild_v6(size_t capacity);

    QsbrDomain& rcu_;
    std::atomic<V4Array*> v4_;
    std::atomic<V6Array*> v6_;
    size_t v4_live_ = 0, v4_tombstones_ = 0;
    size_t v6_live_ = 0, v6_used_ = 0;  // used = live + tombstones
};

template <class Fn>
void ConsentTable::for_each(Fn&& fn) const {
    const V4Array* a4 = v4_.load(std::memory_order_acquire);
    for (size_t i = 0; i <= a4->mask; ++i) {
        const uint64_t w = a4->slots[i].load(std::memory_order_relaxed);
        const uint32_t key = uint32_t(w >> 32);
        if (w == kV4Empty || key == kV4TombstoneKey) continue;
        fn(SubscriberKey{IpAddr::from_v4_host(key)}, PurposeMask(w));
    }
    const V6Array* a6 = v6_.load(std::memory_order_acquire);
    for (size_t i = 0; i <= a6->mask; ++i) {
        const V6Slot& s = a6->slots[i];
        if (s.state.load(std::memory_order_relaxed) != 1) continue;
        IpAddr a;
        a.family = Family::v6;
        for (int b = 0; b < 8; ++b) {
            a.bytes[b] = uint8_t(s.hi >> (56 - 8 * b));
            a.bytes[8 + b] = uint8_t(s.lo >> (56 - 8 * b));
        }
        fn(SubscriberKey{a}, PurposeMask(s.purposes.load(std::memory_order_relaxed)));
    }
}

}  // namespace optgate
