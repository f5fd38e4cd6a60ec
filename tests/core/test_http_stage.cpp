// The HTTP stage through optgate::Worker with real frames: verdicts, TCP
// sequence handling, flows, fragments, counters. Every rewritten frame's
// checksums are checked with the packet builder's own code.
#include <doctest/doctest.h>

#include <map>

#include "core/pseudonym.hpp"
#include "test_http_fixture.hpp"
#include "test_http_util.hpp"

using namespace optgate;
using namespace optgate::httptest;
using test::ACK;
using test::FIN;
using test::PSH;
using test::RST;
using test::SYN;

namespace {

// Sample policy: identifiers 0 X-UIDH, 1 X-MSISDN; destination slots
// 0 adnet, 1 adnet-dns, 2 metrics, 3 ads-web, 4 analytics, 5 billing, 6 none.
const std::string kReq =
    "GET /pixel.gif?id=1 HTTP/1.1\r\nHost: www.example.org\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n"
    "X-UIDH: UIDH-0123456789abcdef\r\nAccept: image/avif,image/webp,*/*\r\nX-MSISDN: 15551234567\r\n"
    "Accept-Language: en-US,en;q=0.5\r\nConnection: keep-alive\r\n\r\n";
const std::string kReqScrubbed = fill_values(kReq, {"UIDH-0123456789abcdef", "15551234567"});

std::string with_host(const std::string& host) {
    std::string r = kReq;
    r.replace(r.find("www.example.org"), 15, host);
    return r;
}

}  // namespace

TEST_CASE("strip: values overwritten in place, same length, checksums right, counted") {
    HttpPipeline px;
    const Conn c;  // 100.64.0.12 (no consent) -> adnet
    CHECK(px.run(c.syn()) == c.syn());
    const Bytes in = c.data(0, kReq);
    const Bytes out = px.run(in);
    REQUIRE(out.size() == in.size());
    CHECK(payload(out) == kReqScrubbed);
    check_frame(out);
    const auto& k = px.worker->counters();
    CHECK(px.count(Counter::http_requests) == 1);
    CHECK(px.count(Counter::http_requests_with_identifiers) == 1);
    CHECK(px.count(Counter::verdict_strip_no_consent) == 1);
    CHECK(px.count(Counter::http_rewritten) == 1);
    CHECK(px.count(Counter::rewritten) == 1);
    CHECK(k.identifier_stripped[0] == 1);
    CHECK(k.identifier_stripped[1] == 1);
    CHECK(k.destination_stripped[0] == 2);
    CHECK(k.identifier_passed[0] == 0);
    CHECK(px.count(Counter::http_conservative_packets) == 0);

    // Replaying the output (already filler) changes nothing: byte-identical.
    const Bytes again = px.run(out);
    CHECK(again == out);
}

TEST_CASE("pass: the consenting subscriber's request leaves byte-identical") {
    HttpPipeline px;
    Conn c;
    c.src = "100.64.0.10";  // advertising consent -> adnet (advertising)
    px.run(c.syn());
    const Bytes in = c.data(0, kReq);
    CHECK(px.run(in) == in);
    const auto& k = px.worker->counters();
    CHECK(px.count(Counter::verdict_pass_consent) == 1);
    CHECK(k.identifier_passed[0] == 1);
    CHECK(k.identifier_passed[1] == 1);
    CHECK(k.destination_passed[0] == 2);
    CHECK(px.count(Counter::rewritten) == 0);
}

TEST_CASE("IPv6 and VLAN-tagged frames") {
    HttpPipeline px;
    Conn strip;
    strip.v6 = true;
    strip.src = "2001:db8:1000:2::1";  // not in the consent table
    strip.dst = "2001:db8:ad::5";
    strip.vlans = {100, 200};
    Conn pass = strip;
    pass.src = "2001:db8:1000:1:aaaa::1";  // the /64 with advertising consent
    px.run(strip.syn());
    px.run(pass.syn());
    const Bytes a = px.run(strip.data(0, kReq));
    CHECK(payload(a) == kReqScrubbed);
    check_frame(a);
    CHECK(px.count(Counter::verdict_strip_unknown_subscriber) == 1);
    const Bytes b = pass.data(0, kReq);
    CHECK(px.run(b) == b);
    CHECK(px.count(Counter::verdict_pass_consent) == 1);

    Conn v4;
    v4.vlans = {7};
    px.run(v4.syn());
    const Bytes c = px.run(v4.data(0, kReq));
    CHECK(payload(c) == kReqScrubbed);
    check_frame(c);
}

TEST_CASE("hostname collectors: the Host before the identifier decides") {
    HttpPipeline px;
    SUBCASE("hostname-only collector, consent for its purpose: pass") {
        Conn c;
        c.src = "100.64.0.11";  // analytics
        c.dst = "198.18.7.7";   // no collector by address
        px.run(c.syn());
        const Bytes in = c.data(0, with_host("cdn.metrics.example"));
        CHECK(px.run(in) == in);
        CHECK(px.count(Counter::verdict_pass_consent) == 1);
        CHECK(px.worker->counters().destination_passed[2] == 2);
    }
    SUBCASE("the same, Host after the identifier: no collector, strip") {
        Conn c;
        c.src = "100.64.0.11";
        c.dst = "198.18.7.7";
        px.run(c.syn());
        const std::string req = "GET / HTTP/1.1\r\nX-UIDH: late-host-id\r\nHost: cdn.metrics.example\r\n\r\n";
        CHECK(payload(px.run(c.data(0, req))) == fill_values(req, {"late-host-id"}));
        CHECK(px.count(Counter::verdict_strip_no_collector) == 1);
        CHECK(px.worker->counters().destination_stripped[6] == 1);
    }
    SUBCASE("a host rule wins over the address rule behind it") {
        // 198.51.100.0/24: ads-web (advertising, host ads.example.net) before analytics.
        Conn c;
        c.src = "100.64.0.11";  // analytics only
        c.dst = "198.51.100.7";
        px.run(c.syn());
        const Bytes out = px.run(c.data(0, with_host("ads.example.net") + with_host("other.example")));
        const std::string expected = fill_values(with_host("ads.example.net"),
                                                 {"UIDH-0123456789abcdef", "15551234567"}) +
                                     with_host("other.example");
        CHECK(payload(out) == expected);
        CHECK(px.count(Counter::verdict_strip_no_consent) == 1);  // ads-web: no advertising consent
        CHECK(px.count(Counter::verdict_pass_consent) == 1);      // analytics by address
        CHECK(px.worker->counters().destination_stripped[3] == 2);
        CHECK(px.worker->counters().destination_passed[4] == 2);
    }
}

