// optgate-bench-mkmix: the traffic and consent of the DPDK benchmark
// (bench/dpdk/run, docs/benchmarks.md "DPDK data plane against testpmd").
//
//   optgate-bench-mkmix pcap MIX OUT.pcap [--flows 100000] [--seed 1]
//   optgate-bench-mkmix import OUT.ndjson [--subscribers 1000000]
//
// import: consentd's NDJSON import (docs/consentd.md#import-formats) of N
// subscribers, subscriber i bound to 100.64.0.1 + i, the odd ones opted in to
// `advertising` (config/policy.example.yaml): a 1M-entry consent table.
//
// pcap MIX: FLOWS distinct 5-tuples from subscribers of that table,
// interleaved at random, in order within a flow (the pcap is replayed in a
// loop by net_pcap's infinite_rx, so every flow starts again each pass):
//   nonhttp  2 frames a flow: 60 % TCP/443 (300 B up, 1200 B down), 30 % QUIC
//            (UDP/443, 1200 B each way), 10 % IPv6 TCP/443 (400 B up, 1200 B
//            down), all to ordinary servers (198.18.1.0 and up, not collectors)
//   dns      1 frame a flow: a query with EDNS Client Subnet (and, one in
//            four, a CPE MAC option) to the collector resolver 198.18.0.53:53
//            from a subscriber without consent: every option is stripped
//   http     2 frames a flow: SYN, then a 509-byte GET carrying X-UIDH and
//            X-MSISDN to the ad collector 203.0.113.0/25:80 from a subscriber
//            without consent: both values are scrubbed. FLOWS connections are
//            live in the HTTP flow table at once.
// Deterministic for a seed. Ethernet 02:00:00:00:00:01 -> 02:00:00:00:00:02.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <exception>
#include <fstream>
#include <random>
#include <string>
#include <unordered_set>
#include <vector>

#include "dns_builder.hpp"
#include "packet_builder.hpp"
#include "pcap_io.hpp"

using namespace optgate::test;

namespace {

constexpr uint32_t kFirstSubscriber = 0x64400001;  // 100.64.0.1, as bench-consentd's import

std::string v4(uint32_t a) {
    return std::to_string(a >> 24) + "." + std::to_string((a >> 16) & 255) + "." + std::to_string((a >> 8) & 255) +
           "." + std::to_string(a & 255);
}

const char* const kRequest =
    "GET /ad?slot=%u HTTP/1.1\r\nHost: ads.example.net\r\nUser-Agent: Mozilla/5.0 (Linux; Android 14; Pixel 8) "
    "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36\r\n"
    "Accept: text/html,application/xhtml+xml\r\nAccept-Language: en-US,en;q=0.9\r\n"
    "X-UIDH: OTgxNTk2NDk0ADJVquRu5NS5+rSbBANlrp+13QL7CXLGsFHpMi4LsUHw\r\n"
    "X-MSISDN: 12075550123\r\nConnection: keep-alive\r\n\r\n";

struct Generator {
    std::mt19937_64 rng;
    uint32_t subscribers;
    std::unordered_set<uint64_t> tuples;  // (subscriber address, source port): distinct 5-tuples

