#include "core/packet.hpp"

#include "core/big_endian.hpp"

namespace optgate {
namespace {

constexpr uint16_t kEtherIpv4 = 0x0800;
constexpr uint16_t kEtherIpv6 = 0x86dd;
constexpr uint16_t kEtherVlan = 0x8100;
constexpr uint16_t kEtherQinQ = 0x88a8;
constexpr unsigned kMaxVlanTags = 2;
constexpr unsigned kMaxIpv6Extensions = 8;

using big_endian::load16;
using big_endian::load32;

ParseResult fail(Counter reason) noexcept { return {false, reason}; }

// A first fragment that ends before its TCP/UDP header does (RFC 1858's
// tiny fragment; for IPv6 also inside the header chain, RFC 7112): parsed,
// without an L4 view, `next` the header cut; the pipeline discards its
// datagram. It must not pass as a parse failure, which is forwarded.
ParseResult headers_cut(uint32_t pos, uint8_t next, ParsedPacket& out) noexcept {
    out.l4_proto = next;
    out.payload_offset = pos;
    out.payload_len = out.ip_end - pos;
    return {true, Counter::packets};
}

// Parses TCP/UDP at `off`, bounded by `end` (the IP datagram end).
ParseResult parse_l4(const uint8_t* data, uint32_t off, uint32_t end, ParsedPacket& out) noexcept {
    out.l4_offset = off;
    if (out.l4_proto == kProtoTcp) {
        if (end < off + 20) return out.fragment ? headers_cut(off, kProtoTcp, out) : fail(Counter::truncated_tcp);
        const uint8_t* t = data + off;
        const unsigned hlen = (t[12] >> 4) * 4u;
        if (hlen < 20) return fail(Counter::bad_tcp_header);
        if (end < off + hlen) return out.fragment ? headers_cut(off, kProtoTcp, out) : fail(Counter::truncated_tcp);
        out.src_port = load16(t);
        out.dst_port = load16(t + 2);
        out.tcp_seq = load32(t + 4);
        out.tcp_flags = t[13];
        out.payload_offset = off + hlen;
        out.payload_len = end - off - hlen;
        out.has_l4 = true;
        return {true, Counter::packets};
    }
    if (out.l4_proto == kProtoUdp) {
        if (end < off + 8) return out.fragment ? headers_cut(off, kProtoUdp, out) : fail(Counter::truncated_udp);
        const uint8_t* u = data + off;
        const unsigned ulen = load16(u + 4);
        // In a first fragment the UDP length covers the whole datagram.
        if (ulen < 8 || (!out.fragment && off + ulen > end)) return fail(Counter::bad_udp_length);
        out.src_port = load16(u);
        out.dst_port = load16(u + 2);
        out.payload_offset = off + 8;
        out.payload_len = out.fragment ? end - off - 8 : ulen - 8;
        out.has_l4 = true;
        return {true, Counter::packets};
    }
    out.payload_offset = off;
    out.payload_len = end - off;
    return {true, Counter::packets};
}

ParseResult parse_ipv4(const uint8_t* data, uint32_t off, uint32_t len, ParsedPacket& out) noexcept {
    if (len < off + 20) return fail(Counter::truncated_ipv4);
    const uint8_t* ip = data + off;
    const unsigned ihl = (ip[0] & 0x0f) * 4u;
    if ((ip[0] >> 4) != 4 || ihl < 20) return fail(Counter::bad_ipv4_header);
    if (len < off + ihl) return fail(Counter::truncated_ipv4);
    const unsigned total = load16(ip + 2);
    if (total < ihl || off + total > len) return fail(Counter::bad_ipv4_length);
    out.family = Family::v4;
    out.l3_offset = off;
    out.ip_end = off + total;
    out.l4_proto = ip[9];
    out.src = ip + 12;
    out.dst = ip + 16;
    out.fragment_id = load16(ip + 4);
    const uint16_t frag = load16(ip + 6);
    const bool more_fragments = frag & 0x2000;
    const unsigned frag_offset = frag & 0x1fff;
    if (more_fragments || frag_offset != 0) {
        out.fragment = true;
        out.first_fragment = frag_offset == 0;
        out.more_fragments = more_fragments;
        out.fragment_offset = uint16_t(frag_offset * 8);
        out.fragment_data = off + ihl;
        if (!out.first_fragment) {
            out.payload_offset = off + ihl;
            out.payload_len = total - ihl;
            return {true, Counter::packets};
        }
    }
    return parse_l4(data, off + ihl, out.ip_end, out);
}

ParseResult parse_ipv6(const uint8_t* data, uint32_t off, uint32_t len, ParsedPacket& out) noexcept {
    if (len < off + 40) return fail(Counter::truncated_ipv6);
    const uint8_t* ip = data + off;
    if ((ip[0] >> 4) != 6) return fail(Counter::bad_ipv6_header);
    const unsigned payload = load16(ip + 4);
    if (off + 40 + payload > len) return fail(Counter::bad_ipv6_length);
    out.family = Family::v6;
    out.l3_offset = off;
    out.ip_end = off + 40 + payload;
    out.src = ip + 8;
    out.dst = ip + 24;
    uint8_t next = ip[6];
    uint32_t pos = off + 40;
    uint32_t link = off + 6;  // the byte that names the header at `pos`
    for (unsigned n = 0;; ++n) {
        switch (next) {
        case 0:     // hop-by-hop options
        case 43:    // routing
        case 60: {  // destination options
            if (n == kMaxIpv6Extensions || out.ip_end < pos + 8 || out.ip_end < pos + (data[pos + 1] + 1u) * 8u)
                return out.fragment ? headers_cut(pos, next, out) : fail(Counter::bad_ipv6_extension);
            const uint32_t ext_len = (data[pos + 1] + 1u) * 8u;
            next = data[pos];
            link = pos;
            pos += ext_len;
            continue;
        }
        case 51: {  // authentication header: length in 4-octet units, minus 2
            if (n == kMaxIpv6Extensions || out.ip_end < pos + 8 || out.ip_end < pos + (data[pos + 1] + 2u) * 4u)
                return out.fragment ? headers_cut(pos, next, out) : fail(Counter::bad_ipv6_extension);
            const uint32_t ext_len = (data[pos + 1] + 2u) * 4u;
            next = data[pos];
            link = pos;
            pos += ext_len;
            continue;
        }
        case 44: {  // fragment
            if (n == kMaxIpv6Extensions || out.ip_end < pos + 8) return fail(Counter::bad_ipv6_extension);
            // A fragment header inside a fragment: no sender makes this;
            // a first fragment without a TCP/UDP view (discarded as tiny).
            if (out.fragment) return headers_cut(pos, next, out);
            const uint16_t frag = load16(data + pos + 2);
            if (frag >> 3 == 0 && !(frag & 1)) {
                // An atomic fragment (offset 0, no more): a whole datagram,
                // processed in isolation (RFC 6946).
                next = data[pos];
                link = pos;
                pos += 8;
                continue;
            }
            out.fragment = true;
            out.first_fragment = (frag >> 3) == 0;
            out.more_fragments = frag & 1;
            out.fragment_offset = uint16_t(frag & 0xfff8);
            out.fragment_link = uint16_t(link);
            out.fragment_id = load32(data + pos + 4);
            next = data[pos];
            link = pos;
            pos += 8;
            out.fragment_data = pos;
            if (!out.first_fragment) {
                out.l4_proto = next;
                out.payload_offset = pos;
                out.payload_len = out.ip_end - pos;
                return {true, Counter::packets};
            }
            continue;
        }
        default: out.l4_proto = next; return parse_l4(data, pos, out.ip_end, out);
        }
    }
}

}  // namespace

ParseResult parse_packet(const uint8_t* data, uint32_t len, ParsedPacket& out) noexcept {
    out = ParsedPacket{};
    if (len < 14) return fail(Counter::truncated_l2);
    uint32_t off = 12;
    uint16_t ether_type = load16(data + off);
    while (ether_type == kEtherVlan || ether_type == kEtherQinQ) {
        if (out.vlan_tags == kMaxVlanTags) return fail(Counter::too_many_vlan_tags);
        if (len < off + 6) return fail(Counter::truncated_l2);
        ++out.vlan_tags;
        off += 4;
        ether_type = load16(data + off);
    }
    off += 2;
    if (ether_type == kEtherIpv4) return parse_ipv4(data, off, len, out);
    if (ether_type == kEtherIpv6) return parse_ipv6(data, off, len, out);
    return fail(Counter::non_ip);
}

}  // namespace optgate
