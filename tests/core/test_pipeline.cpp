#include <doctest/doctest.h>

#include "dns_builder.hpp"
#include "pipeline_fixture.hpp"

using namespace optgate;
using namespace optgate::test;

namespace {

Bytes dns4(const char* src, const char* dst, std::vector<EdnsOption> opts, const Ipv4Options& ip = {}) {
    return PacketBuilder()
        .ipv4(src, dst, ip)
        .udp(40000, 53)
        .payload(dns_query({.edns_udp_size = 1232, .options = std::move(opts)}))
        .build();
}

Policy tagging_policy() {
    Policy p = sample_policy();
    p.tagging.passed = 10;   // AF11
    p.tagging.stripped = 8;  // CS1
    p.tagging.exempt = 18;   // AF21
    return p;
}

uint8_t dscp_of(const Bytes& f) {
    // Ethernet without tags in these tests.
    if (f[12] == 0x08) return f[15] >> 2;
    return uint8_t(((f[14] & 0x0f) << 4 | f[15] >> 4) >> 2);
}
uint8_t ecn_of(const Bytes& f) {
    if (f[12] == 0x08) return f[15] & 3;
    return uint8_t((f[15] >> 4) & 3);
}

}  // namespace

TEST_CASE("non-IP, malformed and non-subscriber packets pass through byte-identical") {
    PipelineFixture fx;
    const Bytes arp = PacketBuilder().ethertype(0x0806).payload(std::string(28, '\x01')).build();
    const Bytes bad = PacketBuilder().ipv4("100.64.0.10", "203.0.113.5", {.total_length = 999}).build();
    const Bytes downstream =
        PacketBuilder().ipv4("203.0.113.5", "100.64.0.10").tcp(80, 40000).payload("HTTP/1.1 200 OK\r\n").build();
    const Bytes https =
        PacketBuilder().ipv4("100.64.0.10", "203.0.113.5").tcp(40000, 443).payload("\x16\x03\x01").build();
    const auto out = fx.run_burst({arp, bad, downstream, https});
    CHECK(out[0] == arp);
    CHECK(out[1] == bad);
    CHECK(out[2] == downstream);
    CHECK(out[3] == https);
    CHECK(fx.count(Counter::packets) == 4);
    CHECK(fx.count(Counter::forwarded) == 4);
    CHECK(fx.count(Counter::non_ip) == 1);
    CHECK(fx.count(Counter::bad_ipv4_length) == 1);
    CHECK(fx.count(Counter::not_from_subscriber) == 1);
    CHECK(fx.count(Counter::from_subscriber) == 1);
    CHECK(fx.count(Counter::rewritten) == 0);
}

TEST_CASE("bursts larger than the worker's burst size are split, not truncated") {
    PipelineFixture fx;
    std::vector<Bytes> frames;
    frames.reserve(150);
    for (int i = 0; i < 150; ++i) frames.push_back(dns4("100.64.0.12", "198.18.0.53", {kEcs4}));
    const auto out = fx.run_burst(frames);
    const Bytes expected = dns4("100.64.0.12", "198.18.0.53", {padding_for(kEcs4)});
    for (const auto& f : out) CHECK(f == expected);
    CHECK(fx.count(Counter::dns_rewritten) == 150);
    CHECK(fx.count(Counter::packets) == 150);
}

TEST_CASE("IPv6 subscribers are keyed by their /64") {
    PipelineFixture fx;
    auto q = [&](const char* src) {
        return PacketBuilder()
            .ipv6(src, "2001:db8:ad::53")
            .udp(40000, 53)
            .payload(dns_query({.edns_udp_size = 1232, .options = {kEcs4}}))
            .build();
    };
    // 2001:db8:1000:1::/64 consented to advertising (adnet is advertising).
    const Bytes a = q("2001:db8:1000:1::1");
    const Bytes b = q("2001:db8:1000:1:aaaa:bbbb:cccc:dddd");
    CHECK(fx.run(a) == a);
    CHECK(fx.run(b) == b);
    CHECK(fx.count(Counter::verdict_pass_consent) == 2);
    // The neighbouring /64 did not.
    const Bytes stripped = PacketBuilder()
                               .ipv6("2001:db8:1000:2::1", "2001:db8:ad::53")
                               .udp(40000, 53)
                               .payload(dns_query({.edns_udp_size = 1232, .options = {padding_for(kEcs4)}}))
                               .build();
    CHECK(fx.run(q("2001:db8:1000:2::1")) == stripped);
}

