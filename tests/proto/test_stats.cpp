// The stats frame (data plane -> consentd): round trips, every rule the
// decoder enforces on entries, names and order, the limits, and the helpers
// data planes build reports with (src/proto/stats.hpp).
#include <doctest/doctest.h>

#include <algorithm>
#include <map>

#include "policy/loader.hpp"
#include "proto/codec.hpp"
#include "proto/stats.hpp"
#include "proto_fixture.hpp"

using namespace optgate;
using namespace optgate::proto;
using optgate::test_proto::bytes_of;
using optgate::test_proto::kPolicyYaml;

namespace {

// A stats frame built byte by byte, bypassing the encoder's checks.
struct RawEntry {
    uint8_t kind;
    std::string name;
    uint64_t value;
    std::string label, label_value;
};

std::string raw_stats(const std::vector<RawEntry>& entries, uint32_t count_field) {
    std::string p;
    auto u8 = [&](uint8_t v) { p.push_back(char(v)); };
    auto u32 = [&](uint32_t v) {
        for (int s = 24; s >= 0; s -= 8) p.push_back(char(v >> s));
    };
    auto u64 = [&](uint64_t v) {
        for (int s = 56; s >= 0; s -= 8) p.push_back(char(v >> s));
    };
    auto str8 = [&](const std::string& s) {
        u8(uint8_t(s.size()));
        p += s;
    };
    u32(count_field);
    for (const auto& e : entries) {
        u8(e.kind);
        str8(e.name);
        u64(e.value);
        str8(e.label);
        str8(e.label_value);
    }
    std::string f = {char(kMagic0), char(kMagic1), char(kVersion), char(FrameType::stats)};
    const uint32_t len = uint32_t(p.size());
    for (int s = 24; s >= 0; s -= 8) f.push_back(char(len >> s));
    return f + p;
}
std::string raw_stats(const std::vector<RawEntry>& entries) { return raw_stats(entries, uint32_t(entries.size())); }

DecodeResult decode_stats(const std::string& f) { return decode(bytes_of(f), Direction::to_server); }

std::vector<StatEntry> entries_of(const Stats& s) {
    std::vector<StatEntry> out;
    for_each_stat(s, [&](const StatView& e) {
        out.push_back({std::string(e.name), e.value, e.kind, std::string(e.label_name), std::string(e.label_value)});
    });
    return out;
}

std::vector<StatEntry> round_trip(const std::vector<StatEntry>& in) {
    std::string f;
    REQUIRE(encode_stats(f, in));
    const auto r = decode_stats(f);
    REQUIRE(r.status == DecodeStatus::frame);
    CHECK(r.consumed == f.size());
    REQUIRE(std::holds_alternative<Stats>(r.frame));
    return entries_of(std::get<Stats>(r.frame));
}

bool same(const StatEntry& a, const StatEntry& b) {
    return a.name == b.name && a.value == b.value && a.kind == b.kind && a.label_name == b.label_name &&
           a.label_value == b.label_value;
}

constexpr uint8_t kCounter = uint8_t(StatKind::counter), kGauge = uint8_t(StatKind::gauge);

}  // namespace

TEST_CASE("stats reports round-trip: kinds, values, labels, the longest names") {
    const std::string name64(64, 'n'), label32 = "l" + std::string(31, '9'), value64(64, 'v');
    const std::vector<StatEntry> in = {
        {"0_starts_with_a_digit", 1, StatKind::counter, "", ""},
        {"destination_passed", 0, StatKind::counter, "destination", "(none)"},
        {"destination_passed", 5, StatKind::counter, "destination", "example-adnet"},
        {"identifier_stripped", 9, StatKind::counter, "identifier", "EDNS client subnet: ~!#$%&'()*+,-./<>?@[]^`{|}"},
        {name64, ~uint64_t(0), StatKind::gauge, label32, value64},
        {"table_entries", 1u << 20, StatKind::gauge, "", ""},
    };
    const auto out = round_trip(in);
    REQUIRE(out.size() == in.size());
    for (size_t i = 0; i < in.size(); ++i) CHECK(same(out[i], in[i]));

    // An empty report is a report (a data plane with nothing to say yet).
    CHECK(round_trip({}).empty());
}

