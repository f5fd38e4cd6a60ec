// Quiescent-state-based reclamation (QSBR) for the core, the same discipline
// as DPDK's rte_rcu_qsbr without depending on DPDK:
//  - each packet-path thread registers once and calls quiescent() between
//    bursts (it holds no pointer into shared structures at that point);
//  - the single writer publishes a new version with an atomic pointer store,
//    then retires the old one; it is freed once every online reader has been
//    quiescent after the retirement.
// Readers never block and never write shared cache lines except their own.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

namespace optgate {

class QsbrDomain {
public:
    static constexpr unsigned kMaxReaders = 64;
    using ReaderId = unsigned;

    QsbrDomain() = default;
    QsbrDomain(const QsbrDomain&) = delete;
    QsbrDomain& operator=(const QsbrDomain&) = delete;
    ~QsbrDomain();

    // Reader side. register_reader() puts the thread online.
    ReaderId register_reader();
    void unregister_reader(ReaderId id);
    void quiescent(ReaderId id) noexcept {
        readers_[id].seen.store(epoch_.load(std::memory_order_acquire), std::memory_order_release);
    }
    // A reader that will sleep for long (idle poll loop, replay waiting for
    // input) goes offline so that it does not hold up reclamation.
    void offline(ReaderId id) noexcept { readers_[id].seen.store(kOffline, std::memory_order_release); }
    void online(ReaderId id) noexcept {
        // Store-then-load against the writer's publish-then-check: both sides
        // need a full fence or an offline->online reader could miss a retire.
        quiescent(id);
        std::atomic_thread_fence(std::memory_order_seq_cst);
    }

    // Writer side (one writer thread at a time).
    // Schedules `free_fn` to run once all current readers have passed a
    // quiescent state. Runs it immediately if no reader is online.
    void retire(std::function<void()> free_fn);
    // Frees whatever retired objects are safe to free now; returns how many
    // are still pending.
    size_t reclaim();
    // Blocks until every retired object is freed.
    void synchronize();
    // Waits until every reader that is online now has passed a quiescent
    // state, so that every write made before the call is visible to every
    // burst from then on (what a data plane's ack promises). Gives up after
    // `timeout_ns` and returns false: a reader stuck inside a burst must not
    // stall the control thread forever.
    bool barrier(uint64_t timeout_ns);

private:
    static constexpr uint64_t kOffline = ~uint64_t(0);
    static constexpr uint64_t kUnused = 0;

    bool grace_period_over(uint64_t token) const noexcept;

    struct alignas(64) Reader {
        std::atomic<uint64_t> seen{kUnused};
    };
    struct Pending {
        uint64_t token = 0;
        std::function<void()> free_fn;
    };

    std::atomic<uint64_t> epoch_{1};
    Reader readers_[kMaxReaders];
    std::mutex registry_mutex_;  // cold: registration only
    std::vector<Pending> pending_;
};

}  // namespace optgate
