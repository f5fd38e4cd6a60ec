// Writes a pcap of varied PacketBuilder packets plus, per packet, one JSON
// line saying what the test intended (written here by hand, not derived from
// the bytes). scapy_check.py then decodes the pcap with scapy and checks that
// scapy agrees: checksums, lengths, layer order, DNS/EDNS0/ECS fields.
//
//   scapy-sample OUT.pcap OUT.jsonl
#include <boost/json.hpp>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "dns_builder.hpp"
#include "packet_builder.hpp"
#include "pcap_io.hpp"

namespace json = boost::json;
using namespace optgate::test;

namespace {

struct Sample {
    Bytes frame;
    json::object expect;
};

json::array vlan_list(std::initializer_list<std::array<int, 3>> tags) {
    json::array a;
    for (const auto& t : tags) a.push_back(json::array{t[0], t[1], t[2]});
    return a;
}

const std::string kHttp =
    "GET /ads?slot=1 HTTP/1.1\r\nHost: ads.example.net\r\nX-UIDH: 0123456789abcdef\r\nAccept: */*\r\n\r\n";

std::vector<Sample> samples() {
    std::vector<Sample> s;
    auto add = [&](Bytes frame, json::object expect) { s.push_back({std::move(frame), std::move(expect)}); };

    add(PacketBuilder().ipv4("100.64.0.10", "198.51.100.7").udp(40000, 9999).payload("hello").build(),
        {{"name", "ipv4-udp-odd-payload"},
         {"ip", 4},
         {"src", "100.64.0.10"},
         {"dst", "198.51.100.7"},
         {"l4", "udp"},
         {"sport", 40000},
         {"dport", 9999},
         {"payload_len", 5}});

    add(PacketBuilder()
            .ether("02:00:00:00:10:01", "02:00:00:00:20:02")
            .ipv4("100.64.1.2", "203.0.113.80", {.id = 0x4321, .df = true, .ttl = 61})
            .tcp(51000, 80,
                 {.seq = 1000,
                  .flags = SYN,
                  .window = 64240,
                  .options = from_hex("02 04 05 b4 04 02 01 03 03 07")})  // MSS, SACK-ok, NOP, WS
            .build(),
        {{"name", "ipv4-tcp-syn-options"},
         {"src_mac", "02:00:00:00:10:01"},
         {"dst_mac", "02:00:00:00:20:02"},
         {"ip", 4},
         {"src", "100.64.1.2"},
         {"dst", "203.0.113.80"},
         {"ttl", 61},
         {"ip_id", 0x4321},
         {"df", true},
         {"l4", "tcp"},
         {"sport", 51000},
         {"dport", 80},
         {"seq", 1000},
         {"tcp_flags", 0x02},
         {"tcp_dataofs", 8},
         {"payload_len", 0}});

    add(PacketBuilder()
            .vlan(100)
            .ipv4("100.64.0.10", "203.0.113.10")
            .tcp(40001, 80, {.seq = 7, .ack = 9, .flags = PSH | ACK})
            .payload(kHttp)
            .build(),
        {{"name", "vlan-ipv4-tcp-http"},
         {"vlans", vlan_list({{0x8100, 100, 0}})},
         {"ip", 4},
         {"l4", "tcp"},
         {"sport", 40001},
         {"dport", 80},
         {"seq", 7},
         {"tcp_flags", 0x18},
         {"payload_len", int(kHttp.size())}});

    add(PacketBuilder()
            .vlan(10, kTpid8021ad, 5)
            .vlan(20)
            .ipv4("100.64.0.11", "198.18.0.1")
            .udp(1234, 5678)
            .payload(Bytes(33, 0xab))
            .build(),
        {{"name", "qinq-ipv4-udp"},
         {"vlans", vlan_list({{0x88a8, 10, 5}, {0x8100, 20, 0}})},
         {"ip", 4},
         {"l4", "udp"},
         {"sport", 1234},
         {"dport", 5678},
         {"payload_len", 33}});

    add(PacketBuilder()
            // router alert + NOP: 5 option bytes padded to 8
            .ipv4("100.64.0.12", "198.18.0.2", {.options = from_hex("94 04 00 00 01")})
            .udp(53000, 7000)
            .payload("ip options")
            .build(),
        {{"name", "ipv4-options-udp"}, {"ip", 4}, {"ihl", 7}, {"l4", "udp"}, {"payload_len", 10}});

    add(PacketBuilder().ipv4("100.64.0.13", "198.18.0.3").udp(1, 2, {.zero_checksum = true}).payload("x").build(),
        {{"name", "ipv4-udp-no-checksum"}, {"ip", 4}, {"l4", "udp"}, {"udp_chksum", 0}, {"payload_len", 1}});

    {
        // Two payload bytes chosen so the UDP sum is 0xffff: the checksum must be sent as 0xffff.
        PacketBuilder b = PacketBuilder().ipv4("100.64.0.14", "198.18.0.4").udp(4000, 4001);
        Bytes probe = b.payload(Bytes{0, 0}).build();
        Bytes word(probe.end() - 4, probe.end() - 2);  // the checksum with a zero payload word
        add(b.payload(word).build(),
            {{"name", "ipv4-udp-checksum-ffff"}, {"ip", 4}, {"l4", "udp"}, {"udp_chksum", 0xffff}, {"payload_len", 2}});
    }

    add(PacketBuilder()
            .ipv4("100.64.0.10", "198.18.0.53")
            .udp(40000, 53)
            .payload(dns_query({.id = 0xbeef,
                                .qname = "example.com",
                                .edns_udp_size = 1232,
                                .options = {{kEdnsClientSubnet, ecs_option_data("100.64.0.0/24")},
                                            {65001, from_hex("02 00 00 00 00 01")}}}))
            .build(),
        {{"name", "ipv4-dns-opt-ecs"},
         {"ip", 4},
         {"l4", "udp"},
         {"dport", 53},
         {"dns",
          {{"id", 0xbeef},
           {"qname", "example.com."},
           {"qtype", 1},
           {"rd", 1},
           {"arcount", 1},
           {"opt",
            {{"udp_size", 1232},
             {"do", false},
             {"options",
              json::array{{{"code", 8}, {"family", 1}, {"source", 24}, {"scope", 0}, {"address", "100.64.0.0"}},
                          {{"code", 65001}, {"data", "020000000001"}}}}}}}}});

    add(PacketBuilder()
            .ipv6("2001:db8:1000::10", "2001:db8:ad::53", {.traffic_class = 0x20, .flow_label = 0x12345})
            .udp(40002, 53)
            .payload(dns_query({.qname = "ads.example.net.",
                                .qtype = 28,
                                .rd = false,
                                .edns_udp_size = 4096,
                                .options = {{kEdnsClientSubnet, ecs_option_data("2001:db8:1000:1200::/56")}},
                                .do_bit = true}))
            .build(),
        {{"name", "ipv6-dns-opt-ecs-do"},
         {"ip", 6},
         {"src", "2001:db8:1000::10"},
         {"dst", "2001:db8:ad::53"},
         {"tc", 0x20},
         {"fl", 0x12345},
         {"l4", "udp"},
         {"dport", 53},
         {"dns",
          {{"id", 0x1234},
           {"qname", "ads.example.net."},
           {"qtype", 28},
           {"rd", 0},
           {"arcount", 1},
           {"opt",
            {{"udp_size", 4096},
             {"do", true},
             {"options", json::array{{{"code", 8},
                                      {"family", 2},
                                      {"source", 56},
                                      {"scope", 0},
                                      {"address", "2001:db8:1000:1200::"}}}}}}}}});

    add(PacketBuilder()
            .ipv4("100.64.0.15", "198.18.0.53")
            .udp(40003, 53)
            .payload(dns_query({.qname = "example.org",
                                .edns_udp_size = 1400,
                                .extra_additional = {dns_rr("ns.example.org", 1, 1, 300, from_hex("cb 00 71 35"))}}))
            .build(),
        {{"name", "ipv4-dns-opt-not-last"},
         {"ip", 4},
         {"l4", "udp"},
         {"dns",
          {{"qname", "example.org."},
           {"arcount", 2},
           {"opt", {{"udp_size", 1400}, {"options", json::array{}}}},
           {"extra_types", json::array{1}}}}});

    add(PacketBuilder()
            .ipv6("2001:db8:1000::20", "2001:db8:ad::80")
            .tcp(50000, 443, {.seq = 0xfffffff0})
            .payload("tls?")
            .build(),
        {{"name", "ipv6-tcp"}, {"ip", 6}, {"l4", "tcp"}, {"seq", 0xfffffff0u}, {"payload_len", 4}});

    add(PacketBuilder()
            .ipv6("2001:db8:1000::21", "2001:db8:ad::1")
            .ext_hop_by_hop(from_hex("05 02 00 00"))  // router alert
            .ext_dest_opts()
            .udp(5000, 5001)
            .payload("ext")
            .build(),
        {{"name", "ipv6-hbh-dest-udp"}, {"ip", 6}, {"ext", json::array{0, 60}}, {"l4", "udp"}, {"payload_len", 3}});

    add(PacketBuilder()
            .ipv6("2001:db8:1000::22", "2001:db8:ad::2")
            .ext_routing(0, 1, {"2001:db8:ad::99"})
            .tcp(5002, 80, {.flags = ACK})
            .payload(kHttp)
            .build(),
        {{"name", "ipv6-routing0-segleft-tcp"},
         {"ip", 6},
         {"ext", json::array{43}},
         {"l4", "tcp"},
         {"payload_len", int(kHttp.size())}});

    add(PacketBuilder()
            .ipv6("2001:db8:1000::23", "2001:db8:ad::3")
            .ext_routing(4, 1, {"2001:db8:ad::100", "2001:db8:ad::3"})
            .udp(5003, 5004)
            .payload("srh")
            .build(),
        {{"name", "ipv6-srh-segleft-udp"}, {"ip", 6}, {"ext", json::array{43}}, {"l4", "udp"}, {"payload_len", 3}});

    add(PacketBuilder()
            .ipv6("2001:db8:1000::24", "2001:db8:ad::4")
            .ext_hop_by_hop()
            .ext_routing(0, 0, {"2001:db8:ad::5"})
            .ext_dest_opts(from_hex("1e 01 00"))  // an unknown 3-byte option: 2 + 3 -> PadN of 3
            .ext_fragment(0, false, 0xabcdef01)   // atomic fragment
            .udp(5005, 5006)
            .payload("chain")
            .build(),
        {{"name", "ipv6-full-chain-udp"},
         {"ip", 6},
         {"ext", json::array{0, 43, 60, 44}},
         {"l4", "udp"},
         {"payload_len", 5}});

    add(PacketBuilder()
            .vlan(300, kTpid8021ad)
            .vlan(301)
            .ipv6("2001:db8:1000::25", "2001:db8:ad::53")
            .ext_dest_opts(from_hex("1e 00"))  // 2+2 -> 4 bytes PadN
            .udp(40004, 53)
            .payload(dns_query(
                {.qname = "example.com",
                 .edns_udp_size = 1232,
                 .options = {{kEdnsClientSubnet, ecs_option_data("100.64.7.0/24", 0)}, {65073, from_hex("aa bb cc")}}}))
            .build(),
        {{"name", "qinq-ipv6-dest-dns"},
         {"vlans", vlan_list({{0x88a8, 300, 0}, {0x8100, 301, 0}})},
         {"ip", 6},
         {"ext", json::array{60}},
         {"l4", "udp"},
         {"dns",
          {{"qname", "example.com."},
           {"arcount", 1},
           {"opt",
            {{"udp_size", 1232},
             {"options",
              json::array{{{"code", 8}, {"family", 1}, {"source", 24}, {"scope", 0}, {"address", "100.64.7.0"}},
                          {{"code", 65073}, {"data", "aabbcc"}}}}}}}}});

    add(PacketBuilder().ipv4("100.64.0.16", "198.18.0.6").udp(6000, 6001).payload("bad").corrupt_l4_checksum().build(),
        {{"name", "ipv4-udp-corrupt"}, {"ip", 4}, {"l4", "udp"}, {"corrupt_l4", true}});
    add(PacketBuilder().ipv6("2001:db8:1000::26", "2001:db8:ad::6").tcp(6002, 6003).corrupt_l4_checksum().build(),
        {{"name", "ipv6-tcp-corrupt"}, {"ip", 6}, {"l4", "tcp"}, {"corrupt_l4", true}});

    add(PacketBuilder().ipv4("100.64.0.17", "198.18.0.7").udp(6004, 6005).payload("pad").trailer(Bytes(17, 0)).build(),
        {{"name", "ipv4-udp-ethernet-padding"}, {"ip", 4}, {"l4", "udp"}, {"payload_len", 3}, {"trailer", 17}});

    // Fragments: the whole datagram first, then its fragments.
    Bytes big(100);
    for (size_t i = 0; i < big.size(); ++i) big[i] = uint8_t(i * 7);
    const Bytes router_alert_and_record_route = from_hex("94 04 00 00  07 07 04 00 00 00 00");
    Bytes whole4 = PacketBuilder()
                       .vlan(7)
                       .ipv4("100.64.0.18", "198.18.0.8", {.id = 777, .options = router_alert_and_record_route})
                       .udp(7000, 7001)
                       .payload(big)
                       .build();
    add(whole4, {{"name", "ipv4-frag-whole"},
                 {"vlans", vlan_list({{0x8100, 7, 0}})},
                 {"ip", 4},
                 {"l4", "udp"},
                 {"payload_len", 100}});
    auto frags4 = fragment_ipv4(whole4, 32);  // 108 bytes of UDP -> 32+32+32+12
    for (size_t i = 0; i < frags4.size(); ++i)
        add(frags4[i], {{"name", "ipv4-frag-" + std::to_string(i)},
                        {"fragment_of", "ipv4-frag-whole"},
                        {"vlans", vlan_list({{0x8100, 7, 0}})},
                        {"ip", 4},
                        {"frag_offset", 32 * i},
                        {"mf", i + 1 < frags4.size()},
                        {"ihl", i == 0 ? 8 : 6}});  // only router alert is copied

    Bytes whole6 = PacketBuilder()
                       .ipv6("2001:db8:1000::27", "2001:db8:ad::7")
                       .ext_hop_by_hop()
                       .ext_dest_opts(from_hex("1e 02 00 00"))
                       .tcp(7002, 7003, {.seq = 42, .flags = PSH | ACK})
                       .payload(big)
                       .build();
    add(whole6,
        {{"name", "ipv6-frag-whole"}, {"ip", 6}, {"ext", json::array{0, 60}}, {"l4", "tcp"}, {"payload_len", 100}});
    auto frags6 = fragment_ipv6(whole6, 64, 0x01020304);  // 8 + 20 + 100 = 128 bytes -> 64 + 64
    for (size_t i = 0; i < frags6.size(); ++i)
        add(frags6[i], {{"name", "ipv6-frag-" + std::to_string(i)},
                        {"fragment_of", "ipv6-frag-whole"},
                        {"ip", 6},
                        {"frag_offset", 64 * i},
                        // the first fragment starts with the destination options header
                        {"ext", i == 0 ? json::array{0, 44, 60} : json::array{0, 44}},
                        {"mf", i + 1 < frags6.size()},
                        {"frag_id", 0x01020304}});

    // An HTTP request over three TCP segments.
    uint32_t isn = 0xfffffff0;  // wraps inside the stream
    for (const auto& seg : segment_stream(kHttp, isn, {10, 40}))
        add(PacketBuilder()
                .ipv4("100.64.0.19", "203.0.113.10")
                .tcp(40005, 80, {.seq = seg.seq, .ack = 1, .flags = seg.flags})
                .payload(seg.payload)
                .build(),
            {{"name", "tcp-stream-" + std::to_string(seg.seq - isn)},
             {"ip", 4},
             {"l4", "tcp"},
             {"seq", seg.seq},
             {"tcp_flags", seg.flags},
             {"payload_len", seg.payload.size()},
             {"stream_offset", seg.seq - isn}});
    return s;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s OUT.pcap OUT.jsonl\n", argv[0]);
        return 2;
    }
    try {
        std::vector<PcapRecord> records;
        std::ofstream meta(argv[2]);
        uint64_t ts = 1'700'000'000'000'000'000ull;
        for (auto& smp : samples()) {
            meta << json::serialize(smp.expect) << '\n';
            records.push_back({ts, std::move(smp.frame)});
            ts += 1'000'000;  // 1 ms apart
        }
        write_pcap(argv[1], records);
        if (!meta.flush()) throw std::runtime_error(std::string(argv[2]) + ": write failed");
    } catch (const std::exception& e) {
        std::fprintf(stderr, "scapy-sample: %s\n", e.what());
        return 1;
    }
    return 0;
}
