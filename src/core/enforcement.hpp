// What every worker enforces: the compiled policy, the consent table, and
// how fresh that table is. One per process, shared by all workers.
//
// The control side (one thread: the replay tool's loader, or the control
// client) installs a policy and table together (a snapshot), applies deltas
// to the installed table, and reports each contact with the control plane.
// Workers read through view() once per burst, without locks.
//
// Freshness: a table loaded from a file (static mode) is always fresh. A
// table from the control plane (controlled mode) is stale once no contact
// has been heard for the policy's staleness_limit; then, and before the
// first snapshot, the verdict rule strips everything.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "core/consent_table.hpp"
#include "core/rcu.hpp"
#include "core/runtime.hpp"
#include "core/verdict.hpp"

namespace optgate {

class Enforcement {
public:
    enum class Mode : uint8_t { static_table, controlled };

    explicit Enforcement(Mode mode) : mode_(mode) {}
    ~Enforcement();
    Enforcement(const Enforcement&) = delete;
    Enforcement& operator=(const Enforcement&) = delete;

    QsbrDomain& rcu() noexcept { return rcu_; }
    Mode mode() const noexcept { return mode_; }

    // ---- control side (one thread) ----
    // Makes a new table bound to this domain's RCU, for filling before install.
    std::unique_ptr<ConsentTable> make_table(size_t expected_v4_entries = 0) {
        return std::make_unique<ConsentTable>(rcu_, expected_v4_entries);
    }
    // Publishes policy and table together; the previous pair is freed after
    // every worker has passed a quiescent state.
    void install(std::shared_ptr<const Runtime> runtime, std::unique_ptr<ConsentTable> table);
    // The installed table, for deltas; nullptr before the first install.
    ConsentTable* table() noexcept;
    // The installed policy. Also safe on a worker inside a burst (between
    // online and quiescent, RCU keeps the generation alive); not per packet.
    std::shared_ptr<const Runtime> runtime() const;
    // The installed policy's encapsulations (0 before the first install),
    // for code outside a burst: the data plane's steering reads it per burst.
    EncapsulationSet encapsulations() const noexcept { return encapsulations_.load(std::memory_order_relaxed); }
    void heard_from_control(uint64_t now_mono_ns) noexcept {
        last_contact_ns_.store(now_mono_ns, std::memory_order_release);
    }

    // ---- workers ----
    struct View {
        const Runtime* runtime = nullptr;  // null before the first install
        const ConsentTable* table = nullptr;
        TableHealth health = TableHealth::not_received;
    };
    View view(uint64_t now_mono_ns) const noexcept {
        const Generation* g = current_.load(std::memory_order_acquire);
        if (!g) return {};
        View v{g->runtime.get(), g->table.get(), TableHealth::fresh};
        if (mode_ == Mode::controlled) {
            const uint64_t last = last_contact_ns_.load(std::memory_order_acquire);
            const uint64_t limit_ns = uint64_t(g->runtime->policy().staleness_limit.count()) * 1000000ull;
            if (last == 0)  // a local bootstrap policy: nothing from the control plane yet
                v.health = TableHealth::not_received;
            else if (now_mono_ns > last && now_mono_ns - last > limit_ns)
                v.health = TableHealth::stale;
        }
        return v;
    }

private:
    struct Generation {
        std::shared_ptr<const Runtime> runtime;
        std::unique_ptr<ConsentTable> table;
    };

    const Mode mode_;
    QsbrDomain rcu_;  // declared first among the shared state: outlives the tables
    std::atomic<Generation*> current_{nullptr};
    std::atomic<uint64_t> last_contact_ns_{0};
    std::atomic<EncapsulationSet> encapsulations_{0};
};

// Monotonic clock in nanoseconds (CLOCK_MONOTONIC), for freshness.
uint64_t monotonic_ns() noexcept;

}  // namespace optgate
