#include <doctest/doctest.h>

#include <atomic>
#include <map>
#include <random>
#include <thread>
#include <unordered_map>

#include "core/consent_table.hpp"

using namespace optgate;

namespace {

SubscriberKey v4(uint32_t host_order) { return SubscriberKey{IpAddr::from_v4_host(host_order)}; }
SubscriberKey key(const char* text, unsigned keylen = 64) { return SubscriberKey::make(*IpAddr::parse(text), keylen); }

}  // namespace

TEST_CASE("upsert, lookup, erase for IPv4 and IPv6") {
    QsbrDomain rcu;
    ConsentTable t(rcu);
    CHECK_FALSE(t.lookup(key("100.64.0.10")).found);

    CHECK(t.upsert(key("100.64.0.10"), 0b101));
    CHECK(t.upsert(key("2001:db8:1000:2::77"), 0b010));
    auto a = t.lookup(key("100.64.0.10"));
    CHECK(a.found);
    CHECK(a.purposes == 0b101);
    // The IPv6 key is the /64: any address inside it finds the entry.
    auto b = t.lookup(key("2001:db8:1000:2:ffff::1"));
    CHECK(b.found);
    CHECK(b.purposes == 0b010);
    CHECK_FALSE(t.lookup(key("2001:db8:1000:3::1")).found);

    // A found entry with no purposes is different from no entry.
    CHECK(t.upsert(key("100.64.0.11"), 0));
    auto c = t.lookup(key("100.64.0.11"));
    CHECK(c.found);
    CHECK(c.purposes == 0);

    CHECK(t.upsert(key("100.64.0.10"), 0b001));
    CHECK(t.lookup(key("100.64.0.10")).purposes == 0b001);
    CHECK(t.size() == 3);

    CHECK(t.erase(key("100.64.0.10")));
    CHECK_FALSE(t.lookup(key("100.64.0.10")).found);
    CHECK_FALSE(t.erase(key("100.64.0.10")));
    CHECK(t.erase(key("2001:db8:1000:2::")));
    CHECK_FALSE(t.lookup(key("2001:db8:1000:2::1")).found);
    CHECK(t.size() == 1);

    // Re-insert after erase (tombstone reuse / revival).
    CHECK(t.upsert(key("2001:db8:1000:2::"), 0b100));
    CHECK(t.lookup(key("2001:db8:1000:2::9")).purposes == 0b100);
    CHECK(t.upsert(key("100.64.0.10"), 0xffffffffu));
    CHECK(t.lookup(key("100.64.0.10")).purposes == 0xffffffffu);
}

TEST_CASE("reserved IPv4 keys are refused and never found") {
    QsbrDomain rcu;
    ConsentTable t(rcu);
    CHECK_FALSE(t.upsert(v4(0), 1));
    CHECK_FALSE(t.upsert(v4(0xffffffff), 1));
    CHECK_FALSE(t.lookup_v4(0).found);
    CHECK_FALSE(t.lookup_v4(0xffffffff).found);
    CHECK(t.size() == 0);
}

TEST_CASE("split_v6: the address masked to the key length, as two host-order words") {
    const IpAddr a = *IpAddr::parse("2001:db8:1234:5678:9abc:def0:fedc:ba98");
    uint64_t hi = 0, lo = 0;
    ConsentTable::split_v6(a.bytes.data(), hi, lo);
    CHECK(hi == 0x20010db812345678ull);
    CHECK(lo == 0x9abcdef0fedcba98ull);
    // Every key length against the bit-by-bit reference: bit i of the
    // address survives exactly when i < key_length.
    std::mt19937 rng(11);
    for (unsigned len = 1; len <= 128; ++len) {
        IpAddr r;
        r.family = Family::v6;
        for (auto& b : r.bytes) b = uint8_t(rng() | 0x81);  // first and last bit of each byte set
        ConsentTable::split_v6(r.bytes.data(), hi, lo, len);
        for (unsigned i = 0; i < 128; ++i) {
            const bool in_address = (r.bytes[i / 8] >> (7 - i % 8)) & 1;
            const bool in_words = ((i < 64 ? hi >> (63 - i) : lo >> (127 - i)) & 1) != 0;
            REQUIRE_MESSAGE(in_words == (in_address && i < len), "key length ", len, ", bit ", i);
        }
    }
}

TEST_CASE("random operations agree with a reference map (growth, tombstones, clear)") {
    QsbrDomain rcu;
    ConsentTable t(rcu);
    std::unordered_map<uint32_t, uint32_t> ref4;
    std::mt19937 rng(42);
    for (int step = 0; step < 200000; ++step) {
        const uint32_t k = 0x64400000u + rng() % 5000;  // 100.64.x.y
        const int op = int(rng() % 10);
        if (op < 6) {
            const uint32_t m = rng();
            t.upsert(v4(k), m);
            ref4[k] = m;
        } else if (op < 9) {
            CHECK(t.erase(v4(k)) == (ref4.erase(k) == 1));
        } else if (step % 50000 == 49999) {
            t.clear();
            ref4.clear();
        }
    }
    CHECK(t.size_v4() == ref4.size());
    for (uint32_t k = 0x64400000u; k < 0x64400000u + 5000; ++k) {
        auto r = t.lookup_v4(k);
        auto it = ref4.find(k);
        REQUIRE(r.found == (it != ref4.end()));
        if (r.found) CHECK(r.purposes == it->second);
    }
    size_t seen = 0;
    t.for_each([&](const SubscriberKey& sk, PurposeMask m) {
        ++seen;
        CHECK(ref4.at(sk.addr.v4_host_order()) == m);
    });
    CHECK(seen == ref4.size());
}