    // A subscriber without consent (even index) and a source port not used
    // with it before.
    std::pair<uint32_t, uint16_t> unused_tuple() {
        for (;;) {
            const uint32_t sub = kFirstSubscriber + 2 * uint32_t(rng() % (subscribers / 2));
            const uint16_t sport = uint16_t(1024 + rng() % 64000);
            if (tuples.insert(uint64_t(sub) << 16 | sport).second) return {sub, sport};
        }
    }
    std::string server() { return v4(0xc6120100u + uint32_t(rng() % 60000)); }  // 198.18.1.0 and up
};

std::vector<Bytes> nonhttp_flow(Generator& g) {
    const auto [sub, sport] = g.unused_tuple();
    const std::string src = v4(sub);
    const unsigned kind = unsigned(g.rng() % 10);
    if (kind < 6) {
        const std::string dst = g.server();
        return {PacketBuilder()
                    .ipv4(src, dst)
                    .tcp(sport, 443, {.seq = 1000, .ack = 1, .flags = PSH | ACK})
                    .payload(std::string(300, 'x'))
                    .build(),
                PacketBuilder()
                    .ipv4(dst, src)
                    .tcp(443, sport, {.seq = 1, .ack = 1300, .flags = ACK})
                    .payload(std::string(1200, 'y'))
                    .build()};
    }
    if (kind < 9) {
        const std::string dst = g.server();
        return {PacketBuilder().ipv4(src, dst).udp(sport, 443).payload(std::string(1200, 'q')).build(),
                PacketBuilder().ipv4(dst, src).udp(443, sport).payload(std::string(1200, 'r')).build()};
    }
    char src6[64];
    std::snprintf(src6, sizeof src6, "2001:db8:1%03x:%x::%x", unsigned(sub & 0xfff), unsigned(sub >> 12 & 0xffff),
                  unsigned(1 + g.rng() % 100));
    return {PacketBuilder()
                .ipv6(src6, "2001:db8:ffff::443")
                .tcp(sport, 443, {.seq = 1000, .ack = 1, .flags = PSH | ACK})
                .payload(std::string(400, 'v'))
                .build(),
            PacketBuilder()
                .ipv6("2001:db8:ffff::443", src6)
                .tcp(443, sport, {.seq = 1, .ack = 1400, .flags = ACK})
                .payload(std::string(1200, 'w'))
                .build()};
}

std::vector<Bytes> dns_flow(Generator& g) {
    const auto [sub, sport] = g.unused_tuple();
    DnsQuery q{.id = uint16_t(g.rng()),
               .qname = "www.example" + std::to_string(g.rng() % 10000) + ".com",
               .edns_udp_size = 1232};
    q.options.push_back({kEdnsClientSubnet, ecs_option_data(v4(sub & 0xffffff00u) + "/24")});
    if (g.rng() % 4 == 0)
        q.options.push_back({65001, {0x02, 0, 0, uint8_t(sub >> 16), uint8_t(sub >> 8), uint8_t(sub)}});
    return {PacketBuilder().ipv4(v4(sub), "198.18.0.53").udp(sport, 53).payload(dns_query(q)).build()};
}

std::vector<Bytes> http_flow(Generator& g) {
    const auto [sub, sport] = g.unused_tuple();
    const std::string src = v4(sub), dst = "203.0.113." + std::to_string(1 + g.rng() % 100);
    char req[1024];
    const int n = std::snprintf(req, sizeof req, kRequest, unsigned(100 + g.rng() % 900));
    const uint32_t isn = uint32_t(g.rng());
    return {PacketBuilder().ipv4(src, dst).tcp(sport, 80, {.seq = isn, .flags = SYN}).build(),
            PacketBuilder()
                .ipv4(src, dst)
                .tcp(sport, 80, {.seq = isn + 1, .ack = 1, .flags = PSH | ACK})
                .payload(std::string_view(req, size_t(n)))
                .build()};
}

int make_pcap(const std::string& mix, const std::string& out, size_t flows, uint64_t seed, uint32_t subscribers) {
    Generator g{std::mt19937_64(seed), subscribers, {}};
    std::vector<Bytes> (*make)(Generator&) = mix == "nonhttp" ? nonhttp_flow
                                             : mix == "dns"   ? dns_flow
                                             : mix == "http"  ? http_flow
                                                              : nullptr;
    if (!make) {
        std::fprintf(stderr, "optgate-bench-mkmix: unknown mix '%s' (nonhttp, dns, http)\n", mix.c_str());
        return 2;
    }
    std::vector<std::vector<Bytes>> all(flows);
    size_t frames = 0;
    for (auto& f : all) {
        f = make(g);
        frames += f.size();
    }
    // Interleave: each step takes the next frame of a random unfinished flow.
    std::vector<size_t> live(flows), next(flows, 0);
    for (size_t i = 0; i < flows; ++i) live[i] = i;
    std::vector<PcapRecord> records;
    records.reserve(frames);
    while (!live.empty()) {
        const size_t k = size_t(g.rng() % live.size());
        const size_t f = live[k];
        records.push_back({uint64_t(records.size()) * 1000, std::move(all[f][next[f]++])});
        if (next[f] == all[f].size()) {
            live[k] = live.back();
            live.pop_back();
        }
    }
    write_pcap(out, records);
    std::printf("%s: %zu frames, %zu flows (%s)\n", out.c_str(), records.size(), flows, mix.c_str());
    return 0;
}

int make_import(const std::string& out, uint32_t subscribers) {
    std::ofstream f(out, std::ios::binary);
    for (uint32_t i = 0; i < subscribers; ++i) {
        f << "{\"subscriber\":\"bench-" << i << "\",\"addresses\":[\"" << v4(kFirstSubscriber + i) << "\"]";
        if (i % 2) f << ",\"consents\":[\"advertising\"],\"notice_version\":\"2026-01\"";
        f << "}\n";
    }
    if (!f) throw std::runtime_error(out + ": cannot write");
    std::printf("%s: %u subscribers, half opted in to advertising\n", out.c_str(), subscribers);
    return 0;
}

const char* const kUsage =
    "usage: optgate-bench-mkmix pcap nonhttp|dns|http OUT.pcap [--flows N] [--seed S] [--subscribers N]\n"
    "       optgate-bench-mkmix import OUT.ndjson [--subscribers N]\n";

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> pos;
    size_t flows = 100000;
    uint64_t seed = 1;
    uint32_t subscribers = 1000000;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if ((a == "--flows" || a == "--seed" || a == "--subscribers") && i + 1 < argc) {
            const unsigned long long v = std::stoull(argv[++i]);
            if (a == "--flows")
                flows = size_t(v);
            else if (a == "--seed")
                seed = v;
            else
                subscribers = uint32_t(v);
        } else {
            pos.push_back(a);
        }
    }
    try {
        if (subscribers < 2 || subscribers > (1u << 22)) throw std::runtime_error("--subscribers: 2 to 4194304");
        if (pos.size() == 3 && pos[0] == "pcap") {
            if (flows == 0 || flows > size_t(subscribers / 2) * 64000) throw std::runtime_error("--flows out of range");
            return make_pcap(pos[1], pos[2], flows, seed, subscribers);
        }
        if (pos.size() == 2 && pos[0] == "import") return make_import(pos[1], subscribers);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "optgate-bench-mkmix: %s\n", e.what());
        return 2;
    }
    std::fputs(kUsage, stderr);
    return 2;
}