TEST_CASE("IPv6 key length comes from the policy") {
    Policy p = sample_policy();
    p.ipv6_key_length = 56;
    PipelineFixture fx(p);
    // The fixture keyed 2001:db8:1000:1:: at /56, i.e. 2001:db8:1000::/56.
    const Bytes f = PacketBuilder()
                        .ipv6("2001:db8:1000:ff::1", "2001:db8:ad::53")
                        .udp(40000, 53)
                        .payload(dns_query({.edns_udp_size = 1232, .options = {kEcs4}}))
                        .build();
    CHECK(fx.run(f) == f);
    CHECK(fx.count(Counter::verdict_pass_consent) == 1);
}

TEST_CASE("exemptions pass without consent and are counted apart") {
    PipelineFixture fx;
    // A DNS query with ECS to the billing exemption (203.0.113.200/29) from a
    // subscriber with no consent at all.
    const Bytes f = dns4("100.64.0.12", "203.0.113.201", {kEcs4});
    CHECK(fx.run(f) == f);
    CHECK(fx.count(Counter::verdict_pass_exempt) == 1);
    CHECK(fx.count(Counter::verdict_pass_consent) == 0);
    const auto& c = fx.worker->counters();
    const size_t exemption_slot = sample_policy().collectors.size();  // exemptions follow collectors
    CHECK(c.destination_passed[exemption_slot] == 1);
}

TEST_CASE("no policy installed: everything is dropped (fail closed)") {
    Enforcement e(Enforcement::Mode::controlled);
    Worker w(e);
    Bytes f = dns4("100.64.0.10", "198.18.0.53", {kEcs4});
    PacketRef ref{f.data(), uint32_t(f.size()), 1, Action::forward};
    CHECK(w.process_burst(&ref, 1, monotonic_ns()) == 0);
    CHECK(ref.action == Action::drop);
    CHECK(w.counters().get(Counter::no_policy_dropped) == 1);
}

