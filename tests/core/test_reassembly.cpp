// Fragment reassembly (core/reassembly.hpp) through the real pipeline:
// order, duplicates, overlaps, tiny first fragments, timeouts, a full store,
// IPv4 and IPv6. What leaves is read back with the test support's own
// reassembly and checksum code (tests/support), never the core's.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>

#include "dns_builder.hpp"
#include "inet_checksum.hpp"
#include "pipeline_fixture.hpp"

using namespace optgate;
using namespace optgate::test;

namespace {

// A DNS query to the ad network's resolver (collector "adnet-dns") with an
// ECS option: stripped for 100.64.0.12 (no consent), passed for 100.64.0.10.
Bytes dns4(const char* src, uint16_t id, const EdnsOption& option = kEcs4) {
    const std::string name = std::string(60, 'a') + "." + std::string(60, 'b') + "." + std::string(60, 'c') +
                             ".example";
    return PacketBuilder()
        .ipv4(src, "198.18.0.53", {.id = id})
        .udp(40000, 53)
        .payload(dns_query({.qname = name, .edns_udp_size = 1232, .options = {option}}))
        .build();
}
// An HTTP request with X-UIDH to the ad network (collector "adnet", IPv6):
// 2001:db8:1000:1:: consents to advertising, 2001:db8:1000:9:: is unknown.
Bytes http6(const char* src, const std::string& uidh) {
    return PacketBuilder()
        .ipv6(src, "2001:db8:ad::80")
        .tcp(40000, 80, {.seq = 1, .ack = 1, .flags = ACK | PSH})
        .payload("GET /ad HTTP/1.1\r\nHost: ads.example.net\r\nX-UIDH: " + uidh + "\r\nAccept: */*\r\n" +
                 "User-Agent: " + std::string(300, 'u') + "\r\n\r\n")
        .build();
}

bool contains(const Bytes& frame, const std::string& text) {
    return std::search(frame.begin(), frame.end(), text.begin(), text.end()) != frame.end();
}

size_t ip_length(const Bytes& f) {
    // Ethernet without tags in these tests.
    return f[12] == 0x08 ? size_t(f[16] << 8 | f[17]) : 40 + size_t(f[18] << 8 | f[19]);
}

// What the pipeline makes of the whole datagram sent unfragmented.
Bytes processed_whole(const Bytes& whole) {
    PipelineFixture fx;
    return fx.run(whole);
}

void check_all_checksums(const std::vector<Bytes>& frames) {
    for (const auto& f : frames) {
        const ChecksumReport r = verify_checksums(f);
        CHECK_MESSAGE(r.ok(), r.detail << "\n" << hexdump(f));
    }
}

}  // namespace

TEST_CASE("a fragmented DNS query is reassembled, stripped and cut again at its own fragment size") {
    const Bytes whole = dns4("100.64.0.12", 7);
    const Bytes expected = processed_whole(whole);
    REQUIRE(expected == dns4("100.64.0.12", 7, padding_for(kEcs4)));  // the ECS option made Padding
    const auto frags = fragment_ipv4(whole, 64);
    REQUIRE(frags.size() >= 4);
    const size_t largest = ip_length(frags.front());

    SUBCASE("in order, reversed, and the first fragment last") {
        std::vector<std::vector<Bytes>> orders{frags, {frags.rbegin(), frags.rend()}, {}};
        orders[2].assign(frags.begin() + 1, frags.end());
        orders[2].push_back(frags.front());
        for (const auto& order : orders) {
            PipelineFixture fx;
            const auto out = fx.run_stream(order);
            REQUIRE(!out.empty());
            for (const auto& f : out) CHECK(ip_length(f) <= largest);
            check_all_checksums(out);
            const auto re = reassemble(out);
            REQUIRE(re);
            CHECK(*re == expected);
            CHECK(fx.count(Counter::fragment_held) == frags.size());
            CHECK(fx.count(Counter::fragment_reassembled) == 1);
            CHECK(fx.count(Counter::fragment_emitted) == out.size());
            CHECK(fx.count(Counter::dns_rewritten) == 1);
            CHECK(fx.worker->counters().get(Counter::packets) == frags.size());
            CHECK(fx.count(Counter::dropped) == frags.size());  // held, in `dropped`
        }
    }
    SUBCASE("one fragment per burst, across bursts") {
        PipelineFixture fx;
        std::vector<Bytes> out;
        for (const auto& f : frags)
            for (auto& o : fx.run_stream({f})) out.push_back(std::move(o));
        const auto re = reassemble(out);
        REQUIRE(re);
        CHECK(*re == expected);
    }
    SUBCASE("exact duplicates are dropped alone; the datagram completes once") {
        PipelineFixture fx;
        std::vector<Bytes> in{frags[1], frags[1], frags[0], frags[0]};
        in.insert(in.end(), frags.begin() + 2, frags.end());
        const auto out = fx.run_stream(in);
        const auto re = reassemble(out);
        REQUIRE(re);
        CHECK(*re == expected);
        CHECK(fx.count(Counter::fragment_duplicate) == 2);
        CHECK(fx.count(Counter::fragment_reassembled) == 1);
        CHECK(fx.count(Counter::fragment_dropped) == 2);
        // The next datagram with the same id (IPv4 ids wrap) is reassembled too.
        const auto again = reassemble(fx.run_stream(frags));
        REQUIRE(again);
        CHECK(*again == expected);
        CHECK(fx.count(Counter::fragment_reassembled) == 2);
    }
}

