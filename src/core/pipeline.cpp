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
    const uint8_t* s = p.src;
    if (p.family == Family::v4)
        return {true, uint32_t(s[0]) << 24 | uint32_t(s[1]) << 16 | uint32_t(s[2]) << 8 | s[3], 0, 0};
    uint64_t hi = 0, lo = 0;
    for (int i = 0; i < 8; ++i) {
        hi = hi << 8 | s[i];
        lo = lo << 8 | s[8 + i];
    }
    if (keylen <= 64) {
        if (keylen < 64) hi &= ~(~uint64_t(0) >> keylen);
        lo = 0;
    } else if (keylen < 128) {
        lo &= ~(~uint64_t(0) >> (keylen - 64));
    }
    return {false, 0, hi, lo};
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
    const unsigned purpose = dest.kind == Destination::Kind::collector ? runtime.purpose_of(dest) : 0;
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
                                    bool gpc) const noexcept {
    const SourceKey k = source_key(p, runtime.policy().ipv6_key_length);
    disclosure->count(k.v4 ? Family::v4 : Family::v6, k.hi, k.v4 ? k.addr : k.lo, destination_slot, identifier, passed,
                      counters, gpc);
}

Worker::Worker(Enforcement& enforcement, const HttpStageConfig& http, const DisclosureConfig& disclosure)
    : enforcement_(enforcement), reader_(enforcement.rcu().register_reader()),
      counters_(std::make_unique<WorkerCounters>()),
      disclosure_(disclosure.entries ? std::make_unique<DisclosureCounts>(disclosure) : nullptr), http_(http) {}

Worker::~Worker() { enforcement_.rcu().unregister_reader(reader_); }

uint32_t Worker::process_burst(PacketRef* pkts, uint32_t n, uint64_t now_mono_ns) noexcept {
    enforcement_.rcu().online(reader_);
    const Enforcement::View view = enforcement_.view(now_mono_ns);
    uint32_t forwarded = 0;
    for (uint32_t done = 0; done < n;) {
        const uint32_t chunk = n - done < kMaxBurst ? n - done : kMaxBurst;
        forwarded += process_chunk(pkts + done, chunk, view, now_mono_ns);
        done += chunk;
    }
    enforcement_.rcu().quiescent(reader_);
    return forwarded;
}

uint32_t Worker::process_chunk(PacketRef* pkts, uint32_t n, const Enforcement::View& view, uint64_t now) noexcept {
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
    classify(pkts, n, ctx);
    dns_stage(pkts, ctx);
    dns_tcp_stage(pkts, ctx);
    http_stage(pkts, ctx);
    if (view.runtime->policy().tagging.enabled()) tag_stage(pkts, n, ctx);

    uint32_t forwarded = 0;
    for (uint32_t i = 0; i < n; ++i) {
        if (pkts[i].action == Action::forward) {
            ++forwarded;
            if (slots_[i].changed) c.add(Counter::rewritten);
        }
    }
    c.add(Counter::forwarded, forwarded);
    c.add(Counter::dropped, n - forwarded);
    return forwarded;
}

void Worker::classify(PacketRef* pkts, uint32_t n, BurstContext& ctx) noexcept {
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
            // Fragments are not reassembled, so their bytes are never read. A
            // first fragment of an inspected datagram passes only when no byte
            // in it could change the verdict: a pass by address and port, and
            // for HTTP no hostname rule that a Host inside could select.
            // Otherwise it and its later fragments are dropped
            // (docs/pipeline.md#fragments).
            if (p.first_fragment) {
                if (!inspected_port) continue;
                const bool host_may_decide = http && rt.has_host_rules();
                if (host_may_decide || !passes(ctx.packet_verdict(s))) {
                    fragments_.remember(p, pkt.timestamp_ns);
                    pkt.action = Action::drop;
                    c.add(Counter::fragment_dropped);
                } else if (http) {
                    s.next = BurstSlot::Next::http;  // passes unread: the flow loses its place
                    s.flow_hash = http_.prefetch_flow(p);
                    http_list_[http_count_++] = uint8_t(i);
                } else if (dns_tcp) {
                    s.next = BurstSlot::Next::dns_tcp;  // the same
                    s.flow_hash = dns_tcp_.prefetch_flow(p);
                    dns_tcp_list_[dns_tcp_count_++] = uint8_t(i);
                }
            } else if (fragments_.dropped_earlier(p, pkt.timestamp_ns)) {
                pkt.action = Action::drop;
                c.add(Counter::fragment_dropped);
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
            dscp = passes(v) ? tagging.passed : tagging.stripped;
            counter = passes(v) ? Counter::tagged_passed : Counter::tagged_stripped;
        }
        if (!dscp) continue;
        if (set_dscp(pkts[i].data, s.parsed, *dscp)) s.changed = true;
        c.add(counter);
    }
}

}  // namespace optgate
