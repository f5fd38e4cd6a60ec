// Disclosure accounting (core/disclosure.hpp): counts per subscriber key,
// destination and identifier, the bounded table's overflow, the drain racing
// a worker, and names across a policy change.
#include <doctest/doctest.h>

#include <atomic>
#include <map>
#include <thread>

#include "dns_builder.hpp"
#include "pipeline_fixture.hpp"

using namespace optgate;
using namespace optgate::test;

namespace {

Bytes dns(const char* src, const char* dst, std::vector<EdnsOption> opts) {
    PacketBuilder b;
    if (std::string_view(src).find(':') != std::string_view::npos)
        b.ipv6(src, dst);
    else
        b.ipv4(src, dst);
    return b.udp(40000, 53).payload(dns_query({.edns_udp_size = 1232, .options = std::move(opts)})).build();
}

// A SYN and one request segment carrying `fields`, on one 4-tuple.
std::vector<Bytes> http(const char* src, const char* dst, uint16_t sport, const std::string& fields) {
    PacketBuilder b;
    b.ipv4(src, dst);
    const Bytes syn = PacketBuilder(b).tcp(sport, 80, {.seq = 1000, .flags = SYN}).build();
    const Bytes req = PacketBuilder(b)
                          .tcp(sport, 80, {.seq = 1001, .flags = ACK | PSH})
                          .payload("GET / HTTP/1.1\r\nHost: a.example\r\n" + fields + "\r\n")
                          .build();
    return {syn, req};
}

DisclosureEntry row(const char* key, const char* destination, const char* identifier, uint64_t passed,
                    uint64_t stripped) {
    const IpAddr a = *IpAddr::parse(key);
    return {a.family, a.bytes, destination, identifier, passed, stripped};
}

bool drain(DisclosureDrain& d, Worker& w, Enforcement& e, uint64_t now_ms, DisclosureBatch& out) {
    w.idle();  // the worker runs on this thread: it must not hold up the grace period
    Worker* workers[] = {&w};
    return d.drain(e.rcu(), workers, now_ms, out);
}

uint64_t sum(const std::array<uint64_t, kMaxIdentifiers>& a) {
    uint64_t n = 0;
    for (uint64_t v : a) n += v;
    return n;
}

}  // namespace

TEST_CASE("counted per subscriber key, destination and identifier: DNS and HTTP, IPv4 and IPv6, pass and strip") {
    PipelineFixture fx;
    // Consent: .10 advertising+analytics, .11 analytics, .12 none,
    // 2001:db8:1000:1::/64 advertising; keys are /64 (the policy's default).
    fx.run_burst({
        dns("100.64.0.10", "198.18.0.53", {kEcs4, kMac}),  // adnet-dns, advertising: passes
        dns("100.64.0.10", "198.18.0.53", {kEcs4}), dns("100.64.0.12", "198.18.0.53", {kEcs4}),  // no consent: stripped
        dns("100.64.0.10", "8.8.8.8", {kMac}),                       // no collector: stripped
        dns("203.0.113.9", "198.18.0.53", {kEcs4}),                  // not a subscriber: not counted
        dns("2001:db8:1000:1::1234", "2001:db8:ad::53", {kEcs4}),    // adnet: passes
        dns("2001:db8:1000:1:ffff::1", "2001:db8:ad::53", {kEcs4}),  // same /64 key
        dns("2001:db8:1000:2::1", "2001:db8:ad::53", {kMac}),        // unknown key: stripped
    });
    for (const Bytes& f : http("100.64.0.11", "203.0.113.5", 41000, "X-UIDH: abc\r\nX-MSISDN: 123\r\n")) fx.run(f);
    for (const Bytes& f : http("100.64.0.10", "203.0.113.201", 41001, "x-uidh: abc\r\n")) fx.run(f);  // billing

    DisclosureDrain drainer(1000);
    DisclosureBatch batch;
    REQUIRE(drain(drainer, *fx.worker, fx.enforcement, 2000, batch));
    CHECK(batch.start_unix_ms == 1000);
    CHECK(batch.end_unix_ms == 2000);
    CHECK(batch.overflowed == 0);
    const std::vector<DisclosureEntry> expected = {
        row("100.64.0.10", "(none)", "MAC address", 0, 1),
        row("100.64.0.10", "adnet-dns", "EDNS client subnet", 2, 0),
        row("100.64.0.10", "adnet-dns", "MAC address", 1, 0),
        row("100.64.0.10", "billing", "Verizon UIDH", 1, 0),
        row("100.64.0.11", "adnet", "MSISDN", 0, 1),
        row("100.64.0.11", "adnet", "Verizon UIDH", 0, 1),
        row("100.64.0.12", "adnet-dns", "EDNS client subnet", 0, 1),
        row("2001:db8:1000:1::", "adnet", "EDNS client subnet", 2, 0),
        row("2001:db8:1000:2::", "adnet", "MAC address", 0, 1),
    };
    CHECK(batch.entries == expected);
    // The same instances as the global counters.
    uint64_t passed = 0, stripped = 0;
    for (const auto& e : batch.entries) {
        passed += e.passed;
        stripped += e.stripped;
    }
    CHECK(passed == sum(fx.worker->counters().identifier_passed));
    CHECK(stripped == sum(fx.worker->counters().identifier_stripped));

    // Drained means gone: the next interval starts empty where this one ended.
    fx.run(dns("100.64.0.12", "198.18.0.53", {kMac}));
    REQUIRE(drain(drainer, *fx.worker, fx.enforcement, 3000, batch));
    CHECK(batch.start_unix_ms == 2000);
    CHECK(batch.entries == std::vector{row("100.64.0.12", "adnet-dns", "MAC address", 0, 1)});
}

