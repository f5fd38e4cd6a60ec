// Shared by the proto tests: a small policy (as consentd would send its YAML
// text), keys, and frame helpers.
#pragma once

#include <doctest/doctest.h>

#include <chrono>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "core/addr.hpp"
#include "core/consent_table.hpp"
#include "policy_fixture.hpp"
#include "proto/codec.hpp"

namespace optgate::test_proto {

// How long a test waits for something that should happen: generous, because
// the suite runs on a busy 2-core machine and under ASan (about 3x slower).
// Waits return as soon as their condition holds, so a generous deadline
// costs nothing when things go well; only what must NOT happen is given a
// short time.
inline constexpr std::chrono::milliseconds kPatience{60000};

// Two purposes; advertising (bit 0) to 203.0.113.0/25, analytics (bit 1) to
// 198.51.100.0/24; subscribers 100.64.0.0/10 and 2001:db8:1000::/36 keyed
// at /64; a short staleness limit.
inline const std::string kPolicyYaml = test::ecs_policy_yaml("30s", "device identifier");

// The same table meaning (purposes, key length, prefixes), another collector.
inline std::string policy_with_more_collectors() {
    std::string p = kPolicyYaml;
    const std::string anchor = "subscribers:\n";
    p.insert(p.find(anchor),
             "  - name: more-ads\n    purpose: advertising\n    description: More ads.\n"
             "    match:\n      prefixes: [198.18.0.0/15]\n");
    return p;
}

inline SubscriberKey key(const char* a) { return SubscriberKey{*IpAddr::parse(a)}; }

inline std::span<const uint8_t> bytes_of(const std::string& s) {
    return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Decodes every frame of `s` (which must hold whole, valid frames).
inline std::vector<proto::DecodeResult> decode_all(const std::string& s, proto::Direction d) {
    std::vector<proto::DecodeResult> out;
    size_t off = 0;
    while (off < s.size()) {
        auto r = proto::decode(bytes_of(s).subspan(off), d);
        if (r.status != proto::DecodeStatus::frame) break;
        off += r.consumed;
        out.push_back(r);
    }
    return out;
}

// A data plane's hello frame.
inline std::string hello(const std::string& name, uint64_t seq = 0, const std::string& stream = "") {
    std::string s;
    REQUIRE(proto::encode(s, proto::Hello{name, seq, stream}));
    return s;
}

// The goodbye a closed connection ended with, if any.
inline std::optional<proto::Goodbye::Code> goodbye_in(const std::string& bytes, std::string* message = nullptr) {
    std::optional<proto::Goodbye::Code> code;
    for (const auto& r : decode_all(bytes, proto::Direction::to_client))
        if (const auto* g = std::get_if<proto::Goodbye>(&r.frame)) {
            code = g->code;
            if (message) *message = std::string(g->message);
        }
    return code;
}

}  // namespace optgate::test_proto