TEST_CASE("the decoder refuses malformed entries, and the encoder refuses to write them") {
    const RawEntry good{kCounter, "packets", 1, "", ""};
    REQUIRE(decode_stats(raw_stats({good})).status == DecodeStatus::frame);

    struct Case {
        const char* what = nullptr;
        RawEntry e;
    };
    const Case cases[] = {
        {"kind 0", {0, "packets", 1, "", ""}},
        {"kind 3", {3, "packets", 1, "", ""}},
        {"empty name", {kCounter, "", 1, "", ""}},
        {"upper case", {kCounter, "Packets", 1, "", ""}},
        {"dash", {kCounter, "rx-packets", 1, "", ""}},
        {"dot", {kCounter, "rx.packets", 1, "", ""}},
        {"65 bytes", {kCounter, std::string(65, 'a'), 1, "", ""}},
        {"label name starting with a digit", {kCounter, "rx", 1, "0port", "0"}},
        {"label name starting with _", {kCounter, "rx", 1, "_port", "0"}},
        {"label name with upper case", {kCounter, "rx", 1, "Port", "0"}},
        {"label name 33 bytes", {kCounter, "rx", 1, "p" + std::string(32, 'x'), "0"}},
        {"the label consentd adds", {kGauge, "rx", 1, "dataplane", "edge-2"}},
        {"label without a value", {kCounter, "rx", 1, "port", ""}},
        {"value without a label", {kCounter, "rx", 1, "", "0"}},
        {"value with a quote", {kCounter, "rx", 1, "port", "a\"b"}},
        {"value with a backslash", {kCounter, "rx", 1, "port", "a\\b"}},
        {"value with a newline", {kCounter, "rx", 1, "port", "a\nb"}},
        {"value with DEL", {kCounter, "rx", 1, "port", "a\x7f"}},
        {"value with a high byte", {kCounter, "rx", 1, "port", "caf\xc3\xa9"}},
        {"value 65 bytes", {kCounter, "rx", 1, "port", std::string(65, 'v')}},
    };
    for (const auto& c : cases) {
        CAPTURE(c.what);
        // Alone, and after a good entry (so the second entry is what fails).
        CHECK(decode_stats(raw_stats({c.e})).error == DecodeError::bad_stat);
        RawEntry before{kCounter, "a", 0, "", ""};
        CHECK(decode_stats(raw_stats({before, c.e})).error == DecodeError::bad_stat);
        std::string none;
        const StatEntry e{c.e.name, c.e.value, StatKind(c.e.kind), c.e.label, c.e.label_value};
        CHECK_FALSE(stat_valid(e));
        CHECK_FALSE(encode_stats(none, std::vector<StatEntry>{e}));
        CHECK(none.empty());
    }
    CHECK(to_string(DecodeError::bad_stat).find("[a-z0-9_]") != std::string_view::npos);
}

