// Software flow steering (src/dataplane/steering.hpp): both directions of a
// flow must reach the same worker, and a flow's fragments must too.
#include <doctest/doctest.h>

#include <set>
#include <utility>
#include <vector>

#include "dataplane/steering.hpp"
#include "packet_builder.hpp"

using namespace optgate;
using namespace optgate::dataplane;
using optgate::test::PacketBuilder;

namespace {
uint32_t hash_of(const FlowSteering& s, const test::Bytes& f) { return s.hash(f.data(), uint32_t(f.size())); }
}  // namespace

TEST_CASE("TCP and UDP over IPv4 and IPv6 hash the same in both directions") {
    const FlowSteering s;
    for (uint16_t port = 1024; port < 1224; ++port) {
        const auto up4 = PacketBuilder().ipv4("100.64.3.7", "203.0.113.10").tcp(port, 80).payload("x").build();
        const auto down4 = PacketBuilder().ipv4("203.0.113.10", "100.64.3.7").tcp(80, port).build();
        CHECK(hash_of(s, up4) == hash_of(s, down4));
        const auto up6 = PacketBuilder().ipv6("2001:db8:1000:1::5", "2001:db8:ad::9").udp(port, 53).build();
        const auto down6 = PacketBuilder().ipv6("2001:db8:ad::9", "2001:db8:1000:1::5").udp(53, port).build();
        CHECK(hash_of(s, up6) == hash_of(s, down6));
        const auto tagged = PacketBuilder()
                                .vlan(10, test::kTpid8021ad)
                                .vlan(20)
                                .ipv4("203.0.113.10", "100.64.3.7")
                                .tcp(80, port)
                                .build();
        CHECK(hash_of(s, tagged) == hash_of(s, up4));  // VLAN tags do not move a flow
    }
}

TEST_CASE("ports spread flows between the same two hosts") {
    const FlowSteering s;
    std::set<unsigned> workers;
    for (uint16_t port = 1024; port < 1088; ++port) {
        const auto f = PacketBuilder().ipv4("100.64.3.7", "203.0.113.10").tcp(port, 80).build();
        workers.insert(unsigned((uint64_t(hash_of(s, f)) * 4) >> 32));
    }
    CHECK(workers.size() == 4);
}

TEST_CASE("every fragment of a datagram hashes like the others, on addresses only") {
    const FlowSteering s;
    const auto whole = PacketBuilder()
                           .ipv4("100.64.3.7", "198.18.0.53", {.id = 77})
                           .udp(40000, 53)
                           .payload(std::string(200, 'q'))
                           .build();
    const auto fragments = test::fragment_ipv4(whole, 64);
    REQUIRE(fragments.size() >= 3);
    const auto addresses_only = PacketBuilder().ipv4("198.18.0.53", "100.64.3.7", {.protocol = 47}).build();
    for (const auto& f : fragments) CHECK(hash_of(s, f) == hash_of(s, addresses_only));
    CHECK(hash_of(s, whole) != hash_of(s, addresses_only));  // an unfragmented datagram uses its ports
}

TEST_CASE("non-IP and truncated frames go to worker 0 without reading past the end") {
    const FlowSteering s;
    const auto arp = PacketBuilder().ethertype(0x0806).payload(std::string(28, '\0')).build();
    CHECK(hash_of(s, arp) == 0);
    const auto full = PacketBuilder().ipv6("2001:db8:1000:1::5", "2001:db8:ad::9").tcp(5, 80).build();
    for (size_t len = 0; len < 54; ++len) CHECK(s.hash(full.data(), uint32_t(len)) == 0);
}

// Encapsulated frames (docs/pipeline.md#encapsulations): with the
// encapsulation enabled, a frame hashes on its inner flow, so both directions
// of an inner flow meet on one worker whatever the outer headers say.
TEST_CASE("an enabled encapsulation hashes on the inner flow, both directions together") {
    const FlowSteering s;
    constexpr EncapsulationSet all = kAllEncapsulations;
    auto outer = [](bool up) {
        PacketBuilder b;
        if (up)
            b.ipv4("198.18.5.1", "198.18.5.2");
        else
            b.ipv4("198.18.5.2", "198.18.5.1");
        return b;
    };
    for (uint16_t port = 1024; port < 1064; ++port) {
        const auto up = PacketBuilder().ipv4("100.64.3.7", "203.0.113.10").tcp(port, 80).payload("x").build();
        const auto down = PacketBuilder().ipv4("203.0.113.10", "100.64.3.7").tcp(80, port).build();
        const uint32_t native = hash_of(s, up);
        REQUIRE(native == hash_of(s, down));
        // Outer source ports that differ by direction, as VXLAN and Geneve pick them.
        const std::vector<std::pair<test::Bytes, test::Bytes>> pairs = {
            {test::wrap_pppoe(up, 7), test::wrap_pppoe(down, 7)},
            {test::wrap_mpls(up, {16}), test::wrap_mpls(down, {99, 100})},
            {test::wrap_gre(up, outer(true), {.checksum = true}),
             test::wrap_gre(down, outer(false), {.ethernet = true})},
            {test::wrap_vxlan(up, outer(true).udp(uint16_t(port * 7), kPortVxlan), 1),
             test::wrap_vxlan(down, outer(false).udp(uint16_t(port * 13), kPortVxlan), 1)},
            {test::wrap_geneve(up, outer(true).udp(50000, kPortGeneve), 1),
             test::wrap_geneve(down, outer(false).udp(50001, kPortGeneve), 1)},
            {test::wrap_gtpu(up, outer(true).udp(kPortGtpu, kPortGtpu), {.teid = 1}),
             test::wrap_gtpu(down, outer(false).udp(40000, kPortGtpu), {.teid = 2})},
            {test::wrap_l2tp(up, outer(true).udp(40001, kPortL2tp)),
             test::wrap_l2tp(down, outer(false).udp(kPortL2tp, 40001))},
        };
        for (const auto& [a, b] : pairs) {
            // The inner flow's hash: the same as the native frames'.
            CHECK(s.hash(a.data(), uint32_t(a.size()), all) == native);
            CHECK(s.hash(b.data(), uint32_t(b.size()), all) == native);
        }
        // Not enabled: the outer headers decide, as before.
        const auto& [vx_up, vx_down] = pairs[3];
        CHECK(s.hash(vx_up.data(), uint32_t(vx_up.size()), 0) == hash_of(s, vx_up));
        CHECK(hash_of(s, vx_up) != native);
        CHECK(hash_of(s, pairs[0].first) == 0);  // PPPoE is not IP outside
    }
}
