// Disclosure accounting: per worker, how many identifier instances (HTTP
// header lines, EDNS0 options) were passed and stripped per (subscriber key,
// destination, identifier), so that a subscriber can be told what was shared
// about them and with whom (docs/pipeline.md#disclosure-accounting).
//
// Packet path (the worker): BurstContext::count_identifier adds one instance
// to the worker's active table. The table is open addressing with linear
// probing over a fixed, power-of-two number of slots allocated at start; a
// row that finds no room (more than 3/4 of the slots in use) is counted by
// Counter::disclosure_overflow and in the table, and nothing else happens:
// no lock, no allocation, no wait.
//
// Control thread (the drain): every interval, DisclosureDrain flips each
// worker's active table (one atomic store), waits for a QSBR grace period
// (QsbrDomain::barrier: every worker that was inside a burst has finished
// it; idle workers are offline and hold nothing up), then reads and clears
// the retired table, which no worker touches until the next flip.
//
// Names: rows hold the runtime's indices (destination counter slot,
// identifier index); each table pins the runtimes its rows were counted
// under (up to kRuntimesPerTable per interval), and the drain names every
// row with its own runtime. A policy change mid-interval therefore never
// gives a count another collector's or identifier's name.
//
// Memory: 2 tables x slots x 40 bytes per worker (5 MiB at the default 65536
// slots), reserved lazily by calloc and touched as rows are used.
// Cost: docs/benchmarks.md, "Disclosure accounting".
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>

#include "core/counters.hpp"
#include "core/disclosure_report.hpp"

namespace optgate {

class Runtime;
class QsbrDomain;
class Worker;

struct DisclosureConfig {
    // Slots per table (rounded up to a power of two); 0 turns accounting off.
    // Up to 3/4 of them hold rows: (key, destination, identifier) triples
    // seen in one interval by one worker.
    size_t entries = 65536;
};

// One worker's counts. The worker calls begin_burst() and count(); the drain
// (DisclosureDrain) is the only other user.
class DisclosureCounts {
public:
    static constexpr unsigned kRuntimesPerTable = 8;
    // Set in a row's destination slot (slots are at most kMaxCollectors):
    // the destination's Global Privacy Control row.
    static constexpr uint16_t kGpcRow = 0x8000;
    static_assert(kMaxCollectors + 1 < kGpcRow);
    // Set in a row's destination slot: values passed as pseudonyms
    // (identifier name + kPseudonymSuffix).
    static constexpr uint16_t kPseudonymRow = 0x4000;
    static_assert(kMaxCollectors + 1 < kPseudonymRow);

    explicit DisclosureCounts(const DisclosureConfig& config);
    ~DisclosureCounts();
    DisclosureCounts(const DisclosureCounts&) = delete;
    DisclosureCounts& operator=(const DisclosureCounts&) = delete;

    size_t slots() const noexcept { return mask_ + 1; }
    size_t max_rows() const noexcept { return max_rows_; }

    // ---- worker, inside a burst ----
    // Picks the active table and the runtime its rows are counted under.
    // Cold when the policy changed since the table's last burst (pins the
    // runtime: no allocation).
    void begin_burst(const Runtime& rt) noexcept {
        table_ = &tables_[active_.load(std::memory_order_acquire)];
        if (table_->runtime_now != &rt) switch_runtime(rt);
    }
    // One identifier instance from subscriber key (hi, lo) (IPv4: the
    // address in `lo`, host order), toward the destination's counter slot.
    // `gpc`: stripped because the request carried Sec-GPC: 1; counted in the
    // destination's Global Privacy Control row (kGpcIdentifierName), not
    // the identifier's, so that a subscriber can be told how often their
    // browser's signal was honoured.
    // `pseudonym`: passed as the collector's pseudonym; a row of its own.
    void count(Family family, uint64_t hi, uint64_t lo, uint16_t destination_slot, int identifier, bool passed,
               WorkerCounters& counters, bool gpc = false, bool pseudonym = false) noexcept;
    // Starts loading the tag and the row where count() of the same key,
    // destination and identifier (neither GPC nor pseudonym) starts its
    // search. Within a burst: after begin_burst().
    void prefetch(uint64_t hi, uint64_t lo, uint16_t destination_slot, int identifier) const noexcept {
        const size_t i = hash(hi, lo, tail(destination_slot, uint8_t(identifier), table_->runtime_index)) & mask_;
        __builtin_prefetch(&table_->tags[i]);
        __builtin_prefetch(&table_->rows[i]);
    }

private:
    friend class DisclosureDrain;

