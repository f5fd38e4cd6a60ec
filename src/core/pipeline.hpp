// The packet pipeline: what a worker does to each burst. Drivers (the DPDK
// data plane, the pcap replay tool, the benchmark) hand it bursts of frames
// and forward or drop each one as told; everything that decides is here.
//
//   classify ─► fragments ─► dns ─► dns over tcp ─► http ─► tag
//                  │                                         ▲
//                  └─ reassembled datagram ──────────────────┘ (then re-fragmented, emitted)
//
// Stages work on the whole burst, each over the packets routed to it (VPP
// style). Per-packet state lives in a fixed array of BurstSlot; nothing is
// allocated, nothing throws, nothing logs on this path.
//
// Cost: 333 instructions and about 82 ns per packet on optgate-bench's edge
// mix, 0.61 of the parse-only baseline; disclosure accounting adds 3.8 % of
// the instructions (349 against 336 in the same build; docs/benchmarks.md).
//
// Threading: one Worker per packet-path thread. Workers share the
// Enforcement (policy + consent table, read lock-free) and nothing else.
#pragma once

#include <array>
#include <cstdint>
#include <memory>

#include "core/counters.hpp"
#include "core/disclosure.hpp"
#include "core/dns_stage.hpp"
#include "core/dns_tcp_stage.hpp"
#include "core/enforcement.hpp"
#include "core/http_stage.hpp"
#include "core/packet.hpp"
#include "core/reassembly.hpp"
#include "core/verdict.hpp"

namespace optgate {

enum class Action : uint8_t { forward, drop };

// A frame as a driver hands it over. The pipeline may change bytes in place
// and may shrink `len` (never grow it); `action` is set on return.
struct PacketRef {
    uint8_t* data = nullptr;
    uint32_t len = 0;
    uint64_t timestamp_ns = 0;  // capture/receive time: drives flow timeouts
    Action action = Action::forward;
};

// Per-packet state for one burst.
struct BurstSlot {
    ParsedPacket parsed;
    enum class Next : uint8_t { done, dns, http, dns_tcp } next = Next::done;
    uint64_t flow_hash = 0;  // Next::http, dns_tcp: the flow key's hash (classify computes it to prefetch)
    bool from_subscriber = false;
    bool changed = false;
    // The packet-level verdict (no hostname), computed at most once.
    bool verdict_known = false;
    Verdict verdict = Verdict::strip_no_collector;
    Destination destination;
};

// What a stage sees of the burst.
struct BurstContext {
    const Runtime& runtime;
    const ConsentTable& table;
    TableHealth health = TableHealth::not_received;
    uint64_t now_mono_ns = 0;
    WorkerCounters& counters;
    DisclosureCounts* disclosure = nullptr;  // null: disclosure accounting off

    // The consent of the packet's source subscriber (lazy lookup).
    ConsentLookup consent_of(const ParsedPacket& p) const noexcept;
    void prefetch_consent(const ParsedPacket& p) const noexcept;
    // Verdict for this packet towards `dest`.
    Verdict verdict_for(const ParsedPacket& p, const Destination& dest, bool out_of_sync = false) const noexcept;
    // Packet-level verdict (destination by address and port only), cached in the slot.
    Verdict packet_verdict(BurstSlot& s) const noexcept;
    // Counts one identifier instance (header line, EDNS0 option) in packet
    // `p` under the verdict: per destination slot and per identifier, and
    // per source subscriber key in the disclosure counts. Stages only see
    // packets from subscribers, so every instance has a subscriber key.
    // `gpc`: stripped only because the request carried Sec-GPC: 1 (a
    // disclosure row of its own, disclosure.hpp). `pseudonym`: passed as
    // the collector's pseudonym (a row of its own too).
    void count_identifier(const ParsedPacket& p, const Destination& dest, int identifier, bool passed, bool gpc = false,
                          bool pseudonym = false) const noexcept {
        (passed ? counters.destination_passed : counters.destination_stripped)[dest.counter_slot]++;
        (passed ? counters.identifier_passed : counters.identifier_stripped)[size_t(identifier)]++;
        if (disclosure) count_disclosure(p, dest.counter_slot, identifier, passed, gpc, pseudonym);
    }
    void count_disclosure(const ParsedPacket& p, uint16_t destination_slot, int identifier, bool passed,
                          bool gpc = false, bool pseudonym = false) const noexcept;
    // Starts loading the disclosure row count_identifier(p, dest, identifier)
    // will touch (neither GPC nor pseudonym), so that a later pass over the
    // burst finds it in cache.
    void prefetch_disclosure(const ParsedPacket& p, const Destination& dest, int identifier) const noexcept;
};

class Worker {
public:
    static constexpr uint16_t kMaxBurst = 64;
    static_assert(kMaxBurst <= HttpStage::kMaxBurst, "the HTTP stage's per-burst arrays must hold a burst");

