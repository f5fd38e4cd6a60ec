// Golden DNS-over-TCP replay with the shipped example policy and consent
// files (see test_golden_dns.cpp): identifier options made Padding (RFC 7830)
// in place, messages split across segments and several in one,
// retransmissions given the same rewrite, inconsistent ones dropped.
#include <doctest/doctest.h>

#include "dns_builder.hpp"
#include "golden_support.hpp"
#include "packet_builder.hpp"

using namespace optgate;
using namespace optgate::test;
using golden::replay;

namespace {

// A query as sent over TCP: its 2-byte length, then the message.
Bytes framed(const std::vector<EdnsOption>& options, uint16_t id) {
    const Bytes m = dns_query({.id = id, .qname = "www.example.org", .edns_udp_size = 1232, .options = options});
    Bytes out = {uint8_t(m.size() >> 8), uint8_t(m.size())};
    out.insert(out.end(), m.begin(), m.end());
    return out;
}

Bytes cat(Bytes a, const Bytes& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

Bytes slice(const Bytes& b, size_t from, size_t to) { return Bytes(b.begin() + long(from), b.begin() + long(to)); }

struct DnsConn {
    const char* src;
    uint16_t sport;
    uint32_t isn;
    Bytes segment(uint32_t offset, const Bytes& payload, uint8_t flags = PSH | ACK) const {
        return PacketBuilder()
            .ipv4(src, "198.18.0.53")
            .tcp(sport, 53, {.seq = isn + 1 + offset, .ack = 1, .flags = flags})
            .payload(payload)
            .build();
    }
    Bytes syn() const {
        return PacketBuilder().ipv4(src, "198.18.0.53").tcp(sport, 53, {.seq = isn, .flags = SYN}).build();
    }
};

}  // namespace

TEST_CASE("golden DNS over TCP replay: Padding in place, split and batched messages, retransmissions") {
    // sub-1005 (100.64.0.12, no consent) and sub-1001 (100.64.0.10, advertising) to partner-resolver.
    const DnsConn strip{"100.64.0.12", 40001, 1000}, pass{"100.64.0.10", 40002, 5000}, mid{"100.64.0.12", 40003, 9000};
    const Bytes two = cat(framed({kEcs4, kCookie}, 1), framed({kMac}, 2));
    const Bytes two_out = cat(framed({padding_for(kEcs4), kCookie}, 1), framed({padding_for(kMac)}, 2));
    const Bytes split = framed({kCookie, kEcs4}, 3);
    const Bytes split_out = framed({kCookie, padding_for(kEcs4)}, 3);
    const size_t cut = split.size() - 4;  // inside the ECS data
    Bytes evasion = slice(split, cut, split.size());
    evasion[0] ^= 0xff;  // ECS data: made zero anyway, so this one is consistent
    Bytes changed_name = slice(split, 0, cut);
    changed_name[20] ^= 1;  // the name: inconsistent

    struct Step {
        Bytes in;
        Bytes out;  // empty: dropped
    };
    const size_t at_split = two.size();
    const std::vector<Step> steps = {
        {strip.syn(), strip.syn()},
        {strip.segment(0, two), strip.segment(0, two_out)},  // two messages, one segment
        {strip.segment(at_split, slice(split, 0, cut)), strip.segment(at_split, slice(split_out, 0, cut))},
        {strip.segment(at_split + cut, slice(split, cut, split.size())),  // the rest of the message
         strip.segment(at_split + cut, slice(split_out, cut, split.size()))},
        {strip.segment(0, two), strip.segment(0, two_out)},  // a retransmission
        {strip.segment(at_split + cut, evasion), strip.segment(at_split + cut, slice(split_out, cut, split.size()))},
        {strip.segment(at_split, changed_name), {}},            // other bytes: dropped
        {strip.segment(at_split + 5, slice(split, 5, 9)), {}},  // part of a segment: dropped
        {pass.syn(), pass.syn()},
        {pass.segment(0, two), pass.segment(0, two)},  // consent: untouched
        {mid.segment(0, two), {}},                     // no SYN seen, strip: dropped
    };
    std::vector<Bytes> in;
    in.reserve(steps.size());
    for (const auto& s : steps) in.push_back(s.in);
    const auto result = replay(in);
    size_t k = 0;
    for (size_t i = 0; i < steps.size(); ++i) {
        if (steps[i].out.empty()) continue;
        CAPTURE(i);
        REQUIRE(k < result.output.size());
        CHECK_MESSAGE(result.output[k].data == steps[i].out, "got\n"
                                                                 << hexdump(result.output[k].data) << "expected\n"
                                                                 << hexdump(steps[i].out));
        CHECK(verify_checksums(result.output[k].data).ok());
        ++k;
    }
    CHECK(result.output.size() == k);
    CHECK(result.counter("dropped") == 3);
    CHECK(result.counter("dns_tcp_flows") == 2);
    CHECK(result.counter("dns_tcp_retransmitted") == 2);
    CHECK(result.counter("dns_tcp_retransmit_inconsistent") == 1);
    CHECK(result.counter("dns_tcp_retransmit_unverified") == 1);
    CHECK(result.counter("dns_tcp_midstream_dropped") == 1);
    CHECK(result.counter("dns_queries") == 5);  // 3 stripped, 2 passed; retransmissions are not read again
    CHECK(result.counter("verdict_strip_no_consent") == 3);
    CHECK(result.counter("verdict_pass_consent") == 2);
    CHECK(result.stripped_to("partner-resolver") == 3);
    CHECK(result.passed_to("partner-resolver") == 2);
}
