// consentd's pseudonym key store (src/consentd/pseudonym_keys.hpp): keys
// per (collector, period) kept across restarts, rotated by an injected
// clock, deleted once their period ends, and a file only the owner reads.
#include <doctest/doctest.h>

#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "consentd/pseudonym_keys.hpp"
#include "fixture.hpp"

using namespace optgate;
using namespace optgate::consentd;
using namespace optgate::consentd::test;

namespace {

constexpr uint64_t kDaySeconds = 86400;

// sample_policy() with both collectors receiving pseudonyms: adnet rotating
// daily, metrics every 7 days.
Policy pseudonym_policy() {
    Policy p = sample_policy();
    p.collectors[0].deliver = Collector::Delivery::pseudonym;
    p.collectors[0].rotate_days = 1;
    p.collectors[1].deliver = Collector::Delivery::pseudonym;
    p.collectors[1].rotate_days = 7;
    return p;
}

const PeriodKey* find(const std::vector<PeriodKey>& keys, const std::string& collector, uint64_t period) {
    for (const auto& k : keys)
        if (k.collector == collector && k.period == period) return &k;
    return nullptr;
}

std::string slurp(const std::string& path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

}  // namespace

TEST_CASE("pseudonym keys: current and next per collector, kept across a restart, mode 0600") {
    TempDir dir;
    const std::string path = dir.file("ledger.db.pseudonym-keys");
    uint64_t now = 1000 * kDaySeconds + 3600;
    const Policy policy = pseudonym_policy();
    std::vector<PeriodKey> first;
    {
        PseudonymKeyStore store(path, [&] { return now; });
        first = store.keys_for(policy);
        REQUIRE(first.size() == 4);
        const PeriodKey* ad = find(first, "adnet", 1000);
        const PeriodKey* ad_next = find(first, "adnet", 1001);
        const PeriodKey* metrics = find(first, "metrics", 1000 / 7);
        REQUIRE(ad);
        REQUIRE(ad_next);
        REQUIRE(metrics);
        CHECK(ad->not_before() == 1000 * kDaySeconds);
        CHECK(ad->not_after() == 1001 * kDaySeconds);
        CHECK(metrics->not_after() == uint64_t(1000 / 7 + 1) * 7 * kDaySeconds);
        // Two collectors, two periods: four different random keys.
        CHECK(ad->key != ad_next->key);
        CHECK(ad->key != metrics->key);
        CHECK(ad->key != PseudonymKey{});
        // Asked again: the same keys, nothing new.
        const auto again = store.keys_for(policy);
        CHECK(find(again, "adnet", 1000)->key == ad->key);
        CHECK(store.next_change(policy) == 1001 * kDaySeconds);
    }
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    CHECK_FALSE(std::filesystem::exists(path + ".tmp"));
    // A restart within the period: the same keys.
    PseudonymKeyStore restarted(path, [&] { return now; });
    const auto after = restarted.keys_for(policy);
    for (const auto& k : first) {
        const PeriodKey* same = find(after, k.collector, k.period);
        REQUIRE(same);
        CHECK(same->key == k.key);
    }
}

TEST_CASE("pseudonym keys: at a period's end the next key becomes current and the ended one is deleted") {
    TempDir dir;
    const std::string path = dir.file("k");
    uint64_t now = 500 * kDaySeconds;
    const Policy policy = pseudonym_policy();
    PseudonymKeyStore store(path, [&] { return now; });
    const auto day0 = store.keys_for(policy);
    const PseudonymKey old_key = find(day0, "adnet", 500)->key;
    const PseudonymKey next_key = find(day0, "adnet", 501)->key;
    now = 501 * kDaySeconds;
    const auto day1 = store.keys_for(policy);
    REQUIRE(find(day1, "adnet", 501));
    CHECK(find(day1, "adnet", 501)->key == next_key);
    REQUIRE(find(day1, "adnet", 502));
    CHECK_FALSE(find(day1, "adnet", 500));
    // Gone from the file too: a restart cannot bring it back.
    PseudonymKeyStore restarted(path, [&] { return now; });
    const auto again = restarted.keys_for(policy);
    for (const auto& k : again) CHECK(k.key != old_key);
    CHECK(restarted.size() == 4);
}

TEST_CASE("pseudonym keys: a removed collector keeps its keys until their period ends; raw collectors get none") {
    TempDir dir;
    uint64_t now = 700 * kDaySeconds;
    Policy policy = pseudonym_policy();
    PseudonymKeyStore store(dir.file("k"), [&] { return now; });
    const PseudonymKey key = find(store.keys_for(policy), "adnet", 700)->key;
    Policy without = policy;
    without.collectors[0].deliver = Collector::Delivery::raw;
    const auto only_metrics = store.keys_for(without);
    CHECK(only_metrics.size() == 2);
    CHECK_FALSE(find(only_metrics, "adnet", 700));
    // Back within the period: the same key, the same pseudonyms.
    CHECK(find(store.keys_for(policy), "adnet", 700)->key == key);
    // A new rotation length is a new key.
    policy.collectors[0].rotate_days = 2;
    const auto rotated = store.keys_for(policy);
    REQUIRE(find(rotated, "adnet", 350));
    CHECK(find(rotated, "adnet", 350)->key != key);
}

TEST_CASE("pseudonym keys: a damaged or readable store is refused without showing a key") {
    TempDir dir;
    const std::string path = dir.file("k");
    uint64_t now = 10 * kDaySeconds;
    {
        PseudonymKeyStore store(path, [&] { return now; });
        store.keys_for(pseudonym_policy());
    }
    const std::string text = slurp(path);
    const std::string secret = text.substr(text.find('\n') + 1).substr(5, 32);  // after "1 10 "
    {
        std::ofstream out(path, std::ios::app);
        out << "1 11 " << secret.substr(0, 30) << "zz adnet\n";
    }
    try {
        PseudonymKeyStore store(path);
        FAIL("a damaged store was read");
    } catch (const std::runtime_error& e) {
        const std::string what = e.what();
        CHECK(what.find(":6:") != std::string::npos);
        CHECK(what.find(secret.substr(0, 30)) == std::string::npos);
    }
    ::chmod(path.c_str(), 0640);
    CHECK_THROWS_WITH_AS(PseudonymKeyStore{path}, doctest::Contains("chmod 600"), std::runtime_error);
}

TEST_CASE("pseudonym keys: a store that cannot be written hands out no new key") {
    TempDir dir;
    uint64_t now = 10 * kDaySeconds;
    PseudonymKeyStore store(dir.file("missing-dir/k"), [&] { return now; });
    CHECK_THROWS_AS(store.keys_for(pseudonym_policy()), std::runtime_error);
    CHECK(store.size() == 0);
}
