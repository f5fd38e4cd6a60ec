// The DNS-over-TCP stage through optgate::Worker with real frames: identifier
// options made Padding in place, the length prefix, messages split across
// segments and several in one, retransmissions, flows met mid-stream.
#include <doctest/doctest.h>

#include "dns_builder.hpp"
#include "test_http_fixture.hpp"

using namespace optgate;
using namespace optgate::httptest;
using test::Bytes;
using test::DnsQuery;
using test::EdnsOption;

namespace {

// Sample policy: ECS (8) and MAC (65001) are identifiers; 198.18.0.53:53 is
// the advertising resolver; 100.64.0.12 has no consent, 100.64.0.10 has it.
const EdnsOption kEcs{8, test::ecs_option_data("100.64.0.0/24")};
const EdnsOption kMac{65001, {0x02, 0x11, 0x22, 0x33, 0x44, 0x55}};
const EdnsOption kCookie{10, {1, 2, 3, 4, 5, 6, 7, 8}};

EdnsOption padding_for(const EdnsOption& o) { return {12, Bytes(o.data.size(), 0)}; }

Bytes query(std::vector<EdnsOption> options, std::string name = "www.example.com") {
    return test::dns_query(DnsQuery{.qname = std::move(name), .edns_udp_size = 1232, .options = std::move(options)});
}

// A message as sent over TCP: the 2-byte length, then the message.
std::string framed(const Bytes& msg) {
    std::string s;
    s += char(msg.size() >> 8);
    s += char(msg.size() & 0xff);
    s.append(msg.begin(), msg.end());
    return s;
}

Conn dns_conn(const char* src = "100.64.0.12") {
    Conn c;
    c.src = src;
    c.dst = "198.18.0.53";
    c.dport = 53;
    c.sport = 41000;
    return c;
}

std::string payload(const Bytes& f) { return read_tcp(f).payload; }

void check_frame(const Bytes& f) {
    const auto r = test::verify_checksums(f);
    CHECK_MESSAGE(r.ok(), r.detail);
}

// Sends `stream` cut before each offset in `cuts`; returns what left, or
// "dropped" if a segment was dropped.
std::string send(HttpPipeline& px, const Conn& c, const std::string& stream, std::vector<size_t> cuts) {
    std::string out;
    cuts.push_back(stream.size());
    size_t from = 0;
    for (size_t to : cuts) {
        if (to <= from) continue;
        const Bytes f = px.run(c.data(from, stream.substr(from, to - from)));
        if (f.empty()) return "dropped";
        check_frame(f);
        out += payload(f);
        from = to;
    }
    return out;
}

}  // namespace

TEST_CASE("DNS over TCP: identifier options become Padding of the same length, zeroed") {
    HttpPipeline px;
    const Conn c = dns_conn();
    px.run(c.syn());
    const std::string in = framed(query({kCookie, kEcs, kMac}));
    const std::string expected = framed(query({kCookie, padding_for(kEcs), padding_for(kMac)}));
    REQUIRE(in.size() == expected.size());
    CHECK(send(px, c, in, {}) == expected);
    CHECK(px.count(Counter::dns_queries) == 1);
    CHECK(px.count(Counter::dns_with_identifiers) == 1);
    CHECK(px.count(Counter::verdict_strip_no_consent) == 1);
    CHECK(px.count(Counter::dns_tcp_rewritten) == 1);
    CHECK(px.worker->counters().identifier_stripped[2] == 1);  // ECS
    CHECK(px.worker->counters().identifier_stripped[3] == 1);  // MAC

    // A consenting subscriber's query to the collector resolver is untouched.
    const Conn ok = dns_conn("100.64.0.10");
    px.run(ok.syn());
    CHECK(send(px, ok, in, {}) == in);
    CHECK(px.count(Counter::verdict_pass_consent) == 1);
    CHECK(px.worker->counters().identifier_passed[2] == 1);

    // IPv6.
    Conn v6 = dns_conn("2001:db8:1000:9::1");
    v6.v6 = true;
    v6.dst = "2001:db8:ad::53";
    px.run(v6.syn());
    CHECK(send(px, v6, in, {}) == expected);
}

TEST_CASE("DNS over TCP: every split point, one byte per segment, several messages per segment") {
    // Two messages back to back: the second one's options straddle whatever we cut.
    const std::string in = framed(query({kEcs, kCookie})) + framed(query({kMac, kEcs}, "a.example.net"));
    const std::string expected = framed(query({padding_for(kEcs), kCookie})) +
                                 framed(query({padding_for(kMac), padding_for(kEcs)}, "a.example.net"));
    // The cookie's code (00 0a) starts like ECS's (00 08): cut between its
    // two bytes, it is made Padding too (its first byte left before the second came).
    const size_t cookie = in.find(std::string("\x00\x0a\x00\x08", 4));
    REQUIRE(cookie != std::string::npos);
    const std::string cookie_padded = framed(query({padding_for(kEcs), padding_for(kCookie)})) +
                                      framed(query({padding_for(kMac), padding_for(kEcs)}, "a.example.net"));
    HttpPipeline px;
    Conn c = dns_conn();
    for (size_t k = 1; k < in.size(); ++k) {
        c.isn = uint32_t(1000 + 7919 * k);
        px.run(c.syn());
        INFO("cut at " << k);
        CHECK(send(px, c, in, {k}) == (k == cookie + 1 ? cookie_padded : expected));
    }
    CHECK(px.count(Counter::dns_tcp_padded_straddling) == 1);
    c.isn = 5;
    px.run(c.syn());
    std::vector<size_t> every;
    for (size_t k = 1; k < in.size(); ++k) every.push_back(k);
    CHECK(send(px, c, in, every) == cookie_padded);
    CHECK(px.count(Counter::dns_queries) == 2 * in.size());
    CHECK(px.count(Counter::dns_malformed_record) == 0);
}

