// Bounds-checked packet parsing: Ethernet, 802.1Q / QinQ, IPv4 (options,
// fragments), IPv6 (hop-by-hop, routing, destination options, fragment, AH
// extension headers), TCP, UDP; and, when the policy enables them, the
// encapsulations of encapsulation.hpp down to the inner packet
// (docs/pipeline.md#encapsulations). Every view of an encapsulated frame is
// the inner packet's; the outer headers whose lengths or checksums cover it
// are listed in ParsedPacket::outer, for packet_edit.hpp to fix.
//
// parse_packet() never reads outside [data, data + len). A packet that does
// not parse yields a Counter naming why; the pipeline forwards it unchanged.
// Offsets are relative to the start of the frame.
//
// Cost (callgrind, optgate-bench mix): encapsulations add 9 % to a native
// frame's parse (the wider reset, the UDP tunnel-port test, register
// pressure; a TCP frame pays no tunnel test) and 4 % to the whole pipeline
// (docs/benchmarks.md, "Encapsulations"); about 50 ns per packet on a quiet
// machine, most of it the first touch of the frame. A GTP-U packet costs
// about 290 parse instructions more.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "core/addr.hpp"
#include "core/counters.hpp"
#include "core/encapsulation.hpp"

namespace optgate {

inline constexpr uint8_t kProtoTcp = 6;
inline constexpr uint8_t kProtoUdp = 17;
inline constexpr uint8_t kProtoGre = 47;

// The UDP ports of the tunnels the parser knows. A tunnel is recognised by
// its destination port (L2TP also by its source port: an LAC may send from
// any port and is answered from 1701).
inline constexpr uint16_t kPortL2tp = 1701, kPortVxlan = 4789, kPortGeneve = 6081, kPortGtpu = 2152;
inline constexpr unsigned kMaxEncapsulationLayers = 4;

// Which tunnel a UDP datagram is by its ports, if any (one place for the
// rule: the parser and the data plane's steering both ask it).
inline std::optional<Encapsulation> udp_tunnel(uint16_t src_port, uint16_t dst_port) noexcept {
    // One compare on the common path: every tunnel port lies in [1701, 6081].
    if (dst_port - 1701u <= 6081u - 1701u) {
        if (dst_port == kPortVxlan) return Encapsulation::vxlan;
        if (dst_port == kPortGeneve) return Encapsulation::geneve;
        if (dst_port == kPortGtpu) return Encapsulation::gtpu;
        if (dst_port == kPortL2tp) return Encapsulation::l2tp;
    }
    if (src_port == kPortL2tp) return Encapsulation::l2tp;
    return std::nullopt;
}

// An outer header field that covers the inner packet: when an edit changes
// the inner packet's bytes or length, packet_edit.hpp fixes these, innermost
// first. Offsets are frame offsets before any edit.
struct OuterField {
    enum class Kind : uint8_t {
        ipv4,          // total length (+2) and header checksum (+10)
        ipv6,          // payload length (+4)
        udp,           // length (+4), checksum (+6) over [offset, offset + length) and the pseudo-header
        gre_checksum,  // checksum (+4) over [offset, end)
        pppoe,         // payload length (+4)
        gtpu,          // length after the first 8 bytes (+2)
        l2tp,          // message length (+2)
    };
    Kind kind;
    uint16_t offset;
    uint16_t end;  // gre_checksum: the end of the GRE packet (its carrier's IP end)
    // No initialisation: ParsedPacket is reset for every packet, and only
    // the first `outer_count` entries are ever read.
    // NOLINTNEXTLINE(cppcoreguidelines-pro-type-member-init, modernize-use-equals-default): must not zero
    OuterField() noexcept {}
    OuterField(Kind k, uint32_t off, uint32_t e) noexcept : kind(k), offset(uint16_t(off)), end(uint16_t(e)) {}
};
// Per layer at most an IP header and two tunnel fields (UDP + GTP-U/L2TP).
inline constexpr unsigned kMaxOuterFields = 3 * kMaxEncapsulationLayers;

// The field order leaves no padding before `outer`, so that the per-packet
// reset is a few wide stores (68 bytes; the outer field list after them is
// never reset): the encapsulation fields sit where padding was.
struct ParsedPacket {
    Family family = Family::v4;
    uint8_t vlan_tags = 0;
    uint8_t l4_proto = 0;         // final next-header / protocol
    bool fragment = false;        // part of a fragmented datagram
    bool first_fragment = false;  // fragment offset 0: carries the L4 header
    bool has_l4 = false;          // TCP/UDP header present and valid
    bool more_fragments = false;  // fragments: more follow (IPv4 MF, IPv6 M)
    // Encapsulation layers followed to reach this packet (0: native).
    uint8_t encapsulations = 0;
    uint32_t l3_offset = 0;       // IP header
    uint32_t l4_offset = 0;       // TCP/UDP header
    uint32_t payload_offset = 0;  // first byte after the TCP/UDP header
    uint32_t payload_len = 0;     // per the IP (and UDP) lengths, not the frame
    uint32_t ip_end = 0;          // end of the IP datagram; frame bytes after it are padding
    uint16_t src_port = 0, dst_port = 0;
    // TCP only
    uint32_t tcp_seq = 0;
    uint8_t tcp_flags = 0;
    // How many entries of `outer` are set (the outer fields covering the
    // packet, outermost first).
    uint8_t outer_count = 0;
    // Fragments only (core/reassembly.hpp): where this fragment's data sits
    // in the datagram (bytes), and for IPv6 the frame offset of the
    // next-header byte that names the fragment header. A first fragment too
    // short for its TCP/UDP header (or IPv6 header chain) parses with has_l4
    // false (the tiny-fragment case, RFC 1858 / RFC 7112).
    uint16_t fragment_offset = 0;
    uint16_t fragment_link = 0;
    // A second counter for the frame, whether it parsed or not (Counter::packets:
    // none): encapsulated_inspected, or an encapsulation seen but not looked
    // into (encapsulated_not_inspected_*, encapsulated_fragment_not_inspected).
    // Here rather than in ParseResult, which stays one register wide.
    Counter note = Counter::packets;
    // IPv4: identification (for fragment tracking); IPv6: fragment header id.
    uint32_t fragment_id = 0;
    // Source/destination address bytes (4 or 16) inside the frame.
    const uint8_t* src = nullptr;
    const uint8_t* dst = nullptr;
    uint32_t fragment_data = 0;  // fragments: frame offset of the data (after the IPv4 header / IPv6 fragment header)
    OuterField outer[kMaxOuterFields];

