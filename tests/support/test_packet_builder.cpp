// The test packet builder: exact bytes for small hand-computed cases, header
// order and padding, fragment and segment helpers, DNS/ECS wire format,
// verify_checksums() and pcap round trips. (tests/support/scapy_check.py
// cross-checks the same builder against scapy.)
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>
#include <stdexcept>

#include "dns_builder.hpp"
#include "inet_checksum.hpp"
#include "packet_builder.hpp"
#include "pcap_io.hpp"

using namespace optgate::test;

namespace {

Bytes slice(const Bytes& b, size_t from, size_t n) { return Bytes(b.begin() + from, b.begin() + from + n); }

std::string temp_path(const char* name) { return "/tmp/optgate-test-pb-" + std::to_string(getpid()) + "-" + name; }

}  // namespace

TEST_CASE("RFC 1071 section 3 example: the builder's own checksum") {
    // Bytes 00 01 f2 03 f4 f5 f6 f7: sum 0x2ddf0, folded 0xddf2, checksum ~0xddf2.
    Bytes b = from_hex("00 01 f2 03 f4 f5 f6 f7");
    CHECK(detail::fold(detail::sum16(b.data(), b.size())) == 0xddf2);
    CHECK(detail::inet_checksum(b.data(), b.size()) == 0x220d);
    // An odd length pads the last byte on the right: "f7" counts as f700.
    Bytes odd = from_hex("00 01 f2 03 f4 f5 f6");
    CHECK(detail::fold(detail::sum16(odd.data(), odd.size())) == uint16_t(0xddf2 - 0x00f7));
}

TEST_CASE("IPv4/UDP: every byte, checksums worked out by hand") {
    Bytes f = PacketBuilder().ipv4("100.64.0.1", "198.51.100.2").udp(1000, 53).payload("hi").build();
    // IPv4 header words 4500 001e 0000 0000 4011 6440 0001 c633 6402
    //   sum 0x213a5 -> fold 0x13a7 -> checksum 0xec58.
    // UDP: pseudo-header 6440+0001+c633+6402+0011+000a, header 03e8+0035+000a, data 6869
    //   sum 0x1fb21 -> fold 0xfb22 -> checksum 0x04dd.
    Bytes want = from_hex(
        "02 00 00 00 00 02  02 00 00 00 00 01  08 00"
        "45 00 00 1e  00 00 00 00  40 11 ec 58  64 40 00 01  c6 33 64 02"
        "03 e8 00 35  00 0a 04 dd  68 69");
    INFO(hexdump(f));
    CHECK(f == want);
    ChecksumReport r = verify_checksums(f);
    CHECK(r.ok());
    CHECK(r.l4_present);
    CHECK(r.l4_ok);
}

TEST_CASE("IPv4/TCP SYN: every byte, checksums worked out by hand") {
    Bytes f = PacketBuilder()
                  .ipv4("100.64.0.1", "203.0.113.5")
                  .tcp(1000, 80, {.seq = 1, .flags = SYN, .window = 0x1000})
                  .build();
    // IPv4: 4500+0028+0000+0000+4006+6440+0001+cb00+7105 = 0x22574 -> 0x2576 -> 0xda89.
    // TCP: pseudo 6440+0001+cb00+7105+0006+0014 = 0x1a060; header
    //   03e8+0050+0000+0001+0000+0000+5002+1000 = 0x643b; 0x2049b -> 0x049d -> 0xfb62.
    Bytes want = from_hex(
        "02 00 00 00 00 02  02 00 00 00 00 01  08 00"
        "45 00 00 28  00 00 00 00  40 06 da 89  64 40 00 01  cb 00 71 05"
        "03 e8 00 50  00 00 00 01  00 00 00 00  50 02 10 00  fb 62 00 00");
    INFO(hexdump(f));
    CHECK(f == want);
}

