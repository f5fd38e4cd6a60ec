#include <doctest/doctest.h>

#include <random>

#include "core/packet.hpp"
#include "dns_builder.hpp"
#include "packet_builder.hpp"

using namespace optgate;
using namespace optgate::test;

namespace {

ParseResult parse(const Bytes& f, ParsedPacket& p) { return parse_packet(f.data(), uint32_t(f.size()), p); }

}  // namespace

TEST_CASE("Ethernet / IPv4 / TCP") {
    const Bytes f = PacketBuilder()
                        .ipv4("100.64.0.10", "203.0.113.5")
                        .tcp(40000, 80, {.seq = 1000, .flags = PSH | ACK})
                        .payload("GET / HTTP/1.1\r\n")
                        .build();
    ParsedPacket p;
    REQUIRE(parse(f, p).ok);
    CHECK(p.family == Family::v4);
    CHECK(p.vlan_tags == 0);
    CHECK(p.l3_offset == 14);
    CHECK(p.l4_offset == 34);
    CHECK(p.payload_offset == 54);
    CHECK(p.payload_len == 16);
    CHECK(p.has_l4);
    CHECK(p.l4_proto == kProtoTcp);
    CHECK(p.src_port == 40000);
    CHECK(p.dst_port == 80);
    CHECK(p.tcp_seq == 1000);
    CHECK(p.tcp_flags == (tcp_flag::psh | tcp_flag::ack));
    CHECK(p.src_addr().to_string() == "100.64.0.10");
    CHECK(p.dst_addr().to_string() == "203.0.113.5");
    CHECK_FALSE(p.fragment);
}

TEST_CASE("802.1Q and QinQ tags are skipped") {
    const Bytes one = PacketBuilder().vlan(100).ipv4("100.64.0.10", "198.18.0.53").udp(5000, 53).payload("x").build();
    const Bytes two = PacketBuilder()
                          .vlan(10, kTpid8021ad)
                          .vlan(20)
                          .ipv6("2001:db8:1000:1::1", "2001:db8:ad::53")
                          .udp(5000, 53)
                          .payload("xy")
                          .build();
    ParsedPacket p;
    REQUIRE(parse(one, p).ok);
    CHECK(p.vlan_tags == 1);
    CHECK(p.l3_offset == 18);
    CHECK(p.payload_len == 1);
    REQUIRE(parse(two, p).ok);
    CHECK(p.vlan_tags == 2);
    CHECK(p.l3_offset == 22);
    CHECK(p.family == Family::v6);
    CHECK(p.payload_len == 2);
    CHECK(p.dst_addr().to_string() == "2001:db8:ad::53");

    // Three tags are more than we accept.
    const Bytes three =
        PacketBuilder().vlan(1, kTpid8021ad).vlan(2, kTpid8021ad).vlan(3).ipv4("100.64.0.1", "203.0.113.1").build();
    const auto r = parse(three, p);
    CHECK_FALSE(r.ok);
    CHECK(r.reason == Counter::too_many_vlan_tags);
}

TEST_CASE("IPv4 options move the L4 header") {
    const Bytes f = PacketBuilder()
                        .ipv4("100.64.0.10", "203.0.113.5", {.options = {0x94, 0x04, 0x00, 0x00}})  // router alert
                        .udp(1, 2)
                        .payload("abc")
                        .build();
    ParsedPacket p;
    REQUIRE(parse(f, p).ok);
    CHECK(p.l4_offset == 14 + 24);
    CHECK(p.payload_len == 3);
}

TEST_CASE("IPv6 extension headers are walked to the transport header") {
    const Bytes f = PacketBuilder()
                        .ipv6("2001:db8:1000:1::5", "2001:db8:ad::1")
                        .ext_hop_by_hop()
                        .ext_dest_opts({0x01, 0x04, 0, 0, 0, 0})
                        .ext_routing(0, 0, {"2001:db8:ad::2"})
                        .ext_dest_opts()
                        .tcp(1234, 80, {.seq = 77})
                        .payload("hello")
                        .build();
    ParsedPacket p;
    REQUIRE(parse(f, p).ok);
    CHECK(p.has_l4);
    CHECK(p.l4_proto == kProtoTcp);
    CHECK(p.tcp_seq == 77);
    CHECK(p.payload_len == 5);
    CHECK(std::string(f.begin() + p.payload_offset, f.end()) == "hello");
}

