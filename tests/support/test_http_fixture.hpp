// Pipeline-level HTTP tests: a Worker over the sample policy, TCP segments
// from the packet builder, and a small independent reader of what comes out.
#pragma once

#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

#include "core/enforcement.hpp"
#include "core/pipeline.hpp"
#include "packet_builder.hpp"
#include "policy_fixture.hpp"

namespace optgate::httptest {

using test::Bytes;
using test::kSecond;
using test::PacketBuilder;

// One TCP connection from a subscriber, as segments.
struct Conn {
    std::string src = "100.64.0.12";  // known subscriber, no consent
    std::string dst = "203.0.113.5";  // collector "adnet" (advertising)
    uint16_t sport = 40000, dport = 80;
    bool v6 = false;
    std::vector<uint16_t> vlans;
    uint32_t isn = 1000;

    Bytes segment(uint32_t seq, std::string_view payload, uint8_t flags = test::ACK | test::PSH) const {
        PacketBuilder b;
        for (uint16_t v : vlans) b.vlan(v);
        if (v6)
            b.ipv6(src, dst);
        else
            b.ipv4(src, dst);
        return b.tcp(sport, dport, {.seq = seq, .ack = 1, .flags = flags}).payload(payload).build();
    }
    Bytes syn() const { return segment(isn, "", test::SYN); }
    // Stream bytes at `offset` (0 = the first byte after the SYN).
    Bytes data(size_t offset, std::string_view payload, uint8_t flags = test::ACK | test::PSH) const {
        return segment(uint32_t(isn + 1 + offset), payload, flags);
    }
};

// The TCP segment inside a frame, read without the core.
struct TcpView {
    bool ok = false;
    uint32_t seq = 0;
    uint8_t flags = 0;
    std::string payload;
};

inline TcpView read_tcp(const Bytes& f) {
    TcpView v;
    size_t off = 12;
    auto u16 = [&](size_t at) { return size_t(f[at] << 8 | f[at + 1]); };
    if (f.size() < 14) return v;
    while (u16(off) == 0x8100 || u16(off) == 0x88a8) off += 4;
    const size_t et = u16(off);
    off += 2;
    size_t l4 = 0, end = 0;
    if (et == 0x0800) {
        if (f[off + 9] != 6) return v;
        l4 = off + size_t(f[off] & 0x0f) * 4;
        end = off + u16(off + 2);
    } else if (et == 0x86dd) {
        if (f[off + 6] != 6) return v;
        l4 = off + 40;
        end = l4 + u16(off + 4);
    } else {
        return v;
    }
    v.seq = uint32_t(f[l4 + 4]) << 24 | uint32_t(f[l4 + 5]) << 16 | uint32_t(f[l4 + 6]) << 8 | f[l4 + 7];
    v.flags = f[l4 + 13];
    const size_t data = l4 + size_t(f[l4 + 12] >> 4) * 4;
    v.payload.assign(f.begin() + long(data), f.begin() + long(end));
    v.ok = true;
    return v;
}

// A frame's TCP payload as text.
inline std::string payload(const Bytes& f) { return read_tcp(f).payload; }

// Checks a frame's checksums (test::verify_checksums).
inline void check_frame(const Bytes& f) {
    const auto r = test::verify_checksums(f);
    CHECK_MESSAGE(r.ok(), r.detail);
}

struct HttpPipeline {
    // Consent as in the core's PipelineFixture (purpose bits: 0 advertising, 1 analytics):
    //   100.64.0.10 advertising + analytics, 100.64.0.11 analytics,
    //   100.64.0.12 no consent, 2001:db8:1000:1::/64 advertising.
    explicit HttpPipeline(Policy policy = test::sample_policy(), HttpStageConfig config = small())
        : enforcement(Enforcement::Mode::static_table) {
        std::string error;
        auto rt = Runtime::compile(std::move(policy), &error);
        REQUIRE_MESSAGE(rt, error);
        key_length = rt->policy().ipv6_key_length;
        auto table = enforcement.make_table();
        table->upsert(key("100.64.0.10"), 0b11);
        table->upsert(key("100.64.0.11"), 0b10);
        table->upsert(key("100.64.0.12"), 0);
        table->upsert(key("2001:db8:1000:1::"), 0b01);
        enforcement.install(std::move(rt), std::move(table));
        worker = std::make_unique<Worker>(enforcement, config);
        worker->set_emit(
            [](void* user, const uint8_t* frame, uint32_t len, uint32_t) noexcept {
                static_cast<HttpPipeline*>(user)->emitted.emplace_back(frame, frame + len);
            },
            this);
    }
    // The emit hook holds `this`.
    HttpPipeline(const HttpPipeline&) = delete;
    HttpPipeline& operator=(const HttpPipeline&) = delete;
    HttpPipeline(HttpPipeline&&) = delete;
    HttpPipeline& operator=(HttpPipeline&&) = delete;
    ~HttpPipeline() = default;

    static HttpStageConfig small() {
        HttpStageConfig c;
        c.flow_capacity = 1024;
        c.host_buffers = 16;
        return c;
    }

    SubscriberKey key(const char* a) const { return SubscriberKey::make(*IpAddr::parse(a), key_length); }
    void consent(const char* addr, PurposeMask m) { enforcement.table()->upsert(key(addr), m); }

    // One frame through the worker: as forwarded, or empty if dropped.
    Bytes run(Bytes frame, uint64_t ts_ns = kSecond) {
        PacketRef ref{frame.data(), uint32_t(frame.size()), ts_ns, Action::forward};
        worker->process_burst(&ref, 1, monotonic_ns());
        if (ref.action == Action::drop) return {};
        frame.resize(ref.len);
        return frame;
    }
    std::vector<Bytes> run_burst(std::vector<Bytes> frames, uint64_t ts_ns = kSecond) {
        std::vector<PacketRef> refs;
        refs.reserve(frames.size());
        for (auto& f : frames) refs.push_back({f.data(), uint32_t(f.size()), ts_ns, Action::forward});
        worker->process_burst(refs.data(), uint32_t(refs.size()), monotonic_ns());
        for (size_t i = 0; i < frames.size(); ++i) {
            if (refs[i].action == Action::drop)
                frames[i].clear();
            else
                frames[i].resize(refs[i].len);
        }
        return frames;
    }
    uint64_t count(Counter c) const { return worker->counters().get(c); }

    unsigned key_length = 64;
    Enforcement enforcement;
    std::unique_ptr<Worker> worker;
    std::vector<Bytes> emitted;  // frames the worker emitted (reassembled datagrams cut again), oldest first
};

}  // namespace optgate::httptest
