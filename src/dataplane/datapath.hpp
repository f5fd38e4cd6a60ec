// The per-lcore packet loop: receive, steer, run the core Worker, transmit.
//
// Each worker owns a core Worker (its own HTTP flow table, fragment
// reassembly store and counters) and never shares a packet-path structure
// with another worker, except the rings software steering hands frames
// over. docs/dataplane.md#workers.
#pragma once

#include <rte_ring.h>
#include <rte_seqlock.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/counters.hpp"
#include "core/pipeline.hpp"
#include "dataplane/ports.hpp"
#include "dataplane/steering.hpp"

namespace optgate::dataplane {

// What the driver itself counts, beside the pipeline's counters, as one
// list: X(name, what the exit summary prints after the number). The stats
// channel (driver_<name>), /optgate/stats, the exit summary and the JSON
// report (docs/dataplane.md) are generated from it.
#define OPTGATE_DRIVER_COUNTERS(X)                                      \
    X(rx, "received")                                                   \
    X(tx, "sent")                                                       \
    /* the port's tx queue (or shared-tx ring) was full */              \
    X(tx_full_dropped, "dropped on full tx queues")                     \
    /* chained mbuf that could not be linearised */                     \
    X(multi_segment_dropped, "unlinearisable jumbo frames dropped")     \
    /* another worker's inbox was full */                               \
    X(steering_ring_full_dropped, "dropped on full steering rings")     \
    /* a frame the core emitted found no mbuf (or none large enough) */ \
    X(emit_dropped, "emitted frames without an mbuf")

struct DriverCounters {
#define OPTGATE_X(name, summary) uint64_t name = 0;
    OPTGATE_DRIVER_COUNTERS(OPTGATE_X)
#undef OPTGATE_X
    // Software steering hand-overs: reported per worker, apart from the list.
    uint64_t steered_out = 0, steered_in = 0;
    void accumulate(const DriverCounters& o) noexcept;
};

// A worker's counters as last published, readable from any thread.
struct alignas(64) PublishedStats {
    rte_seqlock_t lock{};
    WorkerCounters counters;
    DriverCounters driver;
    std::atomic<uint64_t> last_rx_ns{0};  // monotonic_ns() of the last non-empty receive
    // Loop iterations, busy or idle: systemd's watchdog is pinged only while
    // every worker's moves (common/systemd.hpp, ProgressCheck).
    std::atomic<uint64_t> progress{0};
};

// Shared by every worker: ports, rings and the stop protocol.
struct Datapath {
    Datapath(Enforcement& enforcement, const Config& config, const QueuePlan& plan, uint16_t subscriber,
             uint16_t internet, std::vector<unsigned> lcores);
    ~Datapath();
    Datapath(const Datapath&) = delete;
    Datapath& operator=(const Datapath&) = delete;

    // Runs worker `index` until stop() and the drain that follows.
    void run_worker(unsigned index) noexcept;
    void stop() noexcept { stop_.store(true, std::memory_order_release); }
    // A worker that will never run (its launch failed): counted as drained,
    // so that the others' drain does not wait for it.
    void abandon(unsigned index) noexcept;
    bool stopping() const noexcept { return stop_.load(std::memory_order_acquire); }

    unsigned workers() const noexcept { return unsigned(lcores_.size()); }
    unsigned lcore_of(unsigned index) const noexcept { return lcores_[index]; }
    // Sums what every worker last published (any thread).
    void read_stats(WorkerCounters& counters, DriverCounters& driver) const;
    void read_worker(unsigned index, WorkerCounters& counters, DriverCounters& driver) const;
    uint64_t last_rx_ns() const noexcept;
    // Worker `index`'s loop iterations so far (any thread).
    uint64_t progress(unsigned index) const noexcept;
    // Tests only (optgate --test-stall-worker): worker `index` stops at its
    // next publish and spins there until stop(), advancing nothing, as a
    // worker stuck in a loop or a driver call would.
    void stall_for_test(unsigned index) noexcept { stall_.store(int(index), std::memory_order_relaxed); }
    // After every worker has returned: the final counters, exact.
    void final_stats(WorkerCounters& counters, DriverCounters& driver) const;
    const WorkerCounters& final_counters(unsigned index) const;
    const DriverCounters& final_driver(unsigned index) const;
    std::shared_ptr<const Runtime> runtime() const;
    // The core workers, for DisclosureDrain::drain on the control thread
    // (core/disclosure.hpp): every disclosure interval, e.g.
    //   drain.drain(enforcement.rcu(), datapath.core_workers(), unix_ms_now(), batch)
    const std::vector<Worker*>& core_workers() const noexcept { return core_workers_; }

private:
    struct Slot;
    void process(Slot& w, rte_mbuf** mbufs, uint16_t n, uint64_t now) noexcept;
    static void emit(void* user, const uint8_t* frame, uint32_t len, uint32_t index) noexcept;
    void transmit(Slot& w, unsigned role, rte_mbuf** out, uint16_t n) noexcept;
    void steer(Slot& w, rte_mbuf** in, uint16_t n, uint64_t now) noexcept;
    void drain_tx_rings(Slot& w) noexcept;
    void publish(Slot& w) noexcept;

    Enforcement& enforcement_;
    const Config& config_;
    const QueuePlan plan_;
    const uint16_t port_[2];  // [0] subscriber, [1] internet
    const std::vector<unsigned> lcores_;
    std::vector<Worker*> core_workers_;
    FlowSteering steering_;
    std::vector<std::unique_ptr<Slot>> slots_;
    rte_ring* tx_ring_[2] = {nullptr, nullptr};  // shared tx: frames for port [r], sent by its poller
    unsigned tx_owner_[2] = {0, 0};              // the worker that polls port [r]
    std::atomic<bool> stop_{false};
    std::atomic<int> stall_{-1};
    std::atomic<unsigned> rx_stopped_{0}, processed_{0};
};

}  // namespace optgate::dataplane