TEST_CASE("a consenting subscriber's fragmented datagram arrives byte for byte, at the same sizes") {
    SUBCASE("IPv4 DNS") {
        const Bytes whole = dns4("100.64.0.10", 8);
        const auto frags = fragment_ipv4(whole, 120);
        PipelineFixture fx;
        const auto out = fx.run_stream({frags.rbegin(), frags.rend()});
        CHECK(out == frags);  // re-cut at the same size, in order
        CHECK(fx.count(Counter::verdict_pass_consent) == 1);
    }
    SUBCASE("IPv6 HTTP") {
        const Bytes whole = http6("2001:db8:1000:1::5", "consented-uidh-value");
        const auto frags = fragment_ipv6(whole, 96, 0xabcdef01);
        PipelineFixture fx;
        std::vector<Bytes> shuffled = frags;
        std::swap(shuffled[0], shuffled[3]);
        std::swap(shuffled[1], shuffled.back());
        const auto out = fx.run_stream(shuffled);
        CHECK(out == frags);
        check_all_checksums(out);
        const auto re = reassemble(out);
        REQUIRE(re);
        CHECK(*re == whole);
    }
}

TEST_CASE("an IPv6 HTTP request on a strip verdict leaves without a byte of its identifier") {
    const std::string uidh = "secret-uidh-0123456789";
    const Bytes whole = http6("2001:db8:1000:9::5", uidh);
    const Bytes expected = processed_whole(whole);
    REQUIRE(expected != whole);
    const auto frags = fragment_ipv6(whole, 64, 77);
    PipelineFixture fx;
    const auto out = fx.run_stream({frags.rbegin(), frags.rend()});
    for (const auto& f : out) {
        CHECK(!contains(f, uidh.substr(0, 8)));
        CHECK(!contains(f, uidh.substr(uidh.size() - 8)));
    }
    check_all_checksums(out);
    const auto re = reassemble(out);
    REQUIRE(re);
    CHECK(*re == expected);
    CHECK(fx.count(Counter::http_rewritten) == 1);
}

