#include <doctest/doctest.h>

#include "core/packet_edit.hpp"
#include "packet_builder.hpp"

using namespace optgate;
using namespace optgate::test;

TEST_CASE("l4_fill_bytes keeps TCP and UDP checksums right at every offset and length") {
    const std::string payload = "GET / HTTP/1.1\r\nX-UIDH: 0123456789abcdefABCDEF\r\nHost: a.example\r\n\r\n";
    for (int family = 0; family < 2; ++family) {
        for (int udp = 0; udp < 2; ++udp) {
            PacketBuilder b;
            if (family) b.ipv6("2001:db8:1000::1", "2001:db8:ad::1"); else b.ipv4("100.64.0.1", "203.0.113.1");
            if (udp) b.udp(1, 80); else b.tcp(1, 80, {.seq = 5});
            const Bytes original = b.payload(payload).build();
            ParsedPacket p;
            REQUIRE(parse_packet(original.data(), uint32_t(original.size()), p).ok);
            for (uint32_t start = 0; start < 30; ++start) {
                for (uint32_t len = 1; len < 20; ++len) {
                    Bytes f = original;
                    l4_fill_bytes(f.data(), p, p.payload_offset + start, len, 'x');
                    // Same bytes as building the filled payload from scratch.
                    std::string filled = payload;
                    filled.replace(start, len, len, 'x');
                    PacketBuilder e = b;
                    CHECK(f == e.payload(filled).build());
                }
            }
        }
    }
}

TEST_CASE("l4_fill_bytes keeps a wrong checksum wrong") {
    const Bytes original = PacketBuilder().ipv4("100.64.0.1", "203.0.113.1").tcp(1, 80).payload("X-UIDH: abc\r\n").corrupt_l4_checksum().build();
    ParsedPacket p;
    REQUIRE(parse_packet(original.data(), uint32_t(original.size()), p).ok);
    Bytes f = original;
    l4_fill_bytes(f.data(), p, p.payload_offset + 8, 3, 'x');
    const auto r = verify_checksums(f);
    CHECK(r.l4_present);
    CHECK_FALSE(r.l4_ok);
}

TEST_CASE("udp_remove_bytes: lengths and checksum as if built without the bytes") {
    std::string payload(120, '\0');
    for (size_t i = 0; i < payload.size(); ++i) payload[i] = char('a' + i % 26);
    for (int family = 0; family < 2; ++family) {
        for (uint32_t at = 0; at < 40; at += 3) {
            for (uint32_t count = 1; count < 9; ++count) {
                PacketBuilder b;
                if (family) b.ipv6("2001:db8:1000::1", "2001:db8:ad::1"); else b.ipv4("100.64.0.1", "203.0.113.1");
                b.udp(1, 53);
                Bytes f = PacketBuilder(b).payload(payload).build();
                ParsedPacket p;
                REQUIRE(parse_packet(f.data(), uint32_t(f.size()), p).ok);
                // Also change a byte between `from` and `at`, as the DNS stage does.
                const uint32_t from = p.payload_offset + (at > 2 ? at - 2 : 0);
                const uint32_t tail = l4_tail_sum(f.data(), p, from);
                f[from] = '#';
                const uint32_t len = udp_remove_bytes(f.data(), uint32_t(f.size()), p, from, p.payload_offset + at, count, tail);
                f.resize(len);
                std::string expected = payload;
                expected[from - (p.payload_offset)] = '#';
                expected.erase(at, count);
                CHECK(f == PacketBuilder(b).payload(expected).build());
                CHECK(p.payload_len == expected.size());
            }
        }
    }
}
