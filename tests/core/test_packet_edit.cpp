#include <doctest/doctest.h>

#include "core/packet_edit.hpp"
#include "inet_checksum.hpp"
#include "packet_builder.hpp"

using namespace optgate;
using namespace optgate::test;

TEST_CASE("l4_fill_bytes keeps TCP and UDP checksums right at every offset and length") {
    const std::string payload = "GET / HTTP/1.1\r\nX-UIDH: 0123456789abcdefABCDEF\r\nHost: a.example\r\n\r\n";
    for (int family = 0; family < 2; ++family) {
        for (int udp = 0; udp < 2; ++udp) {
            PacketBuilder b;
            if (family)
                b.ipv6("2001:db8:1000::1", "2001:db8:ad::1");
            else
                b.ipv4("100.64.0.1", "203.0.113.1");
            if (udp)
                b.udp(1, 80);
            else
                b.tcp(1, 80, {.seq = 5});
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
    const Bytes original = PacketBuilder()
                               .ipv4("100.64.0.1", "203.0.113.1")
                               .tcp(1, 80)
                               .payload("X-UIDH: abc\r\n")
                               .corrupt_l4_checksum()
                               .build();
    ParsedPacket p;
    REQUIRE(parse_packet(original.data(), uint32_t(original.size()), p).ok);
    Bytes f = original;
    l4_fill_bytes(f.data(), p, p.payload_offset + 8, 3, 'x');
    const auto r = verify_checksums(f);
    CHECK(r.l4_present);
    CHECK_FALSE(r.l4_ok);
}

// Found by tests/fuzz (regressions/dns/udp-length-short-of-ip-payload): a UDP
// length shorter than the IP payload is legal (receivers ignore the bytes
// after it), and the checksum covers only the UDP length. An edit must keep
// that checksum right and leave the ignored bytes alone.
TEST_CASE("l4_fill_bytes: a UDP length short of the IP payload keeps its checksum over the UDP length") {
    std::string payload(60, '\0');
    for (size_t i = 0; i < payload.size(); ++i) payload[i] = char('a' + i % 26);
    const std::string ignored = "IGNORED-BYTES";  // in the IP payload, after the UDP length
    for (int family = 0; family < 2; ++family) {
        for (uint32_t at = 0, count = 1; at + count < payload.size(); at += 7, count = count % 5 + 1) {
            PacketBuilder b;
            if (family)
                b.ipv6("2001:db8:1000::1", "2001:db8:ad::1");
            else
                b.ipv4("100.64.0.1", "203.0.113.1");
            const auto udp_len = uint16_t(8 + payload.size());
            b.udp(1, 53, {.length = udp_len});
            Bytes f = b.payload(payload + ignored).build();
            // The builder sums everything after the UDP header: store the
            // checksum over the UDP length only, as a sender would.
            const size_t l4 = family ? 14 + 40 : 14 + 20;
            const size_t alen = family ? 16 : 4;
            const uint8_t* src = &f[family ? 14 + 8 : 14 + 12];
            f[l4 + 6] = f[l4 + 7] = 0;
            uint16_t c = optgate::test::detail::l4_checksum(src, src + alen, alen, 17, &f[l4], udp_len);
            if (c == 0) c = 0xffff;
            f[l4 + 6] = uint8_t(c >> 8);
            f[l4 + 7] = uint8_t(c);

            ParsedPacket p;
            REQUIRE(parse_packet(f.data(), uint32_t(f.size()), p).ok);
            REQUIRE(p.payload_len == payload.size());
            l4_fill_bytes(f.data(), p, p.payload_offset + at, count, 0);

            CHECK((f[l4 + 4] << 8 | f[l4 + 5]) == udp_len);
            // Summed with its stored checksum over the UDP length: 0 when right.
            CHECK(optgate::test::detail::l4_checksum(src, src + alen, alen, 17, &f[l4], udp_len) == 0);
            std::string expected = payload;
            expected.replace(at, count, count, '\0');
            CHECK(std::string(f.begin() + long(l4) + 8, f.end()) == expected + ignored);
            if (family == 0) CHECK(verify_checksums(f).ipv4_header_ok);
        }
    }
}