TEST_CASE("every split point of a request, and one byte per segment, give the same bytes") {
    HttpPipeline px;
    Conn c;
    for (size_t k = 1; k < kReq.size(); k += 1) {
        c.isn = uint32_t(1000 + 7919 * k);  // a new connection on the same 4-tuple each time
        px.run(c.syn());
        const Bytes a = px.run(c.data(0, kReq.substr(0, k)));
        const Bytes b = px.run(c.data(k, kReq.substr(k)));
        INFO("split at " << k);
        REQUIRE(!a.empty());
        REQUIRE(!b.empty());
        CHECK(payload(a) + payload(b) == kReqScrubbed);
        check_frame(a);
        check_frame(b);
    }
    c.isn = 77;
    px.run(c.syn());
    std::string out;
    for (const auto& s : test::segment_stream(kReq, c.isn + 1, {1})) {
        const Bytes f = px.run(
            c.segment(s.seq, std::string_view(reinterpret_cast<const char*>(s.payload.data()), s.payload.size())));
        REQUIRE(!f.empty());
        check_frame(f);
        out += payload(f);
    }
    CHECK(out == kReqScrubbed);
    CHECK(px.count(Counter::http_conservative_flows) == 0);
    CHECK(px.count(Counter::http_flows_reused) == kReq.size() - 1);  // every SYN but the first
}

TEST_CASE("retransmissions get the same rewrite: the same segments, or several in one") {
    HttpPipeline px;
    const Conn c;
    px.run(c.syn());
    const size_t mid = kReq.find("abcdef");  // inside the X-UIDH value
    const Bytes a = px.run(c.data(0, kReq.substr(0, mid)));
    const Bytes b = px.run(c.data(mid, kReq.substr(mid)));
    CHECK(payload(a) + payload(b) == kReqScrubbed);
    // The same segments again.
    CHECK(px.run(c.data(0, kReq.substr(0, mid))) == a);
    CHECK(px.run(c.data(mid, kReq.substr(mid))) == b);
    // Both in one (Linux collapses small segments when it retransmits).
    const Bytes ab = px.run(c.data(0, kReq));
    CHECK(payload(ab) == kReqScrubbed);
    check_frame(ab);
    CHECK(px.count(Counter::http_retransmitted) == 3);
    CHECK(px.count(Counter::http_requests) == 1);

    // Old and new bytes in one segment: the old part from the record, the new part parsed.
    const std::string next = "GET /2 HTTP/1.1\r\nX-UIDH: second-request\r\n\r\n";
    const Bytes both = px.run(c.data(mid, kReq.substr(mid) + next));
    CHECK(payload(both) == kReqScrubbed.substr(mid) + fill_values(next, {"second-request"}));
    check_frame(both);
    CHECK(px.count(Counter::http_requests) == 2);
}

TEST_CASE("a retransmission covering a forwarded segment only in part cannot be checked: dropped") {
    HttpPipeline px;
    const Conn c;
    px.run(c.syn());
    const size_t mid = kReq.find("abcdef");
    REQUIRE_FALSE(px.run(c.data(0, kReq.substr(0, mid))).empty());
    REQUIRE_FALSE(px.run(c.data(mid, kReq.substr(mid))).empty());
    uint64_t dropped = 0;
    for (size_t from : {size_t(0), size_t(20), mid - 3, mid + 2}) {
        for (size_t len : {size_t(1), size_t(9), size_t(40), kReq.size() - from}) {
            if (from + len > kReq.size()) continue;
            const bool whole_segments = (from == 0 && (len == mid || len == kReq.size())) || from == mid;
            if (whole_segments) continue;
            INFO("from " << from << " len " << len);
            CHECK(px.run(c.data(from, kReq.substr(from, len))).empty());
            ++dropped;
        }
    }
    CHECK(px.count(Counter::http_retransmit_unverified) == dropped);
    CHECK(px.count(Counter::http_retransmitted) == 0);
}

TEST_CASE("a retransmission with other bytes than were forwarded is dropped (insertion, evasion)") {
    HttpPipeline px;
    const Conn c;
    px.run(c.syn());
    const std::string first = "GET / HTTP/1.1\r\nHost: a.example\r\nX-Fooo: not-an-identifier\r\n";
    const std::string rest = "Accept: */*\r\n\r\n";
    const Bytes a = px.run(c.data(0, first));
    CHECK(payload(a) == first);  // nothing to scrub
    REQUIRE_FALSE(px.run(c.data(first.size(), rest)).empty());
    // The same positions now say X-UIDH: the receiver may keep either copy.
    std::string evasion = first;
    evasion.replace(evasion.find("X-Fooo: not-an-identifier"), 25, "X-UIDH: 0123456789abcdefg");
    REQUIRE(evasion.size() == first.size());
    CHECK(px.run(c.data(0, evasion)).empty());
    CHECK(px.count(Counter::http_retransmit_inconsistent) == 1);
    // One changed byte anywhere is enough, also with new bytes after it.
    for (size_t k = 0; k < first.size(); k += 7) {
        std::string changed = first;
        changed[k] = char(changed[k] ^ 0x20);
        CHECK(px.run(c.data(0, changed)).empty());
    }
    CHECK(px.count(Counter::http_retransmit_inconsistent) == 1 + (first.size() + 6) / 7);
    // The honest retransmission still goes through, unchanged.
    CHECK(px.run(c.data(0, first)) == a);

    // A retransmission that differs only inside a scrubbed value reads, once
    // scrubbed, as what was forwarded: it goes, scrubbed.
    HttpPipeline px2;
    px2.run(c.syn());
    const Bytes s = px2.run(c.data(0, kReq));
    std::string other = kReq;
    other.replace(other.find("UIDH-0123456789abcdef"), 21, "another-value-of-21b");
    other.insert(other.find("another-value-of-21b") + 20, "!");
    REQUIRE(other.size() == kReq.size());
    CHECK(px2.run(c.data(0, other)) == s);
    CHECK(px2.count(Counter::http_retransmit_inconsistent) == 0);
}

