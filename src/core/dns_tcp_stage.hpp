// DNS over TCP stage: makes identifier EDNS0 options (RFC 6891) in DNS
// queries that subscribers send over TCP to a DNS port into Padding options
// (code 12, RFC 7830) of the same length with zeroed content, when the
// verdict is strip (docs/pipeline.md, "DNS over TCP").
//
// Clients fall back to TCP after a truncated answer, and some stubs always
// use it; the options are the same as over UDP. The TCP stream's length
// must not change (no sequence rewriting), so options are not cut out as
// over UDP: each is overwritten in place, in whichever segments its bytes
// arrive, with the TCP checksum patched (packet_edit.hpp).
//
// Per flow (a FlowTable of its own, keyed by the 4-tuple; SYN starts a
// flow, RST forgets it):
//  - a streaming reader follows the 2-byte length prefix of each message
//    (RFC 1035 §4.2.2), several messages per segment or one message over
//    many, and inside each query the header, questions and records down to
//    the OPT record's options; its state between segments is 20 bytes;
//  - new bytes in order are read; a gap drops the segment (TCP resends);
//  - bytes already seen get the same rewrite again from the flow's record
//    of the options it made Padding and are checked against the fingerprints of what
//    was forwarded (stream_record.hpp): the HTTP stage's rule;
//  - a flow met without its SYN (after a restart, or its entry reused)
//    cannot be framed: its segments pass when the packet's verdict passes
//    and are dropped when it strips (the client opens a new connection);
//  - an option code cut between two segments whose first byte could begin
//    an identifier's code is made Padding, whatever its second byte turns
//    out to be (the first byte was forwarded before it was known).
//
// Memory: FlowTable<DnsTcpFlow>::kBytesPerFlow per flow of capacity
// (DnsTcpStageConfig; 16Ki flows by default). Cost: docs/benchmarks.md.
#pragma once

#include <cstdint>

#include "core/counters.hpp"
#include "core/flow_table.hpp"
#include "core/stream_record.hpp"

namespace optgate {

struct PacketRef;
struct BurstSlot;
struct BurstContext;

struct DnsTcpStageConfig {
    size_t flow_capacity = size_t{16} * 1024;           // flows per worker (rounded up to a power of two)
    uint64_t idle_timeout_ns = 120ull * 1000000000ull;  // after this, a flow's entry may be reused
};

enum class DnsTcpState : uint8_t {
    length_hi,  // the 2-byte message length
    length_lo,
    header,          // 12 bytes
    name,            // a question's or record's name
    question_fixed,  // QTYPE, QCLASS
    rr_fixed,        // TYPE, CLASS, TTL, RDLENGTH
    rdata,           // a record's RDATA, skipped
    opt_code_hi,     // an OPT option: code, length, data
    opt_code_lo,
    opt_len_hi,
    opt_len_lo,
    opt_data,
    skip,  // the rest of the message: a response, malformed, or after the records
};

// Where the reader is in a flow's stream.
struct DnsStreamState {
    uint16_t message_left = 0;  // bytes of the current message still to come
    uint16_t left = 0;          // bytes left in the current label, field, RDATA or option data
    uint16_t questions = 0;     // questions still to read
    uint16_t records = 0;       // records still to read (answer + authority + additional)
    uint16_t rdata_left = 0;    // OPT RDATA bytes after the field being read
    uint16_t value = 0;         // a big-endian field being read
    uint16_t type = 0;          // the record's TYPE
    uint16_t name_length = 0;
    DnsTcpState state = DnsTcpState::length_hi;
    uint8_t aux = 0;  // byte index in the header or the record's fixed part
    uint8_t flags = 0;
};
static_assert(sizeof(DnsStreamState) <= 20);

// What the stage keeps per flow.
struct DnsTcpFlow {
    static constexpr unsigned kPadded = 8;
    static constexpr uint8_t kClosed = 1;       // FIN seen
    static constexpr uint8_t kHistoryLost = 2;  // a Padding record or a fingerprint was forgotten

    DnsStreamState reader;
    uint32_t next_seq = 0;      // sequence number of the next stream byte to read
    uint32_t history_from = 0;  // every rewrite and every forwarded byte after this is recorded
    // Options made Padding, oldest first: the option at padded_seq, of
    // padded_len bytes so far (code, length, data) had its code made 00 0c
    // (its first byte kept if padded_keep_high: it had left unchanged) and
    // its data zeroed.
    uint32_t padded_seq[kPadded] = {};
    uint16_t padded_len[kPadded] = {};
    uint8_t padded_keep_high[kPadded] = {};
    uint8_t padded_count = 0;
    uint8_t flags = 0;
    ForwardedRecord forwarded{};
};

class DnsTcpStage {
public:
    using Table = FlowTable<DnsTcpFlow>;

    explicit DnsTcpStage(const DnsTcpStageConfig& config = {});

    // Classify calls this for each packet it routes here (see HttpStage).
    uint64_t prefetch_flow(const ParsedPacket& p) const noexcept {
        const uint64_t hash = flow_hash(FlowKey::from(p));
        table_.prefetch(hash);
        return hash;
    }

    // Runs over the slots classify routed to BurstSlot::Next::dns_tcp.
    void process_burst(PacketRef* pkts, BurstSlot* slots, const uint8_t* list, uint32_t count,
                       BurstContext& ctx) noexcept;

    const Table& flows() const noexcept { return table_; }

private:
    struct Sink;

    void process(PacketRef& pkt, BurstSlot& s, BurstContext& ctx) noexcept;
    void payload(DnsTcpFlow& f, PacketRef& pkt, BurstSlot& s, BurstContext& ctx, uint32_t seq) noexcept;
    Counter replay(DnsTcpFlow& f, Sink& sink, uint32_t seq, uint32_t len) noexcept;

    Table table_;
    StreamFingerprint fingerprint_;
};

}  // namespace optgate
