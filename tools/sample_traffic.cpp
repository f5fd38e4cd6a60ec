#include "sample_traffic.hpp"

#include <algorithm>
#include <string>

#include "dns_builder.hpp"
#include "packet_builder.hpp"

namespace optgate::tools {
namespace {

using namespace optgate::test;

constexpr const char* kGatewayMac = "02:00:00:00:00:fe";
constexpr uint16_t kL2tpPort = 1701;

struct Sample {
    std::vector<PcapRecord> records;
    uint64_t now_ns = 1'764'000'000'000'000'000ull;  // a fixed start time
    uint16_t dns_id = 0x1000;

    void add(Bytes frame) {
        records.push_back({now_ns, std::move(frame)});
        now_ns += 250'000;  // 250 µs apart
    }

    PacketBuilder from(const char* src, const char* dst) const {
        PacketBuilder b;
        b.ether("02:00:00:00:00:01", kGatewayMac);
        if (std::string_view(src).find(':') != std::string_view::npos)
            b.ipv6(src, dst);
        else
            b.ipv4(src, dst);
        return b;
    }

    void dns(const char* src, const char* resolver, const char* qname, std::vector<EdnsOption> options) {
        DnsQuery q{.id = dns_id++, .qname = qname};
        if (!options.empty()) {
            q.edns_udp_size = 1232;
            q.options = std::move(options);
        }
        add(from(src, resolver).udp(uint16_t(40000 + dns_id % 2000), 53).payload(dns_query(q)).build());
    }