TEST_CASE("retransmitted body bytes are not checked: the parser never read them") {
    HttpPipeline px;
    const Conn c;
    px.run(c.syn());
    const std::string head = "POST /up HTTP/1.1\r\nContent-Length: 20\r\n\r\n";
    const std::string body = "aaaaaaaaaabbbbbbbbbb";
    REQUIRE_FALSE(px.run(c.data(0, head)).empty());
    REQUIRE_FALSE(px.run(c.data(head.size(), body.substr(0, 10))).empty());
    REQUIRE_FALSE(px.run(c.data(head.size() + 10, body.substr(10))).empty());
    // Other bytes, other boundaries: body bytes only.
    CHECK_FALSE(px.run(c.data(head.size() + 3, "X-UIDH: zzzzz")).empty());
    // But the header segment is checked.
    std::string changed = head;
    changed[1] = 'U';
    CHECK(px.run(c.data(0, changed)).empty());
    CHECK(px.count(Counter::http_retransmit_inconsistent) == 1);
}

TEST_CASE("a retransmission reaching back past the record is dropped") {
    HttpPipeline px;
    const Conn c;
    px.run(c.syn());
    std::string req = "GET / HTTP/1.1\r\n";
    for (int i = 0; i < 6; ++i) req += "X-UIDH: value-" + std::to_string(i) + "\r\nAccept: a\r\n";
    req += "\r\n";
    const Bytes first = px.run(c.data(0, req));
    CHECK(payload(first).find("value") == std::string::npos);
    CHECK(px.run(c.data(0, req)).empty());  // the first scrubbed range was forgotten
    CHECK(px.count(Counter::http_retransmit_dropped) == 1);

    // Four segments later, the first one's fingerprint is forgotten too.
    const std::string get = "GET /n HTTP/1.1\r\nAccept: a\r\n\r\n";
    size_t at = req.size();
    std::vector<Bytes> sent;
    for (int i = 0; i < 5; ++i, at += get.size()) sent.push_back(px.run(c.data(at, get)));
    CHECK(px.run(c.data(req.size(), get)).empty());
    CHECK(px.count(Counter::http_retransmit_dropped) == 2);
    // The last four are still remembered.
    CHECK(px.run(c.data(req.size() + get.size(), get)) == sent[1]);
}

TEST_CASE("out of order inside a header block: dropped until the hole is filled") {
    HttpPipeline px;
    const Conn c;
    px.run(c.syn());
    const size_t mid = kReq.find("X-UIDH") + 3;
    CHECK(px.run(c.data(mid, kReq.substr(mid))).empty());
    CHECK(px.count(Counter::http_out_of_order_dropped) == 1);
    const Bytes a = px.run(c.data(0, kReq.substr(0, mid)));
    const Bytes b = px.run(c.data(mid, kReq.substr(mid)));  // TCP resends it
    CHECK(payload(a) + payload(b) == kReqScrubbed);
}

TEST_CASE("out of order inside a Content-Length body: the hole is skipped") {
    HttpPipeline px;
    const Conn c;
    px.run(c.syn());
    const std::string body(3000, 'b');
    const std::string head = "POST /upload HTTP/1.1\r\nX-UIDH: post-id\r\nContent-Length: 3000\r\n\r\n";
    const std::string next = "GET /after HTTP/1.1\r\nX-MSISDN: 15550001111\r\n\r\n";
    CHECK(payload(px.run(c.data(0, head + body.substr(0, 1000)))) ==
          fill_values(head, {"post-id"}) + body.substr(0, 1000));
    const size_t at2 = head.size() + 2000;
    const Bytes late = c.data(at2, body.substr(2000) + next);  // skips body bytes 1000..1999
    CHECK(payload(px.run(late)) == body.substr(2000) + fill_values(next, {"15550001111"}));
    CHECK(px.count(Counter::http_out_of_order_skipped) == 1);
    const Bytes hole = c.data(head.size() + 1000, body.substr(1000, 1000));
    CHECK(px.run(hole) == hole);  // old bytes now, nothing scrubbed there
    CHECK(px.count(Counter::http_requests) == 2);
}

TEST_CASE("SYN on a used 4-tuple starts over; RST forgets; no SYN means conservative mode") {
    HttpPipeline px;
    Conn c;
    px.run(c.syn());
    px.run(c.data(0, "GET / HTTP/1.1\r\nAccept: a\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n"));
    // Same 4-tuple, new ISN: the old flow's state (inside a body) must not apply.
    c.isn = 555555;
    px.run(c.syn());
    CHECK(px.count(Counter::http_flows_reused) == 1);
    CHECK(payload(px.run(c.data(0, kReq))) == kReqScrubbed);
    CHECK(px.count(Counter::http_conservative_flows) == 0);

    CHECK(px.run(c.data(kReq.size(), "", RST | ACK)).size() > 0);
    CHECK(px.count(Counter::http_flows_reset) == 1);
    // After RST the 4-tuple is unknown: its next bytes are read conservatively.
    const std::string mid = "ept: a\r\nX-UIDH: after-rst\r\n\r\n";
    CHECK(payload(px.run(c.data(kReq.size() + 10, mid))) == fill_values(mid, {"after-rst"}));
    CHECK(px.count(Counter::http_midstream_flows) == 1);
    CHECK(px.count(Counter::http_conservative_packets) == 1);
}