TEST_CASE("IPv6 keys are masked to the policy's ipv6_key_length") {
    Policy p = sample_policy();
    p.ipv6_key_length = 56;
    PipelineFixture fx(p);
    fx.run_burst({dns("2001:db8:1000:1::1", "2001:db8:ad::53", {kEcs4}),
                  dns("2001:db8:1000:ff::1", "2001:db8:ad::53", {kEcs4})});
    DisclosureDrain drainer(0);
    DisclosureBatch batch;
    REQUIRE(drain(drainer, *fx.worker, fx.enforcement, 1, batch));
    // Both addresses are in 2001:db8:1000::/56, which has advertising.
    CHECK(batch.entries == std::vector{row("2001:db8:1000::", "adnet", "EDNS client subnet", 2, 0)});
}

TEST_CASE("accounting off: nothing to drain, enforcement unchanged") {
    PipelineFixture fx(sample_policy(), Enforcement::Mode::static_table, DisclosureConfig{0});
    CHECK(fx.worker->disclosure() == nullptr);
    const Bytes f = dns("100.64.0.12", "198.18.0.53", {kEcs4});
    CHECK(fx.run(f) == dns("100.64.0.12", "198.18.0.53", {padding_for(kEcs4)}));
    DisclosureDrain drainer(0);
    DisclosureBatch batch;
    REQUIRE(drain(drainer, *fx.worker, fx.enforcement, 1, batch));
    CHECK(batch.entries.empty());
    CHECK(fx.count(Counter::disclosure_overflow) == 0);
}

TEST_CASE("a full table: the rest is counted as overflow, nothing blocks, the next interval has room again") {
    PipelineFixture fx(sample_policy(), Enforcement::Mode::static_table, DisclosureConfig{4});
    REQUIRE(fx.worker->disclosure()->max_rows() == 3);
    const int keys = 50;
    for (int i = 1; i <= keys; ++i) {
        const std::string src = "100.64.1." + std::to_string(i);
        fx.run(dns(src.c_str(), "198.18.0.53", {kEcs4}));
    }
    CHECK(fx.count(Counter::dns_rewritten) == keys);  // enforcement goes on
    CHECK(fx.count(Counter::disclosure_overflow) == keys - 3);
    DisclosureDrain drainer(0);
    DisclosureBatch batch;
    REQUIRE(drain(drainer, *fx.worker, fx.enforcement, 1, batch));
    CHECK(batch.entries.size() == 3);
    CHECK(batch.overflowed == keys - 3);
    uint64_t counted = batch.overflowed;
    for (const auto& e : batch.entries) counted += e.passed + e.stripped;
    CHECK(counted == sum(fx.worker->counters().identifier_stripped));

    fx.run(dns("100.64.2.1", "198.18.0.53", {kEcs4}));
    REQUIRE(drain(drainer, *fx.worker, fx.enforcement, 2, batch));
    CHECK(batch.overflowed == 0);
    CHECK(batch.entries == std::vector{row("100.64.2.1", "adnet-dns", "EDNS client subnet", 0, 1)});
    CHECK(fx.count(Counter::disclosure_overflow) == keys - 3);
}