    // A request on a fresh connection: handshake, request, response, close.
    void http(const char* src, const char* server, uint16_t sport, const std::string& request) {
        const uint32_t isn = 1000u * sport;
        const uint32_t server_isn = 7000u * sport;
        add(from(src, server).tcp(sport, 80, {.seq = isn, .flags = SYN}).build());
        add(from(server, src).tcp(80, sport, {.seq = server_isn, .ack = isn + 1, .flags = SYN | ACK}).build());
        add(from(src, server).tcp(sport, 80, {.seq = isn + 1, .ack = server_isn + 1}).build());
        add(from(src, server)
                .tcp(sport, 80, {.seq = isn + 1, .ack = server_isn + 1, .flags = PSH | ACK})
                .payload(request)
                .build());
        const std::string response = "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n";
        add(from(server, src)
                .tcp(80, sport, {.seq = server_isn + 1, .ack = isn + 1 + uint32_t(request.size()), .flags = PSH | ACK})
                .payload(response)
                .build());
        add(from(src, server)
                .tcp(sport, 80,
                     {.seq = isn + 1 + uint32_t(request.size()),
                      .ack = server_isn + 1 + uint32_t(response.size()),
                      .flags = FIN | ACK})
                .build());
    }
};

std::string get(const std::string& host, const std::string& path, const std::string& identifiers) {
    return "GET " + path + " HTTP/1.1\r\nHost: " + host +
           "\r\nUser-Agent: Mozilla/5.0 (Linux; Android 14)\r\nAccept: */*\r\n" + identifiers + "\r\n";
}

}  // namespace

std::vector<PcapRecord> sample_traffic() {
    Sample s;
    const EdnsOption ecs4{8, ecs_option_data("100.64.0.0/24")};
    const EdnsOption ecs6{8, ecs_option_data("2001:db8:1000::/56")};
    const EdnsOption mac{65001, {0x02, 0x42, 0xac, 0x11, 0x00, 0x02}};
    const EdnsOption device{65073, {'c', 'p', 'e', '-', '7', '7'}};
    const EdnsOption cookie{10, {1, 2, 3, 4, 5, 6, 7, 8}};  // not an identifier

    // Background: what most of the link carries, none of it inspected.
    for (int i = 0; i < 40; ++i) {
        s.add(s.from("100.64.0.10", "198.18.7.7").tcp(uint16_t(50000 + i), 443).payload(std::string(200, 't')).build());
        s.add(s.from("198.18.7.7", "100.64.0.10").tcp(443, uint16_t(50000 + i)).payload(std::string(900, 'r')).build());
        s.add(
            s.from("2001:db8:1000:2::9", "2001:db8:ffff::443").udp(51000, 443).payload(std::string(300, 'q')).build());
    }
    s.add(PacketBuilder()
              .ether("02:00:00:00:00:01", "ff:ff:ff:ff:ff:ff")
              .ethertype(0x0806)
              .payload(std::string(28, '\0'))
              .build());

    // DNS: every subscriber asks the advertising partner's resolver and an
    // ordinary resolver; CPEs add client subnet, MAC and device id options.
    const char* v4_subscribers[] = {"100.64.0.10", "100.64.0.11", "100.64.1.20", "100.64.0.12", "100.64.9.9"};
    for (const char* sub : v4_subscribers) {
        s.dns(sub, "198.18.0.53", "ads.example.net", {ecs4, mac});
        s.dns(sub, "198.18.0.53", "www.example.org", {cookie, device});
        s.dns(sub, "198.18.1.1", "www.example.org", {ecs4});
        s.dns(sub, "198.18.1.1", "mail.example.org", {});
    }
    const char* v6_subscribers[] = {"2001:db8:1000:1::10", "2001:db8:1000:2::20", "2001:db8:1000:3::42"};
    for (const char* sub : v6_subscribers) {
        s.dns(sub, "2001:db8:ad::53", "ads.example.net", {ecs6, cookie});
        s.dns(sub, "2001:db8:ffff::53", "www.example.org", {ecs6});
    }

    // HTTP with carrier-inserted headers.
    const std::string uidh = "X-UIDH: OTgxNTk2NDk0ADJVquRu5NS5+rSbBANlrp+13QL7CXLGsFHpMi4LsUHw\r\n";
    const std::string msisdn = "X-MSISDN: 12075550123\r\n";
    const std::string acr = "X-ACR: bWFpbmUtMjA3LTU1NS0wMTIz\r\n";
    uint16_t port = 41000;
    for (const char* sub : {"100.64.0.10", "100.64.0.11", "100.64.1.20", "100.64.0.12"}) {
        s.http(sub, "203.0.113.10", port++, get("ads.example.net", "/ad?slot=1", uidh + msisdn));  // example-adnet
        s.http(sub, "198.51.100.20", port++, get("stats.example.com", "/hit", acr));               // web-analytics
        s.http(sub, "198.18.2.2", port++, get("sdk.metrics.example", "/v1/event", uidh));          // metrics-hosts
        s.http(sub, "198.18.3.3", port++, get("news.example.org", "/", uidh));                     // no collector
        s.http(sub, "203.0.113.201", port++, get("pay.carrier.example", "/checkout", msisdn));     // exemption
    }
    s.http("2001:db8:1000:3::42", "2001:db8:ad::80", port++, get("ads.example.net", "/ad", uidh));
    return s.records;
}

std::vector<PcapRecord> encapsulated_traffic() {
    std::vector<PcapRecord> records = sample_traffic();
    PacketBuilder l2;
    l2.ether("02:00:00:00:00:01", kGatewayMac);
    auto outer = [&l2](bool v6) {
        PacketBuilder b = l2;
        if (v6)
            b.ipv6("2001:db8:ad:ff::1", "2001:db8:ad:ff::2");
        else
            b.ipv4("198.18.5.1", "198.18.5.2");
        return b;
    };
    unsigned n = 0;
    for (auto& r : records) {
        const unsigned type = unsigned(r.data[12]) << 8 | r.data[13];
        if (type != 0x0800 && type != 0x86dd) continue;  // ARP stays as it is
        const bool v6 = (n / 9) % 2 == 1;
        switch (n++ % 9) {
        case 0: break;  // native
        case 1: r.data = wrap_pppoe(r.data, 0x2a, l2); break;
        case 2: r.data = wrap_mpls(r.data, {16, 17}, l2); break;
        case 3: r.data = wrap_gre(r.data, outer(v6), {.checksum = true, .key = 7}); break;
        case 4: r.data = wrap_gre(r.data, outer(v6), {.ethernet = true}); break;
        case 5: r.data = wrap_l2tp(r.data, outer(v6).udp(kL2tpPort, kL2tpPort)); break;
        case 6: r.data = wrap_vxlan(r.data, outer(v6).udp(uint16_t(49152 + n % 64), 4789), 42); break;
        case 7: r.data = wrap_geneve(r.data, outer(v6).udp(49152, 6081), 5, {.options = Bytes(4, 0)}); break;
        case 8: r.data = wrap_gtpu(r.data, outer(v6).udp(2152, 2152), {.teid = 9, .sequence = uint16_t(n)}); break;
        }
    }
    return records;
}

std::vector<PcapRecord> fragmented_traffic() {
    std::vector<PcapRecord> out;
    uint32_t id = 0x7000;
    size_t n = 0;
    for (const PcapRecord& r : sample_traffic()) {
        const Bytes& f = r.data;
        const bool v4 = f.size() > 34 && f[12] == 0x08 && f[13] == 0x00;
        const bool v6 = f.size() > 54 && f[12] == 0x86 && f[13] == 0xdd && f[20] != 44;
        const size_t payload = v4 ? f.size() - 34 : v6 ? f.size() - 54 : 0;
        if (payload <= 56) {
            out.push_back(r);
            continue;
        }
        std::vector<Bytes> frags = v4 ? fragment_ipv4(f, 48) : fragment_ipv6(f, 64, id++);
        ++n;
        if (n % 3 == 0) std::reverse(frags.begin(), frags.end());
        if (n % 5 == 0) frags.insert(frags.begin() + 1, frags.front());
        uint64_t ts = r.ts_ns;
        for (auto& x : frags) out.push_back({ts++, std::move(x)});
    }
    return out;
}

}  // namespace optgate::tools