TEST_CASE("a new connection reusing the 4-tuple and the ISN is parsed, not taken for a retransmission") {
    HttpPipeline px;
    const Conn c;
    const std::string a = "GET /a HTTP/1.1\r\nAccept: */*\r\nX-UIDH: first-conn\r\n\r\n";
    const std::string b = "GET /b HTTP/1.1\r\nX-MSISDN: 15551112222\r\nAccept: */*\r\n\r\n";
    px.run(c.syn());
    CHECK(payload(px.run(c.data(0, a))) == fill_values(a, {"first-conn"}));
    px.run(c.syn());  // same ISN
    CHECK(payload(px.run(c.data(0, b))) == fill_values(b, {"15551112222"}));
    CHECK(px.count(Counter::http_retransmitted) == 0);
    CHECK(px.count(Counter::http_flows_reused) == 1);
}

TEST_CASE("a flow first seen mid-stream: conservative for its whole life, host unknown") {
    HttpPipeline px;
    Conn c;
    const std::string tail = "-Agent: x\r\nX-MSISDN: 15557654321\r\n\r\nGET / HTTP/1.1\r\nx-uidh: second\r\n\r\n";
    const Bytes out = px.run(c.data(50, tail));
    CHECK(payload(out) == fill_values(tail, {"15557654321", "second"}));
    check_frame(out);
    CHECK(px.count(Counter::http_midstream_flows) == 1);
    CHECK(px.count(Counter::verdict_strip_no_consent) == 1);  // one verdict per packet in conservative mode
    CHECK(px.worker->counters().identifier_stripped[1] == 1);
    CHECK(px.worker->counters().identifier_stripped[0] == 1);

    // A name split across segments in conservative mode.
    const size_t at = 50 + tail.size();
    CHECK(payload(px.run(c.data(at, "GET / HTTP/1.1\r\nX-UI"))) == "GET / HTTP/1.1\r\nX-UI");
    CHECK(payload(px.run(c.data(at + 20, "DH: split-name\r\n\r\n"))) == "DH: xxxxxxxxxx\r\n\r\n");

    // Hostname collectors need a host: mid-stream they never match (strip_out_of_sync).
    Conn m;
    m.src = "100.64.0.11";
    m.dst = "198.18.7.7";
    const std::string req = "GET / HTTP/1.1\r\nHost: cdn.metrics.example\r\nX-UIDH: no-sync\r\n\r\n";
    CHECK(payload(px.run(m.data(0, req))) == fill_values(req, {"no-sync"}));
    CHECK(px.count(Counter::verdict_strip_out_of_sync) == 1);

    // An address collector with consent passes in conservative mode too.
    Conn p;
    p.src = "100.64.0.10";
    const Bytes in = p.data(0, req);
    CHECK(px.run(in) == in);
}

TEST_CASE("a mid-stream flow's bytes from before its first segment are scanned on their own") {
    HttpPipeline px;
    const Conn c;
    const std::string stream =
        "GET / HTTP/1.1\r\nX-UIDH: early-id\r\nAccept: a\r\n\r\nGET / HTTP/1.1\r\nX-UIDH: late-id\r\n\r\n";
    const size_t cut = stream.find("GET", 5);
    CHECK(payload(px.run(c.data(cut, stream.substr(cut)))) == fill_values(stream.substr(cut), {"late-id"}));
    CHECK(payload(px.run(c.data(0, stream.substr(0, cut)))) == fill_values(stream.substr(0, cut), {"early-id"}));
    CHECK(px.count(Counter::http_midstream_unseen) == 1);
}

TEST_CASE("keep-alive: an opt-out reaches the next request; a request keeps its start's verdict") {
    HttpPipeline px;
    Conn c;
    c.src = "100.64.0.10";
    px.run(c.syn());
    const std::string r1 = "GET /1 HTTP/1.1\r\nHost: a.example\r\n";
    const std::string r1b = "X-UIDH: consented\r\n\r\n";
    const Bytes s1 = c.data(0, r1);
    CHECK(px.run(s1) == s1);
    px.consent("100.64.0.10", 0);  // opt-out arrives while request 1 is half sent
    const Bytes s2 = c.data(r1.size(), r1b);
    CHECK(px.run(s2) == s2);  // request 1 keeps the verdict of its first byte
    const std::string r2 = "GET /2 HTTP/1.1\r\nX-UIDH: consented\r\n\r\n";
    CHECK(payload(px.run(c.data(r1.size() + r1b.size(), r2))) == fill_values(r2, {"consented"}));
    CHECK(px.count(Counter::verdict_pass_consent) == 1);
    CHECK(px.count(Counter::verdict_strip_no_consent) == 1);
}

TEST_CASE("pure ACKs are not looked at; SYN data (TCP Fast Open) is parsed; FIN closes") {
    HttpPipeline px;
    const Conn c;
    const Bytes syn_data = c.segment(c.isn, kReq, SYN);
    const Bytes out = px.run(syn_data);
    CHECK(payload(out) == kReqScrubbed);
    check_frame(out);
    const Bytes ack = c.data(kReq.size(), "", ACK);
    CHECK(px.run(ack) == ack);
    CHECK(px.count(Counter::http_segments) == 1);
    const Bytes fin = c.data(kReq.size(), "", FIN | ACK);
    CHECK(px.run(fin) == fin);
}

