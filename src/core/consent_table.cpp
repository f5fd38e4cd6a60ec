#include "core/consent_table.hpp"

#include <bit>
#include <new>

#include "core/table_memory.hpp"

namespace optgate {
namespace {

constexpr size_t kMinCapacity = 64;

inline size_t hash_v4(uint32_t key) noexcept {
    // Fibonacci hashing: the high bits of the product are well mixed.
    return size_t((uint64_t(key) * 0x9E3779B97F4A7C15ull) >> 32);
}

inline size_t hash_v6(uint64_t hi, uint64_t lo) noexcept {
    uint64_t h = hi * 0x9E3779B97F4A7C15ull ^ (lo + 0x632BE59BD9B4E019ull) * 0xC2B2AE3D27D4EB4Full;
    return size_t(h ^ (h >> 29));
}

// Smallest power of two with room for `entries` at load factor 1/2.
size_t capacity_for(size_t entries) noexcept {
    size_t need = entries * 2;
    if (need < kMinCapacity) need = kMinCapacity;
    return std::bit_ceil(need);
}

template <class Array, class Slot>
Array* allocate_array(size_t capacity) {
    // Huge pages where the kernel has them (table_memory.hpp): lookups probe
    // the array at random.
    auto* a = static_cast<Array*>(table_alloc(sizeof(Array) + (capacity - 1) * sizeof(Slot)));
    a->mask = capacity - 1;
    for (size_t i = 0; i < capacity; ++i) new (&a->slots[i]) Slot{};
    return a;
}

template <class Array>
void free_array(Array* a) noexcept {
    table_free(a);
}

// Called when live + tombstones reach half the capacity: double if live
// entries alone fill more than a quarter, otherwise rebuild at the same size
// to drop tombstones (leaving room for at least capacity/4 more inserts).
size_t next_capacity(size_t live, size_t capacity) noexcept {
    return (live + 1) * 4 > capacity ? capacity * 2 : capacity;
}

inline uint64_t v4_word(uint32_t key, PurposeMask m) noexcept { return uint64_t(key) << 32 | m; }

}  // namespace

ConsentTable::ConsentTable(QsbrDomain& rcu, size_t expected_v4_entries) : rcu_(rcu) {
    v4_.store(allocate_array<V4Array, std::atomic<uint64_t>>(capacity_for(expected_v4_entries)));
    v6_.store(allocate_array<V6Array, V6Slot>(kMinCapacity));
}

ConsentTable::~ConsentTable() {
    // The owner guarantees no reader holds this table any more.
    free_array(v4_.load());
    free_array(v6_.load());
}

size_t ConsentTable::memory_bytes() const noexcept {
    return (v4_.load()->mask + 1) * sizeof(uint64_t) + (v6_.load()->mask + 1) * sizeof(V6Slot);
}

ConsentLookup ConsentTable::lookup_v4(uint32_t key) const noexcept {
    const V4Array* a = v4_.load(std::memory_order_acquire);
    if (key == 0 || key == uint32_t(kV4TombstoneKey)) return {};
    for (size_t i = hash_v4(key) & a->mask;; i = (i + 1) & a->mask) {
        const uint64_t w = a->slots[i].load(std::memory_order_acquire);
        if (w == kV4Empty) return {};
        if (uint32_t(w >> 32) == key) return {true, PurposeMask(w)};
    }
}

ConsentLookup ConsentTable::lookup_v6(uint64_t hi, uint64_t lo) const noexcept {
    const V6Array* a = v6_.load(std::memory_order_acquire);
    for (size_t i = hash_v6(hi, lo) & a->mask;; i = (i + 1) & a->mask) {
        const V6Slot& s = a->slots[i];
        const uint32_t state = s.state.load(std::memory_order_acquire);
        if (state == 0) return {};
        if (s.hi == hi && s.lo == lo) {
            if (state != 1) return {};
            return {true, s.purposes.load(std::memory_order_acquire)};
        }
    }
}

void ConsentTable::prefetch_v4(uint32_t key) const noexcept {
    const V4Array* a = v4_.load(std::memory_order_acquire);
    __builtin_prefetch(&a->slots[hash_v4(key) & a->mask]);
}

void ConsentTable::prefetch_v6(uint64_t hi, uint64_t lo) const noexcept {
    const V6Array* a = v6_.load(std::memory_order_acquire);
    __builtin_prefetch(&a->slots[hash_v6(hi, lo) & a->mask]);
}

ConsentLookup ConsentTable::lookup(const SubscriberKey& key) const noexcept {
    if (key.addr.family == Family::v4) return lookup_v4(key.addr.v4_host_order());
    uint64_t hi = 0, lo = 0;
    split_v6(key.addr.bytes.data(), hi, lo);
    return lookup_v6(hi, lo);
}

bool ConsentTable::upsert(const SubscriberKey& key, PurposeMask purposes) {
    if (key.addr.family == Family::v4) {
        const uint32_t k = key.addr.v4_host_order();
        if (k == 0 || k == uint32_t(kV4TombstoneKey)) return false;
        if ((v4_live_ + v4_tombstones_ + 1) * 2 > v4_.load()->mask + 1)
            rebuild_v4(next_capacity(v4_live_, v4_.load()->mask + 1));
        V4Array* a = v4_.load(std::memory_order_relaxed);
        std::atomic<uint64_t>* tombstone = nullptr;
        std::atomic<uint64_t>* empty = nullptr;
        for (size_t i = hash_v4(k) & a->mask;; i = (i + 1) & a->mask) {
            const uint64_t w = a->slots[i].load(std::memory_order_relaxed);
            if (w == kV4Empty) {
                empty = &a->slots[i];
                break;
            }
            const uint32_t slot_key = uint32_t(w >> 32);
            if (slot_key == k) {
                a->slots[i].store(v4_word(k, purposes), std::memory_order_release);
                return true;
            }
            // A one-word slot can take a new key in place: a reader sees the
            // tombstone or the new entry, never a mix.
            if (slot_key == uint32_t(kV4TombstoneKey) && !tombstone) tombstone = &a->slots[i];
        }
        std::atomic<uint64_t>* reuse = tombstone ? tombstone : empty;
        if (tombstone) --v4_tombstones_;
        reuse->store(v4_word(k, purposes), std::memory_order_release);
        ++v4_live_;
        return true;
    }

    uint64_t hi = 0, lo = 0;
    split_v6(key.addr.bytes.data(), hi, lo);
    if ((v6_used_ + 1) * 2 > v6_.load()->mask + 1) rebuild_v6(next_capacity(v6_live_, v6_.load()->mask + 1));
    V6Array* a = v6_.load(std::memory_order_relaxed);
    for (size_t i = hash_v6(hi, lo) & a->mask;; i = (i + 1) & a->mask) {
        V6Slot& s = a->slots[i];
        const uint32_t state = s.state.load(std::memory_order_relaxed);
        if (state == 0) {
            s.hi = hi;
            s.lo = lo;
            s.purposes.store(purposes, std::memory_order_relaxed);
            s.state.store(1, std::memory_order_release);
            ++v6_live_;
            ++v6_used_;
            return true;
        }
        if (s.hi == hi && s.lo == lo) {
            // Same key (live or tombstone): the key bytes are unchanged, so
            // reviving in place is safe for concurrent readers.
            s.purposes.store(purposes, std::memory_order_release);
            if (state != 1) {
                s.state.store(1, std::memory_order_release);
                ++v6_live_;
            }
            return true;
        }
    }
}

bool ConsentTable::erase(const SubscriberKey& key) {
    if (key.addr.family == Family::v4) {
        const uint32_t k = key.addr.v4_host_order();
        if (k == 0 || k == uint32_t(kV4TombstoneKey)) return false;
        V4Array* a = v4_.load(std::memory_order_relaxed);
        for (size_t i = hash_v4(k) & a->mask;; i = (i + 1) & a->mask) {
            const uint64_t w = a->slots[i].load(std::memory_order_relaxed);
            if (w == kV4Empty) return false;
            if (uint32_t(w >> 32) == k) {
                a->slots[i].store(v4_word(uint32_t(kV4TombstoneKey), 0), std::memory_order_release);
                --v4_live_;
                ++v4_tombstones_;
                return true;
            }
        }
    }
    uint64_t hi = 0, lo = 0;
    split_v6(key.addr.bytes.data(), hi, lo);
    V6Array* a = v6_.load(std::memory_order_relaxed);
    for (size_t i = hash_v6(hi, lo) & a->mask;; i = (i + 1) & a->mask) {
        V6Slot& s = a->slots[i];
        const uint32_t state = s.state.load(std::memory_order_relaxed);
        if (state == 0) return false;
        if (s.hi == hi && s.lo == lo) {
            if (state != 1) return false;
            s.state.store(2, std::memory_order_release);
            s.purposes.store(0, std::memory_order_release);
            --v6_live_;
            return true;
        }
    }
}

void ConsentTable::clear() {
    V4Array* old4 = v4_.load();
    V6Array* old6 = v6_.load();
    v4_.store(allocate_array<V4Array, std::atomic<uint64_t>>(kMinCapacity), std::memory_order_release);
    v6_.store(allocate_array<V6Array, V6Slot>(kMinCapacity), std::memory_order_release);
    v4_live_ = v4_tombstones_ = v6_live_ = v6_used_ = 0;
    rcu_.retire([old4, old6] {
        free_array(old4);
        free_array(old6);
    });
}

void ConsentTable::reserve(size_t v4_entries, size_t v6_entries) {
    if (capacity_for(v4_entries) > v4_.load()->mask + 1) rebuild_v4(capacity_for(v4_entries));
    if (capacity_for(v6_entries) > v6_.load()->mask + 1) rebuild_v6(capacity_for(v6_entries));
}

void ConsentTable::rebuild_v4(size_t capacity) {
    V4Array* old = v4_.load(std::memory_order_relaxed);
    V4Array* fresh = allocate_array<V4Array, std::atomic<uint64_t>>(capacity);
    for (size_t i = 0; i <= old->mask; ++i) {
        const uint64_t w = old->slots[i].load(std::memory_order_relaxed);
        const uint32_t k = uint32_t(w >> 32);
        if (w == kV4Empty || k == uint32_t(kV4TombstoneKey)) continue;
        for (size_t j = hash_v4(k) & fresh->mask;; j = (j + 1) & fresh->mask) {
            if (fresh->slots[j].load(std::memory_order_relaxed) == kV4Empty) {
                fresh->slots[j].store(w, std::memory_order_relaxed);
                break;
            }
        }
    }
    v4_.store(fresh, std::memory_order_release);
    v4_tombstones_ = 0;
    rcu_.retire([old] { free_array(old); });
}

void ConsentTable::rebuild_v6(size_t capacity) {
    V6Array* old = v6_.load(std::memory_order_relaxed);
    V6Array* fresh = allocate_array<V6Array, V6Slot>(capacity);
    for (size_t i = 0; i <= old->mask; ++i) {
        const V6Slot& s = old->slots[i];
        if (s.state.load(std::memory_order_relaxed) != 1) continue;
        for (size_t j = hash_v6(s.hi, s.lo) & fresh->mask;; j = (j + 1) & fresh->mask) {
            V6Slot& d = fresh->slots[j];
            if (d.state.load(std::memory_order_relaxed) == 0) {
                d.hi = s.hi;
                d.lo = s.lo;
                d.purposes.store(s.purposes.load(std::memory_order_relaxed), std::memory_order_relaxed);
                d.state.store(1, std::memory_order_relaxed);
                break;
            }
        }
    }
    v6_.store(fresh, std::memory_order_release);
    v6_used_ = v6_live_;
    rcu_.retire([old] { free_array(old); });
}

}  // namespace optgate
