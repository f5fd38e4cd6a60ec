// bench-http: the HTTP stage's cost, through optgate::Worker, one core, over
// in-memory frames. Not a test: it asserts nothing and never gates CI.
//
//   bench-http [--seconds S] [--repeat N] [--json FILE] [--case TEXT] [--header-prefix] [--gpc]
//
// A typical 500-byte request with two identifier headers (X-UIDH,
// X-MSISDN), from 256 subscribers on 256 keep-alive connections to a
// collector, 16 requests per connection; bursts of 32 frames, each from a
// different connection. Six cases: strip and pass verdicts, one and four
// segments per request, and pass to a collector that receives pseudonyms
// (both values replaced by keyed pseudonyms, docs/http.md#pseudonyms). Each is compared with two baselines over the
// same frames in the same run: parse-only (parse_packet on each frame) and parse+scan (parse_packet, then find the
// blank line ending the request: the least any HTTP reader must do). Frames the stage rewrote are restored from a
// pristine copy between bursts, outside the timed region; SYNs that restart the connections each pass are not timed
// either.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "core/enforcement.hpp"
#include "core/pipeline.hpp"
#include "packet_builder.hpp"

using namespace optgate;
using namespace optgate::test;

namespace {

constexpr uint32_t kBurst = 32;
constexpr unsigned kConnections = 256;
constexpr unsigned kRequestsPerConnection = 16;

const std::string kRequest =
    "GET /ad/impression?slot=728x90&page=news%2Fworld&cb=8413 HTTP/1.1\r\n"
    "Host: ads.adnet.example\r\n"
    "User-Agent: Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.6099.144 Mobile Safari/537.36\r\n"
    "Accept: image/avif,image/webp,image/apng,image/*,*/*;q=0.8\r\n"
    "Accept-Encoding: gzip, deflate\r\n"
    "Accept-Language: en-US,en;q=0.9\r\n"
    "Referer: http://news.example.com/world/\r\n"
    "X-UIDH: OTgxNTk2NDk0ADJVquRu5NS5+rSbBANlrp+13QL7CXLGsFHpMi4LsUHw\r\n"
    "X-MSISDN: 12075550123\r\n"
    "Connection: keep-alive\r\n\r\n";

// `prefix`: the MSISDN identifier as `header_prefix: X-MSIS` (the same
// request bytes, matched as a header family: docs/benchmarks.md).
// `pseudonym`: the collector has `deliver: pseudonym` and a key.
Policy bench_policy(bool prefix, bool pseudonym) {
    Policy p;
    p.purposes = {{"advertising", "", {}, ""}};
    p.identifiers = {{Identifier::Kind::http_header, "UIDH", "X-UIDH", 0},
                     {Identifier::Kind::http_header, "MSISDN", prefix ? "X-MSIS" : "X-MSISDN", 0, prefix}};
    p.collectors = {{"adnet", 0, {{*Prefix::parse("203.0.113.0/25")}, {}, {}}, ""}};
    if (pseudonym) {
        p.collectors[0].deliver = Collector::Delivery::pseudonym;
        p.collectors[0].pseudonym_key = PseudonymKey{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    }
    p.subscriber_prefixes = {*Prefix::parse("100.64.0.0/10")};
    return p;
}

struct Case {
    std::string name;
    bool strip;
    unsigned segments;
    bool pseudonym = false;
};

struct Frames {
    std::vector<Bytes> syns;      // one per connection, untimed
    std::vector<Bytes> data;      // request segments, in send order
    std::vector<Bytes> pristine;  // copies to restore
};

// `--gpc`: the request also carries `Sec-GPC: 1`, after its identifiers
// (the same-segment case: held, then stripped even under consent).
std::string request_text(bool gpc) {
    std::string r = kRequest;
    if (gpc) r.insert(r.find("Connection: "), "Sec-GPC: 1\r\n");
    return r;
}

Frames make_frames(const Case& c, const std::string& request) {
    Frames f;
    std::vector<std::vector<Bytes>> per_conn(kConnections);
    for (unsigned i = 0; i < kConnections; ++i) {
        const std::string src = IpAddr::from_v4_host(0x64400100u + i).to_string();  // 100.64.1.0 + i
        const std::string dst = "203.0.113." + std::to_string(1 + i % 100);
        const uint16_t sport = uint16_t(20000 + i);
        const uint32_t isn = 1000u * i;
        f.syns.push_back(PacketBuilder().ipv4(src, dst).tcp(sport, 80, {.seq = isn, .flags = SYN}).build());
        uint32_t seq = isn + 1;
        for (unsigned r = 0; r < kRequestsPerConnection; ++r) {
            const size_t n = request.size();
            for (unsigned s = 0; s < c.segments; ++s) {
                const size_t a = n * s / c.segments, b = n * (s + 1) / c.segments;
                per_conn[i].push_back(PacketBuilder()
                                          .ipv4(src, dst)
                                          .tcp(sport, 80, {.seq = uint32_t(seq + a), .flags = PSH | ACK})
                                          .payload(request.substr(a, b - a))
                                          .build());
            }
            seq += uint32_t(n);
        }
    }
    // Round robin over connections: every burst holds 32 different flows.
    for (size_t k = 0; k < per_conn[0].size(); ++k)
        for (unsigned i = 0; i < kConnections; ++i) f.data.push_back(per_conn[i][k]);
    f.pristine = f.data;
    return f;
}

using Clock = std::chrono::steady_clock;

struct Result {
    double seconds = 0;
    uint64_t frames = 0;
};

// Times `work(refs, n)` over the frames in bursts, restoring frames between
// bursts untimed, for at least `min_seconds`; `reset()` runs untimed before
// each pass.
template <class Reset, class Work>
Result measure(Frames& f, double min_seconds, Reset&& reset, Work&& work) {
    Result r;
    std::vector<PacketRef> refs(kBurst);
    while (r.seconds < min_seconds) {
        reset();
        for (size_t b = 0; b < f.data.size(); b += kBurst) {
            const uint32_t n = uint32_t(std::min<size_t>(kBurst, f.data.size() - b));
            for (uint32_t i = 0; i < n; ++i) {
                Bytes& fr = f.data[b + i];
                std::memcpy(fr.data(), f.pristine[b + i].data(), fr.size());
                refs[i] = {fr.data(), uint32_t(fr.size()), 1'000'000'000, Action::forward};
            }
            const auto t0 = Clock::now();
            work(refs.data(), n);
            r.seconds += std::chrono::duration<double>(Clock::now() - t0).count();
            r.frames += n;
        }
    }
    return r;
}

struct Row {
    std::string name;
    double pipeline_rps, parse_rps, scan_rps, ns_per_request;
};

}  // namespace

int main(int argc, char** argv) {
    double seconds = 1.0;
    int repeat = 3;
    std::string json_path, only;
    bool prefix = false, gpc = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--seconds" && i + 1 < argc) {
            seconds = std::stod(argv[++i]);
        } else if (a == "--repeat" && i + 1 < argc) {
            repeat = std::stoi(argv[++i]);
        } else if (a == "--json" && i + 1 < argc) {
            json_path = argv[++i];
        } else if (a == "--case" && i + 1 < argc) {
            only = argv[++i];  // run the cases whose name contains this
        } else if (a == "--header-prefix") {
            prefix = true;
        } else if (a == "--gpc") {
            gpc = true;
        } else {
            std::fprintf(
                stderr,
                "usage: bench-http [--seconds S] [--repeat N] [--json FILE] [--case TEXT] [--header-prefix] [--gpc]\n");
            return 2;
        }
    }

