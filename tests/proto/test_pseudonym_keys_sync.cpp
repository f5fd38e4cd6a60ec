// Pseudonym keys on the data plane's side (docs/protocol.md, "Pseudonym
// keys"): the frames' codec, and TableSync installing the key of the
// current period into the policy, switching at the period's end by its own
// (injected) clock, and dropping keys whose period ended.
#include <doctest/doctest.h>

#include <string_view>

#include "core/enforcement.hpp"
#include "proto/codec.hpp"
#include "proto/table_sync.hpp"
#include "proto_fixture.hpp"

using namespace optgate;
using namespace optgate::proto;
using namespace optgate::test_proto;

namespace {

constexpr uint64_t kDay = 86400;

// The fixture's policy with both collectors receiving pseudonyms.
std::string pseudonym_policy() {
    std::string p = kPolicyYaml;
    for (const std::string_view d :
         {"    description: Example Ad Network Ltd.\n", "    description: Example Analytics Inc.\n"}) {
        const size_t at = p.find(d);
        REQUIRE(at != std::string::npos);
        p.insert(at + d.size(), "    deliver: pseudonym\n    rotate: 1d\n");
    }
    return p;
}

PseudonymKey key_of(uint8_t fill) {
    PseudonymKey k;
    k.fill(fill);
    return k;
}

struct KeySpec {
    std::string collector;
    uint64_t not_before, not_after;
    PseudonymKey key;
};

std::string keys_frame(const std::vector<KeySpec>& keys) {
    std::vector<PseudonymKeyView> views;
    views.reserve(keys.size());
    for (const auto& k : keys)
        views.push_back({k.collector, k.not_before, k.not_after, std::span<const uint8_t, kPseudonymKeyBytes>(k.key)});
    std::string s;
    REQUIRE(encode_pseudonym_keys(s, views));
    return s;
}

TableSync::Step feed(TableSync& sync, const std::string& bytes) {
    TableSync::Step last;
    for (const auto& r : decode_all(bytes, Direction::to_client)) {
        last = sync.on_frame(r.frame, monotonic_ns());
        if (!last.ok) return last;
    }
    return last;
}

std::string welcome() {
    std::string s;
    encode(s, Welcome{1, 1000, Welcome::Mode::snapshot});
    return s;
}

std::string snapshot(const std::string& policy, uint64_t seq = 1) {
    SnapshotEncoder enc;
    enc.add(key("100.64.0.10"), 3);
    std::vector<std::string> frames;
    REQUIRE(enc.finish(SnapshotBegin{seq, 0, 0, "s1", "tv1", "p.yaml", policy}, frames));
    std::string all;
    for (const auto& f : frames) all += f;
    return all;
}

// The key the installed policy gives a collector (nullopt: none).
std::optional<PseudonymKey> installed_key(Enforcement& e, std::string_view collector) {
    for (const auto& c : e.runtime()->policy().collectors)
        if (c.name == collector) return c.pseudonym_key;
    FAIL("no collector " << collector);
    return std::nullopt;
}

}  // namespace

TEST_CASE("pseudonym keys and features round-trip; bad ones are refused") {
    const std::string frame = keys_frame(
        {{"web-analytics", 10 * kDay, 11 * kDay, key_of(0xa5)}, {"example-adnet", 11 * kDay, 12 * kDay, key_of(0x5a)}});
    auto r = decode(bytes_of(frame), Direction::to_client);
    REQUIRE(r.status == DecodeStatus::frame);
    const auto& f = std::get<PseudonymKeys>(r.frame);
    CHECK(f.count == 2);
    std::vector<KeySpec> got;
    for_each_pseudonym_key(f, [&](const PseudonymKeyView& v) {
        PseudonymKey k;
        std::copy(v.key.begin(), v.key.end(), k.begin());
        got.push_back({std::string(v.collector), v.not_before_unix_s, v.not_after_unix_s, k});
    });
    REQUIRE(got.size() == 2);
    CHECK(got[0].collector == "web-analytics");
    CHECK(got[0].not_before == 10 * kDay);
    CHECK(got[0].not_after == 11 * kDay);
    CHECK(got[0].key == key_of(0xa5));
    CHECK(got[1].collector == "example-adnet");
    CHECK(got[1].key == key_of(0x5a));
    // Only consentd sends keys; only a data plane sends features.
    CHECK(decode(bytes_of(frame), Direction::to_server).error == DecodeError::wrong_direction);
    std::string feat;
    REQUIRE(encode(feat, Features{Features::kPseudonymKeys}));
    r = decode(bytes_of(feat), Direction::to_server);
    REQUIRE(r.status == DecodeStatus::frame);
    CHECK(std::get<Features>(r.frame).flags == Features::kPseudonymKeys);
    CHECK(decode(bytes_of(feat), Direction::to_client).error == DecodeError::wrong_direction);
    // Every truncation is never a frame.
    for (size_t n = 0; n < frame.size(); ++n)
        CHECK(decode(bytes_of(frame).first(n), Direction::to_client).status != DecodeStatus::frame);
    // An empty period, an empty name, too many keys: not encoded, not decoded.
    std::string out;
    const PseudonymKey k = key_of(1);
    const PseudonymKeyView empty_period{"a", 5, 5, std::span<const uint8_t, kPseudonymKeyBytes>(k)};
    CHECK_FALSE(encode_pseudonym_keys(out, std::span(&empty_period, 1)));
    const PseudonymKeyView no_name{"", 5, 6, std::span<const uint8_t, kPseudonymKeyBytes>(k)};
    CHECK_FALSE(encode_pseudonym_keys(out, std::span(&no_name, 1)));
    std::vector<PseudonymKeyView> many(kMaxPseudonymKeys + 1,
                                       PseudonymKeyView{"a", 5, 6, std::span<const uint8_t, kPseudonymKeyBytes>(k)});
    CHECK_FALSE(encode_pseudonym_keys(out, many));
    CHECK(out.empty());
    std::string bad = keys_frame({{"a", 5, 6, k}});
    // not_after (the last 8 bytes before the key) set to not_before.
    bad[bad.size() - kPseudonymKeyBytes - 1] = 5;
    CHECK(decode(bytes_of(bad), Direction::to_client).error == DecodeError::bad_value);
    std::string count = keys_frame({});
    count[kHeaderSize] = char(kMaxPseudonymKeys + 1);
    CHECK(decode(bytes_of(count), Direction::to_client).error == DecodeError::bad_count);
}

