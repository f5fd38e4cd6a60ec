#include "dataplane/datapath.hpp"

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_pause.h>

#include <cstring>
#include <stdexcept>
#include <string>

namespace optgate::dataplane {

namespace {
constexpr uint64_t kPublishIntervalNs = 100000000ull;  // 100 ms: telemetry and consentd read these
constexpr unsigned kPollsBeforeSleep = 64;

rte_ring* make_ring(const std::string& name, unsigned size, unsigned flags) {
    rte_ring* r = rte_ring_create(name.c_str(), size, int(rte_socket_id()), flags);
    if (!r) throw std::runtime_error("cannot create ring " + name + ": " + rte_strerror(rte_errno));
    return r;
}
}  // namespace

void DriverCounters::accumulate(const DriverCounters& o) noexcept {
#define OPTGATE_X(name, summary) name += o.name;
    OPTGATE_DRIVER_COUNTERS(OPTGATE_X)
#undef OPTGATE_X
    steered_out += o.steered_out;
    steered_in += o.steered_in;
    emit_dropped += o.emit_dropped;
}

struct Datapath::Slot {
    struct Rx {
        uint16_t port, queue;
    };
    unsigned index = 0;
    std::unique_ptr<Worker> worker;
    rte_ring* inbox = nullptr;  // software steering: frames hashed to this worker
    Rx rx[2]{};
    unsigned rx_count = 0;
    uint16_t txq = 0;  // when sending directly without a shared ring
    DriverCounters dc;
    std::unique_ptr<PublishedStats> published = std::make_unique<PublishedStats>();
    uint64_t next_publish_ns = 0;
    unsigned empty_polls = 0;
    // Software steering: frames for each other worker, per receive burst.
    std::vector<std::array<rte_mbuf*, Worker::kMaxBurst>> batch;
    std::vector<uint16_t> batch_count;
    // Frames the core emits during process() (reassembled datagrams cut
    // again, released fragments), sent after the frame at `index`.
    static constexpr uint16_t kMaxEmitted = 256;
    struct Emitted {
        rte_mbuf* m;
        uint32_t index;
        unsigned role;
    };
    Datapath* datapath = nullptr;
    rte_mbuf* const* in = nullptr;  // process()'s frames, by the core's index
    std::array<Emitted, kMaxEmitted> emitted{};
    uint16_t emitted_count = 0;
};

Datapath::Datapath(Enforcement& enforcement, const Config& config, const QueuePlan& plan, uint16_t subscriber,
                   uint16_t internet, std::vector<unsigned> lcores)
    : enforcement_(enforcement), config_(config), plan_(plan), port_{subscriber, internet}, lcores_(std::move(lcores)) {
    const unsigned n = workers();
    HttpStageConfig http;
    http.flow_capacity = config.http_flows;
    http.idle_timeout_ns = uint64_t(config.http_idle_timeout.count()) * 1000000000ull;
    ReassemblyConfig fragments;
    fragments.datagrams = config.fragment_datagrams;
    fragments.memory = config.fragment_memory;
    const bool software = n > 1 && plan.steering == Steering::software;
    for (unsigned i = 0; i < n; ++i) {
        auto s = std::make_unique<Slot>();
        s->index = i;
        s->worker = std::make_unique<Worker>(enforcement, http, DisclosureConfig{config.disclosure_entries}, fragments);
        s->worker->set_emit(&Datapath::emit, s.get());
        s->datapath = this;
        s->worker->idle();  // offline until it runs: reclamation and acks must not wait for it
        core_workers_.push_back(s->worker.get());
        rte_seqlock_init(&s->published->lock);
        if (n == 1) {
            s->rx[s->rx_count++] = {subscriber, 0};
            s->rx[s->rx_count++] = {internet, 0};
        } else if (!software) {
            s->rx[s->rx_count++] = {subscriber, uint16_t(i)};
            s->rx[s->rx_count++] = {internet, uint16_t(i)};
            s->txq = uint16_t(i);
        } else {
            s->inbox = make_ring("og_in_" + std::to_string(i), config.ring_size, RING_F_SC_DEQ);
            s->batch.resize(n);
            s->batch_count.assign(n, 0);
            if (plan.tx_queues == n) s->txq = uint16_t(i);
        }
        slots_.push_back(std::move(s));
    }
    if (software) {
        // One poller per port's single rx queue, on different workers when
        // there are two or more.
        tx_owner_[0] = 0;
        tx_owner_[1] = 1 % n;
        slots_[tx_owner_[0]]->rx[slots_[tx_owner_[0]]->rx_count++] = {subscriber, 0};
        slots_[tx_owner_[1]]->rx[slots_[tx_owner_[1]]->rx_count++] = {internet, 0};
        if (plan.tx_queues != n) {
            // One tx queue per port: its poller sends for everyone.
            tx_ring_[0] = make_ring("og_tx_sub", config.ring_size, RING_F_SC_DEQ);
            tx_ring_[1] = make_ring("og_tx_inet", config.ring_size, RING_F_SC_DEQ);
        }
    }
}

Datapath::~Datapath() {
    for (auto& s : slots_) {
        if (s->inbox) {
            rte_mbuf* m = nullptr;
            while (rte_ring_sc_dequeue(s->inbox, reinterpret_cast<void**>(&m)) == 0) rte_pktmbuf_free(m);
            rte_ring_free(s->inbox);
        }
    }
    for (rte_ring* r : tx_ring_) {
        if (!r) continue;
        rte_mbuf* m = nullptr;
        while (rte_ring_sc_dequeue(r, reinterpret_cast<void**>(&m)) == 0) rte_pktmbuf_free(m);
        rte_ring_free(r);
    }
}

std::shared_ptr<const Runtime> Datapath::runtime() const { return enforcement_.runtime(); }

void Datapath::transmit(Slot& w, unsigned role, rte_mbuf** out, uint16_t n) noexcept {
    if (n == 0) return;
    rte_ring* ring = tx_ring_[role];
    if (ring && w.index != tx_owner_[role]) {
        const unsigned queued = rte_ring_mp_enqueue_burst(ring, reinterpret_cast<void* const*>(out), n, nullptr);
        for (unsigned i = queued; i < n; ++i) rte_pktmbuf_free(out[i]);
        w.dc.tx_full_dropped += n - queued;
        return;
    }
    const uint16_t sent = rte_eth_tx_burst(port_[role], ring ? 0 : w.txq, out, n);
    w.dc.tx += sent;
    for (uint16_t i = sent; i < n; ++i) rte_pktmbuf_free(out[i]);
    w.dc.tx_full_dropped += n - sent;
}

void Datapath::drain_tx_rings(Slot& w) noexcept {
    for (unsigned role = 0; role < 2; ++role) {
        if (!tx_ring_[role] || tx_owner_[role] != w.index) continue;
        rte_mbuf* out[Worker::kMaxBurst];
        const unsigned n = rte_ring_sc_dequeue_burst(tx_ring_[role], reinterpret_cast<void**>(out), Worker::kMaxBurst,
                                                     nullptr);
        if (n == 0) continue;
        const uint16_t sent = rte_eth_tx_burst(port_[role], 0, out, uint16_t(n));
        w.dc.tx += sent;
        for (unsigned i = sent; i < n; ++i) rte_pktmbuf_free(out[i]);
        w.dc.tx_full_dropped += n - sent;
    }
}

void Datapath::process(Slot& w, rte_mbuf** in, uint16_t n, uint64_t now) noexcept {
    PacketRef refs[Worker::kMaxBurst];
    rte_mbuf* mbufs[Worker::kMaxBurst];
    uint32_t count = 0;
    for (uint16_t i = 0; i < n; ++i) {
        rte_mbuf* m = in[i];
        // The core needs the frame contiguous. A chained mbuf (jumbo frame)
        // that cannot be linearised is dropped: forwarding it unread could
        // leak an identifier.
        if (m->nb_segs > 1 && rte_pktmbuf_linearize(m) != 0) {
            rte_pktmbuf_free(m);
            ++w.dc.multi_segment_dropped;
            continue;
        }
        refs[count] = PacketRef{rte_pktmbuf_mtod(m, uint8_t*), rte_pktmbuf_data_len(m), now, Action::forward};
        mbufs[count++] = m;
    }
    w.in = mbufs;
    w.emitted_count = 0;
    w.worker->process_burst(refs, count, now);
    w.in = nullptr;
    // Out of the other port than the one it came in on; order kept per port.
    // Emitted frames follow the frame whose arrival made them.
    rte_mbuf* out[2][Worker::kMaxBurst + Slot::kMaxEmitted];
    uint16_t nout[2] = {0, 0};
    uint16_t e = 0;
    for (uint32_t i = 0; i < count; ++i) {
        rte_mbuf* m = mbufs[i];
        const unsigned role = m->port == port_[0] ? 1 : 0;
        if (refs[i].action == Action::drop) {
            rte_pktmbuf_free(m);
        } else {
            const uint32_t before = rte_pktmbuf_data_len(m);
            if (refs[i].len < before) rte_pktmbuf_trim(m, uint16_t(before - refs[i].len));
            out[role][nout[role]++] = m;
        }
        for (; e < w.emitted_count && w.emitted[e].index == i; ++e) out[role][nout[role]++] = w.emitted[e].m;
    }
    w.emitted_count = 0;
    transmit(w, 0, out[0], nout[0]);
    transmit(w, 1, out[1], nout[1]);
}

void Datapath::emit(void* user, const uint8_t* frame, uint32_t len, uint32_t index) noexcept {
    // Called by the core during process() only for frames it makes itself:
    // a copy into an mbuf of the pool the triggering frame came from.
    Slot& w = *static_cast<Slot*>(user);
    rte_mbuf* from = w.in[index];
    rte_mbuf* m = rte_pktmbuf_alloc(from->pool);
    if (!m || len > rte_pktmbuf_tailroom(m)) {
        if (m) rte_pktmbuf_free(m);
        ++w.dc.emit_dropped;
        return;
    }
    std::memcpy(rte_pktmbuf_append(m, uint16_t(len)), frame, len);
    m->port = from->port;
    const unsigned role = from->port == w.datapath->port_[0] ? 1 : 0;
    if (w.emitted_count == Slot::kMaxEmitted) {
        // More than a burst's worth (a datagram cut small): send what is
        // queued now, in order, ahead of the burst's own frames.
        rte_mbuf* early[2][Slot::kMaxEmitted];
        uint16_t n[2] = {0, 0};
        for (uint16_t k = 0; k < w.emitted_count; ++k)
            early[w.emitted[k].role][n[w.emitted[k].role]++] = w.emitted[k].m;
        w.datapath->transmit(w, 0, early[0], n[0]);
        w.datapath->transmit(w, 1, early[1], n[1]);
        w.emitted_count = 0;
    }
    w.emitted[w.emitted_count++] = Slot::Emitted{m, index, role};
}

void Datapath::steer(Slot& w, rte_mbuf** in, uint16_t n, uint64_t now) noexcept {
    if (!w.inbox) {
        process(w, in, n, now);
        return;
    }
    const uint64_t workers_n = slots_.size();
    rte_mbuf* local[Worker::kMaxBurst];
    uint16_t nlocal = 0;
    const EncapsulationSet encapsulations = enforcement_.encapsulations();  // inner flows of these
    for (uint16_t i = 0; i < n; ++i) {
        rte_mbuf* m = in[i];
        const uint32_t h = steering_.hash(rte_pktmbuf_mtod(m, const uint8_t*), rte_pktmbuf_data_len(m), encapsulations);
        const unsigned target = unsigned((uint64_t(h) * workers_n) >> 32);
        if (target == w.index)
            local[nlocal++] = m;
        else
            w.batch[target][w.batch_count[target]++] = m;
    }
    for (unsigned t = 0; t < workers_n; ++t) {
        const uint16_t c = w.batch_count[t];
        if (c == 0) continue;
        w.batch_count[t] = 0;
        const unsigned queued = rte_ring_mp_enqueue_burst(
            slots_[t]->inbox, reinterpret_cast<void* const*>(w.batch[t].data()), c, nullptr);
        for (unsigned i = queued; i < c; ++i) rte_pktmbuf_free(w.batch[t][i]);
        w.dc.steered_out += queued;
        w.dc.steering_ring_full_dropped += c - queued;
    }
    if (nlocal) process(w, local, nlocal, now);
}

void Datapath::publish(Slot& w) noexcept {
    rte_seqlock_write_lock(&w.published->lock);
    w.published->counters = w.worker->counters();
    w.published->driver = w.dc;
    rte_seqlock_write_unlock(&w.published->lock);
}

void Datapath::run_worker(unsigned index) noexcept {
    Slot& w = *slots_[index];
    const uint16_t burst = config_.burst;
    rte_mbuf* buf[Worker::kMaxBurst];
    const auto poll_inbox = [&](uint64_t now) -> uint16_t {
        if (!w.inbox) return 0;
        const unsigned n = rte_ring_sc_dequeue_burst(w.inbox, reinterpret_cast<void**>(buf), burst, nullptr);
        if (n) {
            w.dc.steered_in += n;
            process(w, buf, uint16_t(n), now);
        }
        return uint16_t(n);
    };

    uint64_t progress = 0;
    while (!stopping()) {
        w.published->progress.store(++progress, std::memory_order_relaxed);
        const uint64_t now = monotonic_ns();
        unsigned got = 0;
        for (unsigned r = 0; r < w.rx_count; ++r) {
            const uint16_t n = rte_eth_rx_burst(w.rx[r].port, w.rx[r].queue, buf, burst);
            if (n == 0) continue;
            got += n;
            w.dc.rx += n;
            steer(w, buf, n, now);
        }
        if (got) w.published->last_rx_ns.store(now, std::memory_order_relaxed);
        got += poll_inbox(now);
        drain_tx_rings(w);
        if (now >= w.next_publish_ns) {
            publish(w);
            w.next_publish_ns = now + kPublishIntervalNs;
            // Checked here, not per iteration: tests only (stall_for_test).
            if (stall_.load(std::memory_order_relaxed) == int(index)) [[unlikely]]
                while (!stopping()) rte_pause();
        }
        if (got) {
            w.empty_polls = 0;
            continue;
        }
        w.worker->idle();
        if (config_.idle_sleep.count() > 0 && ++w.empty_polls > kPollsBeforeSleep)
            rte_delay_us_sleep(unsigned(config_.idle_sleep.count()));
        else
            rte_pause();
    }

    // Drain: no more receiving; finish what other workers handed over, then
    // let each port's poller send what is queued for it.
    const unsigned n = workers();
    rx_stopped_.fetch_add(1, std::memory_order_acq_rel);
    while (rx_stopped_.load(std::memory_order_acquire) < n) {
        poll_inbox(monotonic_ns());
        drain_tx_rings(w);
        rte_pause();
    }
    while (poll_inbox(monotonic_ns()) != 0) {
    }
    processed_.fetch_add(1, std::memory_order_acq_rel);
    for (;;) {
        const bool all_done = processed_.load(std::memory_order_acquire) == n;
        drain_tx_rings(w);
        bool empty = true;
        for (unsigned role = 0; role < 2; ++role)
            if (tx_ring_[role] && tx_owner_[role] == w.index && !rte_ring_empty(tx_ring_[role])) empty = false;
        if (all_done && empty) break;
        rte_pause();
    }
    w.worker->idle();
    publish(w);
}

uint64_t Datapath::progress(unsigned index) const noexcept {
    return slots_[index]->published->progress.load(std::memory_order_relaxed);
}

void Datapath::abandon(unsigned index) noexcept {
    (void)index;  // its inbox is emptied by the destructor
    rx_stopped_.fetch_add(1, std::memory_order_acq_rel);
    processed_.fetch_add(1, std::memory_order_acq_rel);
}

void Datapath::read_worker(unsigned index, WorkerCounters& counters, DriverCounters& driver) const {
    const PublishedStats& p = *slots_[index]->published;
    uint32_t sn = 0;
    do {
        sn = rte_seqlock_read_begin(&p.lock);
        counters = p.counters;
        driver = p.driver;
    } while (rte_seqlock_read_retry(&p.lock, sn));
}

void Datapath::read_stats(WorkerCounters& counters, DriverCounters& driver) const {
    auto one = std::make_unique<WorkerCounters>();
    for (unsigned i = 0; i < workers(); ++i) {
        DriverCounters d;
        read_worker(i, *one, d);
        counters.accumulate(*one);
        driver.accumulate(d);
    }
}

uint64_t Datapath::last_rx_ns() const noexcept {
    uint64_t last = 0;
    for (const auto& s : slots_) last = std::max(last, s->published->last_rx_ns.load(std::memory_order_relaxed));
    return last;
}

const WorkerCounters& Datapath::final_counters(unsigned index) const { return slots_[index]->worker->counters(); }
const DriverCounters& Datapath::final_driver(unsigned index) const { return slots_[index]->dc; }

void Datapath::final_stats(WorkerCounters& counters, DriverCounters& driver) const {
    for (const auto& s : slots_) {
        counters.accumulate(s->worker->counters());
        driver.accumulate(s->dc);
    }
}

}  // namespace optgate::dataplane