TEST_CASE("IPv4 fragments: the first carries ports, later ones do not") {
    const Bytes whole = PacketBuilder()
                            .ipv4("100.64.0.10", "198.18.0.53", {.id = 0x4242})
                            .udp(5353, 53)
                            .payload(std::string(100, 'a'))
                            .build();
    const auto frags = fragment_ipv4(whole, 48);
    REQUIRE(frags.size() == 3);
    ParsedPacket p;
    REQUIRE(parse(frags[0], p).ok);
    CHECK(p.fragment);
    CHECK(p.first_fragment);
    CHECK(p.has_l4);
    CHECK(p.dst_port == 53);
    CHECK(p.fragment_id == 0x4242);
    REQUIRE(parse(frags[1], p).ok);
    CHECK(p.fragment);
    CHECK_FALSE(p.first_fragment);
    CHECK_FALSE(p.has_l4);
    CHECK(p.dst_port == 0);
    CHECK(p.fragment_id == 0x4242);
}

TEST_CASE("IPv6 fragments") {
    const Bytes whole = PacketBuilder()
                            .ipv6("2001:db8:1000:1::5", "2001:db8:ad::53")
                            .udp(5353, 53)
                            .payload(std::string(200, 'b'))
                            .build();
    const auto frags = fragment_ipv6(whole, 96, 0xabcdef01);
    REQUIRE(frags.size() >= 2);
    ParsedPacket p;
    REQUIRE(parse(frags[0], p).ok);
    CHECK(p.fragment);
    CHECK(p.first_fragment);
    CHECK(p.has_l4);
    CHECK(p.dst_port == 53);
    CHECK(p.fragment_id == 0xabcdef01);
    REQUIRE(parse(frags[1], p).ok);
    CHECK(p.fragment);
    CHECK_FALSE(p.first_fragment);
    CHECK_FALSE(p.has_l4);
    CHECK(p.fragment_id == 0xabcdef01);
}

TEST_CASE("malformed headers are reported by name") {
    ParsedPacket p;
    struct Case {
        const char* what;
        Bytes frame;
        Counter reason;
    };
    const Case cases[] = {
        {"runt", Bytes(10, 0), Counter::truncated_l2},
        {"ARP", PacketBuilder().ethertype(0x0806).payload(std::string(28, '\0')).build(), Counter::non_ip},
        {"IHL 4", PacketBuilder().ipv4("100.64.0.1", "203.0.113.1", {.ihl = 4}).build(), Counter::bad_ipv4_header},
        {"total length past the frame",
         PacketBuilder().ipv4("100.64.0.1", "203.0.113.1", {.total_length = 200}).build(), Counter::bad_ipv4_length},
        {"total length shorter than the header",
         PacketBuilder().ipv4("100.64.0.1", "203.0.113.1", {.total_length = 10}).build(), Counter::bad_ipv4_length},
        {"IPv6 payload length past the frame",
         PacketBuilder().ipv6("2001:db8:1000::1", "2001:db8:ad::1", {.payload_length = 500}).build(),
         Counter::bad_ipv6_length},
        {"TCP data offset 4", PacketBuilder().ipv4("100.64.0.1", "203.0.113.1").tcp(1, 80, {.data_offset = 4}).build(),
         Counter::bad_tcp_header},
        {"TCP data offset past the datagram",
         PacketBuilder().ipv4("100.64.0.1", "203.0.113.1").tcp(1, 80, {.data_offset = 15}).build(),
         Counter::truncated_tcp},
        {"UDP length past the datagram",
         PacketBuilder().ipv4("100.64.0.1", "203.0.113.1").udp(1, 53, {.length = 99}).payload("abc").build(),
         Counter::bad_udp_length},
        {"UDP length under 8", PacketBuilder().ipv4("100.64.0.1", "203.0.113.1").udp(1, 53, {.length = 7}).build(),
         Counter::bad_udp_length},
    };
    for (const auto& c : cases) {
        const std::string what = c.what;
        CAPTURE(what);
        const auto r = parse(c.frame, p);
        CHECK_FALSE(r.ok);
        CHECK(counter_name(r.reason) == counter_name(c.reason));
    }
}