TEST_CASE("overlapping fragments discard the whole datagram (RFC 5722), IPv4 and IPv6") {
    SUBCASE("IPv4: a fragment moved 8 bytes back over its neighbour") {
        const auto frags = fragment_ipv4(dns4("100.64.0.10", 9), 64);
        Bytes moved = frags[2];
        const size_t l3 = 14;
        const uint16_t fo = uint16_t(moved[l3 + 6] << 8 | moved[l3 + 7]);
        const uint16_t nfo = uint16_t(fo - 1);  // 8 bytes earlier: overlaps frags[1]
        moved[l3 + 6] = uint8_t(nfo >> 8);
        moved[l3 + 7] = uint8_t(nfo);
        moved[l3 + 10] = moved[l3 + 11] = 0;
        const uint16_t ck = detail::inet_checksum(&moved[l3], 20);
        moved[l3 + 10] = uint8_t(ck >> 8);
        moved[l3 + 11] = uint8_t(ck);
        PipelineFixture fx;
        std::vector<Bytes> in{frags[0], frags[1], moved};
        in.insert(in.end(), frags.begin() + 2, frags.end());  // the genuine rest: dropped too
        CHECK(fx.run_stream(in).empty());
        CHECK(fx.count(Counter::fragment_overlap) == 1);
        CHECK(fx.count(Counter::fragment_reassembled) == 0);
        CHECK(fx.count(Counter::fragment_dropped) == in.size() - 2);  // frags 0 and 1 were held, then discarded
    }
    SUBCASE("IPv6: two first fragments that disagree on the port") {
        const Bytes whole = http6("2001:db8:1000:1::5", "x");
        auto frags = fragment_ipv6(whole, 64, 5);
        Bytes other = frags[0];
        other[14 + 40 + 8 + 2] = 0x01;  // TCP destination port 80 -> 443: needs no inspection
        other[14 + 40 + 8 + 3] = 0xbb;
        PipelineFixture fx;
        CHECK(fx.run_stream({frags[0], other, frags[1]}).empty());
        CHECK(fx.count(Counter::fragment_overlap) == 1);
    }
}

TEST_CASE("a first fragment without the whole TCP/UDP header discards the datagram (RFC 1858, RFC 7112)") {
    SUBCASE("IPv4 TCP cut after 8 bytes of header") {
        const Bytes whole = PacketBuilder()
                                .ipv4("100.64.0.10", "203.0.113.5", {.id = 3})
                                .tcp(40000, 80, {.seq = 1, .flags = ACK | PSH})
                                .payload("GET / HTTP/1.1\r\nX-UIDH: tiny-fragment-uidh\r\n\r\n")
                                .build();
        const auto frags = fragment_ipv4(whole, 8);
        PipelineFixture fx;
        std::vector<Bytes> in(frags.begin() + 1, frags.end());  // the later ones first: held
        in.push_back(frags[0]);
        in.push_back(frags[1]);  // a copy after the discard: dropped
        CHECK(fx.run_stream(in).empty());
        CHECK(fx.count(Counter::fragment_tiny) == 1);
        CHECK(fx.count(Counter::truncated_tcp) == 0);  // not a parse failure (those are forwarded)
    }
    SUBCASE("IPv6 first fragment ending inside a destination options header") {
        const Bytes whole = PacketBuilder()
                                .ipv6("2001:db8:1000:1::5", "2001:db8:ad::80")
                                .ext_dest_opts(Bytes(30, 0))
                                .udp(40000, 53)
                                .payload(dns_query({.qname = "example.com", .edns_udp_size = 1232, .options = {kEcs4}}))
                                .build();
        const auto frags = fragment_ipv6(whole, 16, 11);
        PipelineFixture fx;
        CHECK(fx.run_stream(frags).empty());
        CHECK(fx.count(Counter::fragment_tiny) == 1);
    }
    SUBCASE("not from a subscriber: forwarded as it came") {
        const Bytes whole = PacketBuilder()
                                .ipv4("203.0.113.9", "100.64.0.10", {.id = 3})
                                .tcp(80, 40000, {.seq = 1, .flags = ACK | PSH})
                                .payload("HTTP/1.1 200 OK\r\n\r\n")
                                .build();
        const auto frags = fragment_ipv4(whole, 8);
        PipelineFixture fx;
        CHECK(fx.run_stream(frags) == frags);
    }
}