    const std::vector<Case> cases = {{"strip, 1 segment", true, 1},
                                     {"pass, 1 segment", false, 1},
                                     {"strip, 4 segments", true, 4},
                                     {"pass, 4 segments", false, 4},
                                     {"pseudonym, 1 segment", false, 1, true},
                                     {"pseudonym, 4 segments", false, 4, true}};
    std::vector<Row> rows;
    for (const Case& c : cases) {
        if (!only.empty() && c.name.find(only) == std::string::npos) continue;
        Enforcement enforcement(Enforcement::Mode::static_table);
        auto rt = Runtime::compile(bench_policy(prefix, c.pseudonym));
        auto table = enforcement.make_table(kConnections);
        for (unsigned i = 0; i < kConnections; ++i)
            table->upsert(SubscriberKey::make(IpAddr::from_v4_host(0x64400100u + i), 64), c.strip ? 0 : 1);
        enforcement.install(rt, std::move(table));
        HttpStageConfig cfg;  // the defaults: 256Ki flows, 120 s
        Worker worker(enforcement, cfg);
        Frames f = make_frames(c, request_text(gpc));
        const double requests_per_frame = 1.0 / c.segments;
        auto restart = [&] {
            std::vector<PacketRef> refs;
            for (auto& s : f.syns) refs.push_back({s.data(), uint32_t(s.size()), 1'000'000'000, Action::forward});
            for (size_t b = 0; b < refs.size(); b += kBurst)
                worker.process_burst(refs.data() + b, uint32_t(std::min<size_t>(kBurst, refs.size() - b)),
                                     monotonic_ns());
        };
        const uint64_t now = monotonic_ns();
        double best_pipe = 1e30, best_parse = 1e30, best_scan = 1e30;
        uint64_t checksum = 0;
        for (int rep = 0; rep < repeat; ++rep) {
            const Result p = measure(f, seconds, restart,
                                     [&](PacketRef* refs, uint32_t n) { worker.process_burst(refs, n, now); });
            best_pipe = std::min(best_pipe, p.seconds / double(p.frames));
            const Result q = measure(
                f, seconds, [] {},
                [&](PacketRef* refs, uint32_t n) {
                    ParsedPacket pp;
                    for (uint32_t i = 0; i < n; ++i)
                        checksum += parse_packet(refs[i].data, refs[i].len, pp).ok + pp.payload_len;
                });
            best_parse = std::min(best_parse, q.seconds / double(q.frames));
            const Result s = measure(
                f, seconds, [] {},
                [&](PacketRef* refs, uint32_t n) {
                    ParsedPacket pp;
                    for (uint32_t i = 0; i < n; ++i) {
                        parse_packet(refs[i].data, refs[i].len, pp);
                        const void* end = memmem(refs[i].data + pp.payload_offset, pp.payload_len, "\r\n\r\n", 4);
                        checksum += end != nullptr;
                    }
                });
            best_scan = std::min(best_scan, s.seconds / double(s.frames));
        }
        const auto& k = worker.counters();
        if (k.get(Counter::http_conservative_flows) != 0 || k.get(Counter::http_out_of_order_dropped) != 0)
            std::fprintf(stderr, "warning: %s: the stage did not see clean streams\n", c.name.c_str());
        if ((c.strip || c.pseudonym) != (k.get(Counter::http_rewritten) > 0))
            std::fprintf(stderr, "warning: %s: unexpected rewrites\n", c.name.c_str());
        rows.push_back({c.name, requests_per_frame / best_pipe, requests_per_frame / best_parse,
                        requests_per_frame / best_scan, best_pipe * 1e9 / requests_per_frame});
        if (checksum == 42) std::puts("");  // keep the baselines' results alive
    }

    std::printf("bench-http: %zu-byte request, 2 identifier headers, %u connections, bursts of %u, best of %d\n\n",
                kRequest.size(), kConnections, kBurst, repeat);
    std::printf("%-20s %14s %12s %14s %14s %10s\n", "case", "requests/s", "ns/request", "parse-only/s", "parse+scan/s",
                "vs scan");
    for (const Row& r : rows)
        std::printf("%-20s %14.0f %12.1f %14.0f %14.0f %9.2fx\n", r.name.c_str(), r.pipeline_rps, r.ns_per_request,
                    r.parse_rps, r.scan_rps, r.pipeline_rps / r.scan_rps);
    std::string json = "{\"request_bytes\": " + std::to_string(kRequest.size()) + ", \"cases\": [";
    for (size_t i = 0; i < rows.size(); ++i) {
        const Row& r = rows[i];
        char buf[512];
        std::snprintf(buf, sizeof buf,
                      "%s{\"case\": \"%s\", \"requests_per_s\": %.0f, \"ns_per_request\": %.1f, "
                      "\"parse_only_requests_per_s\": %.0f, \"parse_scan_requests_per_s\": %.0f, "
                      "\"ratio_to_parse_scan\": %.3f, \"ratio_to_parse_only\": %.3f}",
                      i ? ", " : "", r.name.c_str(), r.pipeline_rps, r.ns_per_request, r.parse_rps, r.scan_rps,
                      r.pipeline_rps / r.scan_rps, r.pipeline_rps / r.parse_rps);
        json += buf;
    }
    json += "]}\n";
    std::printf("\n%s", json.c_str());
    if (!json_path.empty()) std::ofstream(json_path) << json;
    return 0;
}
