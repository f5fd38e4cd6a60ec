// HTTP stage: scrubs identifier header fields from HTTP/1.x requests that
// subscribers send over TCP to HTTP ports, following each flow's byte
// stream across segments (docs/http.md).
//
// Per packet (classify routed it here: TCP, from a subscriber, to an HTTP
// port, not a fragment):
//  - one flow lookup (FlowTable, keyed by the 4-tuple); SYN starts or
//    restarts a flow, RST forgets it, a flow first met without SYN is
//    parsed in conservative mode for the rest of its life;
//  - sequence numbers decide what the segment's bytes are:
//      new bytes (seq == next)      parsed (HttpParser), values scrubbed;
//      bytes already seen (seq < next)  given the same rewrite again from
//                                   the flow's record of scrubbed ranges,
//                                   then checked against the fingerprints
//                                   of the segments forwarded
//                                   (stream_record.hpp); dropped if they
//                                   differ, cover a fingerprinted segment
//                                   only in part, or reach back past the
//                                   record;
//      a gap (seq > next)           skipped if it lies inside a request
//                                   body of known length (and no other
//                                   hole is open), else the segment is
//                                   dropped and TCP retransmits it;
//  - scrubbing overwrites value bytes with the policy's filler through
//    l4_fill_bytes (same length, checksum patched); a segment with nothing
//    to change leaves byte-identical;
//  - toward a collector that receives pseudonyms (Verdict::pass_pseudonym)
//    a value whole in its segment is replaced by its pseudonym
//    (pseudonym.hpp, same length); its range is recorded as a pseudonym
//    range, and a retransmission of it gets the pseudonym computed again
//    from its own bytes (the same bytes give the same pseudonym, so the
//    fingerprint check below passes; other bytes fail it);
//  - a full pair of flow-table buckets gives up a flow only if losing it cannot let
//    an identifier through (not inside an identifier line, no scrubbed
//    range a retransmission may still need); else the new flow's packet is
//    dropped.
//
// A fragmented segment comes here reassembled, as one packet
// (docs/pipeline.md#fragments).
//
// Memory: FlowTable<HttpFlow>::kBytesPerFlow (196) per flow of capacity,
// mapped and populated at construction, plus host_buffers x 256 bytes.
// Cost: docs/benchmarks.md, "HTTP stage".
#pragma once

#include <cstdint>
#include <memory>

#include "core/flow_table.hpp"
#include "core/http_host.hpp"
#include "core/http_matcher.hpp"
#include "core/http_parser.hpp"
#include "core/stream_record.hpp"

namespace optgate {

struct PacketRef;
struct BurstSlot;
struct BurstContext;
class Enforcement;
class Runtime;

struct HttpStageConfig {
    size_t flow_capacity = size_t{256} * 1024;          // flows per worker (rounded up to a power of two)
    uint64_t idle_timeout_ns = 120ull * 1000000000ull;  // after this, a flow's entry may be reused
    size_t host_buffers = 1024;                         // for Host values split across segments
};

// What the stage keeps per flow (144 bytes; the entry adds key and time).
struct HttpFlow {
    static constexpr unsigned kScrubRanges = 4;
    static constexpr uint8_t kClosed = 1;       // FIN seen: reused before live flows
    static constexpr uint8_t kMidstream = 2;    // first seen without SYN
    static constexpr uint8_t kHistoryLost = 4;  // a scrubbed range or a fingerprint was forgotten

    HttpParserState parser;
    uint32_t next_seq = 0;  // sequence number of the next stream byte to parse
    // Every scrubbed range that ends after this is in scrub_*, and every
    // parsed byte after it is in a fingerprinted run of `forwarded`.
    uint32_t history_from = 0;
    // Scrubbed ranges of the stream, oldest first, for retransmissions.
    uint32_t scrub_seq[kScrubRanges] = {};
    uint16_t scrub_len[kScrubRanges] = {};
    // The body bytes skipped unseen after a gap (nothing to scrub there),
    // until they arrive: their retransmission is let through whatever the
    // scrubbed-range record has forgotten. One hole at a time.
    uint32_t hole_seq = 0;
    uint16_t hole_len = 0;
    uint8_t scrub_count : 4 = 0;
    // Bit r: scrub range r holds a pseudonym (written with the key of
    // pseudonym_key, a Runtime::pseudonym_number), not filler. One key per
    // flow at a time: a value for another key while such ranges are
    // remembered is scrubbed (Counter::http_pseudonym_unrecorded).
    uint8_t pseudonyms : 4 = 0;
    uint8_t flags : 4 = 0;
    uint8_t pseudonym_key : 4 = 0;
    // What was forwarded, for checking retransmissions (bytes the parser
    // read; body bytes it skipped unread need no check).
    ForwardedRecord forwarded{};
};
static_assert(sizeof(HttpFlow) <= 144);

class HttpStage {
public:
    using Table = FlowTable<HttpFlow>;
    static constexpr uint32_t kMaxBurst = 64;

    explicit HttpStage(const HttpStageConfig& config = {});
    ~HttpStage();
    HttpStage(const HttpStage&) = delete;
    HttpStage& operator=(const HttpStage&) = delete;

    // Classify calls this for each packet it routes here: returns the flow
    // key's hash and starts loading the flow's bucket, so that the table
    // line is in cache when the stage runs after the rest of the burst.
    uint64_t prefetch_flow(const ParsedPacket& p) const noexcept {
        const uint64_t hash = flow_hash(FlowKey::from(p));
        table_.prefetch(hash);
        return hash;
    }

    // Runs over the slots classify routed to BurstSlot::Next::http
    // (`list`, `count`: their indices in the burst, in order).
    void process_burst(PacketRef* pkts, BurstSlot* slots, const uint8_t* list, uint32_t count, BurstContext& ctx,
                       Enforcement& enforcement) noexcept;

    const Table& flows() const noexcept { return table_; }
    const HostBuffers& host_buffers() const noexcept { return hosts_; }
    const HttpStageConfig& config() const noexcept { return config_; }

private:
    struct Sink;

    void prepare(const Runtime& rt, Enforcement& enforcement) noexcept;
    void process(PacketRef& pkt, BurstSlot& s, BurstContext& ctx, const FlowKey& key, uint64_t hash) noexcept;
    Table::Entry* make_entry(const FlowKey& key, uint64_t hash, uint32_t now, BurstContext& ctx) noexcept;
    void payload(Table::Entry& e, PacketRef& pkt, BurstSlot& s, BurstContext& ctx, uint32_t seq) noexcept;
    Counter replay(HttpFlow& f, Sink& sink, uint32_t seq, uint32_t len) noexcept;
    void remember_forwarded(HttpFlow& f, uint32_t seq, const uint8_t* d, uint32_t n) noexcept;
    void forget(Table::Entry* e) noexcept;

    HttpStageConfig config_;
    Table table_;
    HostBuffers hosts_;
    StreamFingerprint fingerprint_;
    // The current policy's matcher (Runtime::header_matcher), held so that
    // the next policy's can be compared with it; null before the first burst.
    std::shared_ptr<const HeaderMatcher> matcher_;
    // The runtime the matcher was built from, held so that its address
    // cannot be reused by a later policy while we compare against it.
    std::shared_ptr<const Runtime> pinned_;
    const Runtime* runtime_ = nullptr;
    uint16_t generation_ = 1;
    bool use_host_ = false;
    FlowKey keys_[kMaxBurst] = {};  // per burst: filled before use
    uint8_t todo_[kMaxBurst] = {};
};

}  // namespace optgate
