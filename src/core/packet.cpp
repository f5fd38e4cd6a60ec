#include "core/packet.hpp"

#include <new>

#include "core/big_endian.hpp"

namespace optgate {
namespace {

constexpr uint16_t kEtherIpv4 = 0x0800;
constexpr uint16_t kEtherIpv6 = 0x86dd;
constexpr uint16_t kEtherVlan = 0x8100;
constexpr uint16_t kEtherQinQ = 0x88a8;
constexpr uint16_t kEtherPppoeSession = 0x8864;
constexpr uint16_t kEtherMpls = 0x8847;
constexpr uint16_t kEtherMplsMulticast = 0x8848;
constexpr uint16_t kEtherTeb = 0x6558;  // transparent Ethernet bridging (GRE, Geneve)
constexpr unsigned kMaxVlanTags = 2;
constexpr unsigned kMaxIpv6Extensions = 8;
constexpr unsigned kMaxMplsLabels = 8;
constexpr unsigned kMaxGtpuExtensions = 4;

using big_endian::load16;
using big_endian::load32;

ParseResult fail(Counter reason) noexcept { return {false, false, reason}; }

Counter not_inspected(Encapsulation e) noexcept {
    return Counter(unsigned(Counter::encapsulated_not_inspected_pppoe) + unsigned(e));
}
static_assert(unsigned(Counter::encapsulated_not_inspected_gtpu) ==
                  unsigned(Counter::encapsulated_not_inspected_pppoe) + unsigned(Encapsulation::gtpu),
              "one encapsulated_not_inspected_* counter per Encapsulation, in the same order");

bool enabled(EncapsulationSet set, Encapsulation e) noexcept { return (set & encapsulation_bit(e)) != 0; }

// The layers of an encapsulated frame behind a non-IP EtherType (PPPoE,
// MPLS). Declared here, defined after the native layers; out of line, so
// that the native path (Ethernet, IP, TCP/UDP) stays one straight inlined
// function. IP tunnels (GRE, UDP) are looked for once the IP packet is
// parsed (parse_packet).
[[gnu::noinline]] ParseResult parse_other_ethertype(const uint8_t* data, uint16_t type, uint32_t off, uint32_t end,
                                                    ParsedPacket& out, EncapsulationSet enc) noexcept;
// A first fragment that ends before its TCP/UDP header does (RFC 1858's
// tiny fragment; for IPv6 also inside the header chain, RFC 7112): parsed,
// without an L4 view, `next` the header cut; the pipeline discards its
// datagram. It must not pass as a parse failure, which is forwarded.
ParseResult headers_cut(uint32_t pos, uint8_t next, ParsedPacket& out) noexcept {
    out.l4_proto = next;
    out.payload_offset = pos;
    out.payload_len = out.ip_end - pos;
    return {true, false, Counter::packets};
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
        return {true, false, Counter::packets};
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
        return {true, udp_tunnel(out.src_port, out.dst_port).has_value(), Counter::packets};
    }
    out.payload_offset = off;
    out.payload_len = end - off;
    // GRE: later fragments, which show no GRE header, never come here.
    return {true, out.l4_proto == kProtoGre, Counter::packets};
}

[[gnu::always_inline]] inline ParseResult parse_ipv4(const uint8_t* data, uint32_t off, uint32_t len,
                                                     ParsedPacket& out) noexcept {
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
            return {true, false, Counter::packets};
        }
    }
    return parse_l4(data, off + ihl, out.ip_end, out);
}

[[gnu::always_inline]] inline ParseResult parse_ipv6(const uint8_t* data, uint32_t off, uint32_t len,
                                                     ParsedPacket& out) noexcept {
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
                return {true, false, Counter::packets};
            }
            continue;
        }
        default: out.l4_proto = next; return parse_l4(data, pos, out.ip_end, out);
        }
    }
}

