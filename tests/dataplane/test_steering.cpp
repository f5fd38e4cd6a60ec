// Software flow steering (src/dataplane/steering.hpp): both directions of a
// flow must reach the same worker, and a flow's fragments must too.
#include <doctest/doctest.h>

#include <set>

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