TEST_CASE("TCP options are zero-padded to 4 bytes and set the data offset") {
    Bytes f = PacketBuilder()
                  .ipv4("100.64.0.1", "203.0.113.5")
                  .tcp(1, 2, {.flags = SYN | ACK, .options = from_hex("02 04 05 b4 01 03 03 07")})  // 8 bytes
                  .build();
    CHECK((f[14 + 20 + 12] >> 4) == 7);
    CHECK(f[14 + 20 + 13] == 0x12);
    Bytes g =
        PacketBuilder().ipv4("100.64.0.1", "203.0.113.5").tcp(1, 2, {.options = from_hex("01 01 04 02 01")}).build();
    CHECK((g[14 + 20 + 12] >> 4) == 7);  // 5 bytes -> 8
    CHECK(slice(g, 14 + 40, 8) == from_hex("01 01 04 02 01 00 00 00"));
    CHECK(verify_checksums(g).ok());
}

TEST_CASE("IPv4 fields and options") {
    Bytes f = PacketBuilder()
                  .ipv4("100.64.0.1", "198.18.0.1",
                        {.tos = 0xb8, .id = 0xbeef, .df = true, .ttl = 3, .options = from_hex("94 04 00 00 01")})
                  .udp(1, 2)
                  .build();
    const size_t ip = 14;
    CHECK(f[ip] == 0x47);  // 20 + 5 option bytes padded to 8 -> IHL 7
    CHECK(f[ip + 1] == 0xb8);
    CHECK(get16(f, ip + 2) == 28 + 8);
    CHECK(get16(f, ip + 4) == 0xbeef);
    CHECK(get16(f, ip + 6) == 0x4000);
    CHECK(f[ip + 8] == 3);
    CHECK(slice(f, ip + 20, 8) == from_hex("94 04 00 00 01 00 00 00"));
    CHECK(verify_checksums(f).ok());

    Bytes frag = PacketBuilder().ipv4("100.64.0.1", "198.18.0.1", {.mf = true, .frag_offset = 185}).build();
    CHECK(get16(frag, ip + 6) == (0x2000 | 185));
    CHECK(frag[ip + 9] == 253);  // no L4: experimental protocol number

    Bytes bad = PacketBuilder().ipv4("100.64.0.1", "198.18.0.1", {.bad_checksum = true}).udp(1, 2).build();
    ChecksumReport r = verify_checksums(bad);
    CHECK_FALSE(r.ipv4_header_ok);
    CHECK(r.l4_ok);  // the UDP checksum does not cover the IPv4 header
    CHECK_FALSE(r.ok());
}

TEST_CASE("Malformed-packet overrides change the field, not the bytes emitted") {
    Bytes f = PacketBuilder()
                  .ipv4("100.64.0.1", "198.18.0.1", {.total_length = 200, .ihl = 4})
                  .udp(1, 2, {.length = 3})
                  .payload("abc")
                  .build();
    CHECK(f.size() == 14 + 20 + 8 + 3);
    CHECK(f[14] == 0x44);
    CHECK(get16(f, 16) == 200);
    CHECK(get16(f, 14 + 24) == 3);
    ChecksumReport r = verify_checksums(f);
    CHECK_FALSE(r.parsed);  // IHL 4 < 5
    INFO(r.detail);

    Bytes g = PacketBuilder().ipv4("100.64.0.1", "198.18.0.1", {.total_length = 200}).udp(1, 2).build();
    CHECK_FALSE(verify_checksums(g).parsed);  // total length beyond the frame
    CHECK(verify_checksums(g).detail.find("beyond the frame") != std::string::npos);
}

TEST_CASE("Ethernet, VLAN and QinQ tags come in call order") {
    Bytes f = PacketBuilder()
                  .ether("02:aa:bb:cc:dd:01", "02:aa:bb:cc:dd:02")
                  .vlan(10, kTpid8021ad, 5)
                  .vlan(0xfff)
                  .ipv6("2001:db8:1000::1", "2001:db8:ad::1")
                  .build();
    CHECK(slice(f, 0, 12) == from_hex("02 aa bb cc dd 02  02 aa bb cc dd 01"));
    // 88a8, PCP 5 VID 10 = a00a; 8100, VID 4095 = 0fff; then IPv6.
    CHECK(slice(f, 12, 10) == from_hex("88 a8 a0 0a  81 00 0f ff  86 dd"));
    CHECK((f[22] >> 4) == 6);
    CHECK(f[22 + 6] == kIp6NoNext);

    Bytes raw = PacketBuilder().ethertype(0x0806).payload(Bytes(28, 0)).build();
    CHECK(get16(raw, 12) == 0x0806);
    CHECK(raw.size() == 14 + 28);
    CHECK_FALSE(verify_checksums(raw).parsed);

    CHECK_THROWS_AS(PacketBuilder().vlan(4096), std::invalid_argument);
    CHECK_THROWS_AS(Mac::parse("02:00:00:00:00"), std::invalid_argument);
    CHECK_THROWS_AS(Mac::parse("02:00:00:00:00:0g"), std::invalid_argument);
    CHECK(Mac::parse("02-00-5E-10-00-FF").b == std::array<uint8_t, 6>{0x02, 0x00, 0x5e, 0x10, 0x00, 0xff});
}