    IpAddr src_addr() const noexcept { return family == Family::v4 ? IpAddr::from_v4(src) : IpAddr::from_v6(src); }
    IpAddr dst_addr() const noexcept { return family == Family::v4 ? IpAddr::from_v4(dst) : IpAddr::from_v6(dst); }
};
static_assert(offsetof(ParsedPacket, outer) == 68, "no padding in the per-packet reset (see the field order)");

namespace tcp_flag {
inline constexpr uint8_t fin = 0x01, syn = 0x02, rst = 0x04, psh = 0x08, ack = 0x10;
}

struct ParseResult {
    bool ok = false;  // IP with a usable layer-4 view (or a non-first fragment)
    // ok, and the packet may carry an IP tunnel (GRE, or UDP to or from a
    // tunnel port): set where the TCP/UDP branch is taken anyway, so that a
    // native TCP packet pays nothing for encapsulations.
    bool tunnel = false;
    Counter reason = Counter::packets;  // when !ok: why (non_ip, truncated_*, bad_*)
};
static_assert(sizeof(ParseResult) == 4, "one register wide");

// `encapsulations`: the ones to look into (the policy's); others are parsed
// as today (a GRE or VXLAN packet is an IP packet to its outer addresses),
// and counted in ParsedPacket::note.
ParseResult parse_packet(const uint8_t* data, uint32_t len, ParsedPacket& out,
                         EncapsulationSet encapsulations = 0) noexcept;

}  // namespace optgate
