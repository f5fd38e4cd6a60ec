#include "core/pipeline.hpp"

#include "core/packet_edit.hpp"

namespace optgate {

namespace {

// The consent-table key of a packet's source: IPv4 address, or the IPv6
// address masked to the policy's key length (1..128) as two words.
struct SourceKey {
    bool v4;
    uint32_t addr;
    uint64_t hi, lo;
};

inline SourceKey source_key(const ParsedPacket& p, unsigned keylen) noexcept {
    if (p.family == Family::v4) return {true, big_endian::load32(p.src), 0, 0};
    uint64_t hi = 0, lo = 0;
    ConsentTable::split_v6(p.src, hi, lo, keylen);
    return {false, 0, hi, lo};
}

// What a subscriber's fragment needs. Later fragments carry no ports: one
// whose protocol could be TCP or UDP (for IPv6, also an extension header
// the first fragment would show) may belong to an inspected datagram.
inline Reassembly::Need fragment_need(const ParsedPacket& p, bool inspected_port) noexcept {
    const uint8_t proto = p.l4_proto;
    const bool may_carry = proto == kProtoTcp || proto == kProtoUdp ||
                           (p.family == Family::v6 &&
                            (proto == 0 || proto == 43 || proto == 44 || proto == 51 || proto == 60));
    if (!p.first_fragment) return may_carry ? Reassembly::Need::unknown : Reassembly::Need::none;
    if (!p.has_l4) return may_carry ? Reassembly::Need::tiny : Reassembly::Need::none;
    return inspected_port ? Reassembly::Need::inspect : Reassembly::Need::none;
}

}  // namespace

ConsentLookup BurstContext::consent_of(const ParsedPacket& p) const noexcept {
    const SourceKey k = source_key(p, runtime.policy().ipv6_key_length);
    return k.v4 ? table.lookup_v4(k.addr) : table.lookup_v6(k.hi, k.lo);
}

void BurstContext::prefetch_consent(const ParsedPacket& p) const noexcept {
    const SourceKey k = source_key(p, runtime.policy().ipv6_key_length);
    if (k.v4)
        table.prefetch_v4(k.addr);
    else
        table.prefetch_v6(k.hi, k.lo);
}

Verdict BurstContext::verdict_for(const ParsedPacket& p, const Destination& dest, bool out_of_sync) const noexcept {
    VerdictInputs in{health, true, dest, out_of_sync};
    const bool collector = dest.kind == Destination::Kind::collector;
    in.pseudonym = collector && runtime.delivers_pseudonym(dest.counter_slot);
    in.pseudonym_key = in.pseudonym && runtime.pseudonym_key(dest.counter_slot) != nullptr;
    const unsigned purpose = collector ? runtime.purpose_of(dest) : 0;
    return decide(in, purpose, [&] { return consent_of(p); });
}

Verdict BurstContext::packet_verdict(BurstSlot& s) const noexcept {
    if (!s.verdict_known) {
        s.destination = runtime.classify(s.parsed.family, s.parsed.dst, s.parsed.dst_port);
        s.verdict = verdict_for(s.parsed, s.destination);
        s.verdict_known = true;
    }
    return s.verdict;
}

void BurstContext::count_disclosure(const ParsedPacket& p, uint16_t destination_slot, int identifier, bool passed,
                                    bool gpc, bool pseudonym) const noexcept {
    const SourceKey k = source_key(p, runtime.policy().ipv6_key_length);
    disclosure->count(k.v4 ? Family::v4 : Family::v6, k.hi, k.v4 ? k.addr : k.lo, destination_slot, identifier, passed,
                      counters, gpc, pseudonym);
}

void BurstContext::prefetch_disclosure(const ParsedPacket& p, const Destination& dest, int identifier) const noexcept {
    if (!disclosure) return;
    const SourceKey k = source_key(p, runtime.policy().ipv6_key_length);
    disclosure->prefetch(k.hi, k.v4 ? k.addr : k.lo, dest.counter_slot, identifier);
}

Worker::Worker(Enforcement& enforcement, const HttpStageConfig& http, const DisclosureConfig& disclosure,
               const ReassemblyConfig& fragments, const DnsTcpStageConfig& dns_tcp)
    : enforcement_(enforcement), reader_(enforcement.rcu().register_reader()),
      counters_(std::make_unique<WorkerCounters>()),
      disclosure_(disclosure.entries ? std::make_unique<DisclosureCounts>(disclosure) : nullptr),
      reassembly_(fragments), dns_tcp_(dns_tcp), http_(http) {}

Worker::~Worker() { enforcement_.rcu().unregister_reader(reader_); }

uint32_t Worker::process_burst(PacketRef* pkts, uint32_t n, uint64_t now_mono_ns) noexcept {
    enforcement_.rcu().online(reader_);
    const Enforcement::View view = enforcement_.view(now_mono_ns);
    uint32_t forwarded = 0;
    for (uint32_t done = 0; done < n;) {
        const uint32_t chunk = n - done < kMaxBurst ? n - done : kMaxBurst;
        forwarded += process_chunk(pkts + done, chunk, view, now_mono_ns, done);
        done += chunk;
    }
    enforcement_.rcu().quiescent(reader_);
    return forwarded;
}

uint32_t Worker::process_chunk(PacketRef* pkts, uint32_t n, const Enforcement::View& view, uint64_t now,
                               uint32_t base) noexcept {
    WorkerCounters& c = *counters_;
    c.add(Counter::packets, n);
    if (!view.runtime) {
        // No policy yet: nothing is known about identifiers, so nothing from
        // anyone passes (fail closed).
        for (uint32_t i = 0; i < n; ++i) pkts[i].action = Action::drop;
        c.add(Counter::no_policy_dropped, n);
        c.add(Counter::dropped, n);
        return 0;
    }
    if (disclosure_) disclosure_->begin_burst(*view.runtime);
    BurstContext ctx{*view.runtime, *view.table, view.health, now, c, disclosure_.get()};
    uint32_t forwarded = 0;
    for (uint32_t done = 0; done < n;) {
        // Ordinarily one pass over the whole chunk; a fragment that
        // completes a datagram splits it there.
        const uint32_t m = classify(pkts + done, n - done, ctx, base + done);
        run_stages(pkts + done, m, ctx);
        for (uint32_t i = 0; i < m; ++i) {
            if (pkts[done + i].action == Action::forward) {
                ++forwarded;
                if (slots_[i].changed) c.add(Counter::rewritten);
            }
        }
        done += m;
        if (reassembled_ != ~0u) inspect_reassembled(ctx, base + done - 1);
    }
    c.add(Counter::forwarded, forwarded);
    c.add(Counter::dropped, n - forwarded);
    return forwarded;
}

void Worker::run_stages(PacketRef* pkts, uint32_t n, BurstContext& ctx) noexcept {
    dns_stage(pkts, ctx);
    dns_tcp_stage(pkts, ctx);
    http_stage(pkts, ctx);
    if (ctx.runtime.policy().tagging.enabled()) tag_stage(pkts, n, ctx);
}

void Worker::inspect_reassembled(BurstContext& ctx, uint32_t index) noexcept {
    // The whole datagram goes through the stages exactly as an unfragmented
    // packet would, then leaves cut as it came (docs/pipeline.md#fragments).
    WorkerCounters& c = ctx.counters;
    const uint32_t d = reassembled_;
    reassembled_ = ~0u;
    const Emitter emit{emit_fn_, emit_user_, index};
    if (const uint32_t len = reassembly_.assemble(d, c)) {
        PacketRef ref{reassembly_.scratch(), len, reassembled_ns_, Action::forward};
        classify(&ref, 1, ctx, index, true);
        run_stages(&ref, 1, ctx);
        if (ref.action == Action::forward) {
            if (slots_[0].changed) c.add(Counter::rewritten);
            reassembly_.refragment(d, ref.len, c, emit);
        }
    }
    reassembly_.finish(d, reassembled_ns_);
}

uint32_t Worker::classify(PacketRef* pkts, uint32_t n, BurstContext& ctx, uint32_t index, bool reassembled) noexcept {
    WorkerCounters& c = ctx.counters;
    const Runtime& rt = ctx.runtime;
    dns_count_ = http_count_ = dns_tcp_count_ = 0;
    const EncapsulationSet encapsulations = rt.policy().encapsulations;
    for (uint32_t i = 0; i < n; ++i) {
        if (i + 2 < n) __builtin_prefetch(pkts[i + 2].data);
        BurstSlot& s = slots_[i];
        s.next = BurstSlot::Next::done;
        s.changed = false;
        s.verdict_known = false;
        s.from_subscriber = false;
        PacketRef& pkt = pkts[i];
        pkt.action = Action::forward;
        const ParseResult r = parse_packet(pkt.data, pkt.len, s.parsed, encapsulations);
        // Encapsulated frames: looked into, or what was not (docs/pipeline.md#encapsulations).
        if (s.parsed.note != Counter::packets) [[unlikely]]
            c.add(s.parsed.note);
        if (!r.ok) {
            c.add(r.reason);
            continue;
        }
        const ParsedPacket& p = s.parsed;
        if (p.fragment) c.add(p.family == Family::v4 ? Counter::ipv4_fragment : Counter::ipv6_fragment);
        if (!rt.is_subscriber(p.family, p.src)) {
            c.add(Counter::not_from_subscriber);
            continue;
        }
        s.from_subscriber = true;
        c.add(Counter::from_subscriber);

        const bool tcp = p.has_l4 && p.l4_proto == kProtoTcp;
        const bool http = tcp && rt.is_http_port(p.dst_port);
        const bool dns_tcp = tcp && !http && rt.is_dns_port(p.dst_port);  // DNS over TCP
        const bool inspected_port = http || dns_tcp ||
                                    (p.has_l4 && p.l4_proto == kProtoUdp && rt.is_dns_port(p.dst_port));
        if (p.fragment) {
            if (reassembled) {
                // A fragment header inside a reassembled IPv6 datagram.
                pkt.action = Action::drop;
                c.add(Counter::fragment_malformed);
                c.add(Counter::fragment_dropped);
                continue;
            }
            // A fragmented datagram that could carry an identifier never
            // passes unread: reassembled and inspected, or dropped
            // (docs/pipeline.md#fragments).
            const Reassembly::Need need = fragment_need(p, inspected_port);
            if (p.encapsulations) [[unlikely]] {
                // A fragment inside a tunnel: its offsets are behind tunnel
                // headers the store does not rebuild (it keeps only an
                // Ethernet/VLAN header), so it never reaches the store. One
                // that could carry an identifier the stages must see (a first
                // fragment to an inspected port, or a tiny one) is dropped:
                // without it the receiver cannot reassemble the datagram, so
                // the later fragments pass unread (docs/pipeline.md#encapsulations).
                if (p.note != Counter::encapsulated_fragment_not_inspected)
                    c.add(Counter::encapsulated_fragment_not_inspected);
                if (need == Reassembly::Need::inspect || need == Reassembly::Need::tiny) {
                    pkt.action = Action::drop;
                    c.add(Counter::fragment_dropped);
                }
                continue;
            }
            if (need == Reassembly::Need::none && !p.first_fragment) continue;
            uint32_t d = 0;
            const Reassembly::Step step = reassembly_.accept(pkt.data, p, need, pkt.timestamp_ns, c,
                                                             Emitter{emit_fn_, emit_user_, index + i}, d);
            if (step == Reassembly::Step::forward) continue;
            pkt.action = Action::drop;
            if (step == Reassembly::Step::complete) {
                reassembled_ = d;
                reassembled_ns_ = pkt.timestamp_ns;
                return i + 1;
            }
            continue;
        }
        if (inspected_port) {
            // The stages run after the whole burst is classified: start the
            // loads they will need now (a 1M-entry consent table and a large
            // flow table are not in cache).
            ctx.prefetch_consent(p);
            if (p.l4_proto == kProtoUdp) {
                s.next = BurstSlot::Next::dns;
                dns_list_[dns_count_++] = uint8_t(i);
            } else if (http) {
                s.next = BurstSlot::Next::http;
                s.flow_hash = http_.prefetch_flow(p);
                http_list_[http_count_++] = uint8_t(i);
            } else {
                s.next = BurstSlot::Next::dns_tcp;
                s.flow_hash = dns_tcp_.prefetch_flow(p);
                dns_tcp_list_[dns_tcp_count_++] = uint8_t(i);
            }
        }
    }
    return n;
}

void Worker::dns_stage(PacketRef* pkts, BurstContext& ctx) noexcept {
    if (dns_count_) dns_.process_burst(pkts, slots_.data(), dns_list_.data(), dns_count_, ctx);
}

void Worker::dns_tcp_stage(PacketRef* pkts, BurstContext& ctx) noexcept {
    if (dns_tcp_count_) dns_tcp_.process_burst(pkts, slots_.data(), dns_tcp_list_.data(), dns_tcp_count_, ctx);
}

void Worker::http_stage(PacketRef* pkts, BurstContext& ctx) noexcept {
    if (http_count_) http_.process_burst(pkts, slots_.data(), http_list_.data(), http_count_, ctx, enforcement_);
}

void Worker::tag_stage(PacketRef* pkts, uint32_t n, BurstContext& ctx) noexcept {
    WorkerCounters& c = ctx.counters;
    const Tagging& tagging = ctx.runtime.policy().tagging;
    for (uint32_t i = 0; i < n; ++i) {
        BurstSlot& s = slots_[i];
        if (!s.from_subscriber || pkts[i].action != Action::forward) continue;
        const Verdict v = ctx.packet_verdict(s);
        std::optional<uint8_t> dscp;
        Counter counter = Counter::tagged_passed;
        if (s.destination.kind == Destination::Kind::exemption) {
            dscp = tagging.exempt;
            counter = Counter::tagged_exempt;
        } else if (s.destination.kind == Destination::Kind::collector) {
            const bool passed = passes(v) || pseudonymises(v);
            dscp = passed ? tagging.passed : tagging.stripped;
            counter = passed ? Counter::tagged_passed : Counter::tagged_stripped;
        }
        if (!dscp) continue;
        if (set_dscp(pkts[i].data, s.parsed, *dscp)) s.changed = true;
        c.add(counter);
    }
}

}  // namespace optgate