// Ethernet (with up to two VLAN tags) at `off`, bounded by `end`.
[[gnu::always_inline]] inline ParseResult parse_ethernet(const uint8_t* data, uint32_t off, uint32_t end,
                                                         ParsedPacket& out, EncapsulationSet enc) noexcept {
    if (end < off + 14) return fail(Counter::truncated_l2);
    off += 12;
    uint16_t ether_type = load16(data + off);
    for (unsigned tags = 0; ether_type == kEtherVlan || ether_type == kEtherQinQ; ++tags) {
        if (tags == kMaxVlanTags) return fail(Counter::too_many_vlan_tags);
        if (end < off + 6) return fail(Counter::truncated_l2);
        ++out.vlan_tags;
        off += 4;
        ether_type = load16(data + off);
    }
    off += 2;
    if (ether_type == kEtherIpv4) return parse_ipv4(data, off, end, out);
    if (ether_type == kEtherIpv6) return parse_ipv6(data, off, end, out);
    return parse_other_ethertype(data, ether_type, off, end, out, enc);
}

// ---- encapsulations (docs/pipeline.md#encapsulations) ----

// The inner packet's entry points, out of line: the native layers above are
// inlined into parse_packet() (one straight function for native frames, as
// before encapsulations), and into these once more for inner packets.
[[gnu::noinline]] ParseResult parse_inner_ipv4(const uint8_t* data, uint32_t off, uint32_t end,
                                               ParsedPacket& out) noexcept {
    return parse_ipv4(data, off, end, out);
}
[[gnu::noinline]] ParseResult parse_inner_ipv6(const uint8_t* data, uint32_t off, uint32_t end,
                                               ParsedPacket& out) noexcept {
    return parse_ipv6(data, off, end, out);
}
[[gnu::noinline]] ParseResult parse_inner_ethernet(const uint8_t* data, uint32_t off, uint32_t end, ParsedPacket& out,
                                                   EncapsulationSet enc) noexcept {
    return parse_ethernet(data, off, end, out, enc);
}

ParseResult not_looked_into(Encapsulation kind) noexcept { return fail(not_inspected(kind)); }

// Enters one more encapsulation layer: false when the depth bound is reached.
// The view of the outer packet is dropped (the inner one replaces it); the
// outer fields recorded so far stay.
bool enter_layer(ParsedPacket& out) noexcept {
    if (out.encapsulations == kMaxEncapsulationLayers) return false;
    ++out.encapsulations;
    out.fragment = out.first_fragment = out.has_l4 = out.more_fragments = false;
    out.src_port = out.dst_port = 0;
    out.tcp_seq = 0;
    out.tcp_flags = 0;
    out.fragment_offset = out.fragment_link = 0;
    out.fragment_id = out.fragment_data = 0;
    return true;
}

void record(ParsedPacket& out, OuterField::Kind kind, uint32_t offset, uint32_t end = 0) noexcept {
    out.outer[out.outer_count++] = OuterField(kind, offset, end);
}

// The IP header carrying a tunnel (its length covers the inner packet).
void record_carrier(ParsedPacket& out) noexcept {
    record(out, out.family == Family::v4 ? OuterField::Kind::ipv4 : OuterField::Kind::ipv6, out.l3_offset);
}

// What the inner packet's parse says, as seen from the layer around it: an
// inner packet that does not parse is also counted against the layer (the
// operator sees where it was); non-IP payloads (PPP LCP, ARP) are not.
ParseResult inner(ParsedPacket& out, Encapsulation kind, ParseResult r) noexcept {
    if (out.note == Counter::packets) {
        if (r.ok)
            out.note = Counter::encapsulated_inspected;
        else if (r.reason > Counter::non_ip && r.reason <= Counter::bad_udp_length)
            out.note = not_inspected(kind);
    }
    return r;
}

// The outer packet stays the view (a tunnel not looked into), counted by `note`.
ParseResult outer_only(ParsedPacket& out, Counter note) noexcept {
    out.note = note;
    return {true, false, Counter::packets};
}