TEST_CASE("flow table: full buckets, eviction order, idle timeout, and no leak after eviction") {
    HttpStageConfig cfg;
    cfg.flow_capacity = 8;  // one bucket: every flow competes for the same 8 ways
    cfg.idle_timeout_ns = 120 * kSecond;
    HttpPipeline px(test::sample_policy(), cfg);
    std::vector<Conn> conns(8);
    const std::string open = "GET / HTTP/1.1\r\nX-UIDH: half";  // inside an identifier value
    for (size_t i = 0; i < conns.size(); ++i) {
        conns[i].src = "100.64.0.10";  // consent: values pass, so no scrubbed ranges to keep
        conns[i].sport = uint16_t(41000 + i);
        px.run(conns[i].syn());
        const Bytes f = conns[i].data(0, open);
        CHECK(px.run(f) == f);
    }
    // Every way is inside an identifier line: no room, the new SYN is dropped.
    Conn late;
    late.sport = 42000;
    CHECK(px.run(late.syn()).empty());
    CHECK(px.count(Counter::http_flow_table_full) == 1);

    // Flow 3 finishes its request: it may now be evicted, and is.
    const std::string rest = "-value\r\n\r\n";
    const Bytes r3 = conns[3].data(open.size(), rest);
    CHECK(px.run(r3) == r3);
    CHECK_FALSE(px.run(late.syn()).empty());
    CHECK(px.count(Counter::http_flows_evicted) == 1);
    // Flow 3 comes back after an opt-out: unknown now, it takes the way of
    // `late` (between requests, so evictable) and is read conservatively.
    px.consent("100.64.0.10", 0);
    const std::string again = "GET /again HTTP/1.1\r\nX-UIDH: after-eviction\r\n\r\n";
    const size_t off = open.size() + rest.size();
    CHECK(payload(px.run(conns[3].data(off, again))) == fill_values(again, {"after-eviction"}));
    CHECK(px.count(Counter::http_midstream_flows) == 1);
    CHECK(px.count(Counter::http_flows_evicted) == 2);

    // Past the idle timeout, flows stopped inside an identifier line keep
    // their entries (for an hour): losing one could let the rest of its
    // value through. New flows take flow 3's way (between requests, expired)
    // and then push each other out; the seven stay.
    const uint64_t later = 122 * kSecond;
    const uint64_t evicted_before = px.count(Counter::http_flows_evicted);
    for (uint16_t i = 0; i < 4; ++i) {
        Conn fresh;
        fresh.sport = uint16_t(43000 + i);
        CHECK_FALSE(px.run(fresh.syn(), later).empty());
    }
    CHECK(px.count(Counter::http_flows_evicted) == evicted_before + 3);
    // Each of the seven that goes on is parsed from where it stopped, not
    // met mid-stream (its value's verdict was taken with consent, at the name).
    const uint64_t midstream_before = px.count(Counter::http_midstream_flows);
    for (size_t i : {0, 1, 2, 4, 5, 6, 7}) {
        const Bytes r = conns[i].data(open.size(), rest);
        CHECK(px.run(r, later) == r);
    }
    CHECK(px.count(Counter::http_midstream_flows) == midstream_before);
}

TEST_CASE("a flow stopped inside an identifier line keeps its entry for an hour, then may go") {
    HttpStageConfig cfg;
    cfg.flow_capacity = 8;
    cfg.idle_timeout_ns = 120 * kSecond;
    HttpPipeline px(test::sample_policy(), cfg);
    std::vector<Conn> conns(8);
    const std::string open = "GET / HTTP/1.1\r\nX-UIDH: half";
    for (size_t i = 0; i < conns.size(); ++i) {
        conns[i].sport = uint16_t(41000 + i);  // no consent: scrubbed as it streams
        px.run(conns[i].syn(), kSecond);
        px.run(conns[i].data(0, open), kSecond);
    }
    Conn late;
    late.sport = 42000;
    CHECK(px.run(late.syn(), 600 * kSecond).empty());  // idle 10 minutes: still kept
    CHECK(px.count(Counter::http_flow_table_full) == 1);
    // The rest of a value sent after ten minutes is still scrubbed.
    const std::string rest = "-of-the-value\r\n\r\n";
    CHECK(payload(px.run(conns[2].data(open.size(), rest), 600 * kSecond)) ==
          std::string(rest.size() - 4, 'x') + "\r\n\r\n");
    // After an hour of idleness the entries may be reused (as expired).
    const uint64_t evicted_before = px.count(Counter::http_flows_evicted);
    CHECK_FALSE(px.run(late.syn(), 3700 * kSecond).empty());
    CHECK(px.count(Counter::http_flows_evicted) == evicted_before);
}

TEST_CASE("a flow that scrubbed bytes keeps its record for 30 s of idleness") {
    HttpStageConfig cfg;
    cfg.flow_capacity = 8;
    HttpPipeline px(test::sample_policy(), cfg);
    std::vector<Conn> conns(8);
    const std::string req = "GET / HTTP/1.1\r\nX-UIDH: scrubbed-value\r\n\r\n";
    for (size_t i = 0; i < conns.size(); ++i) {
        conns[i].sport = uint16_t(41000 + i);
        px.run(conns[i].syn(), kSecond);
        CHECK(payload(px.run(conns[i].data(0, req), kSecond)) == fill_values(req, {"scrubbed-value"}));
    }
    // Between requests, but each holds a scrubbed range that a retransmission may need.
    Conn late;
    late.sport = 42000;
    CHECK(px.run(late.syn(), 20 * kSecond).empty());
    CHECK(px.count(Counter::http_flow_table_full) == 1);
    // A retransmission still gets the rewrite.
    CHECK(payload(px.run(conns[5].data(0, req), 20 * kSecond)) == fill_values(req, {"scrubbed-value"}));
    // After 30 s without a segment, the record may go.
    CHECK_FALSE(px.run(late.syn(), 32 * kSecond).empty());
    CHECK(px.count(Counter::http_flows_evicted) == 1);
}