TEST_CASE("datagrams that need no inspection pass: held fragments released unchanged, the rest direct") {
    const Bytes whole = PacketBuilder()
                            .ipv4("100.64.0.12", "198.18.0.53", {.id = 10})
                            .udp(40000, 443)
                            .payload(std::string(300, 'q'))
                            .build();
    const auto frags = fragment_ipv4(whole, 64);
    REQUIRE(frags.size() == 5);
    PipelineFixture fx;
    // Two later fragments before the first: held (their port is unknown).
    const auto out = fx.run_stream({frags[3], frags[1], frags[0], frags[2], frags[4]});
    CHECK(out == std::vector<Bytes>{frags[0], frags[3], frags[1], frags[2], frags[4]});
    CHECK(fx.count(Counter::fragment_held) == 2);
    CHECK(fx.count(Counter::fragment_released) == 1);
    CHECK(fx.count(Counter::fragment_emitted) == 2);
    CHECK(fx.count(Counter::fragment_reassembled) == 0);
    // ICMP (never inspected) is not even held.
    const auto icmp = fragment_ipv4(PacketBuilder()
                                        .ipv4("100.64.0.12", "198.18.0.53", {.id = 11, .protocol = 1})
                                        .payload(std::string(200, 'i'))
                                        .build(),
                                    64);
    CHECK(fx.run_stream({icmp.rbegin(), icmp.rend()}) == std::vector<Bytes>{icmp.rbegin(), icmp.rend()});
}

TEST_CASE("timeouts: IPv4 after 30 s, IPv6 after 60 s, counted; the late rest is dropped") {
    SUBCASE("IPv4") {
        const auto frags = fragment_ipv4(dns4("100.64.0.10", 12), 64);
        PipelineFixture fx;
        CHECK(fx.run_stream({frags[0]}, 1 * kSecond).empty());
        CHECK(fx.run_stream({frags[1]}, 30 * kSecond).empty());  // 29 s later: still held
        CHECK(fx.count(Counter::fragment_timeout) == 0);
        std::vector<Bytes> rest(frags.begin() + 2, frags.end());
        CHECK(fx.run_stream(rest, 31 * kSecond + 1).empty());
        CHECK(fx.count(Counter::fragment_timeout) == 1);
        CHECK(fx.count(Counter::fragment_reassembled) == 0);
        CHECK(fx.worker->counters().get(Counter::fragment_dropped) == rest.size());
    }
    SUBCASE("IPv6") {
        const auto frags = fragment_ipv6(http6("2001:db8:1000:1::5", "t"), 64, 99);
        PipelineFixture fx;
        CHECK(fx.run_stream({frags[0]}, 1 * kSecond).empty());
        std::vector<Bytes> mid(frags.begin() + 1, frags.end() - 1);
        CHECK(fx.run_stream(mid, 60 * kSecond).empty());  // 59 s later: still held
        CHECK(fx.count(Counter::fragment_timeout) == 0);
        CHECK(fx.run_stream({frags.back()}, 61 * kSecond + 1).empty());
        CHECK(fx.count(Counter::fragment_timeout) == 1);
    }
    SUBCASE("within the timeout the datagram completes") {
        const auto frags = fragment_ipv4(dns4("100.64.0.10", 13), 64);
        PipelineFixture fx;
        fx.run_stream({frags[0]}, 1 * kSecond);
        std::vector<Bytes> rest(frags.begin() + 1, frags.end());
        CHECK(!fx.run_stream(rest, 30 * kSecond).empty());
        CHECK(fx.count(Counter::fragment_reassembled) == 1);
    }
}