TEST_CASE("IPv6 header fields and UDP pseudo-header") {
    Bytes f = PacketBuilder()
                  .ipv6("2001:db8:1000::1", "2001:db8:ad::53",
                        {.traffic_class = 0xab, .flow_label = 0x12345, .hop_limit = 7})
                  .udp(40000, 53)
                  .payload("q")
                  .build();
    const size_t ip = 14;
    CHECK(slice(f, ip, 4) == from_hex("6a b1 23 45"));  // version 6, TC ab, flow 12345
    CHECK(get16(f, ip + 4) == 9);
    CHECK(f[ip + 6] == 17);
    CHECK(f[ip + 7] == 7);
    CHECK(verify_checksums(f).ok());
    CHECK(verify_checksums(f).l4_ok);

    // UDP with checksum 0 is "unused" over IPv4 but invalid over IPv6.
    Bytes z6 = PacketBuilder().ipv6("2001:db8:1000::1", "2001:db8:ad::53").udp(1, 2, {.zero_checksum = true}).build();
    CHECK(get16(z6, 14 + 40 + 6) == 0);
    CHECK_FALSE(verify_checksums(z6).l4_ok);
    Bytes z4 = PacketBuilder().ipv4("100.64.0.1", "198.18.0.1").udp(1, 2, {.zero_checksum = true}).build();
    CHECK(verify_checksums(z4).l4_ok);
}

TEST_CASE("A UDP checksum that computes to 0 is sent as 0xffff") {
    PacketBuilder b = PacketBuilder().ipv4("100.64.0.1", "198.18.0.1").udp(4000, 4001);
    Bytes probe = b.payload(Bytes{0, 0}).build();
    // Adding the word ~S to a sum S makes it 0xffff, whose checksum is 0.
    Bytes word = slice(probe, probe.size() - 4, 2);
    Bytes f = b.payload(word).build();
    CHECK(get16(f, f.size() - 4) == 0xffff);
    CHECK(verify_checksums(f).l4_ok);
}

TEST_CASE("IPv6 extension headers: padding and next-header chaining") {
    Bytes f = PacketBuilder()
                  .ipv6("2001:db8:1000::1", "2001:db8:ad::1")
                  .ext_hop_by_hop()                                  // 2 + PadN(4) = 8
                  .ext_dest_opts(from_hex("1e 01 00"))               // 2 + 3 + PadN(1) = 8
                  .ext_dest_opts(from_hex("1e 04 00 00 00 00"))      // 2 + 6 = 8, no padding
                  .ext_hop_by_hop(from_hex("1e 05 00 00 00 00 00"))  // 2 + 7 + PadN(7) = 16
                  .ext_fragment(0x1234, true, 0xdeadbeef)
                  .tcp(1, 2)
                  .build();
    const size_t ip = 14, e = ip + 40;
    CHECK(f[ip + 6] == kIp6HopByHop);
    CHECK(slice(f, e, 8) == from_hex("3c 00 01 04 00 00 00 00"));       // -> dest opts, PadN 4
    CHECK(slice(f, e + 8, 8) == from_hex("3c 00 1e 01 00 01 01 00"));   // -> dest opts, PadN 1
    CHECK(slice(f, e + 16, 8) == from_hex("00 00 1e 04 00 00 00 00"));  // -> hop-by-hop, no pad
    CHECK(slice(f, e + 24, 16) ==
          from_hex("2c 01 1e 05 00 00 00 00 00 01 05 00 00 00 00 00"));  // 9 + PadN 5 = 16, len 1
    // Fragment: -> TCP, offset 0x1234 << 3 | M.
    CHECK(slice(f, e + 40, 8) == from_hex("06 00 91 a1 de ad be ef"));
    CHECK(get16(f, ip + 4) == 48 + 20);  // extension headers + TCP

    Bytes one =
        PacketBuilder().ipv6("2001:db8:1000::1", "2001:db8:ad::1").ext_dest_opts(from_hex("1e 03 00 00 00")).build();
    CHECK(slice(one, e, 8) == from_hex("3b 00 1e 03 00 00 00 00"));  // 2 + 5 + Pad1
    CHECK(one.size() == e + 8);
    Bytes padn = PacketBuilder()
                     .ipv6("2001:db8:1000::1", "2001:db8:ad::1")
                     .ext_dest_opts(from_hex("1e 04 00 00 00 00 00"))
                     .build();
    CHECK(slice(padn, e, 16) == from_hex("3b 01 1e 04 00 00 00 00 00 01 05 00 00 00 00 00"));
}