TEST_CASE("thousands of keys in a table three quarters full: each counted apart and exactly, interval after interval") {
    // 3,000 keys share 255 one-byte tags (DisclosureCounts::Table::tags):
    // many keys share a tag, and a search must still tell their rows apart.
    PipelineFixture fx(sample_policy(), Enforcement::Mode::static_table, DisclosureConfig{4096});
    REQUIRE(fx.worker->disclosure()->max_rows() == 3072);
    const int keys = 3000;
    auto source = [](int i) { return "100.64." + std::to_string(10 + i / 250) + "." + std::to_string(i % 250 + 1); };
    DisclosureDrain drainer(0);
    for (int interval = 1; interval <= 3; ++interval) {
        CAPTURE(interval);
        for (int round = 0; round < 3; ++round)
            for (int i = 0; i < keys; ++i)
                if ((i + interval) % 3 >= round) fx.run(dns(source(i).c_str(), "198.18.0.53", {kEcs4}));
        DisclosureBatch batch;
        REQUIRE(drain(drainer, *fx.worker, fx.enforcement, uint64_t(interval), batch));
        CHECK(batch.overflowed == 0);
        REQUIRE(batch.entries.size() == size_t(keys));
        std::map<std::string, uint64_t> stripped;
        for (const auto& e : batch.entries) {
            CHECK(e.passed == 0);
            stripped[IpAddr{e.family, e.key}.to_string()] += e.stripped;
        }
        int wrong = 0;
        for (int i = 0; i < keys; ++i) wrong += stripped[source(i)] != uint64_t((i + interval) % 3 + 1);
        CHECK(wrong == 0);
    }
    CHECK(fx.count(Counter::disclosure_overflow) == 0);
}

TEST_CASE("a policy change mid-interval: each count keeps the names of the policy it was made under") {
    PipelineFixture fx;
    // Policy B: collectors in reverse order and the two DNS identifiers
    // swapped and renamed, so every index that A's counts hold means
    // something else under B.
    Policy b = sample_policy();
    std::reverse(b.collectors.begin(), b.collectors.end());
    for (auto& c : b.collectors)
        if (c.name == "adnet-dns") c.name = "resolver-b";
    std::swap(b.identifiers[2], b.identifiers[3]);
    b.identifiers[3].name = "ECS (B)";
    auto install = [&](Policy p) {
        auto rt = Runtime::compile(std::move(p));
        REQUIRE(rt);
        auto table = fx.enforcement.make_table();
        table->upsert(SubscriberKey::make(*IpAddr::parse("100.64.0.10"), 64), 0b11);
        fx.enforcement.install(std::move(rt), std::move(table));
    };

    fx.run(dns("100.64.0.10", "198.18.0.53", {kEcs4}));
    install(b);
    fx.run(dns("100.64.0.10", "198.18.0.53", {kEcs4}));
    fx.run(dns("100.64.0.10", "198.18.0.53", {kEcs4}));
    install(sample_policy());  // a new runtime with A's names: merged with A's row by name
    fx.run(dns("100.64.0.10", "198.18.0.53", {kEcs4}));

    DisclosureDrain drainer(0);
    DisclosureBatch batch;
    REQUIRE(drain(drainer, *fx.worker, fx.enforcement, 1, batch));
    CHECK(batch.entries == std::vector{row("100.64.0.10", "adnet-dns", "EDNS client subnet", 2, 0),
                                       row("100.64.0.10", "resolver-b", "ECS (B)", 2, 0)});
    CHECK(batch.overflowed == 0);
}