TEST_CASE("the decisions remembered for late fragments are as many as ReassemblyConfig::decisions") {
    // Four (one set of four ways): the fifth datagram's decision pushes out
    // the one that expires first. That datagram's next fragment is then
    // held as the start of a new datagram instead of dropped at once; held,
    // it is still never forwarded uninspected.
    PipelineFixture fx(sample_policy(), Enforcement::Mode::static_table, {},
                       ReassemblyConfig{.datagrams = 8, .memory = 1 << 20, .decisions = 4});
    std::vector<std::vector<Bytes>> frags;
    for (uint16_t id = 20; id < 25; ++id) frags.push_back(fragment_ipv4(dns4("100.64.0.10", id), 64));
    for (size_t i = 0; i < frags.size(); ++i) {
        REQUIRE(frags[i].size() >= 3);
        CHECK(fx.run_stream({frags[i][0]}, (1 + i) * kSecond).empty());
    }
    // Each times out as its second fragment comes, 30 s after its first:
    // that fragment is dropped, and the drop remembered, the first one's
    // first.
    for (size_t i = 0; i < frags.size(); ++i) CHECK(fx.run_stream({frags[i][1]}, (31 + i) * kSecond + 1).empty());
    CHECK(fx.count(Counter::fragment_timeout) == frags.size());
    const auto held = fx.count(Counter::fragment_held);
    const auto dropped = fx.worker->counters().get(Counter::fragment_dropped);
    // The last one's drop is remembered: its third fragment goes at once.
    CHECK(fx.run_stream({frags[4][2]}, 36 * kSecond).empty());
    CHECK(fx.worker->counters().get(Counter::fragment_dropped) == dropped + 1);
    CHECK(fx.count(Counter::fragment_held) == held);
    // The first one's was pushed out: its third fragment is held.
    CHECK(fx.run_stream({frags[0][2]}, 36 * kSecond).empty());
    CHECK(fx.count(Counter::fragment_held) == held + 1);
    CHECK(fx.worker->counters().get(Counter::fragment_dropped) == dropped + 1);
}

TEST_CASE("a full store drops what it cannot hold, counted; what it holds still completes") {
    SUBCASE("out of datagram slots") {
        PipelineFixture fx(sample_policy(), Enforcement::Mode::static_table, {},
                           ReassemblyConfig{.datagrams = 2, .memory = 1 << 20});
        const auto a = fragment_ipv4(dns4("100.64.0.10", 20), 64);
        const auto b = fragment_ipv4(dns4("100.64.0.10", 21), 64);
        const auto c = fragment_ipv4(dns4("100.64.0.10", 22), 64);
        CHECK(fx.run_stream({a[0], b[0], c[0]}).empty());
        CHECK(fx.count(Counter::fragment_store_full) == 1);
        std::vector<Bytes> rest_a(a.begin() + 1, a.end());
        const auto out = fx.run_stream(rest_a);
        const auto re = reassemble(out);
        REQUIRE(re);
        CHECK(*re == dns4("100.64.0.10", 20));
        // c's slot is free again now: its later fragments are held, never
        // completed (its first fragment was dropped).
        std::vector<Bytes> rest_c(c.begin() + 1, c.end());
        CHECK(fx.run_stream(rest_c).empty());
    }
    SUBCASE("out of bytes") {
        PipelineFixture fx(sample_policy(), Enforcement::Mode::static_table, {},
                           ReassemblyConfig{.datagrams = 16, .memory = 65536});
        // 64 KiB of blocks: 128 blocks of 512 bytes, one per small fragment.
        const Bytes big = PacketBuilder()
                              .ipv4("100.64.0.10", "198.18.0.53", {.id = 30})
                              .udp(40000, 53)
                              .payload(std::string(1400, 'x'))
                              .build();
        const auto frags = fragment_ipv4(big, 8);  // 176 fragments
        REQUIRE(frags.size() > 128);
        CHECK(fx.run_stream(frags).empty());
        CHECK(fx.count(Counter::fragment_store_full) == 1);
        CHECK(fx.count(Counter::fragment_held) == 128);
        CHECK(fx.count(Counter::fragment_dropped) == frags.size() - 128);  // on arrival; the held ones in `dropped`
        // The memory came back: a small datagram completes.
        const auto small = fragment_ipv4(dns4("100.64.0.10", 31), 64);
        CHECK(reassemble(fx.run_stream(small)) == std::optional<Bytes>(dns4("100.64.0.10", 31)));
    }
}

TEST_CASE("malformed fragments: a non-last fragment not a multiple of 8, data past the last fragment") {
    const auto frags = fragment_ipv4(dns4("100.64.0.10", 40), 64);
    SUBCASE("data past the end") {
        PipelineFixture fx;
        // The last fragment first, then a middle fragment moved past it.
        Bytes past = frags[1];
        const uint16_t last_off = uint16_t((frags.back()[20] << 8 | frags.back()[21]) & 0x1fff);
        const uint16_t fo = uint16_t(0x2000 | (last_off + 8));
        past[20] = uint8_t(fo >> 8);
        past[21] = uint8_t(fo);
        CHECK(fx.run_stream({frags.back(), past, frags[0]}).empty());
        CHECK(fx.count(Counter::fragment_malformed) == 1);
    }
}