TEST_CASE("IPv6 extension headers: L4 checksum, fragment detection, ordering errors") {
    Bytes f = PacketBuilder()
                  .ipv6("2001:db8:1000::1", "2001:db8:ad::1")
                  .ext_hop_by_hop()
                  .ext_routing(0, 0, {"2001:db8:ad::9"})
                  .ext_dest_opts()
                  .udp(1, 2)
                  .payload("x")
                  .build();
    ChecksumReport r = verify_checksums(f);
    INFO(r.detail);
    CHECK(r.ok());
    CHECK(r.l4_ok);
    // The pseudo-header length is the upper-layer length only (9), not the payload length.
    CHECK(get16(f, 14 + 4) == 8 + 24 + 8 + 9);

    Bytes frag = PacketBuilder().ipv6("2001:db8:1000::1", "2001:db8:ad::1").ext_fragment(0, true, 1).udp(1, 2).build();
    ChecksumReport rf = verify_checksums(frag);
    CHECK(rf.parsed);
    CHECK_FALSE(rf.l4_present);  // first fragment: L4 not checked

    CHECK_THROWS_AS(PacketBuilder().ipv4("100.64.0.1", "198.18.0.1").ext_hop_by_hop().build(), std::logic_error);
    CHECK_THROWS_AS(PacketBuilder().udp(1, 2).build(), std::logic_error);
    CHECK_THROWS_AS(PacketBuilder().ipv4("2001:db8:1000::1", "198.18.0.1"), std::invalid_argument);
    CHECK_THROWS_AS(PacketBuilder().ipv6("100.64.0.1", "2001:db8:1000::1"), std::invalid_argument);
}

TEST_CASE("Routing header with segments left: the pseudo-header uses the final destination") {
    const std::string final_dst = "2001:db8:ad::99";
    auto tcp = TcpOptions{.seq = 5, .flags = PSH | ACK};
    Bytes routed = PacketBuilder()
                       .ipv6("2001:db8:1000::1", "2001:db8:ad::1")
                       .ext_routing(0, 1, {final_dst})
                       .tcp(1000, 80, tcp)
                       .payload("GET /")
                       .build();
    // Same source, the final destination in the header, no routing header:
    // identical TCP bytes must carry the identical checksum.
    Bytes direct = PacketBuilder().ipv6("2001:db8:1000::1", final_dst).tcp(1000, 80, tcp).payload("GET /").build();
    const size_t tcp_routed = 14 + 40 + 24, tcp_direct = 14 + 40;
    CHECK(get16(routed, tcp_routed + 16) == get16(direct, tcp_direct + 16));
    CHECK(verify_checksums(routed).l4_ok);

    // SRH (type 4): segment list[0] is the final segment.
    Bytes srh = PacketBuilder()
                    .ipv6("2001:db8:1000::1", "2001:db8:ad::1")
                    .ext_routing(4, 1, {final_dst, "2001:db8:ad::1"})
                    .tcp(1000, 80, tcp)
                    .payload("GET /")
                    .build();
    CHECK(srh[14 + 40 + 4] == 1);  // last entry
    CHECK(get16(srh, 14 + 40 + 40 + 16) == get16(direct, tcp_direct + 16));
    CHECK(verify_checksums(srh).l4_ok);

    // Segments left 0: the header's destination is the final one.
    Bytes done = PacketBuilder()
                     .ipv6("2001:db8:1000::1", "2001:db8:ad::1")
                     .ext_routing(0, 0, {final_dst})
                     .tcp(1000, 80, tcp)
                     .payload("GET /")
                     .build();
    CHECK(get16(done, tcp_routed + 16) != get16(direct, tcp_direct + 16));
    CHECK(verify_checksums(done).l4_ok);
}