// An IP packet whose version is its first nibble (MPLS, GTP-U carry no type).
ParseResult parse_ip_by_version(const uint8_t* data, uint32_t off, uint32_t end, ParsedPacket& out,
                                Encapsulation kind) noexcept {
    if (end < off + 1) return not_looked_into(kind);
    const unsigned version = data[off] >> 4;
    if (version == 4) return inner(out, kind, parse_inner_ipv4(data, off, end, out));
    if (version == 6) return inner(out, kind, parse_inner_ipv6(data, off, end, out));
    return not_looked_into(kind);
}

// A PPP frame (PPPoE, L2TP): optional address/control (ff 03), then the
// protocol, one byte when compressed (RFC 1661 PFC: odd values).
ParseResult parse_ppp(const uint8_t* data, uint32_t off, uint32_t end, ParsedPacket& out, Encapsulation kind) noexcept {
    if (end >= off + 2 && data[off] == 0xff && data[off + 1] == 0x03) off += 2;
    if (end < off + 1) return not_looked_into(kind);
    uint16_t protocol = data[off];
    if (protocol & 1) {
        off += 1;
    } else {
        if (end < off + 2) return not_looked_into(kind);
        protocol = load16(data + off);
        off += 2;
    }
    if (protocol == 0x0021) return inner(out, kind, parse_inner_ipv4(data, off, end, out));
    if (protocol == 0x0057) return inner(out, kind, parse_inner_ipv6(data, off, end, out));
    return fail(Counter::non_ip);  // LCP, IPCP, ...: control, nothing to inspect
}

// PPPoE session stage (RFC 2516): ver/type 0x11, code 0, session id, length.
// The session id is not used: subscribers are keyed by their inner source
// address, as everywhere else (bindings are by address).
ParseResult parse_pppoe(const uint8_t* data, uint32_t off, uint32_t end, ParsedPacket& out) noexcept {
    constexpr Encapsulation kind = Encapsulation::pppoe;
    if (end < off + 6 || data[off] != 0x11 || data[off + 1] != 0) return not_looked_into(kind);
    const uint32_t payload_end = off + 6 + load16(data + off + 4);
    if (payload_end > end) return not_looked_into(kind);
    if (!enter_layer(out)) return fail(Counter::encapsulated_too_deep);
    record(out, OuterField::Kind::pppoe, off);
    return parse_ppp(data, off + 6, payload_end, out, kind);
}

// An MPLS label stack to its bottom, then IP told by its version nibble.
// Anything else after the stack (a pseudowire control word, an Ethernet
// pseudowire without one) is not looked into: it cannot be told from IP
// reliably.
ParseResult parse_mpls(const uint8_t* data, uint32_t off, uint32_t end, ParsedPacket& out) noexcept {
    constexpr Encapsulation kind = Encapsulation::mpls;
    for (unsigned n = 0;; ++n) {
        if (n == kMaxMplsLabels || end < off + 4) return not_looked_into(kind);
        const bool bottom = data[off + 2] & 1;
        off += 4;
        if (bottom) break;
    }
    if (!enter_layer(out)) return fail(Counter::encapsulated_too_deep);
    return parse_ip_by_version(data, off, end, out, kind);
}

ParseResult parse_other_ethertype(const uint8_t* data, uint16_t type, uint32_t off, uint32_t end, ParsedPacket& out,
                                  EncapsulationSet enc) noexcept {
    // OuterField offsets are 16-bit: a frame longer than 64 KiB (no link
    // carries one; a capture might) is not looked into.
    if (end > 0xffff) enc = 0;
    if (type == kEtherPppoeSession) {
        if (!enabled(enc, Encapsulation::pppoe)) return not_looked_into(Encapsulation::pppoe);
        return parse_pppoe(data, off, end, out);
    }
    if (type == kEtherMpls || type == kEtherMplsMulticast) {
        if (!enabled(enc, Encapsulation::mpls)) return not_looked_into(Encapsulation::mpls);
        return parse_mpls(data, off, end, out);
    }
    return fail(Counter::non_ip);
}