TEST_CASE("an IPv6 atomic fragment (offset 0, no more) is a whole datagram, inspected in place (RFC 6946)") {
    auto atomic = [](const char* src, const EdnsOption& option = kEcs4) {
        return PacketBuilder()
            .ipv6(src, "2001:db8:ad::53")
            .ext_fragment(0, false, 0xabcdef01)
            .udp(40000, 53)
            .payload(dns_query({.qname = "example.com", .edns_udp_size = 1232, .options = {option}}))
            .build();
    };
    PipelineFixture fx;
    const Bytes pass = atomic("2001:db8:1000:1::5");
    CHECK(fx.run_stream({pass}) == std::vector<Bytes>{pass});
    const Bytes strip = atomic("2001:db8:1000:9::5");
    const auto out = fx.run_stream({strip});
    REQUIRE(out.size() == 1);
    CHECK(out[0] == atomic("2001:db8:1000:9::5", padding_for(kEcs4)));  // the fragment header stayed
    check_all_checksums(out);
    CHECK(fx.count(Counter::fragment_held) == 0);
    CHECK(fx.count(Counter::ipv6_fragment) == 0);
    CHECK(fx.count(Counter::dns_rewritten) == 1);
}

TEST_CASE("fragments inside a tunnel never reach the store; outer fragments of a tunnel pass, not looked into") {
    // docs/pipeline.md#encapsulations: the store rebuilds datagrams behind an
    // Ethernet/VLAN header only, so only native fragments may enter it.
    Policy policy = sample_policy();
    policy.encapsulations = kAllEncapsulations;
    SUBCASE("inner fragments: a first fragment to an inspected port is dropped, the rest forwarded unread") {
        const auto frags = fragment_ipv4(dns4("100.64.0.10", 40), 64);
        REQUIRE(frags.size() > 2);
        std::vector<Bytes> wrapped;
        wrapped.reserve(frags.size());
        for (const auto& f : frags)
            wrapped.push_back(
                wrap_vxlan(f, PacketBuilder().ipv4("198.18.5.1", "198.18.5.2").udp(49152, kPortVxlan), 42));
        PipelineFixture fx(policy);
        // Later fragments first: none is held (their port is unknown, but
        // they are behind a tunnel header).
        std::vector<Bytes> in(wrapped.rbegin(), wrapped.rend());
        const auto out = fx.run_stream(in);
        CHECK(out == std::vector<Bytes>(wrapped.rbegin(), wrapped.rend() - 1));
        CHECK(fx.count(Counter::fragment_held) == 0);
        CHECK(fx.count(Counter::fragment_reassembled) == 0);
        CHECK(fx.count(Counter::fragment_dropped) == 1);
        CHECK(fx.count(Counter::encapsulated_fragment_not_inspected) == frags.size());
    }
    SUBCASE("outer fragments of an enabled tunnel: native, released unchanged, the inner packet not looked into") {
        const Bytes whole = wrap_vxlan(
            dns4("100.64.0.12", 41),
            PacketBuilder().ipv4("100.64.0.11", "198.18.5.2", {.id = 42}).udp(49152, kPortVxlan), 42);
        const auto frags = fragment_ipv4(whole, 64);
        REQUIRE(frags.size() > 3);
        PipelineFixture fx(policy);
        const auto out = fx.run_stream({frags[2], frags[1], frags[0], frags[3]});
        CHECK(out == std::vector<Bytes>{frags[0], frags[2], frags[1], frags[3]});
        CHECK(fx.count(Counter::fragment_held) == 2);
        CHECK(fx.count(Counter::fragment_released) == 1);
        CHECK(fx.count(Counter::fragment_reassembled) == 0);
        CHECK(fx.count(Counter::encapsulated_fragment_not_inspected) == 1);
    }
}