TEST_CASE("keys: the current period's key is installed, the next one takes over at its start, none after") {
    uint64_t now = 100 * kDay + 5;
    Enforcement e(Enforcement::Mode::controlled);
    TableSync sync(e, [&] { return now; });
    sync.connection_started();
    REQUIRE(feed(sync, welcome()).ok);
    // Keys before the table (consentd answers features right after hello):
    // held, and put into the snapshot's policy.
    REQUIRE(feed(sync, keys_frame({{"web-analytics", 100 * kDay, 101 * kDay, key_of(1)},
                                   {"web-analytics", 101 * kDay, 102 * kDay, key_of(2)},
                                   {"example-adnet", 100 * kDay, 101 * kDay, key_of(3)},
                                   {"example-adnet", 101 * kDay, 102 * kDay, key_of(4)},
                                   {"not-in-the-policy", 100 * kDay, 101 * kDay, key_of(9)}}))
                .ok);
    CHECK(sync.keys_held() == 5);
    REQUIRE(feed(sync, snapshot(pseudonym_policy())).installed);
    CHECK(installed_key(e, "web-analytics") == key_of(1));
    CHECK(installed_key(e, "example-adnet") == key_of(3));
    const ConsentTable* table = e.table();

    // Within the period nothing changes.
    now = 101 * kDay - 1;
    sync.tick();
    CHECK(sync.key_installs() == 0);
    CHECK(e.table() == table);

    // The next period: the next keys, by this clock, without consentd.
    now = 101 * kDay;
    sync.tick();
    CHECK(sync.key_installs() == 1);
    CHECK(installed_key(e, "web-analytics") == key_of(2));
    CHECK(installed_key(e, "example-adnet") == key_of(4));
    CHECK(sync.keys_held() == 2);  // the first period's are gone, the stranger's too
    // The table is the same table (copied next to the new policy).
    CHECK(e.table()->lookup(SubscriberKey::make(*IpAddr::parse("100.64.0.10"), 64)).purposes == 3);

    // Past every key it has: none, so those collectors' identifiers strip.
    now = 102 * kDay;
    sync.tick();
    CHECK(sync.key_installs() == 2);
    CHECK_FALSE(installed_key(e, "web-analytics").has_value());
    CHECK_FALSE(installed_key(e, "example-adnet").has_value());
    CHECK(sync.keys_held() == 0);
    CHECK(e.runtime()->pseudonym_key(0) == nullptr);
}

TEST_CASE("keys: a new key set replaces the old one; a policy update keeps the keys; a key not begun is not used") {
    uint64_t now = 50 * kDay;
    Enforcement e(Enforcement::Mode::controlled);
    TableSync sync(e, [&] { return now; });
    sync.connection_started();
    REQUIRE(feed(sync, welcome()).ok);
    REQUIRE(feed(sync, snapshot(pseudonym_policy())).installed);
    CHECK_FALSE(installed_key(e, "web-analytics").has_value());
    // Only a key of the next period: not used yet.
    REQUIRE(feed(sync, keys_frame({{"web-analytics", 51 * kDay, 52 * kDay, key_of(7)}})).ok);
    CHECK_FALSE(installed_key(e, "web-analytics").has_value());
    // The whole set is replaced: the earlier key is gone.
    REQUIRE(feed(sync, keys_frame({{"web-analytics", 50 * kDay, 51 * kDay, key_of(8)}})).ok);
    CHECK(sync.keys_held() == 1);
    CHECK(installed_key(e, "web-analytics") == key_of(8));
    now = 51 * kDay;
    sync.tick();
    CHECK_FALSE(installed_key(e, "web-analytics").has_value());
    now = 50 * kDay + 1;
    REQUIRE(feed(sync, keys_frame({{"web-analytics", 50 * kDay, 51 * kDay, key_of(8)}})).ok);
    // A policy update (same table) compiles with the keys held.
    std::string upd;
    REQUIRE(encode(upd, PolicyUpdate{1, "s2", "tv1", "p.yaml", pseudonym_policy() + "# v2\n"}));
    const auto s = feed(sync, upd);
    REQUIRE(s.ok);
    CHECK(s.installed);
    CHECK(installed_key(e, "web-analytics") == key_of(8));
    // An empty set: no keys.
    REQUIRE(feed(sync, keys_frame({})).ok);
    CHECK(sync.keys_held() == 0);
    CHECK_FALSE(installed_key(e, "web-analytics").has_value());
}

TEST_CASE("keys before welcome are a protocol error") {
    Enforcement e(Enforcement::Mode::controlled);
    TableSync sync(e);
    sync.connection_started();
    const auto s = feed(sync, keys_frame({}));
    CHECK_FALSE(s.ok);
    CHECK(s.code == Goodbye::Code::protocol_error);
}
