// DNS stage: removes identifier EDNS0 options (RFC 6891) from DNS queries
// that subscribers send over UDP to a DNS port, when the verdict is strip.
//
// scan_dns_query() walks the message without following compression pointers
// (a pointer ends a name, and must point backwards, so there is nothing to
// loop on); every record must fit the message. A malformed message is left
// alone and counted under its reason. Only messages with QR=0 are inspected.
//
// On strip, the identifier options are cut out of the OPT RDATA and the rest
// of the frame moves down: OPT RDLENGTH, UDP length, IP length and both
// checksums are fixed (packet_edit.hpp). On pass, nothing changes.
//
// The stage runs over the packets classify routed to it (UDP from a
// subscriber to a DNS port, not a fragment), like the HTTP stage.
//
// Cost (callgrind, optgate-bench mix): about 670 instructions per query
// inspected, scan, verdict and, for half of them, the strip included.
#pragma once

#include <cstdint>
#include <optional>

#include "core/big_endian.hpp"
#include "core/counters.hpp"
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
    uint32_t opt_rdlength_at = 0;  // message offset of the OPT RDLENGTH field
    uint32_t rdata_begin = 0;      // message offsets of the OPT RDATA
    uint32_t rdata_end = 0;
    unsigned identifier_options = 0;  // options whose code the policy lists
};

// Returns nothing when the message is a well-formed query (QR=0), else
// Counter::dns_not_query for a response or the malformation reason.
std::optional<Counter> scan_dns_query(const uint8_t* msg, uint32_t len, const Runtime& rt, DnsScan& out) noexcept;

// Removes the identifier options from the message's OPT RDATA in place
// (within the message buffer; bytes after rdata_end are left for the caller
// to move). Calls on_removed(identifier_index) for each option removed and
// returns how many bytes the OPT RDATA shrank by.
template <class OnRemoved>
uint32_t compact_opt_rdata(uint8_t* msg, const DnsScan& scan, const Runtime& rt, OnRemoved&& on_removed) noexcept;

// Calls fn(identifier_index) for each identifier option, without changing.
template <class Fn>
void for_each_dns_identifier(const uint8_t* msg, const DnsScan& scan, const Runtime& rt, Fn&& fn) noexcept {
    for (uint32_t pos = scan.rdata_begin; pos + 4 <= scan.rdata_end;) {
        const uint16_t code = big_endian::load16(msg + pos);
        const uint16_t olen = big_endian::load16(msg + pos + 2);
        const int id = rt.dns_identifier(code);
        if (id >= 0) fn(id);
        pos += 4u + olen;
    }
}

template <class OnRemoved>
uint32_t compact_opt_rdata(uint8_t* msg, const DnsScan& scan, const Runtime& rt, OnRemoved&& on_removed) noexcept {
    uint32_t write = scan.rdata_begin;
    for (uint32_t pos = scan.rdata_begin; pos + 4 <= scan.rdata_end;) {
        const uint16_t code = big_endian::load16(msg + pos);
        const uint32_t size = 4u + big_endian::load16(msg + pos + 2);
        const int id = rt.dns_identifier(code);
        if (id >= 0) {
            on_removed(id);
        } else {
            if (write != pos)
                for (uint32_t i = 0; i < size; ++i) msg[write + i] = msg[pos + i];
            write += size;
        }
        pos += size;
    }
    return scan.rdata_end - write;
}

}  // namespace optgate