TEST_CASE("corrupt_l4_checksum() is detected by verify_checksums()") {
    for (bool v6 : {false, true}) {
        for (bool udp : {false, true}) {
            PacketBuilder b;
            if (v6)
                b.ipv6("2001:db8:1000::1", "2001:db8:ad::1");
            else
                b.ipv4("100.64.0.1", "198.18.0.1");
            if (udp)
                b.udp(1, 2);
            else
                b.tcp(1, 2);
            b.payload("payload");
            Bytes good = b.build();
            Bytes bad = PacketBuilder(b).corrupt_l4_checksum().build();
            CAPTURE(v6);
            CAPTURE(udp);
            CHECK(verify_checksums(good).ok());
            ChecksumReport r = verify_checksums(bad);
            CHECK(r.parsed);
            CHECK(r.ipv4_header_ok);
            CHECK(r.l4_present);
            CHECK_FALSE(r.l4_ok);
            CHECK_FALSE(r.ok());
            CHECK(r.detail.find("expected") != std::string::npos);
            // Only the checksum differs.
            size_t differing = 0;
            for (size_t i = 0; i < good.size(); ++i) differing += good[i] != bad[i];
            CHECK((differing == 1 || differing == 2));
        }
    }
    // A damaged payload byte is caught too (the checker is not trusting the field).
    Bytes f = PacketBuilder().ipv4("100.64.0.1", "198.18.0.1").udp(1, 2).payload("abcd").build();
    f.back() ^= 0x20;
    CHECK_FALSE(verify_checksums(f).l4_ok);
}

TEST_CASE("Ethernet trailer is counted in no length") {
    Bytes f = PacketBuilder().ipv4("100.64.0.1", "198.18.0.1").udp(1, 2).payload("x").trailer(Bytes(17, 0xee)).build();
    CHECK(f.size() == 60);
    CHECK(get16(f, 16) == 20 + 8 + 1);
    CHECK(f.back() == 0xee);
    CHECK(verify_checksums(f).ok());
    CHECK(verify_checksums(f).l4_ok);
}

TEST_CASE("fragment_ipv4: fragments reassemble to the original datagram") {
    Bytes data(100);
    for (size_t i = 0; i < data.size(); ++i) data[i] = uint8_t(i * 13 + 1);
    // Router alert (copied flag set) + record route (not copied): 11 bytes -> IHL 8.
    Bytes whole = PacketBuilder()
                      .vlan(7)
                      .ipv4("100.64.0.1", "198.18.0.1",
                            {.id = 0x4242, .options = from_hex("94 04 00 00  07 07 04 00 00 00 00")})
                      .udp(1, 2)
                      .payload(data)
                      .trailer(Bytes(3, 0))
                      .build();
    auto frags = fragment_ipv4(whole, 32);
    REQUIRE(frags.size() == 4);  // 108 bytes of UDP: 32 + 32 + 32 + 12
    const size_t ip = 18;
    Bytes reassembled;
    for (size_t i = 0; i < frags.size(); ++i) {
        const Bytes& fr = frags[i];
        CAPTURE(i);
        CHECK(slice(fr, 0, ip) == slice(whole, 0, ip));
        size_t hl = size_t(fr[ip] & 0x0f) * 4;
        CHECK(hl == (i == 0 ? 32u : 24u));
        if (i > 0) CHECK(slice(fr, ip + 20, 4) == from_hex("94 04 00 00"));
        CHECK(get16(fr, ip + 4) == 0x4242);
        uint16_t ff = get16(fr, ip + 6);
        CHECK((ff & 0x1fff) * 8u == 32 * i);
        CHECK(bool(ff & 0x2000) == (i + 1 < frags.size()));
        CHECK(get16(fr, ip + 2) == fr.size() - ip);
        ChecksumReport r = verify_checksums(fr);
        CHECK(r.parsed);
        CHECK(r.ipv4_header_ok);
        CHECK_FALSE(r.l4_present);
        reassembled.insert(reassembled.end(), fr.begin() + ip + hl, fr.end());
    }
    CHECK(reassembled == slice(whole, ip + 32, 108));

    auto one = fragment_ipv4(whole, 1024);
    REQUIRE(one.size() == 1);
    CHECK(one[0] == Bytes(whole.begin(), whole.end() - 3));  // trailer dropped, nothing else changed

    // Re-fragmenting a fragment keeps its offset and MF.
    auto sub = fragment_ipv4(frags[1], 16);
    REQUIRE(sub.size() == 2);
    CHECK((get16(sub[0], ip + 6) & 0x1fff) == 4);
    CHECK((get16(sub[1], ip + 6) & 0x1fff) == 6);
    CHECK((get16(sub[1], ip + 6) & 0x2000) != 0);

    CHECK_THROWS_AS(fragment_ipv4(whole, 12), std::invalid_argument);
    Bytes v6 = PacketBuilder().ipv6("2001:db8:1000::1", "2001:db8:ad::2").build();
    CHECK_THROWS_AS(fragment_ipv4(v6, 8), std::invalid_argument);
}