// What a tunnel header says follows it, as an EtherType (GRE, Geneve).
ParseResult parse_tunnel_payload(const uint8_t* data, uint16_t type, uint32_t off, uint32_t end, ParsedPacket& out,
                                 EncapsulationSet enc, Encapsulation kind) noexcept {
    if (type == kEtherIpv4) return inner(out, kind, parse_inner_ipv4(data, off, end, out));
    if (type == kEtherIpv6) return inner(out, kind, parse_inner_ipv6(data, off, end, out));
    if (type == kEtherTeb) return inner(out, kind, parse_inner_ethernet(data, off, end, out, enc));
    return not_looked_into(kind);
}

// GRE (RFC 2784, RFC 2890 keys and sequence numbers), version 0 only: no
// source routing, no PPTP's version 1.
ParseResult parse_gre(const uint8_t* data, uint32_t off, uint32_t end, ParsedPacket& out,
                      EncapsulationSet enc) noexcept {
    constexpr Encapsulation kind = Encapsulation::gre;
    // Not looked into: the outer packet is an ordinary IP packet to its
    // outer addresses, parsed as before; the counter says what was missed.
    if (!enabled(enc, kind)) return outer_only(out, not_inspected(kind));
    if (out.fragment) return outer_only(out, Counter::encapsulated_fragment_not_inspected);
    constexpr uint16_t kChecksum = 0x8000, kKey = 0x2000, kSequence = 0x1000;
    if (end < off + 4) return not_looked_into(kind);
    const uint16_t flags = load16(data + off);
    if (flags & ~(kChecksum | kKey | kSequence)) return not_looked_into(kind);  // routing, version != 0
    const uint32_t hlen = 4 + (flags & kChecksum ? 4 : 0) + (flags & kKey ? 4 : 0) + (flags & kSequence ? 4 : 0);
    if (end < off + hlen) return not_looked_into(kind);
    const uint16_t type = load16(data + off + 2);
    if (!enter_layer(out)) return fail(Counter::encapsulated_too_deep);
    record_carrier(out);
    if (flags & kChecksum) record(out, OuterField::Kind::gre_checksum, off, end);
    return parse_tunnel_payload(data, type, off + hlen, end, out, enc, kind);
}