TEST_CASE("entries must be strictly sorted by name and label, one kind per name") {
    const RawEntry a{kCounter, "a", 1, "", ""}, b{kCounter, "b", 2, "", ""};
    const RawEntry b0{kCounter, "b", 3, "port", "0"}, b1{kCounter, "b", 4, "port", "1"};
    const RawEntry bw{kCounter, "b", 5, "worker", "0"};
    CHECK(decode_stats(raw_stats({a, b, b0, b1, bw})).status == DecodeStatus::frame);

    CHECK(decode_stats(raw_stats({b, a})).error == DecodeError::stats_order);
    CHECK(decode_stats(raw_stats({a, a})).error == DecodeError::stats_order);    // repeated
    CHECK(decode_stats(raw_stats({b0, b0})).error == DecodeError::stats_order);  // repeated with its label
    CHECK(decode_stats(raw_stats({b1, b0})).error == DecodeError::stats_order);  // label values out of order
    CHECK(decode_stats(raw_stats({bw, b0})).error == DecodeError::stats_order);  // label names out of order
    CHECK(decode_stats(raw_stats({b0, b})).error == DecodeError::stats_order);   // unlabelled sorts first
    RawEntry g = b1;
    g.kind = kGauge;
    CHECK(decode_stats(raw_stats({b, b0, g})).error == DecodeError::stats_kind);
    CHECK(to_string(DecodeError::stats_kind).find("counter and as a gauge") != std::string_view::npos);

    std::string none;
    CHECK_FALSE(encode_stats(
        none, std::vector<StatEntry>{{"b", 1, StatKind::counter, "", ""}, {"a", 1, StatKind::counter, "", ""}}));
    CHECK_FALSE(encode_stats(
        none, std::vector<StatEntry>{{"a", 1, StatKind::counter, "", ""}, {"a", 2, StatKind::gauge, "port", "0"}}));
    CHECK(none.empty());
}

TEST_CASE("counts and lengths: at most 4096 entries, every field inside the payload") {
    std::vector<StatEntry> many;
    for (uint32_t i = 0; i < kMaxStatsEntries; ++i) {
        char name[16];
        std::snprintf(name, sizeof name, "c%05u", i);
        many.push_back({name, i, StatKind::counter, "", ""});
    }
    const auto out = round_trip(many);
    REQUIRE(out.size() == kMaxStatsEntries);
    CHECK(same(out.back(), many.back()));

    std::string none;
    many.push_back({"z", 1, StatKind::counter, "", ""});
    CHECK_FALSE(encode_stats(none, many));
    CHECK(none.empty());
    CHECK(decode_stats(raw_stats({}, kMaxStatsEntries + 1)).error == DecodeError::bad_count);

    // A count promising more than the payload holds; a name running past it.
    const RawEntry a{kCounter, "a", 1, "", ""};
    CHECK(decode_stats(raw_stats({a}, 2)).error == DecodeError::truncated);
    std::string f = raw_stats({a});
    f[kHeaderSize + 4 + 1] = 100;  // the name's length
    CHECK(decode_stats(f).error == DecodeError::truncated);
    // Fewer announced than present: the rest is trailing.
    CHECK(decode_stats(raw_stats({a, {kCounter, "b", 1, "", ""}}, 1)).error == DecodeError::trailing_bytes);

    // Only a data plane sends stats.
    std::string s;
    REQUIRE(encode_stats(s, std::vector<StatEntry>{}));
    CHECK(decode(bytes_of(s), Direction::to_client).error == DecodeError::wrong_direction);
}

TEST_CASE("normalize_stats makes any list encodable, keeping the first of each") {
    std::vector<StatEntry> v = {
        {"zeta", 1, StatKind::counter, "", ""},         {"alpha", 2, StatKind::gauge, "", ""},
        {"Bad-Name", 3, StatKind::counter, "", ""},     {"alpha", 4, StatKind::gauge, "", ""},  // repeated: dropped
        {"rx", 5, StatKind::counter, "port", "1"},      {"rx", 6, StatKind::counter, "port", "0"},
        {"rx", 7, StatKind::gauge, "port", "2"},         // other kind: dropped
        {"tx", 8, StatKind::counter, "dataplane", "x"},  // reserved label: dropped
    };
    std::string problem;
    CHECK(normalize_stats(v, problem) == 4);
    CHECK(problem.find("Bad-Name") != std::string::npos);  // the first problem
    const std::vector<StatEntry> want = {
        {"alpha", 2, StatKind::gauge, "", ""},
        {"rx", 6, StatKind::counter, "port", "0"},
        {"rx", 5, StatKind::counter, "port", "1"},
        {"zeta", 1, StatKind::counter, "", ""},
    };
    REQUIRE(v.size() == want.size());
    for (size_t i = 0; i < v.size(); ++i) CHECK(same(v[i], want[i]));
    std::string f;
    CHECK(encode_stats(f, v));

    std::vector<StatEntry> big;
    for (uint32_t i = 0; i < kMaxStatsEntries + 10; ++i)
        big.push_back({"x", i, StatKind::gauge, "worker", std::to_string(i)});
    problem.clear();
    CHECK(normalize_stats(big, problem) == 10);
    CHECK(big.size() == kMaxStatsEntries);
    CHECK(problem.find("4096") != std::string::npos);
    f.clear();
    CHECK(encode_stats(f, big));

    std::vector<StatEntry> fine = {{"a", 1, StatKind::counter, "", ""}};
    problem.clear();
    CHECK(normalize_stats(fine, problem) == 0);
    CHECK(problem.empty());
}