TEST_CASE("fragment_ipv6: per-fragment headers stay, the rest is cut and reassembles") {
    Bytes data(100);
    for (size_t i = 0; i < data.size(); ++i) data[i] = uint8_t(255 - i);
    Bytes whole = PacketBuilder()
                      .ipv6("2001:db8:1000::1", "2001:db8:ad::1")
                      .ext_hop_by_hop()
                      .ext_routing(0, 0, {"2001:db8:ad::1"})
                      .ext_dest_opts()  // after routing: fragmentable
                      .tcp(1, 2)
                      .payload(data)
                      .build();
    const size_t ip = 14, unfrag = 40 + 8 + 24, frag_part = 8 + 20 + 100;
    auto frags = fragment_ipv6(whole, 48, 0xcafef00d);
    REQUIRE(frags.size() == 3);  // 128 bytes: 48 + 48 + 32
    Bytes reassembled;
    for (size_t i = 0; i < frags.size(); ++i) {
        const Bytes& fr = frags[i];
        CAPTURE(i);
        CHECK(get16(fr, ip + 4) == fr.size() - ip - 40);
        CHECK(fr[ip + 6] == kIp6HopByHop);
        CHECK(fr[ip + 40 + 8] == kIp6Fragment);  // the routing header now points at the fragment header
        const size_t fh = ip + unfrag;
        CHECK(fr[fh] == kIp6DestOpts);
        CHECK((get16(fr, fh + 2) >> 3) == 6 * i);
        CHECK(bool(fr[fh + 3] & 1) == (i + 1 < frags.size()));
        CHECK(slice(fr, fh + 4, 4) == from_hex("ca fe f0 0d"));
        CHECK(verify_checksums(fr).parsed);
        reassembled.insert(reassembled.end(), fr.begin() + fh + 8, fr.end());
    }
    CHECK(reassembled == slice(whole, ip + unfrag, frag_part));

    auto atomic = fragment_ipv6(PacketBuilder().ipv6("2001:db8:1000::1", "2001:db8:ad::2").udp(1, 2).build(), 64, 9);
    REQUIRE(atomic.size() == 1);
    CHECK(atomic[0][14 + 6] == kIp6Fragment);
    CHECK(get16(atomic[0], 14 + 42) == 0);     // offset 0, M clear
    CHECK(verify_checksums(atomic[0]).l4_ok);  // an atomic fragment is a whole datagram

    CHECK_THROWS_AS(fragment_ipv6(frags[0], 8, 1), std::invalid_argument);
}

