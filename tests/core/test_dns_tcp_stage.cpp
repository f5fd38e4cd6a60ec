// The DNS-over-TCP stage through optgate::Worker with real frames: identifier
// options made Padding in place, the length prefix, messages split across
// segments and several in one, retransmissions, flows met mid-stream.
#include <doctest/doctest.h>

#include <random>

#include "dns_builder.hpp"
#include "test_http_fixture.hpp"

using namespace optgate;
using namespace optgate::httptest;
using optgate::test::kCookie;
using optgate::test::kEcs4;
using optgate::test::kMac;
using test::Bytes;
using test::DnsQuery;
using test::EdnsOption;

namespace {

// Sample policy: ECS (8) and MAC (65001) are identifiers; 198.18.0.53:53 is
// the advertising resolver; 100.64.0.12 has no consent, 100.64.0.10 has it.

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
    const std::string in = framed(query({kCookie, kEcs4, kMac}));
    const std::string expected = framed(query({kCookie, padding_for(kEcs4), padding_for(kMac)}));
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
    const std::string in = framed(query({kEcs4, kCookie})) + framed(query({kMac, kEcs4}, "a.example.net"));
    const std::string expected = framed(query({padding_for(kEcs4), kCookie})) +
                                 framed(query({padding_for(kMac), padding_for(kEcs4)}, "a.example.net"));
    // The cookie's code (00 0a) starts like ECS's (00 08): cut between its
    // two bytes, it is made Padding too (its first byte left before the second came).
    const size_t cookie = in.find(std::string("\x00\x0a\x00\x08", 4));
    REQUIRE(cookie != std::string::npos);
    const std::string cookie_padded = framed(query({padding_for(kEcs4), padding_for(kCookie)})) +
                                      framed(query({padding_for(kMac), padding_for(kEcs4)}, "a.example.net"));
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
    const std::string in = framed(query({kEcs4}));
    const size_t mid = in.size() - 3;  // inside the ECS data
    const Bytes a = px.run(c.data(0, in.substr(0, mid)));
    const Bytes b = px.run(c.data(mid, in.substr(mid)));
    REQUIRE_FALSE(a.empty());
    REQUIRE_FALSE(b.empty());
    CHECK(payload(a) + payload(b) == framed(query({padding_for(kEcs4)})));
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
    const std::string in = framed(query({kEcs4}));
    CHECK(px.run(c.data(5, in.substr(5))).empty());  // after a hole
    CHECK(px.count(Counter::dns_tcp_out_of_order_dropped) == 1);
    CHECK(send(px, c, in, {5}) == framed(query({padding_for(kEcs4)})));

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
    Bytes response = query({kEcs4});
    response[2] |= 0x80;
    Bytes overrun = query({kEcs4});
    overrun[overrun.size() - kEcs4.data.size() - 1] = 0x40;  // ECS length 64, past the end
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

TEST_CASE("DNS over TCP property: random queries, segments and (inconsistent) retransmissions") {
    // Strip verdict (no consent): whatever the segmentation and whatever is
    // retransmitted, the receiver's stream holds no identifier option and
    // no byte of one's data, every other byte arrives as sent, and a byte
    // forwarded twice is the same both times.
    HttpPipeline px;
    std::mt19937_64 rng(20261204);
    const std::vector<EdnsOption> pool = {kEcs4, kMac, kCookie, {65001, {}}, {8, Bytes(40, 0x5a)}, {12, Bytes(3, 0)}};
    uint64_t evasions = 0, evasions_dropped = 0, straddled = 0;
    for (int round = 0; round < 400; ++round) {
        Conn c = dns_conn();
        c.sport = uint16_t(20000 + round);
        c.isn = uint32_t(rng());
        REQUIRE_FALSE(px.run(c.syn()).empty());
        // The stream, and what the receiver must see for it.
        std::string in, want;
        std::vector<std::pair<size_t, size_t>> others;  // non-identifier options: where, how long
        for (int m = 1 + int(rng() % 3); m > 0; --m) {
            std::vector<EdnsOption> opts, padded;
            for (int k = int(rng() % 4); k > 0; --k) {
                const EdnsOption& o = pool[rng() % pool.size()];
                opts.push_back(o);
                padded.push_back(o.code == 8 || o.code == 65001 ? padding_for(o) : o);
            }
            const std::string name = "q" + std::to_string(rng() % 1000) + ".example.org";
            in += framed(query(opts, name));
            want += framed(query(padded, name));
            size_t end = in.size();  // the options end the message
            for (auto o = opts.rbegin(); o != opts.rend(); ++o) {
                end -= 4 + o->data.size();
                if (o->code != 8 && o->code != 65001) others.emplace_back(end, 4 + o->data.size());
            }
        }
        std::string got(in.size(), '\0');
        std::vector<bool> have(in.size(), false);
        std::vector<std::pair<size_t, size_t>> sent;  // pieces forwarded
        auto deliver = [&](size_t off, const std::string& bytes, bool evasive) {
            const Bytes f = px.run(c.data(off, bytes));
            if (f.empty()) {
                if (evasive) ++evasions_dropped;
                return false;
            }
            check_frame(f);
            const std::string p = payload(f);
            REQUIRE(p.size() == bytes.size());
            for (size_t k = 0; k < p.size(); ++k) {
                if (have[off + k]) {
                    INFO("round " << round << " byte " << off + k << " forwarded twice, different");
                    REQUIRE(got[off + k] == p[k]);
                } else {
                    have[off + k] = true;
                    got[off + k] = p[k];
                }
            }
            if (!evasive) sent.emplace_back(off, bytes.size());
            return true;
        };
        for (size_t off = 0; off < in.size();) {
            const size_t n = std::min(in.size() - off, size_t(rng() % 4 == 0 ? 1 + rng() % 3 : 1 + rng() % 120));
            REQUIRE(deliver(off, in.substr(off, n), false));
            off += n;
            while (rng() % 3 == 0) {  // a retransmission: as sent, changed, or with other boundaries
                // One of the last 4 segments sent (the fingerprints kept).
                const size_t back = std::min<size_t>(sent.size(), 4);
                const auto [a, len] = sent[sent.size() - 1 - rng() % back];
                std::string bytes = in.substr(a, len);
                const int kind = int(rng() % 3);
                if (kind == 1) {
                    const size_t at = rng() % len;
                    bytes[at] = static_cast<char>(static_cast<uint8_t>(bytes[at]) ^
                                                  static_cast<uint8_t>(1 + rng() % 255));
                    ++evasions;
                    deliver(a, bytes, true);
                } else if (kind == 2 && len > 1) {
                    deliver(a + 1, in.substr(a + 1, len - 1), true);  // part of a segment: dropped
                } else {
                    // As sent: forwarded, unless the record of options made
                    // Padding (8) has forgotten one in it.
                    const uint64_t past = px.count(Counter::dns_tcp_retransmit_dropped);
                    if (!deliver(a, bytes, false)) REQUIRE(px.count(Counter::dns_tcp_retransmit_dropped) == past + 1);
                }
            }
        }
        INFO("round " << round);
        // What differs from `want` may only be a non-identifier option whose
        // code was cut between segments after a first byte that could begin
        // an identifier's: it is Padding too (zeroed, its length kept).
        for (const auto& [at, n] : others) {
            if (got.compare(at, n, want, at, n) == 0) continue;
            CHECK(got.substr(at, 2) == std::string("\x00\x0c", 2));
            CHECK(got.substr(at + 2, 2) == want.substr(at + 2, 2));
            CHECK(got.substr(at + 4, n - 4) == std::string(n - 4, '\0'));
            got.replace(at, n, want, at, n);
            ++straddled;
        }
        CHECK(got == want);
        px.run(c.data(in.size(), "", test::FIN | test::ACK));
    }
    MESSAGE(evasions << " inconsistent retransmissions, " << evasions_dropped << " dropped (with partial ones); "
                     << px.count(Counter::dns_tcp_retransmit_inconsistent) << " inconsistent, "
                     << px.count(Counter::dns_tcp_retransmitted) << " retransmissions forwarded");
    CHECK(px.count(Counter::dns_tcp_retransmit_inconsistent) > 0);
    CHECK(px.count(Counter::dns_tcp_retransmit_unverified) > 0);
    CHECK(px.count(Counter::dns_tcp_retransmitted) > 0);
    CHECK(px.count(Counter::dns_malformed_record) == 0);
    // Options already Padding count when cut so too, but change nothing.
    CHECK(straddled > 0);
    CHECK(straddled <= px.count(Counter::dns_tcp_padded_straddling));
}