TEST_CASE("a flow closed more than 5 s ago is reused before a live one") {
    HttpStageConfig cfg;
    cfg.flow_capacity = 8;
    HttpPipeline px(test::sample_policy(), cfg);
    std::vector<Conn> conns(8);
    for (size_t i = 0; i < conns.size(); ++i) {
        conns[i].sport = uint16_t(41000 + i);
        px.run(conns[i].syn(), kSecond * (i + 1));
        px.run(conns[i].data(0, "GET / HTTP/1.1\r\n\r\n"), kSecond * (i + 1));
    }
    px.run(conns[6].data(18, "", FIN | ACK), 20 * kSecond);  // the newest but closed
    Conn late;
    late.sport = 42000;
    CHECK_FALSE(px.run(late.syn(), 26 * kSecond).empty());
    // conns[6] was reused; conns[0] (the oldest live one) is still known: its
    // next request is parsed normally, not in conservative mode.
    const std::string r = "GET / HTTP/1.1\r\nX-UIDH: still-known\r\n\r\n";
    CHECK(payload(px.run(conns[0].data(18, r), 27 * kSecond)) == fill_values(r, {"still-known"}));
    CHECK(px.count(Counter::http_conservative_flows) == 0);
    CHECK(px.count(Counter::http_flows_evicted) == 0);
    // Within the grace period a closed flow ranks with the live ones (oldest first).
    px.run(conns[1].data(18, "", FIN | ACK), 28 * kSecond);
    Conn later;
    later.sport = 42001;
    CHECK_FALSE(px.run(later.syn(), 29 * kSecond).empty());
    CHECK(px.count(Counter::http_flows_evicted) == 1);  // conns[2], seen last at 3 s, not conns[1]
    const Bytes fin_retransmit = conns[1].data(0, "GET / HTTP/1.1\r\n\r\n");
    CHECK(px.run(fin_retransmit, 29 * kSecond) == fin_retransmit);
    CHECK(px.count(Counter::http_retransmitted) == 1);
}

TEST_CASE("a fragmented segment is reassembled and read in its flow like any other segment") {
    SUBCASE("strip verdict, IPv4 and IPv6: scrubbed, and the flow's next segment continues the stream") {
        for (const bool v6 : {false, true}) {
            CAPTURE(v6);
            HttpPipeline px;
            Conn c;
            if (v6) {
                c.v6 = true;
                c.src = "2001:db8:1000:2::1";
                c.dst = "2001:db8:ad::5";
            }
            px.run(c.syn());
            const Bytes seg = c.data(0, kReq);
            const auto frags = v6 ? test::fragment_ipv6(seg, 64, 0x1234) : test::fragment_ipv4(seg, 64);
            REQUIRE(frags.size() > 3);
            for (const auto& f : frags) CHECK(px.run(f).empty());  // held, then emitted
            REQUIRE(px.emitted.size() == frags.size());
            for (const auto& f : px.emitted) check_frame(f);
            const auto whole = test::reassemble(px.emitted);
            REQUIRE(whole);
            check_frame(*whole);
            CHECK(payload(*whole) == kReqScrubbed);
            CHECK(px.count(Counter::http_midstream_flows) == 0);  // read in its flow, from its SYN
            const Bytes next = px.run(c.data(kReq.size(), kReq));
            CHECK(payload(next) == kReqScrubbed);
        }
    }
    SUBCASE("pass by address, but the Host inside the fragments selects a collector without consent") {
        HttpPipeline px;
        Conn c;
        c.src = "100.64.0.11";   // analytics: passes to 198.51.100.0/24 by address...
        c.dst = "198.51.100.7";  // ...but with "Host: ads.example.net" it is ads-web (advertising)
        px.run(c.syn());
        const std::string req = with_host("ads.example.net");
        for (const auto& f : test::fragment_ipv4(c.data(0, req), 64)) CHECK(px.run(f).empty());
        const auto whole = test::reassemble(px.emitted);
        REQUIRE(whole);
        CHECK(payload(*whole) == fill_values(req, {"UIDH-0123456789abcdef", "15551234567"}));
    }
    SUBCASE("pass verdict: the fragments leave as they came") {
        HttpPipeline px;
        Conn c;
        c.src = "100.64.0.10";
        px.run(c.syn());
        const auto frags = test::fragment_ipv4(c.data(0, kReq), 64);
        for (const auto& f : frags) CHECK(px.run(f).empty());
        CHECK(px.emitted == frags);
    }
}

TEST_CASE("bail-outs are counted and the flow goes on in conservative mode") {
    HttpPipeline px;
    struct Case {
        std::string stream;
        Counter why;
    };
    using namespace std::string_literals;
    const std::vector<Case> cases = {
        {"CONNECT ads.example:443 HTTP/1.1\r\nHost: ads.example:443\r\n\r\n\x16\x03\x01\x00\x05hello\nX-UIDH: v\r\n"s,
         Counter::http_bail_connect},
        {"GET /chat HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x85\nX-UIDH: v\r\n"s,
         Counter::http_bail_upgrade},
        {"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00\nX-UIDH: v\r\n"s, Counter::http_bail_h2},
        {"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\nX-UIDH: v\r\n"s, Counter::http_bail_tls},
        {"SSH-2.0-OpenSSH_9.2p1\r\nX-UIDH: v\r\n"s, Counter::http_bail_non_http},
    };
    uint16_t port = 45000;
    for (const auto& k : cases) {
        Conn c;
        c.sport = port++;
        px.run(c.syn());
        const Bytes out = px.run(c.data(0, k.stream));
        CHECK(payload(out) == k.stream.substr(0, k.stream.size() - 3) + "x\r\n");
        CHECK(px.count(k.why) == 1);
    }
    CHECK(px.count(Counter::http_conservative_flows) == cases.size());
}