TEST_CASE("segment_stream: sizes cycle, seq numbers follow the bytes") {
    auto segs = segment_stream("0123456789abcdefghij", 0xfffffffa, {3, 5});
    REQUIRE(segs.size() == 6);  // 3 5 3 5 3 1
    std::string joined;
    uint32_t expect_seq = 0xfffffffa;
    for (const auto& s : segs) {
        CHECK(s.seq == expect_seq);
        expect_seq += uint32_t(s.payload.size());
        joined.append(s.payload.begin(), s.payload.end());
    }
    CHECK(joined == "0123456789abcdefghij");
    CHECK(segs[1].payload.size() == 5);
    CHECK(segs[4].payload.size() == 3);
    CHECK(segs[5].payload.size() == 1);
    CHECK(segs[2].seq == 0x00000002);  // wrapped
    CHECK(segs[0].flags == ACK);
    CHECK(segs[4].flags == ACK);
    CHECK(segs[5].flags == (ACK | PSH));
    CHECK(segment_stream("", 1, {4}).empty());
    CHECK_THROWS_AS(segment_stream("x", 1, {}), std::invalid_argument);
    CHECK_THROWS_AS(segment_stream("x", 1, {0}), std::invalid_argument);
}

TEST_CASE("dns_name and dns_query wire format") {
    CHECK(dns_name("example.com") == from_hex("07 65 78 61 6d 70 6c 65 03 63 6f 6d 00"));
    CHECK(dns_name("example.com.") == dns_name("example.com"));
    CHECK(dns_name(".") == Bytes{0});
    CHECK(dns_name("") == Bytes{0});
    CHECK_THROWS_AS(dns_name("a..b"), std::invalid_argument);
    CHECK_THROWS_AS(dns_name(std::string(64, 'a') + ".com"), std::invalid_argument);
    CHECK_NOTHROW(dns_name(std::string(63, 'a') + ".com"));

    Bytes plain = dns_query({.qname = "example.com"});
    CHECK(plain == from_hex("12 34 01 00 00 01 00 00 00 00 00 00"
                            "07 65 78 61 6d 70 6c 65 03 63 6f 6d 00  00 01 00 01"));

    Bytes q = dns_query({.id = 0xabcd,
                         .qname = "example.com",
                         .qtype = 28,
                         .rd = false,
                         .edns_udp_size = 1232,
                         .options = {{65001, from_hex("02 00 00 00 00 01")}},
                         .do_bit = true});
    Bytes want = from_hex(
        "ab cd 00 00 00 01 00 00 00 00 00 01"
        "07 65 78 61 6d 70 6c 65 03 63 6f 6d 00  00 1c 00 01"
        // OPT: root, type 41, class 1232, ext-rcode 0, version 0, DO, RDLENGTH 10
        "00  00 29  04 d0  00 00 80 00  00 0a"
        "fd e9 00 06  02 00 00 00 00 01");
    INFO(hexdump(q));
    CHECK(q == want);

    Bytes tsig = dns_rr("key.", 250, 255, 0, Bytes{});
    CHECK(tsig == from_hex("03 6b 65 79 00  00 fa 00 ff 00 00 00 00 00 00"));
    Bytes notlast = dns_query({.edns_udp_size = 512, .extra_additional = {tsig}});
    CHECK(get16(notlast, 10) == 2);
    CHECK(Bytes(notlast.end() - long(tsig.size()), notlast.end()) == tsig);
    CHECK(slice(notlast, 12 + 13 + 4, 11) == edns_opt_rr(512, {}));

    Bytes bogus = dns_query({.qdcount = 2, .arcount = 7});
    CHECK(get16(bogus, 4) == 2);
    CHECK(get16(bogus, 10) == 7);
    CHECK_THROWS_AS(dns_query({.options = {{8, {}}}}), std::invalid_argument);
}

TEST_CASE("ECS option data, RFC 7871") {
    // 100.64.0.0/24: family 1, source 24, scope 0, 3 address bytes.
    CHECK(ecs_option_data("100.64.0.0/24") == from_hex("00 01 18 00 64 40 00"));
    // /20: ceil(20/8) = 3 bytes, bits past the prefix zeroed.
    CHECK(ecs_option_data("100.64.31.255/20", 16) == from_hex("00 01 14 10 64 40 10"));
    CHECK(ecs_option_data("100.64.0.10") == from_hex("00 01 20 00 64 40 00 0a"));
    CHECK(ecs_option_data("0.0.0.0/0") == from_hex("00 01 00 00"));
    CHECK(ecs_option_data("2001:db8:1000:12ff::/56") == from_hex("00 02 38 00 20 01 0d b8 10 00 12"));
    CHECK(ecs_option_data("2001:db8:1000::/36") == from_hex("00 02 24 00 20 01 0d b8 10"));
    CHECK_THROWS_AS(ecs_option_data("100.64.0.0/33"), std::invalid_argument);
    CHECK_THROWS_AS(ecs_option_data("100.64.0/24"), std::invalid_argument);
    CHECK_THROWS_AS(ecs_option_data("100.64.0.0/2x"), std::invalid_argument);

    // The readable one-liner from the header comment, end to end.
    Bytes f = PacketBuilder()
                  .vlan(100)
                  .ipv4("100.64.0.10", "198.18.0.53")
                  .udp(40000, 53)
                  .payload(dns_query({.qname = "example.com",
                                      .edns_udp_size = 1232,
                                      .options = {{kEdnsClientSubnet, ecs_option_data("100.64.0.0/24")}}}))
                  .build();
    Bytes tail = from_hex("00 08 00 07 00 01 18 00 64 40 00");
    CHECK(Bytes(f.end() - long(tail.size()), f.end()) == tail);
    CHECK(verify_checksums(f).ok());
    CHECK(verify_checksums(f).l4_ok);
}