// A UDP tunnel; `off` is the UDP header, the UDP length bounds the tunnel.
ParseResult parse_udp_tunnel(const uint8_t* data, Encapsulation kind, uint32_t off, ParsedPacket& out,
                             EncapsulationSet enc) noexcept {
    if (!enabled(enc, kind)) return outer_only(out, not_inspected(kind));
    if (out.fragment) return outer_only(out, Counter::encapsulated_fragment_not_inspected);
    const uint32_t h = out.payload_offset;
    const uint32_t udp_end = h + out.payload_len;
    const uint8_t* t = data + h;
    switch (kind) {
    case Encapsulation::vxlan:  // RFC 7348: flags (I set), VNI
        if (udp_end < h + 8 || !(t[0] & 0x08)) return not_looked_into(kind);
        if (!enter_layer(out)) return fail(Counter::encapsulated_too_deep);
        record_carrier(out);
        record(out, OuterField::Kind::udp, off);
        return inner(out, kind, parse_inner_ethernet(data, h + 8, udp_end, out, enc));
    case Encapsulation::geneve: {  // RFC 8926: version 0, options skipped
        if (udp_end < h + 8 || (t[0] >> 6) != 0) return not_looked_into(kind);
        const uint32_t start = h + 8 + (t[0] & 0x3f) * 4u;
        if (udp_end < start) return not_looked_into(kind);
        if (!enter_layer(out)) return fail(Counter::encapsulated_too_deep);
        record_carrier(out);
        record(out, OuterField::Kind::udp, off);
        return parse_tunnel_payload(data, load16(t + 2), start, udp_end, out, enc, kind);
    }
    case Encapsulation::gtpu: {  // 3GPP TS 29.281
        if (udp_end < h + 8 || (t[0] >> 5) != 1 || !(t[0] & 0x10)) return not_looked_into(kind);
        if (t[1] != 255) return fail(Counter::non_ip);  // echo, error indication, end marker
        const uint32_t msg_end = h + 8 + load16(t + 2);
        if (msg_end > udp_end) return not_looked_into(kind);
        uint32_t pos = h + 8;
        if (t[0] & 0x07) {  // E, S or PN: sequence, N-PDU number, next extension type
            if (msg_end < pos + 4) return not_looked_into(kind);
            uint8_t next = data[pos + 3];
            pos += 4;
            for (unsigned n = 0; next != 0; ++n) {
                if (n == kMaxGtpuExtensions || msg_end < pos + 1) return not_looked_into(kind);
                const uint32_t ext_len = data[pos] * 4u;
                if (ext_len == 0 || msg_end < pos + ext_len) return not_looked_into(kind);
                next = data[pos + ext_len - 1];
                pos += ext_len;
            }
        }
        if (!enter_layer(out)) return fail(Counter::encapsulated_too_deep);
        record_carrier(out);
        record(out, OuterField::Kind::udp, off);
        record(out, OuterField::Kind::gtpu, h);
        return parse_ip_by_version(data, pos, msg_end, out, kind);
    }
    case Encapsulation::l2tp: {  // RFC 2661 data messages
        constexpr uint16_t kControl = 0x8000, kLength = 0x4000, kSequence = 0x0800, kOffset = 0x0200;
        if (udp_end < h + 6) return not_looked_into(kind);
        const uint16_t flags = load16(t);
        if ((flags & 0x000f) != 2) return not_looked_into(kind);  // L2TPv3 and others
        if (flags & kControl) return fail(Counter::non_ip);
        uint32_t msg_end = udp_end;
        uint32_t pos = h + 2;
        if (flags & kLength) {
            msg_end = h + load16(t + 2);
            if (msg_end > udp_end) return not_looked_into(kind);
            pos += 2;
        }
        pos += 4 + (flags & kSequence ? 4 : 0);  // tunnel and session ids, Ns and Nr
        if (flags & kOffset) {
            if (msg_end < pos + 2) return not_looked_into(kind);
            pos += 2 + load16(data + pos);
        }
        if (msg_end < pos) return not_looked_into(kind);
        if (!enter_layer(out)) return fail(Counter::encapsulated_too_deep);
        record_carrier(out);
        record(out, OuterField::Kind::udp, off);
        if (flags & kLength) record(out, OuterField::Kind::l2tp, h);
        return parse_ppp(data, pos, msg_end, out, kind);
    }
    default: return not_looked_into(kind);
    }
}

// Follows IP tunnels from the parsed packet inwards, as long as one is
// entered and its inner packet carries another.
[[gnu::noinline]] ParseResult parse_ip_tunnels(const uint8_t* data, ParsedPacket& out, EncapsulationSet enc,
                                               ParseResult r) noexcept {
    if (out.ip_end > 0xffff) return r;  // OuterField offsets are 16-bit; no link carries such a frame
    for (;;) {
        const uint8_t layers = out.encapsulations;
        out.note = Counter::packets;  // this layer's own
        if (out.l4_proto == kProtoUdp)
            r = parse_udp_tunnel(data, *udp_tunnel(out.src_port, out.dst_port), out.l4_offset, out, enc);
        else
            r = parse_gre(data, out.l4_offset, out.ip_end, out, enc);
        if (!r.ok || out.encapsulations == layers || !r.tunnel) return r;
    }
}

}  // namespace

ParseResult parse_packet(const uint8_t* data, uint32_t len, ParsedPacket& out, EncapsulationSet enc) noexcept {
    new (&out) ParsedPacket;  // default-initialised: the outer fields array is not written
    const ParseResult r = parse_ethernet(data, 0, len, out, enc);
    if (r.tunnel) [[unlikely]]
        return parse_ip_tunnels(data, out, enc, r);
    return r;
}

}  // namespace optgate