TEST_CASE("a new policy applies to the next bytes, and a name cut by the change is scrubbed") {
    HttpPipeline px;
    const Conn c;
    px.run(c.syn());
    const std::string a = "GET / HTTP/1.1\r\nX-Foo";
    CHECK(payload(px.run(c.data(0, a))) == a);
    // New policy: X-Foo-Id is an identifier now; X-MSISDN no longer is.
    Policy p = test::sample_policy();
    p.identifiers[1].header = "X-Foo-Id";
    auto rt = Runtime::compile(p);
    REQUIRE(rt);
    auto table = px.enforcement.make_table();
    table->upsert(px.key("100.64.0.12"), 0);
    px.enforcement.install(std::move(rt), std::move(table));
    const std::string b = "-Id: cut-by-reload\r\nX-MSISDN: 15550000000\r\nX-Foo-Id: whole\r\n\r\n";
    CHECK(payload(px.run(c.data(a.size(), b))) == fill_values(b, {"cut-by-reload", "whole"}));
    CHECK(px.count(Counter::http_policy_resync) == 1);
}

TEST_CASE("Global Privacy Control: consented identifiers stripped in the signal's segment, counted, per subscriber") {
    HttpPipeline px;
    Conn c;
    c.src = "100.64.0.10";  // advertising consent -> adnet (advertising)
    px.run(c.syn());
    // The identifier before the signal in the same segment is still reached.
    const std::string r1 =
        "GET /1 HTTP/1.1\r\nHost: www.example.org\r\nX-UIDH: uidh-1\r\nSec-GPC: 1\r\nX-MSISDN: 4915\r\n\r\n";
    const Bytes in1 = c.data(0, r1);
    const Bytes out1 = px.run(in1);
    CHECK(payload(out1) == fill_values(r1, {"uidh-1", "4915"}));
    check_frame(out1);
    CHECK(px.run(in1) == out1);  // a retransmission gets the same rewrite
    CHECK(px.count(Counter::http_gpc_requests) == 1);
    CHECK(px.count(Counter::http_gpc_stripped) == 2);
    CHECK(px.count(Counter::verdict_strip_gpc) == 1);
    CHECK(px.count(Counter::verdict_pass_consent) == 0);
    CHECK(px.count(Counter::http_gpc_too_late) == 0);

    // The identifier in an earlier segment has left: too late for it; the
    // one after the signal is stripped.
    const std::string r2a = "GET /2 HTTP/1.1\r\nX-UIDH: uidh-2\r\n", r2b = "Sec-GPC: 1\r\nX-MSISDN: 4916\r\n\r\n";
    const Bytes in2a = c.data(r1.size(), r2a);
    CHECK(px.run(in2a) == in2a);
    CHECK(payload(px.run(c.data(r1.size() + r2a.size(), r2b))) == fill_values(r2b, {"4916"}));
    CHECK(px.count(Counter::http_gpc_too_late) == 1);
    CHECK(px.count(Counter::verdict_pass_consent) == 1);
    CHECK(px.count(Counter::http_gpc_stripped) == 3);
    const auto& k = px.worker->counters();
    CHECK(k.identifier_stripped[0] == 1);
    CHECK(k.identifier_passed[0] == 1);
    CHECK(k.identifier_stripped[1] == 2);

    // Per subscriber: the signal's strips in the destination's Global
    // Privacy Control row, the rest under the identifiers' names.
    DisclosureDrain drain(1000);
    std::vector<Worker*> workers{px.worker.get()};
    DisclosureBatch batch;
    px.worker->idle();  // the worker runs on this thread: it must not hold up the grace period
    REQUIRE(drain.drain(px.enforcement.rcu(), workers, 2000, batch));
    std::map<std::string, std::pair<uint64_t, uint64_t>> rows;  // identifier -> (passed, stripped) to adnet
    for (const auto& e : batch.entries) {
        CHECK(e.destination == "adnet");
        rows[e.identifier] = {e.passed, e.stripped};
    }
    CHECK(rows.size() == 2);
    CHECK(rows[kGpcIdentifierName] == std::pair<uint64_t, uint64_t>{0, 3});
    CHECK(rows["Verizon UIDH"] == std::pair<uint64_t, uint64_t>{1, 0});
}

TEST_CASE("Global Privacy Control: a purpose with honour_gpc false passes; exemptions pass") {
    Policy p = test::sample_policy();
    p.purposes[0].honour_gpc = false;
    HttpPipeline px(p);
    Conn c;
    c.src = "100.64.0.10";
    px.run(c.syn());
    const std::string r = "GET / HTTP/1.1\r\nSec-GPC: 1\r\nX-UIDH: uidh-1\r\n\r\n";
    const Bytes in = c.data(0, r);
    CHECK(px.run(in) == in);
    CHECK(px.count(Counter::http_gpc_requests) == 1);
    CHECK(px.count(Counter::verdict_pass_consent) == 1);

    HttpPipeline ex;
    Conn b;
    b.dst = "203.0.113.201";  // billing exemption
    ex.run(b.syn());
    const Bytes bin = b.data(0, r);
    CHECK(ex.run(bin) == bin);
    CHECK(ex.count(Counter::verdict_pass_exempt) == 1);
}

namespace {

// The sample policy with adnet (slot 0) receiving pseudonyms under `key`.
Policy pseudonym_policy(std::optional<PseudonymKey> key) {
    Policy p = test::sample_policy();
    p.collectors[0].deliver = Collector::Delivery::pseudonym;
    p.collectors[0].pseudonym_key = key;
    return p;
}

const PseudonymKey kAdnetKey = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

std::string pseudonym_text(std::string_view v) {
    std::string out(v);
    pseudonymise(kAdnetKey, reinterpret_cast<const uint8_t*>(v.data()), v.size(),
                 reinterpret_cast<uint8_t*>(out.data()));
    return out;
}

// `text` with each value replaced by its pseudonym under kAdnetKey.
std::string pseudonymised(std::string text, const std::vector<std::string_view>& values) {
    for (std::string_view v : values) text.replace(text.find(v), v.size(), pseudonym_text(v));
    return text;
}

}  // namespace