    // `http`: the HTTP stage's flow table size and idle timeout (http_stage.hpp).
    // `disclosure`: the disclosure table's size (disclosure.hpp; 0: off).
    // `fragments`: the reassembly store's size and timeouts (reassembly.hpp).
    // `dns_tcp`: the DNS-over-TCP stage's flow table (dns_tcp_stage.hpp).
    explicit Worker(Enforcement& enforcement, const HttpStageConfig& http = {}, const DisclosureConfig& disclosure = {},
                    const ReassemblyConfig& fragments = {}, const DnsTcpStageConfig& dns_tcp = {});
    ~Worker();
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;

    // Processes up to kMaxBurst frames (larger bursts are split); sets each
    // packet's action and returns how many are forwarded. Passes a QSBR
    // quiescent state at the end.
    uint32_t process_burst(PacketRef* pkts, uint32_t n, uint64_t now_mono_ns) noexcept;

    // Where frames the worker makes itself go (re-fragmented datagrams,
    // released fragments: reassembly.hpp's EmitFn). Without it they are lost.
    // Called only for such frames, never for ordinary packets.
    void set_emit(EmitFn fn, void* user) noexcept {
        emit_fn_ = fn;
        emit_user_ = user;
    }

    // Idle workers go offline so they do not hold up reclamation.
    void idle() noexcept { enforcement_.rcu().offline(reader_); }

    const WorkerCounters& counters() const noexcept { return *counters_; }
    // This worker's disclosure counts, for DisclosureDrain; null when off.
    DisclosureCounts* disclosure() noexcept { return disclosure_.get(); }
    // The runtime the last burst used (for naming counters in reports).
    std::shared_ptr<const Runtime> runtime() const { return enforcement_.runtime(); }

private:
    uint32_t process_chunk(PacketRef* pkts, uint32_t n, const Enforcement::View& view, uint64_t now,
                           uint32_t base) noexcept;
    // Classifies from pkts[0] on and returns how many it took: all `n`, or
    // up to a fragment that completed a datagram (reassembled_ is set), so
    // the datagram goes through the stages where its last fragment arrived.
    // `index`: pkts[0]'s position in the driver's burst (for emitted frames).
    uint32_t classify(PacketRef* pkts, uint32_t n, BurstContext& ctx, uint32_t index,
                      bool reassembled = false) noexcept;
    void run_stages(PacketRef* pkts, uint32_t n, BurstContext& ctx) noexcept;
    void inspect_reassembled(BurstContext& ctx, uint32_t index) noexcept;
    void dns_stage(PacketRef* pkts, BurstContext& ctx) noexcept;
    void dns_tcp_stage(PacketRef* pkts, BurstContext& ctx) noexcept;
    void http_stage(PacketRef* pkts, BurstContext& ctx) noexcept;
    void tag_stage(PacketRef* pkts, uint32_t n, BurstContext& ctx) noexcept;

    Enforcement& enforcement_;
    QsbrDomain::ReaderId reader_;
    std::unique_ptr<WorkerCounters> counters_;
    std::unique_ptr<DisclosureCounts> disclosure_;
    std::array<BurstSlot, kMaxBurst> slots_;
    // Work lists that classify fills: the slots each stage works on, so a
    // stage never walks packets that are not for it.
    std::array<uint8_t, kMaxBurst> dns_list_{}, http_list_{}, dns_tcp_list_{};
    uint32_t dns_count_ = 0, http_count_ = 0, dns_tcp_count_ = 0;
    Reassembly reassembly_;
    uint32_t reassembled_ = ~0u;   // a datagram classify completed, for inspect_reassembled()
    uint64_t reassembled_ns_ = 0;  // its last fragment's timestamp
    EmitFn emit_fn_ = nullptr;
    void* emit_user_ = nullptr;
    DnsStage dns_;
    DnsTcpStage dns_tcp_;
    HttpStage http_;
};

}  // namespace optgate