TEST_CASE("IPv6 random operations agree with a reference map") {
    QsbrDomain rcu;
    ConsentTable t(rcu);
    std::map<uint32_t, uint32_t> ref;
    std::mt19937 rng(5);
    auto k6 = [](uint32_t n) {
        IpAddr a = *IpAddr::parse("2001:db8:1000::");
        a.bytes[4] = uint8_t(n >> 24);
        a.bytes[5] = uint8_t(n >> 16);
        a.bytes[6] = uint8_t(n >> 8);
        a.bytes[7] = uint8_t(n);
        return SubscriberKey::make(a, 64);
    };
    for (int step = 0; step < 100000; ++step) {
        const uint32_t n = rng() % 3000;
        if (rng() % 3) {
            const uint32_t m = rng();
            t.upsert(k6(n), m);
            ref[n] = m;
        } else {
            CHECK(t.erase(k6(n)) == (ref.erase(n) == 1));
        }
    }
    CHECK(t.size_v6() == ref.size());
    for (uint32_t n = 0; n < 3000; ++n) {
        auto r = t.lookup(k6(n));
        auto it = ref.find(n);
        REQUIRE(r.found == (it != ref.end()));
        if (r.found) CHECK(r.purposes == it->second);
    }
}

TEST_CASE("1M IPv4 entries: every lookup right, at most 32 bytes per entry") {
    QsbrDomain rcu;
    ConsentTable t(rcu);
    constexpr uint32_t kEntries = 1000000;
    constexpr uint32_t kBase = 0x64400001u;  // 100.64.0.1 upwards, inside 100.64.0.0/10
    for (uint32_t i = 0; i < kEntries; ++i) REQUIRE(t.upsert(v4(kBase + i), i * 2654435761u));
    CHECK(t.size() == kEntries);
    for (uint32_t i = 0; i < kEntries; ++i) {
        const auto r = t.lookup_v4(kBase + i);
        if (!r.found || r.purposes != i * 2654435761u) {
            FAIL("entry " << i << " wrong");
        }
    }
    // Addresses just outside the loaded range are absent.
    CHECK_FALSE(t.lookup_v4(kBase + kEntries).found);
    CHECK_FALSE(t.lookup_v4(kBase - 1).found);
    const double per_entry = double(t.memory_bytes()) / kEntries;
    MESSAGE("consent table: " << per_entry << " bytes per IPv4 entry at 1M entries");
    CHECK(per_entry <= 32.0);

    // Pre-sized for a snapshot: same bound.
    ConsentTable presized(rcu, kEntries);
    for (uint32_t i = 0; i < kEntries; ++i) presized.upsert(v4(kBase + i), 1);
    CHECK(double(presized.memory_bytes()) / kEntries <= 32.0);
}

TEST_CASE("readers see consistent entries while one writer changes them") {
    // A reader thread must only ever observe, for each key, a mask the writer
    // actually stored for that key (never a torn or foreign value), and must
    // see an update promptly.
    QsbrDomain rcu;
    ConsentTable t(rcu);
    constexpr uint32_t kKeys = 4096;
    auto mask_for = [](uint32_t k, uint32_t version) { return (k * 0x9E3779B1u) ^ (version << 20); };
    for (uint32_t k = 1; k <= kKeys; ++k) t.upsert(v4(0x64400000u + k), mask_for(k, 0));

    std::atomic<bool> stop{false};
    std::atomic<uint64_t> bad{0}, reads{0};
    std::atomic<uint32_t> version_seen{0};
    std::thread reader([&] {
        const auto id = rcu.register_reader();
        std::mt19937 rng(1);
        while (!stop.load(std::memory_order_relaxed)) {
            for (int i = 0; i < 256; ++i) {
                const uint32_t k = 1 + rng() % kKeys;
                const auto r = t.lookup_v4(0x64400000u + k);
                if (!r.found) continue;  // erased in this round
                const uint32_t version = (r.purposes ^ (k * 0x9E3779B1u)) >> 20;
                if ((r.purposes ^ mask_for(k, version)) != 0 || version > 4095) bad.fetch_add(1);
                if (version > version_seen.load(std::memory_order_relaxed)) version_seen.store(version);
                reads.fetch_add(1, std::memory_order_relaxed);
            }
            rcu.quiescent(id);
        }
        rcu.unregister_reader(id);
    });
    // The writer updates, erases, re-inserts and forces growth (new keys),
    // so arrays get rebuilt and retired under the reader.
    for (uint32_t version = 1; version < 200; ++version) {
        for (uint32_t k = 1; k <= kKeys; ++k) {
            if ((k + version) % 7 == 0)
                t.erase(v4(0x64400000u + k));
            else
                t.upsert(v4(0x64400000u + k), mask_for(k, version));
        }
        for (uint32_t j = 0; j < 64; ++j) t.upsert(v4(0x65000000u + version * 64 + j), 1);
        rcu.reclaim();
    }
    // Wait until the reader has seen a late version: updates become visible.
    for (int i = 0; i < 2000 && version_seen.load() < 150; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    stop = true;
    reader.join();
    rcu.synchronize();
    CHECK(bad.load() == 0);
    CHECK(reads.load() > 1000);
    CHECK(version_seen.load() >= 150);
}
