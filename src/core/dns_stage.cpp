#include "core/dns_stage.hpp"

#include <cstring>

#include "core/big_endian.hpp"
#include "core/checksum.hpp"
#include "core/packet_edit.hpp"
#include "core/pipeline.hpp"

namespace optgate {
namespace {

using big_endian::load16;

// Advances `pos` past a (possibly compressed) name. A pointer ends the name
// and must point before the name's own start, which rules out loops.
bool skip_name(const uint8_t* msg, uint32_t len, uint32_t& pos) noexcept {
    const uint32_t start = pos;
    unsigned total = 1;
    for (;;) {
        if (pos >= len) return false;
        const uint8_t l = msg[pos];
        if (l == 0) {
            ++pos;
            return true;
        }
        if ((l & 0xc0) == 0xc0) {
            if (pos + 2 > len) return false;
            const uint32_t target = uint32_t(l & 0x3f) << 8 | msg[pos + 1];
            if (target >= start) return false;
            pos += 2;
            return true;
        }
        if (l & 0xc0) return false;  // 0x40 / 0x80: obsolete or reserved label types
        total += l + 1u;
        if (total > kDnsMaxNameLength) return false;
        pos += 1u + l;
    }
}

}  // namespace

std::optional<Counter> scan_dns_query(const uint8_t* msg, uint32_t len, const Runtime& rt, DnsScan& out) noexcept {
    out = DnsScan{};
    if (len < 12) return Counter::dns_malformed_header;
    if (msg[2] & 0x80) return Counter::dns_not_query;
    const unsigned qdcount = load16(msg + 4);
    const unsigned rrcount = unsigned(load16(msg + 6)) + load16(msg + 8) + load16(msg + 10);
    uint32_t pos = 12;
    for (unsigned i = 0; i < qdcount; ++i) {
        if (pos >= len) return Counter::dns_malformed_record;  // count larger than the message
        if (!skip_name(msg, len, pos)) return Counter::dns_malformed_name;
        if (pos + 4 > len) return Counter::dns_malformed_record;
        pos += 4;
    }
    for (unsigned i = 0; i < rrcount; ++i) {
        const uint32_t owner = pos;
        if (pos >= len) return Counter::dns_malformed_record;
        if (!skip_name(msg, len, pos)) return Counter::dns_malformed_name;
        if (pos + 10 > len) return Counter::dns_malformed_record;
        const uint16_t type = load16(msg + pos);
        const uint32_t rdlength = load16(msg + pos + 8);
        const uint32_t rdata = pos + 10;
        if (rdata + rdlength > len) return Counter::dns_malformed_record;
        if (type == kDnsTypeOpt) {
            if (out.has_opt) return Counter::dns_multiple_opt;
            if (pos != owner + 1 || msg[owner] != 0) return Counter::dns_malformed_opt;  // owner must be root
            out.has_opt = true;
            out.rdata_begin = rdata;
            out.rdata_end = rdata + rdlength;
            uint32_t o = rdata;
            while (o < out.rdata_end) {
                if (o + 4 > out.rdata_end) return Counter::dns_malformed_opt;
                const uint32_t olen = load16(msg + o + 2);
                if (o + 4 + olen > out.rdata_end) return Counter::dns_malformed_opt;
                if (rt.dns_identifier(load16(msg + o)) >= 0) ++out.identifier_options;
                o += 4 + olen;
            }
        }
        pos = rdata + rdlength;
    }
    return std::nullopt;
}

void pad_dns_option(uint8_t* frame, const ParsedPacket& p, uint32_t at) noexcept {
    uint8_t* o = frame + at;
    const uint32_t data_len = load16(o + 2);
    const bool odd = ((at - p.l4_offset) & 1) != 0;
    const uint32_t old_sum = checksum::sum(o, 4 + data_len, 0, odd);
    o[0] = 0;
    o[1] = kDnsPaddingCode;
    std::memset(o + 4, 0, data_len);
    // Only the head is left to sum: the data is zero.
    l4_payload_changed(frame, p, old_sum, checksum::sum(o, 4, 0, odd));
}

void DnsStage::process_burst(PacketRef* pkts, BurstSlot* slots, const uint8_t* list, uint32_t count,
                             BurstContext& ctx) const noexcept {
    WorkerCounters& c = ctx.counters;
    const Runtime& rt = ctx.runtime;
    // Two passes: the first reads every query and starts loading the
    // disclosure rows their identifiers will be counted in (a random row of
    // a table of megabytes each: a cache miss that was a quarter of a
    // stripped query's time), the second decides and rewrites.
    DnsScan scans[Worker::kMaxBurst];
    std::optional<Counter> unreads[Worker::kMaxBurst];
    for (uint32_t k = 0; k < count; ++k) {
        BurstSlot& s = slots[list[k]];
        const uint8_t* msg = pkts[list[k]].data + s.parsed.payload_offset;
        unreads[k] = scan_dns_query(msg, s.parsed.payload_len, rt, scans[k]);
        if (!unreads[k] && scans[k].identifier_options)
            for_each_dns_identifier(msg, scans[k], rt,
                                    [&](int id, uint32_t) { ctx.prefetch_disclosure(s.parsed, s.destination, id); });
    }
    for (uint32_t k = 0; k < count; ++k) {
        const uint32_t i = list[k];
        BurstSlot& s = slots[i];
        PacketRef& pkt = pkts[i];
        uint8_t* msg = pkt.data + s.parsed.payload_offset;
        const DnsScan& scan = scans[k];
        const std::optional<Counter>& unread = unreads[k];
        if (unread == Counter::dns_not_query) {
            c.add(*unread);
            continue;
        }
        c.add(Counter::dns_queries);
        if (unread) {
            c.add(*unread);  // malformed: forwarded unchanged
            continue;
        }
        if (scan.identifier_options == 0) continue;
        c.add(Counter::dns_with_identifiers);
        const Verdict v = ctx.packet_verdict(s);
        c.add(verdict_counter(v));
        if (passes(v)) {
            for_each_dns_identifier(msg, scan, rt,
                                    [&](int id, uint32_t) { ctx.count_identifier(s.parsed, s.destination, id, true); });
            continue;
        }
        // Strip: every identifier option becomes Padding in place.
        for_each_dns_identifier(msg, scan, rt, [&](int id, uint32_t pos) {
            ctx.count_identifier(s.parsed, s.destination, id, false);
            pad_dns_option(pkt.data, s.parsed, s.parsed.payload_offset + pos);
        });
        s.changed = true;
        c.add(Counter::dns_rewritten);
    }
}

}  // namespace optgate
