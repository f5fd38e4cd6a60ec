#include "core/disclosure.hpp"

#include <time.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <new>
#include <tuple>

#include "core/pipeline.hpp"
#include "core/rcu.hpp"
#include "core/runtime.hpp"

namespace optgate {

uint64_t unix_ms_now() noexcept {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return uint64_t(ts.tv_sec) * 1000u + uint64_t(ts.tv_nsec) / 1000000u;
}

DisclosureCounts::DisclosureCounts(const DisclosureConfig& config) {
    size_t slots = 4;
    while (slots < config.entries) slots <<= 1;
    mask_ = slots - 1;
    max_rows_ = slots / 4 * 3;  // linear probing stays short up to 3/4 full
    for (Table& t : tables_) {
        // calloc, not new Row[](): zeroed pages come from the kernel on
        // first touch, so an unused table costs address space, not a 2.6 MB
        // memset per worker (tests and fuzz targets make many workers).
        t.rows = static_cast<Row*>(std::calloc(slots, sizeof(Row)));  // NOLINT(cppcoreguidelines-no-malloc): see above
        t.tags = static_cast<uint8_t*>(std::calloc(slots, 1));        // NOLINT(cppcoreguidelines-no-malloc): see above
        if (!t.rows || !t.tags) {
            free_tables();
            throw std::bad_alloc();
        }
    }
}

DisclosureCounts::~DisclosureCounts() { free_tables(); }

void DisclosureCounts::free_tables() noexcept {
    for (Table& t : tables_) {
        std::free(t.rows);  // NOLINT(cppcoreguidelines-no-malloc): pairs with calloc
        std::free(t.tags);  // NOLINT(cppcoreguidelines-no-malloc): pairs with calloc
        t.rows = nullptr;
        t.tags = nullptr;
    }
}

void DisclosureCounts::switch_runtime(const Runtime& rt) noexcept {
    Table& t = *table_;
    t.runtime_now = &rt;
    for (unsigned i = 0; i < t.runtime_count; ++i) {
        if (t.runtimes[i].get() == &rt) {
            t.runtime_index = uint8_t(i);
            t.runtime_full = false;
            return;
        }
    }
    if (t.runtime_count == kRuntimesPerTable) {
        // More policy changes in one interval than a table can name: count
        // as overflow until the drain (no name could be trusted).
        t.runtime_full = true;
        return;
    }
    // The worker holds the runtime for this burst (RCU), so it is alive;
    // lock() takes a reference, it allocates nothing.
    t.runtimes[t.runtime_count] = rt.weak_from_this().lock();
    t.runtime_index = uint8_t(t.runtime_count++);
    t.runtime_full = false;
}

uint64_t DisclosureCounts::hash(uint64_t hi, uint64_t lo, uint32_t tail) noexcept {
    // Multiply-xorshift (as in murmur3's finalizer): keys from one prefix
    // differ in a few low bits and must spread over the whole table.
    uint64_t h = hi * 0x9e3779b97f4a7c15ull ^ lo;
    h ^= uint64_t(tail) << 32 | tail;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

void DisclosureCounts::count(Family family, uint64_t hi, uint64_t lo, uint16_t destination_slot, int identifier,
                             bool passed, WorkerCounters& counters, bool gpc, bool pseudonym) noexcept {
    Table& t = *table_;
    if (t.runtime_full) {
        ++t.overflowed;
        counters.add(Counter::disclosure_overflow);
        return;
    }
    const uint8_t fam = uint8_t(family);
    // A GPC row: the destination's, whatever the identifier.
    const uint8_t id = gpc ? 0 : uint8_t(identifier);
    destination_slot = uint16_t(destination_slot | (gpc ? kGpcRow : 0) | (pseudonym ? kPseudonymRow : 0));
    const uint64_t h = hash(hi, lo, tail(destination_slot, id, t.runtime_index));
    // The tag is the hash's top byte (the slot comes from its low bits), never 0.
    const uint8_t tag = uint8_t(h >> 56) | uint8_t(h >> 56 == 0);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
        const uint8_t seen = t.tags[i];
        Row& r = t.rows[i];
        if (seen == 0) {
            if (t.used == max_rows_) {
                ++t.overflowed;
                counters.add(Counter::disclosure_overflow);
                return;
            }
            r = Row{hi, lo, 0, 0, destination_slot, id, t.runtime_index, fam};
            t.tags[i] = tag;
            ++t.used;
        } else if (seen != tag || r.lo != lo || r.hi != hi || r.destination != destination_slot || r.identifier != id ||
                   r.runtime != t.runtime_index || r.family != fam) {
            continue;
        }
        ++(passed ? r.passed : r.stripped);
        return;
    }
}

namespace {

DisclosureEntry entry_key(const Runtime& rt, uint8_t family, uint64_t hi, uint64_t lo, uint16_t destination,
                          uint8_t identifier) {
    DisclosureEntry e;
    e.family = Family(family);
    if (e.family == Family::v4) {
        for (size_t b = 0; b < 4; ++b) e.key[b] = uint8_t(lo >> (24 - 8 * b));
    } else {
        for (size_t b = 0; b < 8; ++b) {
            e.key[b] = uint8_t(hi >> (56 - 8 * b));
            e.key[8 + b] = uint8_t(lo >> (56 - 8 * b));
        }
    }
    const bool gpc = (destination & DisclosureCounts::kGpcRow) != 0;
    const bool pseudonym = (destination & DisclosureCounts::kPseudonymRow) != 0;
    e.destination = std::string(
        rt.destination_name(destination & ~(DisclosureCounts::kGpcRow | DisclosureCounts::kPseudonymRow)));
    e.identifier = gpc ? std::string(kGpcIdentifierName) : rt.policy().identifiers[identifier].name;
    if (pseudonym) e.identifier += kPseudonymSuffix;
    return e;
}

}  // namespace

bool DisclosureDrain::drain(QsbrDomain& rcu, std::span<Worker* const> workers, uint64_t now_unix_ms,
                            DisclosureBatch& out, std::chrono::nanoseconds timeout) {
    out = DisclosureBatch{};
    // Flip every worker first, then one grace period covers them all. A
    // worker flipped by a call whose grace period timed out keeps its
    // retired table pending: it is read by the next call, not flipped again.
    bool any = false;
    for (Worker* w : workers) {
        DisclosureCounts* d = w->disclosure();
        if (!d) continue;
        any = true;
        if (!d->retired_pending_) {
            d->active_.store(d->active_.load(std::memory_order_relaxed) ^ 1u, std::memory_order_seq_cst);
            d->retired_pending_ = true;
        }
    }
    if (any && !rcu.barrier(uint64_t(timeout.count()))) return false;

    using Key = std::tuple<Family, std::array<uint8_t, 16>, std::string, std::string>;
    std::map<Key, DisclosureEntry> merged;
    for (Worker* w : workers) {
        DisclosureCounts* d = w->disclosure();
        if (!d) continue;
        DisclosureCounts::Table& t = d->tables_[d->active_.load(std::memory_order_relaxed) ^ 1u];
        for (size_t i = 0; t.used && i <= d->mask_; ++i) {
            const DisclosureCounts::Row& r = t.rows[i];
            if (r.family == 0) continue;
            DisclosureEntry e = entry_key(*t.runtimes[r.runtime], r.family, r.hi, r.lo, r.destination, r.identifier);
            DisclosureEntry& m = merged.try_emplace(Key{e.family, e.key, e.destination, e.identifier}, e).first->second;
            m.passed += r.passed;
            m.stripped += r.stripped;
        }
        out.overflowed += t.overflowed;
        if (t.used) {
            std::memset(static_cast<void*>(t.rows), 0, (d->mask_ + 1) * sizeof(DisclosureCounts::Row));
            std::memset(t.tags, 0, d->mask_ + 1);
        }
        t.used = 0;
        t.overflowed = 0;
        for (auto& rt : t.runtimes) rt.reset();
        t.runtime_count = 0;
        t.runtime_now = nullptr;
        t.runtime_full = false;
        d->retired_pending_ = false;
    }
    out.entries.reserve(merged.size());
    for (auto& [key, e] : merged) out.entries.push_back(std::move(e));
    out.start_unix_ms = start_unix_ms_;
    out.end_unix_ms = now_unix_ms;
    start_unix_ms_ = now_unix_ms;
    return true;
}

}  // namespace optgate