TEST_CASE("append_counters: the pipeline's counters under their report names") {
    const auto rt = Runtime::compile(policy::load_policy_text(kPolicyYaml, "p.yaml").policy);
    REQUIRE(rt);
    WorkerCounters c;
    c.add(Counter::packets, 10);
    c.add(Counter::verdict_strip_no_consent, 3);
    c.destination_stripped[0] = 4;  // example-adnet
    c.destination_passed[1] = 5;    // web-analytics
    c.destination_stripped[rt->no_collector_slot()] = 6;
    c.identifier_passed[0] = 7;  // EDNS client subnet

    std::vector<StatEntry> v;
    append_counters(v, c, *rt);
    CHECK(v.size() == kCounterCount + size_t{2} * 3 + size_t{2} * 1);
    std::map<std::string, uint64_t> by;
    for (const auto& e : v) {
        CHECK(e.kind == StatKind::counter);
        by[e.name + (e.label_name.empty() ? "" : "{" + e.label_name + "=" + e.label_value + "}")] = e.value;
    }
    for (size_t i = 0; i < kCounterCount; ++i) CHECK(by.count(std::string(counter_name(Counter(i)))) == 1);
    CHECK(by["packets"] == 10);
    CHECK(by["verdict_strip_no_consent"] == 3);
    CHECK(by["forwarded"] == 0);
    CHECK(by["destination_stripped{destination=example-adnet}"] == 4);
    CHECK(by["destination_passed{destination=example-adnet}"] == 0);
    CHECK(by["destination_passed{destination=web-analytics}"] == 5);
    CHECK(by["destination_stripped{destination=(none)}"] == 6);
    CHECK(by["identifier_passed{identifier=EDNS client subnet}"] == 7);
    CHECK(by["identifier_stripped{identifier=EDNS client subnet}"] == 0);

    // Valid as it is: nothing to drop, and it encodes once sorted.
    std::string problem;
    CHECK(normalize_stats(v, problem) == 0);
    CHECK(problem.empty());
    std::string f;
    CHECK(encode_stats(f, v));
}

TEST_CASE("label values from policy names; help for the names optgate reports") {
    CHECK(stat_label_value("example-adnet") == "example-adnet");
    CHECK(stat_label_value("say \"hi\"\\\n") == "say _hi___");
    CHECK(stat_label_value("") == "_");
    CHECK(stat_label_value(std::string(100, 'x')).size() == kMaxStatLabelValueBytes);
    CHECK(stat_valid({"x", 0, StatKind::counter, "l", stat_label_value("\x01\x7f\"")}));

    CHECK(stat_help("packets") == counter_help(Counter::packets));
    CHECK(stat_help("verdict_strip_table_stale") == counter_help(Counter::verdict_strip_table_stale));
    CHECK_FALSE(stat_help("destination_stripped").empty());
    CHECK_FALSE(stat_help("control_connects").empty());
    CHECK_FALSE(stat_help("table_stale").empty());
    CHECK(stat_help("rx_packets").empty());
}