TEST_CASE("pseudonyms: a consenting pass to a pseudonym collector gets them, retransmissions the same bytes") {
    HttpPipeline px(pseudonym_policy(kAdnetKey));
    Conn c;
    c.src = "100.64.0.10";  // advertising consent -> adnet
    px.run(c.syn());
    const Bytes in = c.data(0, kReq);
    const Bytes out = px.run(in);
    const std::string want = pseudonymised(kReq, {"UIDH-0123456789abcdef", "15551234567"});
    CHECK(payload(out) == want);
    CHECK(want != kReq);
    CHECK(read_tcp(out).seq == read_tcp(in).seq);
    check_frame(out);
    CHECK(px.count(Counter::verdict_pass_pseudonym) == 1);
    CHECK(px.count(Counter::http_pseudonymised) == 2);
    CHECK(px.worker->counters().destination_passed[0] == 2);
    // The same segment again: the same bytes out.
    CHECK(px.run(in) == out);
    CHECK(px.count(Counter::http_retransmitted) == 1);
    // A retransmission carrying another value over the pseudonymised one:
    // its pseudonym differs from what left, so it is dropped.
    std::string other = kReq;
    other.replace(other.find("15551234567"), 11, "15551234568");
    CHECK(px.run(c.data(0, other)).empty());
    CHECK(px.count(Counter::http_retransmit_inconsistent) == 1);

    // Per subscriber: a row of its own, marked as a pseudonym.
    DisclosureDrain drain(1000);
    std::vector<Worker*> workers{px.worker.get()};
    DisclosureBatch batch;
    px.worker->idle();
    REQUIRE(drain.drain(px.enforcement.rcu(), workers, 2000, batch));
    std::map<std::string, std::pair<uint64_t, uint64_t>> rows;
    for (const auto& e : batch.entries) rows[e.identifier] = {e.passed, e.stripped};
    CHECK(rows.size() == 2);
    CHECK(rows[std::string("Verizon UIDH") + kPseudonymSuffix] == std::pair<uint64_t, uint64_t>{1, 0});
    CHECK(rows[std::string("MSISDN") + kPseudonymSuffix] == std::pair<uint64_t, uint64_t>{1, 0});
}

TEST_CASE("pseudonyms: fail closed without a key, for split values, in conservative mode, and under Sec-GPC") {
    SUBCASE("no key: stripped") {
        HttpPipeline px(pseudonym_policy(std::nullopt));
        Conn c;
        c.src = "100.64.0.10";
        px.run(c.syn());
        CHECK(payload(px.run(c.data(0, kReq))) == kReqScrubbed);
        CHECK(px.count(Counter::verdict_strip_no_pseudonym_key) == 1);
    }
    SUBCASE("no consent: stripped, as ever") {
        HttpPipeline px(pseudonym_policy(kAdnetKey));
        Conn c;  // 100.64.0.12: no consent
        px.run(c.syn());
        CHECK(payload(px.run(c.data(0, kReq))) == kReqScrubbed);
        CHECK(px.count(Counter::http_pseudonymised) == 0);
    }
    SUBCASE("a value split across segments: scrubbed from its first byte, and its retransmission too") {
        HttpPipeline px(pseudonym_policy(kAdnetKey));
        Conn c;
        c.src = "100.64.0.10";
        px.run(c.syn());
        const size_t cut = kReq.find("UIDH-0123") + 4;
        const Bytes a = c.data(0, kReq.substr(0, cut));
        const Bytes out_a = px.run(a);
        const std::string out = payload(out_a) + payload(px.run(c.data(cut, kReq.substr(cut))));
        CHECK(out == pseudonymised(fill_values(kReq, {"UIDH-0123456789abcdef"}), {"15551234567"}));
        CHECK(px.count(Counter::http_pseudonym_split) == 1);
        CHECK(px.count(Counter::http_pseudonymised) == 1);
        CHECK(px.run(a) == out_a);
    }
    SUBCASE("obs-fold after a pseudonym value: the continuation is scrubbed") {
        HttpPipeline px(pseudonym_policy(kAdnetKey));
        Conn c;
        c.src = "100.64.0.10";
        px.run(c.syn());
        const std::string req = "GET / HTTP/1.1\r\nX-UIDH: first\r\n second\r\n\r\n";
        CHECK(payload(px.run(c.data(0, req))) == pseudonymised(fill_values(req, {"second"}), {"first"}));
        CHECK(px.count(Counter::http_pseudonym_split) == 1);
    }
    SUBCASE("conservative mode (a flow met mid-stream): stripped") {
        HttpPipeline px(pseudonym_policy(kAdnetKey));
        Conn c;
        c.src = "100.64.0.10";
        CHECK(payload(px.run(c.data(0, kReq))) == kReqScrubbed);
        CHECK(px.count(Counter::http_pseudonymised) == 0);
        CHECK(px.count(Counter::verdict_strip_out_of_sync) == 1);
    }
    SUBCASE("Sec-GPC after a pseudonym line in the same segment strips it, retransmission included") {
        HttpPipeline px(pseudonym_policy(kAdnetKey));
        Conn c;
        c.src = "100.64.0.10";
        px.run(c.syn());
        const std::string req = "GET / HTTP/1.1\r\nX-UIDH: uidh-1\r\nSec-GPC: 1\r\nX-MSISDN: 4915\r\n\r\n";
        const Bytes in = c.data(0, req);
        const Bytes out = px.run(in);
        CHECK(payload(out) == fill_values(req, {"uidh-1", "4915"}));
        CHECK(px.run(in) == out);
        CHECK(px.count(Counter::http_gpc_stripped) == 2);
    }
}
