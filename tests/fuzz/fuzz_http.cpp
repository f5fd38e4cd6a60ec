// fuzz_http: a client's byte stream, cut into TCP segments, through the
// pipeline in order (support/packet_rig.hpp), one connection on a new worker.
//
// Input: byte 0 flags, byte 1 the count k (1..16) of segment lengths in
// its low four bits and more flags above, k bytes of lengths (1..256, used
// in turn), then the stream.
//   flags bit 0   IPv6
//   bits 1-2      0: SYN, then the data; 1: the SYN carries the first
//                 segment (TCP Fast Open); 2: no SYN (a flow met
//                 mid-stream: conservative mode); 3: SYN, then each data
//                 segment twice (a retransmission right after it)
//   bit 3         FIN on the last segment
//   bit 4         pass: from a subscriber who consents (else one who does not)
//   bit 5         an 802.1Q tag
//   bit 6         all segments in one burst (else one burst each)
//   bit 7         port 8080 (else 80)
//   byte 1 bit 4  data segments swapped in pairs (out of order)
//   byte 1 bit 5  every data segment sent again at the end (late retransmissions)
//
// Invariants: every segment sent in order is forwarded (a retransmission or
// a segment out of order may be dropped), at its length, with right
// checksums; on strip, every identifier value byte of the stream
// (support/reference.hpp, from the whole stream, not from segments) that
// arrives arrives as the filler, and any other changed byte became the
// filler; on pass, the stream arrives unchanged; a byte that arrives twice
// is the same both times (a retransmission gets the same rewrite).
#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include "packet_builder.hpp"
#include "support/fuzz_check.hpp"
#include "support/packet_rig.hpp"

using namespace optgate;
using namespace optgate::fuzz;

namespace {

struct Sent {
    Bytes frame;
    size_t offset = 0;  // stream offset of the payload
    size_t len = 0;
    bool retransmission = false;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static PacketRig rig;
    if (size < 3) return 0;
    const uint8_t flags = data[0];
    const size_t k = size_t(data[1] % 16) + 1;
    if (size < 2 + k) return 0;
    const uint8_t* lengths = data + 2;
    const std::string_view stream(reinterpret_cast<const char*>(data + 2 + k), size - 2 - k);
    if (stream.empty()) return 0;

    const bool v6 = flags & 1;
    const unsigned start = (flags >> 1) & 3;
    const bool fin = flags & 8, pass = flags & 16, vlan = flags & 32, one_burst = flags & 64;
    const uint16_t dport = (flags & 128) ? 8080 : 80;
    const bool midstream = start == 2, retransmit = start == 3;
    // Not out of order mid-stream: the first segment seen could start inside
    // a value, whose rest then passes (a documented limit, docs/http.md).
    const bool reorder = (data[1] & 16) && !midstream, resend = data[1] & 32;

    test::PacketBuilder b;
    if (vlan) b.vlan(100);
    if (v6)
        b.ipv6(pass ? "2001:db8:1000:1::7" : "2001:db8:1000:2::7", "2001:db8:ad::80");
    else
        b.ipv4(pass ? "100.64.0.10" : "100.64.0.12", "203.0.113.5");
    const uint32_t isn = 0xfffff000u;  // the stream crosses sequence number 0
    auto segment = [&](uint32_t seq, std::string_view payload, uint8_t tcp_flags) {
        return b.tcp(40000, dport, {.seq = seq, .ack = 1, .flags = tcp_flags}).payload(payload).build();
    };

    std::vector<Sent> sent;
    if (start != 1 && start != 2) sent.push_back({segment(isn, "", test::SYN), 0, 0, false});
    for (size_t off = 0, i = 0; off < stream.size(); ++i) {
        const size_t n = std::min<size_t>(stream.size() - off, size_t(lengths[i % k]) + 1);
        const bool last = off + n == stream.size();
        uint8_t f = test::ACK | (last ? test::PSH : 0) | (last && fin ? test::FIN : 0);
        uint32_t seq = isn + 1 + uint32_t(off);
        if (start == 1 && off == 0) {
            f = uint8_t((f & ~test::ACK) | test::SYN);
            seq = isn;
        }
        sent.push_back({segment(seq, stream.substr(off, n), f), off, n, false});
        if (retransmit) sent.push_back({sent.back().frame, off, n, true});
        off += n;
    }
    const size_t first_data = midstream ? 0 : 1;  // the SYN stays first
    const size_t data_end = sent.size();
    if (reorder)
        for (size_t i = first_data; i + 1 < data_end; i += 2) std::swap(sent[i], sent[i + 1]);
    if (resend)
        for (size_t i = first_data; i < data_end; ++i)
            sent.push_back({sent[i].frame, sent[i].offset, sent[i].len, true});

    auto worker = rig.worker();
    std::vector<Bytes> out(sent.size());
    std::vector<PacketRef> refs(sent.size());
    for (size_t i = 0; i < sent.size(); ++i) {
        out[i] = sent[i].frame;
        refs[i] = {out[i].data(), uint32_t(out[i].size()), 1'000'000'000ull + i * 1'000'000ull, Action::forward};
    }
    if (one_burst) {
        worker->process_burst(refs.data(), uint32_t(refs.size()), rig.now());
    } else {
        for (auto& r : refs) worker->process_burst(&r, 1, rig.now());
    }

    // What the server receives, by stream offset.
    std::string got(stream.size(), '\0');
    std::vector<bool> have(stream.size(), false);
    const std::vector<ValueRange> values = http_identifier_values(stream, rig.http_names(), midstream);
    for (size_t i = 0; i < sent.size(); ++i) {
        const Sent& s = sent[i];
        if (refs[i].action == Action::drop) {
            FUZZ_CHECK(s.retransmission || reorder, "segment " + std::to_string(i) + " (stream offset " +
                                                        std::to_string(s.offset) + ") sent in order was dropped");
            continue;
        }
        FUZZ_CHECK(refs[i].len == s.frame.size(), "a TCP segment changed length");
        std::string why;
        FUZZ_CHECK(checksums_ok(out[i], &why).value_or(false), "segment " + std::to_string(i) + ": " + why);
        const FrameView v = read_frame(out[i]);
        FUZZ_CHECK(v.l4 && v.payload_end - v.payload == s.len, "the segment no longer reads as the one sent");
        const uint8_t* p = &out[i][v.payload];
        for (size_t j = 0; j < s.len; ++j) {
            const size_t at = s.offset + j;
            const char c = char(p[j]);
            if (have[at])
                FUZZ_CHECK(c == got[at], "a byte sent again was rewritten differently at " + show_bytes(stream, at));
            if (pass)
                FUZZ_CHECK(c == stream[at], "pass verdict, but the stream changed at " + show_bytes(stream, at));
            else
                FUZZ_CHECK(c == stream[at] || c == rig.filler(),
                           "a byte changed into something other than the filler at " + show_bytes(stream, at));
            got[at] = c;
            have[at] = true;
        }
    }
    if (pass) return 0;
    for (const ValueRange& r : values)
        for (size_t at = r.begin; at < r.end; ++at)
            FUZZ_CHECK(!have[at] || stream[at] == '\r' || got[at] == rig.filler(),
                       std::string("identifier value byte forwarded on a strip verdict (") +
                           (midstream ? "mid-stream flow" : "flow from its SYN") + ") at " + show_bytes(stream, at));
    return 0;
}