TEST_CASE("a stale table strips even consented identifiers; contact makes it fresh again") {
    Policy p = sample_policy();
    // A limit no busy machine reaches between two lines of this test (with
    // 50 ms, a loaded CI machine made the first packet stale already).
    p.staleness_limit = std::chrono::seconds(10);
    PipelineFixture fx(p, Enforcement::Mode::controlled);
    const Bytes f = dns4("100.64.0.10", "198.18.0.53", {kEcs4});
    CHECK(fx.run(f) == f);  // fresh: passes
    // Pretend the last contact was 20 s ago (the machine has been up longer:
    // the build alone takes minutes).
    fx.enforcement.heard_from_control(monotonic_ns() - 20'000'000'000ull);
    CHECK(fx.run(f) == dns4("100.64.0.10", "198.18.0.53", {padding_for(kEcs4)}));
    CHECK(fx.count(Counter::verdict_strip_table_stale) == 1);
    // Exemptions are stripped too when stale.
    const Bytes ex = dns4("100.64.0.12", "203.0.113.201", {kEcs4});
    CHECK(fx.run(ex) == dns4("100.64.0.12", "203.0.113.201", {padding_for(kEcs4)}));
    fx.enforcement.heard_from_control(monotonic_ns());
    CHECK(fx.run(f) == f);
    CHECK(fx.count(Counter::verdict_pass_consent) == 2);
}

TEST_CASE("consent changes reach the next packet") {
    PipelineFixture fx;
    const Bytes f = dns4("100.64.0.10", "198.18.0.53", {kEcs4});
    CHECK(fx.run(f) == f);
    auto key = SubscriberKey::make(*IpAddr::parse("100.64.0.10"), 64);
    fx.enforcement.table()->upsert(key, 0b10);  // revoke advertising
    CHECK(fx.run(f) == dns4("100.64.0.10", "198.18.0.53", {padding_for(kEcs4)}));
    fx.enforcement.table()->upsert(key, 0b11);
    CHECK(fx.run(f) == f);
    fx.enforcement.table()->erase(key);
    CHECK(fx.run(f) == dns4("100.64.0.10", "198.18.0.53", {padding_for(kEcs4)}));
    CHECK(fx.count(Counter::verdict_strip_unknown_subscriber) == 1);
}

TEST_CASE("tagging is off by default") {
    PipelineFixture fx;
    const Bytes f = PacketBuilder().ipv4("100.64.0.10", "203.0.113.5", {.tos = 0x01}).tcp(1, 443).build();
    CHECK(fx.run(f) == f);
    CHECK(fx.count(Counter::tagged_passed) == 0);
}

TEST_CASE("tagging sets DSCP by verdict on IPv4 and IPv6, keeps ECN, fixes the IPv4 checksum") {
    PipelineFixture fx(tagging_policy());
    struct Case {
        const char* what;
        Bytes frame;
        int dscp;  // -1: unchanged
        Counter counter;
    };
    const Case cases[] = {
        {"v4 to collector, consent",
         PacketBuilder().ipv4("100.64.0.10", "203.0.113.5", {.tos = 0x03}).tcp(1, 443).build(), 10,
         Counter::tagged_passed},
        {"v4 to collector, no consent",
         PacketBuilder().ipv4("100.64.0.12", "203.0.113.5", {.tos = 0x02}).tcp(1, 443).build(), 8,
         Counter::tagged_stripped},
        {"v4 to exemption", PacketBuilder().ipv4("100.64.0.12", "203.0.113.201").tcp(1, 443).build(), 18,
         Counter::tagged_exempt},
        {"v4 elsewhere", PacketBuilder().ipv4("100.64.0.10", "8.8.8.8", {.tos = 0xb8}).tcp(1, 443).build(), -1,
         Counter::packets},
        {"v6 to collector, consent",
         PacketBuilder()
             .ipv6("2001:db8:1000:1::1", "2001:db8:ad::5", {.traffic_class = 0x01})
             .udp(1, 443)
             .payload("x")
             .build(),
         10, Counter::tagged_passed},
        {"v6 to collector, unknown subscriber",
         PacketBuilder().ipv6("2001:db8:1000:7::1", "2001:db8:ad::5", {.traffic_class = 0xfe}).tcp(1, 80).build(), 8,
         Counter::tagged_stripped},
        {"downstream, not a subscriber", PacketBuilder().ipv4("203.0.113.5", "100.64.0.10").tcp(443, 1).build(), -1,
         Counter::packets},
    };
    for (const auto& c : cases) {
        const std::string what = c.what;
        CAPTURE(what);
        const uint64_t before = c.counter == Counter::packets ? 0 : fx.count(c.counter);
        const Bytes out = fx.run(c.frame);
        REQUIRE(out.size() == c.frame.size());
        if (c.dscp < 0) {
            CHECK(out == c.frame);
            continue;
        }
        CHECK(dscp_of(out) == c.dscp);
        CHECK(ecn_of(out) == ecn_of(c.frame));
        CHECK(verify_checksums(out).ok());
        // Only the DSCP bits (and the IPv4 header checksum) changed.
        size_t diffs = 0;
        for (size_t i = 0; i < out.size(); ++i) diffs += out[i] != c.frame[i];
        CHECK(diffs <= 4);
        CHECK(fx.count(c.counter) == before + 1);
    }
}

TEST_CASE("a DNS query that is both stripped and tagged") {
    PipelineFixture fx(tagging_policy());
    const Bytes out = fx.run(dns4("100.64.0.12", "198.18.0.53", {kEcs4}));
    const Bytes expected = dns4("100.64.0.12", "198.18.0.53", {padding_for(kEcs4)}, {.tos = 8 << 2});
    CHECK(out == expected);
    CHECK(verify_checksums(out).ok());
}