    struct Row {
        uint64_t hi, lo;  // subscriber key (IPv4: address in lo)
        uint64_t passed, stripped;
        uint16_t destination;  // counter slot of the row's runtime
        uint8_t identifier;    // identifier index of the row's runtime
        uint8_t runtime;       // index into Table::runtimes
        uint8_t family;        // 0: free slot, else 4 or 6
    };
    static_assert(sizeof(Row) == 40);
    static_assert(kMaxIdentifiers <= 256 && kRuntimesPerTable <= 255);

    struct Table {
        Row* rows = nullptr;
        // One byte per slot, probed before the rows: 0 free, else 1..255
        // from the row's hash. A search reads the 40-byte rows only where
        // the tag matches, so a key that is not in a nearly full table (or
        // a full one: the overflow path) costs a few bytes of one cache
        // line, not a run of rows (docs/pipeline.md, "Disclosure accounting").
        uint8_t* tags = nullptr;
        size_t used = 0;
        uint64_t overflowed = 0;
        // The runtimes rows were counted under (pinned so their names stay
        // readable and their addresses are not reused); runtime_now is the
        // one of the current burst, or null if the pins are exhausted (then
        // every count overflows until the next drain).
        std::shared_ptr<const Runtime> runtimes[kRuntimesPerTable];
        unsigned runtime_count = 0;
        const Runtime* runtime_now = nullptr;
        uint8_t runtime_index = 0;
        bool runtime_full = false;
    };

    void switch_runtime(const Runtime& rt) noexcept;
    void free_tables() noexcept;
    static uint64_t hash(uint64_t hi, uint64_t lo, uint32_t tail) noexcept;
    // What a row's hash takes beside its key.
    static uint32_t tail(uint16_t destination, uint8_t identifier, uint8_t runtime) noexcept {
        return uint32_t(destination) << 16 | uint32_t(identifier) << 8 | runtime;
    }

    size_t mask_ = 0;
    size_t max_rows_ = 0;
    Table tables_[2];
    Table* table_ = &tables_[0];  // worker: the table of the current burst
    alignas(64) std::atomic<unsigned> active_{0};
    bool retired_pending_ = false;  // drain: flipped, not yet read
};

// Drains workers' counts into one DisclosureBatch (control thread; one
// drainer at a time). The interval of each batch starts where the previous
// one ended.
class DisclosureDrain {
public:
    explicit DisclosureDrain(uint64_t start_unix_ms) : start_unix_ms_(start_unix_ms) {}

    // Moves every worker's counts since the last drain into `out` (replaced),
    // merged over workers and runtimes by name and sorted by key, then
    // destination, then identifier. Returns false and leaves `out` empty when
    // a worker stayed inside one burst for `timeout` (the counts stay for the
    // next call; nothing is lost or counted twice). Workers without
    // accounting are skipped.
    bool drain(QsbrDomain& rcu, std::span<Worker* const> workers, uint64_t now_unix_ms, DisclosureBatch& out,
               std::chrono::nanoseconds timeout = std::chrono::seconds(5));

    uint64_t interval_start_unix_ms() const noexcept { return start_unix_ms_; }

private:
    uint64_t start_unix_ms_;
};

// Wall clock in Unix milliseconds, for intervals.
uint64_t unix_ms_now() noexcept;

}  // namespace optgate