TEST_CASE("more policies in one interval than a table can name: counted as overflow, never misnamed") {
    PipelineFixture fx;
    const unsigned policies = DisclosureCounts::kRuntimesPerTable + 2;
    for (unsigned i = 0; i < policies; ++i) {
        Policy p = sample_policy();
        p.collectors[1].name = "resolver-" + std::to_string(i);
        auto rt = Runtime::compile(std::move(p));
        auto table = fx.enforcement.make_table();
        table->upsert(SubscriberKey::make(*IpAddr::parse("100.64.0.10"), 64), 0b11);
        fx.enforcement.install(std::move(rt), std::move(table));
        fx.run(dns("100.64.0.10", "198.18.0.53", {kEcs4}));
    }
    DisclosureDrain drainer(0);
    DisclosureBatch batch;
    REQUIRE(drain(drainer, *fx.worker, fx.enforcement, 1, batch));
    REQUIRE(batch.entries.size() == DisclosureCounts::kRuntimesPerTable);
    for (unsigned i = 0; i < DisclosureCounts::kRuntimesPerTable; ++i)
        CHECK(batch.entries[i].destination == "resolver-" + std::to_string(i));
    CHECK(batch.overflowed == 2);
    CHECK(fx.count(Counter::disclosure_overflow) == 2);
}

TEST_CASE("a drainer racing a worker thread: no count lost or doubled") {
    PipelineFixture fx;
    // 8 subscribers x (ECS, MAC) per burst; .10 passes (advertising), the
    // others are stripped.
    std::vector<Bytes> pristine;
    std::vector<std::string> keys;
    for (int i = 8; i < 16; ++i) {
        keys.push_back("100.64.0." + std::to_string(i));
        pristine.push_back(dns(keys.back().c_str(), "198.18.0.53", {kEcs4, kMac}));
    }
    const int bursts = 4000;
    std::atomic<bool> done{false};
    std::atomic<uint64_t> drained{0};  // drains completed
    std::thread worker([&] {
        std::vector<Bytes> frames;
        std::vector<PacketRef> refs(pristine.size());
        for (int b = 0; b < bursts; ++b) {
            frames = pristine;
            for (size_t i = 0; i < frames.size(); ++i)
                refs[i] = {frames[i].data(), uint32_t(frames[i].size()), 1, Action::forward};
            fx.worker->process_burst(refs.data(), uint32_t(refs.size()), monotonic_ns());
            if (b % 500 == 0) {
                // Offline now and then, as an idle poll loop, until the
                // drainer has been through once more: however the threads
                // are scheduled, drains interleave with the counting.
                fx.worker->idle();
                const uint64_t next = drained.load() + 1;
                while (drained.load() < next) std::this_thread::yield();
            }
        }
        fx.worker->idle();
        done.store(true);
    });

    DisclosureDrain drainer(0);
    std::map<std::pair<std::string, std::string>, std::pair<uint64_t, uint64_t>> totals;
    uint64_t overflowed = 0, clock = 0;
    Worker* workers[] = {fx.worker.get()};
    auto take = [&] {
        DisclosureBatch batch;
        if (!drainer.drain(fx.enforcement.rcu(), workers, ++clock, batch)) return;
        drained.fetch_add(1);
        overflowed += batch.overflowed;
        for (const auto& e : batch.entries) {
            IpAddr a;
            a.family = e.family;
            a.bytes = e.key;
            auto& t = totals[{a.to_string(), e.identifier}];
            t.first += e.passed;
            t.second += e.stripped;
        }
    };
    while (!done.load()) take();
    worker.join();
    take();  // what the last bursts counted

    CHECK(drained.load() > bursts / 500);
    CHECK(overflowed == 0);
    uint64_t passed = 0, stripped = 0;
    for (const auto& k : keys) {
        for (const char* id : {"EDNS client subnet", "MAC address"}) {
            CAPTURE(k);
            const auto t = totals[{k, id}];
            if (k == "100.64.0.10")
                CHECK(t == std::pair<uint64_t, uint64_t>{bursts, 0});
            else
                CHECK(t == std::pair<uint64_t, uint64_t>{0, bursts});
            passed += t.first;
            stripped += t.second;
        }
    }
    CHECK(totals.size() == keys.size() * 2);
    CHECK(passed == sum(fx.worker->counters().identifier_passed));
    CHECK(stripped == sum(fx.worker->counters().identifier_stripped));
}
