// A worker over the sample policy with a small consent table, for tests that
// push frames through the real pipeline.
#pragma once

#include <doctest/doctest.h>

#include <memory>
#include <vector>

#include "core/enforcement.hpp"
#include "core/pipeline.hpp"
#include "packet_builder.hpp"
#include "policy_fixture.hpp"

namespace optgate::test {

// Consent in the fixture (purpose bits: 0 advertising, 1 analytics):
//   100.64.0.10             advertising + analytics
//   100.64.0.11             analytics
//   100.64.0.12             known, no consent
//   2001:db8:1000:1::/64    advertising
//   100.64.0.99             not in the table
struct PipelineFixture {
    explicit PipelineFixture(Policy policy = sample_policy(), Enforcement::Mode mode = Enforcement::Mode::static_table,
                             const DisclosureConfig& disclosure = {}, const ReassemblyConfig& fragments = {})
        : enforcement(mode) {
        std::string error;
        auto rt = Runtime::compile(std::move(policy), &error);
        REQUIRE_MESSAGE(rt, error);
        auto table = enforcement.make_table();
        auto key = [&](const char* a) { return SubscriberKey::make(*IpAddr::parse(a), rt->policy().ipv6_key_length); };
        table->upsert(key("100.64.0.10"), 0b11);
        table->upsert(key("100.64.0.11"), 0b10);
        table->upsert(key("100.64.0.12"), 0);
        table->upsert(key("2001:db8:1000:1::"), 0b01);
        enforcement.install(std::move(rt), std::move(table));
        worker = std::make_unique<Worker>(enforcement, HttpStageConfig{}, disclosure, fragments);
        // After the worker (tens of MiB touched at construction): a test's
        // staleness limit counts from here.
        if (mode == Enforcement::Mode::controlled) enforcement.heard_from_control(monotonic_ns());
        worker->set_emit(
            [](void* user, const uint8_t* frame, uint32_t len, uint32_t index) noexcept {
                static_cast<PipelineFixture*>(user)->emitted.push_back({index, Bytes(frame, frame + len)});
            },
            this);
    }
    // The emit hook holds `this`.
    PipelineFixture(const PipelineFixture&) = delete;
    PipelineFixture& operator=(const PipelineFixture&) = delete;
    PipelineFixture(PipelineFixture&&) = delete;
    PipelineFixture& operator=(PipelineFixture&&) = delete;
    ~PipelineFixture() = default;

    // Everything that leaves for a burst, in the order a driver sends it:
    // each forwarded frame, then the frames the worker emitted on its
    // arrival (reassembled datagrams cut again, released fragments).
    std::vector<Bytes> run_stream(std::vector<Bytes> frames, uint64_t ts_ns = 1'000'000'000) {
        emitted.clear();
        const auto out = run_burst(std::move(frames), ts_ns);
        std::vector<Bytes> stream;
        size_t e = 0;
        for (size_t i = 0; i < out.size(); ++i) {
            if (!out[i].empty()) stream.push_back(out[i]);
            for (; e < emitted.size() && emitted[e].first == i; ++e) stream.push_back(emitted[e].second);
        }
        CHECK(e == emitted.size());  // emitted in burst order, each after a frame of the burst
        return stream;
    }

    // Runs one frame through the worker; returns it as forwarded (empty if dropped).
    Bytes run(Bytes frame, uint64_t ts_ns = 1'000'000'000) {
        PacketRef ref{frame.data(), uint32_t(frame.size()), ts_ns, Action::forward};
        worker->process_burst(&ref, 1, monotonic_ns());
        if (ref.action == Action::drop) return {};
        frame.resize(ref.len);
        return frame;
    }

    // Runs frames as one burst; dropped ones come back empty.
    std::vector<Bytes> run_burst(std::vector<Bytes> frames, uint64_t ts_ns = 1'000'000'000) {
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

    Enforcement enforcement;
    std::unique_ptr<Worker> worker;
    std::vector<std::pair<uint32_t, Bytes>> emitted;  // (burst index, frame), last burst
};

}  // namespace optgate::test
