// Bounds-checked packet parsing: Ethernet, 802.1Q / QinQ, IPv4 (options,
// fragments), IPv6 (hop-by-hop, routing, destination options, fragment, AH
// extension headers), TCP, UDP.
//
// parse_packet() never reads outside [data, data + len). A packet that does
// not parse yields a Counter naming why; the pipeline forwards it unchanged.
// Offsets are relative to the start of the frame.
//
// Cost (callgrind, optgate-bench mix): 143 instructions per packet; about
// 50 ns per packet on that mix, most of it the first touch of the frame
// (docs/benchmarks.md, "Core pipeline").
#pragma once

#include <cstdint>

#include "core/addr.hpp"
#include "core/counters.hpp"

namespace optgate {

inline constexpr uint8_t kProtoTcp = 6;
inline constexpr uint8_t kProtoUdp = 17;

struct ParsedPacket {
    Family family = Family::v4;
    uint8_t vlan_tags = 0;
    uint8_t l4_proto = 0;         // final next-header / protocol
    bool fragment = false;        // part of a fragmented datagram
    bool first_fragment = false;  // fragment offset 0: carries the L4 header
    bool has_l4 = false;          // TCP/UDP header present and valid
    bool more_fragments = false;  // fragments: more follow (IPv4 MF, IPv6 M)
    uint32_t l3_offset = 0;       // IP header
    uint32_t l4_offset = 0;       // TCP/UDP header
    uint32_t payload_offset = 0;  // first byte after the TCP/UDP header
    uint32_t payload_len = 0;     // per the IP (and UDP) lengths, not the frame
    uint32_t ip_end = 0;          // end of the IP datagram; frame bytes after it are padding
    uint16_t src_port = 0, dst_port = 0;
    // TCP only
    uint32_t tcp_seq = 0;
    uint8_t tcp_flags = 0;
    // Fragments only (core/reassembly.hpp): where this fragment's data sits
    // in the datagram (bytes), and for IPv6 the frame offset of the
    // next-header byte that names the fragment header. A first fragment too
    // short for its TCP/UDP header (or IPv6 header chain) parses with has_l4
    // false (the tiny-fragment case, RFC 1858 / RFC 7112).
    uint16_t fragment_offset = 0;
    uint16_t fragment_link = 0;
    // Source/destination address bytes (4 or 16) inside the frame.
    const uint8_t* src = nullptr;
    const uint8_t* dst = nullptr;
    // IPv4: identification (for fragment tracking); IPv6: fragment header id.
    uint32_t fragment_id = 0;
    uint32_t fragment_data = 0;  // fragments: frame offset of the data (after the IPv4 header / IPv6 fragment header)

    IpAddr src_addr() const noexcept { return family == Family::v4 ? IpAddr::from_v4(src) : IpAddr::from_v6(src); }
    IpAddr dst_addr() const noexcept { return family == Family::v4 ? IpAddr::from_v4(dst) : IpAddr::from_v6(dst); }
};

namespace tcp_flag {
inline constexpr uint8_t fin = 0x01, syn = 0x02, rst = 0x04, psh = 0x08, ack = 0x10;
}

struct ParseResult {
    bool ok = false;                    // IP with a usable layer-4 view (or a non-first fragment)
    Counter reason = Counter::packets;  // when !ok: why (non_ip, truncated_*, bad_*)
};

ParseResult parse_packet(const uint8_t* data, uint32_t len, ParsedPacket& out) noexcept;

}  // namespace optgate