TEST_CASE("DNS over TCP: retransmissions get the same rewrite; other bytes are dropped") {
    HttpPipeline px;
    const Conn c = dns_conn();
    px.run(c.syn());
    const std::string in = framed(query({kEcs}));
    const size_t mid = in.size() - 3;  // inside the ECS data
    const Bytes a = px.run(c.data(0, in.substr(0, mid)));
    const Bytes b = px.run(c.data(mid, in.substr(mid)));
    REQUIRE_FALSE(a.empty());
    REQUIRE_FALSE(b.empty());
    CHECK(payload(a) + payload(b) == framed(query({padding_for(kEcs)})));
    CHECK(px.run(c.data(0, in.substr(0, mid))) == a);
    CHECK(px.run(c.data(mid, in.substr(mid))) == b);
    CHECK(payload(px.run(c.data(0, in))) == payload(a) + payload(b));  // both in one
    CHECK(px.count(Counter::dns_tcp_retransmitted) == 3);

    // Bytes that the rewrite covers may differ (they leave as forwarded);
    // any other may not: a receiver may keep either copy.
    std::string changed = in.substr(0, mid);
    changed[changed.size() - 1] ^= 1;  // ECS data
    CHECK(px.run(c.data(0, changed)) == a);
    changed = in.substr(0, mid);
    changed[20] ^= 1;  // the name
    CHECK(px.run(c.data(0, changed)).empty());
    CHECK(px.count(Counter::dns_tcp_retransmit_inconsistent) == 1);
    CHECK(px.run(c.data(2, in.substr(2, 10))).empty());  // part of a segment: cannot be checked
    CHECK(px.count(Counter::dns_tcp_retransmit_unverified) == 1);
    // Retransmitted and new bytes in one segment.
    const std::string next = framed(query({kMac}));
    CHECK(payload(px.run(c.data(mid, in.substr(mid) + next))) == payload(b) + framed(query({padding_for(kMac)})));
}

TEST_CASE("DNS over TCP: holes, flows met mid-stream, responses, malformed messages") {
    HttpPipeline px;
    const Conn c = dns_conn();
    px.run(c.syn());
    const std::string in = framed(query({kEcs}));
    CHECK(px.run(c.data(5, in.substr(5))).empty());  // after a hole
    CHECK(px.count(Counter::dns_tcp_out_of_order_dropped) == 1);
    CHECK(send(px, c, in, {5}) == framed(query({padding_for(kEcs)})));

    // Without its SYN the framing is unknown: strip verdict, dropped; pass, forwarded.
    Conn mid = dns_conn();
    mid.sport = 41001;
    CHECK(px.run(mid.data(0, in)).empty());
    CHECK(px.count(Counter::dns_tcp_midstream_dropped) == 1);
    Conn mid_ok = dns_conn("100.64.0.10");
    mid_ok.sport = 41002;
    const Bytes f = mid_ok.data(0, in);
    CHECK(px.run(f) == f);

    // A response (QR=1) is not read; an option overrunning its record is
    // malformed, and the next message is read as usual.
    Conn d = dns_conn();
    d.sport = 41003;
    px.run(d.syn());
    Bytes response = query({kEcs});
    response[2] |= 0x80;
    Bytes overrun = query({kEcs});
    overrun[overrun.size() - kEcs.data.size() - 1] = 0x40;  // ECS length 64, past the end
    const std::string stream = framed(response) + framed(overrun) + framed(query({kMac}));
    const std::string out = send(px, d, stream, {});
    CHECK(out.substr(0, framed(response).size()) == framed(response));
    CHECK(out.substr(out.size() - framed(query({kMac})).size()) == framed(query({padding_for(kMac)})));
    CHECK(px.count(Counter::dns_not_query) == 1);
    CHECK(px.count(Counter::dns_malformed_opt) == 1);
    // The malformed one's ECS was made Padding too (its data to the record's end).
    const std::string second = out.substr(framed(response).size(), framed(overrun).size());
    CHECK(second.find(std::string("\x00\x0c\x00\x40", 4)) != std::string::npos);

    // RST forgets the flow: its next segment is met mid-stream.
    px.run(d.segment(d.isn + 1 + uint32_t(stream.size()), "", test::RST | test::ACK));
    CHECK(px.run(d.data(stream.size(), in)).empty());
    CHECK(px.count(Counter::dns_tcp_midstream_dropped) == 2);
}
