// DNS stage: removes identifier EDNS0 options (RFC 6891) from DNS queries
// that subscribers send over UDP to a DNS port, when the verdict is strip.
//
// scan_dns_query() walks the message without following compression pointers
// (a pointer ends a name, and must point backwards, so there is nothing to
// loop on); every record must fit the message. A malformed message is left
// alone and counted under its reason. Only messages with QR=0 are inspected.
//
// On strip, each identifier option becomes a Padding option (code 12, RFC
// 7830) of the same length with zeroed content, as over TCP
// (dns_tcp_stage.hpp): nothing moves, no length changes, and the UDP
// checksum (and an encapsulation's outer ones) is patched from one sum over
// the option before and one over its 4-byte head after (pad_dns_option()).
// A resolver ignores Padding in a query (RFC 7830 §4). On pass, nothing
// changes.
//
// The stage runs over the packets classify routed to it (UDP from a
// subscriber to a DNS port, not a fragment), like the HTTP stage.
//
// Cost (callgrind, optgate-bench mix): about 760 instructions per query
// inspected, scan, verdict and, for half of them, the strip included
// (docs/benchmarks.md, "DNS over UDP: same-length Padding").
#pragma once

#include <cstdint>
#include <optional>

#include "core/big_endian.hpp"
#include "core/counters.hpp"
#include "core/packet.hpp"
#include "core/runtime.hpp"

namespace optgate {

struct PacketRef;
struct BurstSlot;
struct BurstContext;

class DnsStage {
public:
    // Runs over the slots classify routed to BurstSlot::Next::dns (`list`,
    // `count`: their indices in the burst, in order). Stateless: the whole
    // decision is in each datagram.
    void process_burst(PacketRef* pkts, BurstSlot* slots, const uint8_t* list, uint32_t count,
                       BurstContext& ctx) const noexcept;
};

struct DnsScan {
    bool has_opt = false;
    uint32_t rdata_begin = 0;  // message offsets of the OPT RDATA
    uint32_t rdata_end = 0;
    unsigned identifier_options = 0;  // options whose code the policy lists
};

// Returns nothing when the message is a well-formed query (QR=0), else
// Counter::dns_not_query for a response or the malformation reason.
std::optional<Counter> scan_dns_query(const uint8_t* msg, uint32_t len, const Runtime& rt, DnsScan& out) noexcept;

inline constexpr uint8_t kDnsPaddingCode = 12;      // RFC 7830; the code's high byte is 0
inline constexpr uint16_t kDnsTypeOpt = 41;         // RFC 6891
inline constexpr unsigned kDnsMaxNameLength = 255;  // RFC 1035 2.3.4, in wire bytes

// Makes the option whose code is at frame offset `at` (code, length, data,
// all in this frame's TCP or UDP payload) a Padding option of the same
// length with zeroed content, and patches the checksums (packet_edit.hpp).
void pad_dns_option(uint8_t* frame, const ParsedPacket& p, uint32_t at) noexcept;

// Calls fn(identifier_index, message_offset) for each identifier option
// (the offset of its code); fn may make the option Padding.
template <class Fn>
void for_each_dns_identifier(const uint8_t* msg, const DnsScan& scan, const Runtime& rt, Fn&& fn) noexcept {
    for (uint32_t pos = scan.rdata_begin; pos + 4 <= scan.rdata_end;) {
        const uint16_t code = big_endian::load16(msg + pos);
        const uint16_t olen = big_endian::load16(msg + pos + 2);
        const int id = rt.dns_identifier(code);
        if (id >= 0) fn(id, pos);
        pos += 4u + olen;
    }
}

}  // namespace optgate
