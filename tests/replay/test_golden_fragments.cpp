// Golden replay of fragmented traffic through the real optgate-replay, with
// the shipped example policy and consent (see test_golden_dns.cpp for who
// consents to what): datagrams to inspect are reassembled, inspected and
// written cut again right after the fragment that completed them; others
// pass as they came; overlapping and tiny-first-fragment datagrams leave
// nothing. What comes out is reassembled by the test support's own code.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>

#include "dns_builder.hpp"
#include "golden_support.hpp"
#include "packet_builder.hpp"

using namespace optgate;
using namespace optgate::test;
using golden::replay;

namespace {

std::string long_name() { return std::string(60, 'a') + "." + std::string(60, 'b') + ".example.org"; }

Bytes dns4(const char* src, uint16_t id, std::vector<EdnsOption> options) {
    return PacketBuilder()
        .ipv4(src, "198.18.0.53", {.id = id})
        .udp(40000, 53)
        .payload(dns_query({.id = 0x5151, .qname = long_name(), .edns_udp_size = 1232, .options = std::move(options)}))
        .build();
}
Bytes dns6(std::vector<EdnsOption> options) {
    return PacketBuilder()
        .ipv6("2001:db8:1000:1::5", "2001:db8:ad::53")
        .udp(40001, 53)
        .payload(dns_query({.id = 0x5252, .qname = long_name(), .edns_udp_size = 1232, .options = std::move(options)}))
        .build();
}
const std::string kRequest =
    "GET /pixel HTTP/1.1\r\nHost: www.example.org\r\nX-UIDH: golden-fragment-uidh\r\nAccept: */*\r\n"
    "X-MSISDN: 15550001111\r\nUser-Agent: " +
    std::string(200, 'u') + "\r\n\r\n";
Bytes http4(const char* src, uint16_t id, const std::string& request) {
    return PacketBuilder()
        .ipv4(src, "203.0.113.5", {.id = id})
        .tcp(40002, 80, {.seq = 7, .ack = 1, .flags = ACK | PSH})
        .payload(request)
        .build();
}
std::string scrubbed(std::string request) {
    for (const std::string v : {"golden-fragment-uidh", "15550001111"}) {
        const size_t at = request.find(v);
        request.replace(at, v.size(), std::string(v.size(), 'x'));  // the example policy's filler
    }
    return request;
}

// The IPv4 id or IPv6 fragment id of a frame (0 if not fragmented IPv4/IPv6).
uint32_t datagram_of(const Bytes& f) {
    if (f[12] == 0x08) return uint32_t(f[18] << 8 | f[19]);
    if (f[20] == 44) return uint32_t(f[58]) << 24 | uint32_t(f[59]) << 16 | uint32_t(f[60]) << 8 | f[61];
    return 0;
}

}  // namespace

TEST_CASE("golden: fragmented DNS and HTTP are reassembled, inspected and cut again; bad fragments leave nothing") {
    // Each datagram's fragments, in the order they are sent.
    const auto strip_dns = fragment_ipv4(dns4("100.64.0.12", 101, {kEcs4, kMac}), 48);  // no consent
    const auto pass_dns6 = fragment_ipv6(dns6({kEcs6}), 64, 102);                       // advertising
    const auto strip_http = fragment_ipv4(http4("100.64.0.11", 103, kRequest), 96);     // analytics only
    const auto quic = fragment_ipv4(PacketBuilder()
                                        .ipv4("100.64.0.12", "198.18.0.53", {.id = 104})
                                        .udp(40003, 443)
                                        .payload(std::string(300, 'q'))
                                        .build(),
                                    64);
    const auto tiny = fragment_ipv4(http4("100.64.0.10", 105, kRequest), 8);
    auto overlap = fragment_ipv4(dns4("100.64.0.10", 106, {kEcs4}), 64);
    REQUIRE(strip_dns.size() >= 4);
    REQUIRE(overlap.size() >= 3);
    Bytes shifted = overlap[2];  // 8 bytes back over overlap[1]
    shifted[21] = uint8_t(shifted[21] - 1);

    std::vector<Bytes> frames;
    std::vector<size_t> last_of;  // input index of each datagram's last frame
    auto send = [&](std::vector<Bytes> fs) {
        for (auto& f : fs) frames.push_back(std::move(f));
        last_of.push_back(frames.size() - 1);
    };
    send({strip_dns.rbegin(), strip_dns.rend()});  // last fragment first, the first one last
    send(pass_dns6);
    send({strip_http[2], strip_http[0], strip_http[1], strip_http[0], strip_http[3]});  // one duplicate
    send({quic[2], quic[0], quic[1], quic[3], quic[4]});
    send(tiny);
    send({overlap[0], overlap[1], shifted, overlap[2]});
    REQUIRE(strip_http.size() == 4);
    REQUIRE(quic.size() == 5);

    const auto r = replay(frames);
    REQUIRE_MESSAGE(r.run.exit_code == 0, r.run.output);

    // The output grouped by datagram, each frame with its timestamp.
    std::map<uint32_t, std::vector<Bytes>> out;
    std::map<uint32_t, uint64_t> last_ts;
    for (const auto& rec : r.output) {
        out[datagram_of(rec.data)].push_back(rec.data);
        last_ts[datagram_of(rec.data)] = rec.ts_ns;
    }

    // Stripped DNS: reassembles to the datagram with its identifier options
    // made Padding, cut at the same size, written with the timestamp of the
    // fragment that completed it.
    const auto dns = reassemble(out[101]);
    REQUIRE(dns);
    CHECK(*dns == dns4("100.64.0.12", 101, {padding_for(kEcs4), padding_for(kMac)}));
    CHECK(out[101].size() == strip_dns.size());
    for (const auto& f : out[101]) CHECK(verify_checksums(f).ok());
    CHECK(last_ts[101] == r.input[last_of[0]].ts_ns);
    // Consented IPv6 DNS: the same fragments, byte for byte.
    CHECK(out[102] == pass_dns6);
    // HTTP on a strip verdict: values overwritten, cut at the same size.
    const auto http = reassemble(out[103]);
    REQUIRE(http);
    CHECK(*http == http4("100.64.0.11", 103, scrubbed(kRequest)));
    CHECK(out[103].size() == strip_http.size());
    // No inspection needed: the early fragment released after the first, the rest direct.
    CHECK(out[104] == std::vector<Bytes>{quic[0], quic[2], quic[1], quic[3], quic[4]});
    // Tiny first fragment and overlap: nothing.
    CHECK(out.count(105) == 0);
    CHECK(out.count(106) == 0);
    CHECK(out.size() == 4);

    CHECK(r.counter("fragment_reassembled") == 3);
    CHECK(r.counter("fragment_released") == 1);
    CHECK(r.counter("fragment_duplicate") == 1);
    CHECK(r.counter("fragment_tiny") == 1);
    CHECK(r.counter("fragment_overlap") == 1);
    CHECK(r.counter("dns_rewritten") == 1);
    CHECK(r.counter("http_rewritten") == 1);
    CHECK(r.counter("fragment_emitted") ==
          out[101].size() + out[102].size() + out[103].size() + 1 /* the released quic fragment */);
    CHECK(r.counter("packets") == frames.size());
}