TEST_CASE("Ethernet padding after the IP datagram is not payload") {
    const Bytes f =
        PacketBuilder().ipv4("100.64.0.1", "203.0.113.1").udp(1, 2).payload("ab").trailer(Bytes(16, 0)).build();
    ParsedPacket p;
    REQUIRE(parse(f, p).ok);
    CHECK(p.payload_len == 2);
    CHECK(p.ip_end == f.size() - 16);
}

TEST_CASE("every truncation of valid packets parses or fails cleanly, never reads past the end") {
    // Run under ASan/valgrind to catch reads past the end; here we check
    // that a truncated packet is never reported as a whole one.
    const Bytes frames[] = {
        PacketBuilder()
            .vlan(1, kTpid8021ad)
            .vlan(2)
            .ipv4("100.64.0.1", "203.0.113.1")
            .tcp(1, 80)
            .payload("abc")
            .build(),
        PacketBuilder()
            .ipv6("2001:db8:1000::1", "2001:db8:ad::1")
            .ext_hop_by_hop()
            .ext_routing(0, 0, {"2001:db8:ad::2"})
            .ext_fragment(0, true, 7)
            .udp(1, 53)
            .payload(dns_query({.edns_udp_size = 1232, .options = {{8, ecs_option_data("100.64.0.0/24")}}}))
            .build(),
    };
    for (const Bytes& full : frames) {
        ParsedPacket p;
        REQUIRE(parse(full, p).ok);
        for (size_t n = 0; n < full.size(); ++n) {
            // Copy into an exact-size buffer so ASan sees any overread.
            std::vector<uint8_t> cut(full.begin(), full.begin() + long(n));
            const auto r = parse_packet(cut.data(), uint32_t(cut.size()), p);
            CAPTURE(n);
            CHECK_FALSE(r.ok);
        }
    }
}

TEST_CASE("mutated and random frames never make the parser read out of bounds") {
    // Start from valid frames of every shape and flip, cut and shuffle bytes,
    // so that most mutations land in headers the parser actually reads. Each
    // frame sits in an exact-size buffer (ASan/valgrind catch any overread);
    // here we check the offsets the parser hands out stay inside the frame.
    const Bytes seeds[] = {
        PacketBuilder().ipv4("100.64.0.1", "203.0.113.1", {.options = {1, 1, 1, 1}}).tcp(1, 80).payload("GET").build(),
        PacketBuilder().vlan(1, kTpid8021ad).vlan(2).ipv4("100.64.0.1", "203.0.113.1").udp(1, 53).payload("ab").build(),
        PacketBuilder().ipv6("2001:db8:1000::1", "2001:db8:ad::1").ext_hop_by_hop().ext_dest_opts().tcp(1, 80).build(),
        PacketBuilder()
            .ipv6("2001:db8:1000::1", "2001:db8:ad::1")
            .ext_routing(0, 0, {"2001:db8:ad::2"})
            .ext_fragment(0, true, 1)
            .udp(1, 53)
            .build(),
    };
    std::mt19937 rng(1234);
    ParsedPacket p;
    size_t ok = 0, total = 0;
    for (const Bytes& seed : seeds) {
        for (int i = 0; i < 50000; ++i) {
            std::vector<uint8_t> buf = seed;
            const int flips = 1 + int(rng() % 3);
            for (int k = 0; k < flips; ++k) buf[rng() % buf.size()] = uint8_t(rng());
            if (rng() % 4 == 0) buf.resize(rng() % buf.size());
            if (rng() % 50 == 0) {
                buf.resize(rng() % 120);
                for (auto& b : buf) b = uint8_t(rng());
            }
            ++total;
            if (parse_packet(buf.data(), uint32_t(buf.size()), p).ok) {
                ++ok;
                REQUIRE(p.payload_offset <= buf.size());
                REQUIRE(p.payload_offset + p.payload_len <= buf.size());
                REQUIRE(p.ip_end <= buf.size());
                REQUIRE(p.l4_offset <= p.payload_offset);
            }
        }
    }
    MESSAGE(ok << " of " << total << " mutated frames still parsed as IP");
    CHECK(ok > total / 10);  // the mutations exercise the deep paths, not just the first check
}