TEST_CASE("pcap round trip preserves bytes and timestamps (to the microsecond)") {
    std::vector<PcapRecord> in = {
        {1'700'000'000'000'000'000ull, PacketBuilder().ipv4("100.64.0.1", "198.18.0.1").udp(1, 2).build()},
        {1'700'000'000'123'456'789ull,
         PacketBuilder().vlan(5).ipv6("2001:db8:1000::1", "2001:db8:ad::2").tcp(3, 4).build()},
        {1'700'000'001'000'000'499ull, Bytes(1514, 0x5a)},
    };
    const std::string path = temp_path("rt.pcap");
    write_pcap(path, in);
    int linktype = -1;
    auto out = read_pcap(path, &linktype);
    CHECK(linktype == kLinktypeEthernet);
    REQUIRE(out.size() == in.size());
    CHECK(out[0].ts_ns == 1'700'000'000'000'000'000ull);
    CHECK(out[1].ts_ns == 1'700'000'000'123'457'000ull);  // rounded to the microsecond
    CHECK(out[2].ts_ns == 1'700'000'001'000'000'000ull);
    for (size_t i = 0; i < in.size(); ++i) CHECK(out[i].data == in[i].data);

    // Same records, same bytes: golden pcaps are stable.
    const std::string again = temp_path("rt2.pcap");
    write_pcap(again, in);
    std::ifstream a(path, std::ios::binary), b(again, std::ios::binary);
    std::string sa((std::istreambuf_iterator<char>(a)), {}), sb((std::istreambuf_iterator<char>(b)), {});
    CHECK(sa.size() == 24 + 3 * 16 + in[0].data.size() + in[1].data.size() + 1514);
    CHECK(sa == sb);
    CHECK(static_cast<unsigned char>(sa[0]) == 0xd4);  // microsecond magic a1b2c3d4, little endian
    std::remove(path.c_str());
    std::remove(again.c_str());
}

TEST_CASE("pcap errors name the file") {
    try {
        read_pcap("/nonexistent/optgate/in.pcap");
        FAIL("read_pcap did not throw");
    } catch (const std::runtime_error& e) {
        CHECK(std::string(e.what()).find("/nonexistent/optgate/in.pcap") != std::string::npos);
    }
    const std::string junk = temp_path("junk.pcap");
    std::ofstream(junk) << "this is not a pcap file at all";
    CHECK_THROWS_AS(read_pcap(junk), std::runtime_error);
    std::remove(junk.c_str());
    try {
        write_pcap("/nonexistent/optgate/out.pcap", {});
        FAIL("write_pcap did not throw");
    } catch (const std::runtime_error& e) {
        CHECK(std::string(e.what()).find("/nonexistent/optgate/out.pcap") != std::string::npos);
    }
}

TEST_CASE("hexdump and from_hex") {
    Bytes b(18);
    for (size_t i = 0; i < b.size(); ++i) b[i] = uint8_t(i);
    CHECK(hexdump(b) == "0000  00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f\n0010  10 11");
    CHECK(from_hex("0a:0B-ff 00") == Bytes{0x0a, 0x0b, 0xff, 0x00});
    CHECK_THROWS_AS(from_hex("abc"), std::invalid_argument);
    CHECK_THROWS_AS(from_hex("zz"), std::invalid_argument);
}
