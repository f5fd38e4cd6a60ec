// The replay tool's consent file (docs/consent-file.md): records, keys and
// masks for valid files, located errors for invalid ones, in YAML and NDJSON.
#include <doctest/doctest.h>

#include "test_policy_support.hpp"

using namespace optgate;
using namespace optgate::policy;
using namespace optgate::policy::testing;

namespace {

// Purposes: advertising (bit 0), analytics (bit 1). Subscribers
// 100.64.0.0/10 and 2001:db8:1000::/36; IPv6 key length as given.
Policy policy_with_key_length(int key_length = 64) {
    return load("subscribers:\n  prefixes: [100.64.0.0/10, \"2001:db8:1000::/36\"]\n  ipv6_key_length: " +
                std::to_string(key_length) + "\n")
        .policy;
}

std::vector<Diagnostic> consent_errors(std::string_view yaml, const Policy& p = policy_with_key_length()) {
    try {
        load_consent_text(yaml, p, kFile);
    } catch (const PolicyError& e) {
        return e.diagnostics();
    }
    return {};
}

std::vector<Diagnostic> ndjson_errors(std::string_view text, const Policy& p = policy_with_key_length()) {
    try {
        load_consent_text(text, p, kFile, ConsentFormat::ndjson);
    } catch (const PolicyError& e) {
        return e.diagnostics();
    }
    return {};
}

// The same subscribers, keys and purposes, in the same order.
void check_same(const std::vector<ConsentRecord>& got, const std::vector<ConsentRecord>& want) {
    REQUIRE(got.size() == want.size());
    for (size_t i = 0; i < want.size(); ++i) {
        CAPTURE(i);
        CHECK(got[i].subscriber_id == want[i].subscriber_id);
        CHECK(got[i].keys == want[i].keys);
        CHECK(got[i].purposes == want[i].purposes);
    }
}

SubscriberKey key(const char* addr, unsigned key_length = 64) {
    return SubscriberKey::make(*IpAddr::parse(addr), key_length);
}

}  // namespace

TEST_SUITE("consent file") {

TEST_CASE("subscribers, their keys and their purpose masks") {
    const auto records = load_consent_text(R"(subscribers:
  - id: sub-1001
    addresses: [100.64.0.10, "2001:db8:1000:2::/64", 100.64.0.11/32]
    consents: [advertising, analytics]
  - id: sub-1002
    addresses: ["2001:db8:1000:3:aaaa:bbbb:cccc:dddd"]
    consents: [analytics, analytics]
  - id: sub-1003
    addresses: [100.64.0.12]
    consents: []
)",
                                           policy_with_key_length(), "c.yaml");
    REQUIRE(records.size() == 3);
    CHECK(records[0].subscriber_id == "sub-1001");
    CHECK(records[0].keys ==
          std::vector<SubscriberKey>{key("100.64.0.10"), key("2001:db8:1000:2::"), key("100.64.0.11")});
    CHECK(records[0].purposes == 0b11);
    // A bare IPv6 address stands for its /64.
    REQUIRE(records[1].keys.size() == 1);
    CHECK(records[1].keys[0].addr == *IpAddr::parse("2001:db8:1000:3::"));
    CHECK(records[1].purposes == 0b10);
    CHECK(records[2].purposes == 0);
    CHECK(records[2].keys == std::vector<SubscriberKey>{key("100.64.0.12")});

    CHECK(load_consent_text("subscribers: []\n", policy_with_key_length()).empty());
}

TEST_CASE("IPv6 prefixes must have the policy's key length") {
    const Policy p56 = policy_with_key_length(56);
    const auto records = load_consent_text(
        "subscribers:\n  - {id: a, addresses: [\"2001:db8:1000:200::/56\", \"2001:db8:1000:300::1\"], consents: []}\n",
        p56);
    REQUIRE(records.size() == 1);
    CHECK(records[0].keys ==
          std::vector<SubscriberKey>{key("2001:db8:1000:200::", 56), key("2001:db8:1000:300::", 56)});

    const auto ds = consent_errors("subscribers:\n  - {id: a, addresses: [\"2001:db8:1000:200::/64\"], consents: []}\n",
                                   p56);
    REQUIRE(ds.size() == 1);
    CHECK_DIAG(ds, 2, 25, "is a /64", "keyed by their /56 prefix (the policy's ipv6_key_length)");
}

// Found by tests/fuzz (regressions/consent/yaml-cpp-comma-hang*): the
// consent loader reads YAML through the same parse_document as the policy.
TEST_CASE("a comma outside a flow collection is an error, not a hang") {
    CHECK_DIAG(consent_errors(", a"), 1, 1, "unexpected ','");
    CHECK_DIAG(consent_errors("[sub-1001]\n,"), 2, 1, "unexpected ','");
}

TEST_CASE("an unknown purpose is an error at its location") {
    const auto ds = consent_errors(
        "subscribers:\n"                             // 1
        "  - id: sub-1001\n"                         // 2
        "    addresses: [100.64.0.10]\n"             // 3
        "    consents: [advertsing, telemetry]\n");  // 4
    REQUIRE(ds.size() == 2);
    CHECK_DIAG(ds, 4, 16, "unknown purpose 'advertsing'", "did you mean 'advertising'?");
    CHECK_DIAG(ds, 4, 28, "unknown purpose 'telemetry'", "it defines: advertising, analytics");
}

TEST_CASE("addresses outside the subscriber prefixes, prefixes and bad addresses") {
    const auto ds = consent_errors(
        "subscribers:\n"      // 1
        "  - id: sub-1001\n"  // 2
        "    addresses: [198.51.100.1, 100.64.0.0/24, \"2001:db8:2000::/64\", \"2001:db8:1000:1::1/64\", nope]\n"
        "    consents: []\n");  // 4
    CHECK_DIAG(ds, 3, 17, "'198.51.100.1' is not in the policy's subscriber prefixes");
    CHECK_DIAG(ds, 3, 31, "'100.64.0.0/24' is a prefix", "IPv4 subscribers are keyed by address");
    CHECK_DIAG(ds, 3, 46, "'2001:db8:2000::/64' is not in the policy's subscriber prefixes");
    CHECK_DIAG(ds, 3, 68, "'2001:db8:1000:1::1/64' has host bits set");
    CHECK_DIAG(ds, 3, 93, "'nope' is not an IPv4 or IPv6 address");
    CHECK(ds.size() == 5);
}

TEST_CASE("one subscriber key bound to two subscribers") {
    const auto ds = consent_errors(
        "subscribers:\n"                                                                   // 1
        "  - {id: a, addresses: [100.64.0.10, \"2001:db8:1000:1::/64\"], consents: []}\n"  // 2
        "  - {id: b, addresses: [100.64.0.10, \"2001:db8:1000:1::99\"], consents: []}\n"   // 3
        "  - {id: c, addresses: [100.64.0.20, 100.64.0.20], consents: []}\n"               // 4
        "  - {id: a, addresses: [100.64.0.30], consents: []}\n");                          // 5
    CHECK_DIAG(ds, 3, 25, "'100.64.0.10' is already bound to subscriber 'a' at line 2");
    CHECK_DIAG(ds, 3, 38,
               "'2001:db8:1000:1::99' (subscriber key 2001:db8:1000:1::/64) is already bound to subscriber 'a'");
    CHECK_DIAG(ds, 4, 38, "'100.64.0.20' is listed twice for subscriber 'c'");
    CHECK_DIAG(ds, 5, 10, "subscriber id 'a' is used twice (first at line 2)");
    CHECK(ds.size() == 4);
}

TEST_CASE("unknown keys, missing keys, wrong types and bad ids") {
    const auto ds = consent_errors(
        "subscribers:\n"                 // 1
        "  - id: sub 1\n"                // 2
        "    adresses: [100.64.0.10]\n"  // 3
        "    consents: [advertising]\n"  // 4
        "  - id: sub-2\n"                // 5
        "    addresses: 100.64.0.11\n"   // 6
        "    consents: advertising\n"    // 7
        "  - id: sub-3\n"                // 8
        "    addresses: []\n"            // 9
        "    consents: []\n"             // 10
        "subscriber: []\n");             // 11
    CHECK_DIAG(ds, 2, 9, "subscriber id 'sub 1' is not valid");
    CHECK_DIAG(ds, 3, 5, "unknown key 'adresses' in subscriber 'sub 1'", "did you mean 'addresses'?");
    CHECK_DIAG(ds, 2, 5, "subscriber 'sub 1' is missing the required key 'addresses'");
    CHECK_DIAG(ds, 6, 16, "'addresses' must be a list, not text");
    CHECK_DIAG(ds, 7, 15, "'consents' must be a list, not text");
    CHECK_DIAG(ds, 9, 16, "subscriber 'sub-3' lists no addresses");
    CHECK_DIAG(ds, 11, 1, "unknown key 'subscriber' in the consent file", "did you mean 'subscribers'?");
    CHECK(ds.size() == 7);

    CHECK_DIAG(consent_errors("subscribers: {sub-1: x}\n"), 1, 14, "'subscribers' must be a list, not a map");
    CHECK_DIAG(consent_errors("subscribers: [x]\n"), 1, 15, "item 1 of 'subscribers' must be a map, not text");
    CHECK_DIAG(consent_errors("{}\n"), 1, 1, "the consent file is missing the required key 'subscribers'");
    CHECK_DIAG(consent_errors("subscribers: [\n"), 2, 1, "YAML syntax error");
    CHECK_DIAG(consent_errors(""), 1, 1, "the file is empty");
}

TEST_CASE("a consent file that cannot be read is reported with its name") {
    try {
        load_consent_file("/nonexistent/consent.yaml", policy_with_key_length());
        FAIL("should throw");
    } catch (const PolicyError& e) {
        REQUIRE(e.diagnostics().size() == 1);
        CHECK(e.diagnostics()[0].to_string().starts_with("/nonexistent/consent.yaml: cannot read the file"));
    }
}

TEST_CASE("the example consent file matches the example policy") {
    const Policy p = load_policy_file(OPTGATE_SOURCE_ROOT "/config/policy.example.yaml").policy;
    const auto records = load_consent_file(OPTGATE_SOURCE_ROOT "/config/consent.example.yaml", p);
    REQUIRE(records.size() == 5);
    const PurposeMask ads = 1u << *p.purpose_index("advertising");
    const PurposeMask analytics = 1u << *p.purpose_index("analytics");
    CHECK(records[0].subscriber_id == "sub-1001");
    CHECK(records[0].purposes == (ads | analytics));
    CHECK(records[0].keys == std::vector<SubscriberKey>{key("100.64.0.10"), key("2001:db8:1000:1::")});
    size_t without_consent = 0, v6 = 0;
    for (const auto& r : records) {
        without_consent += r.purposes == 0;
        for (const auto& k : r.keys) v6 += k.addr.family == Family::v6;
    }
    CHECK(without_consent == 1);
    CHECK(v6 == 3);
}

// ---- NDJSON: the same subscribers, a line each ----

TEST_CASE("NDJSON: a line per subscriber, read as its YAML twin is") {
    const std::string yaml = R"(subscribers:
  - {id: sub-1001, addresses: [100.64.0.10, "2001:db8:1000:2::/64", 100.64.0.11/32], consents: [advertising, analytics]}
  - {id: sub-1002, addresses: ["2001:db8:1000:3:aaaa:bbbb:cccc:dddd"], consents: [analytics, analytics]}
  - {id: sub-1003, addresses: [100.64.0.12], consents: []}
)";
    // Blank lines, spaces around the JSON, CRLF endings and no final newline.
    const std::string ndjson =
        R"({"id": "sub-1001", "addresses": ["100.64.0.10", "2001:db8:1000:2::/64", "100.64.0.11/32"], )"
        R"("consents": ["advertising", "analytics"]})"
        "\n\n  \t\n"
        R"(  {"consents": ["analytics", "analytics"], "id": "sub-1002", )"
        R"("addresses": ["2001:db8:1000:3:aaaa:bbbb:cccc:dddd"]}  )"
        "\r\n"
        R"({"id":"sub-1003","addresses":["100.64.0.12"],"consents":[]})";
    const auto from_yaml = load_consent_text(yaml, policy_with_key_length());
    const auto from_ndjson = load_consent_text(ndjson, policy_with_key_length(), kFile, ConsentFormat::ndjson);
    REQUIRE(from_yaml.size() == 3);
    check_same(from_ndjson, from_yaml);
    CHECK(from_ndjson[1].keys == std::vector<SubscriberKey>{key("2001:db8:1000:3::")});
    CHECK(from_ndjson[0].purposes == 0b11);

    CHECK(load_consent_text("", policy_with_key_length(), kFile, ConsentFormat::ndjson).empty());
    CHECK(load_consent_text("\n \n", policy_with_key_length(), kFile, ConsentFormat::ndjson).empty());
}

TEST_CASE("NDJSON: each error at its line, every line checked") {
    const auto ds = ndjson_errors(
        R"({"id": "a", "addresses": ["100.64.0.10", "2001:db8:1000:1::/64"], "consents": []})"
        "\n"  // 1
        R"({"id": "b", "addresses": ["100.64.0.10", "2001:db8:1000:1::99"], "consents": ["advertsing"]})"
        "\n"  // 2
        R"({"id": "c", "addresses": ["100.64.0.20", "100.64.0.20"], "consents": ["telemetry"]})"
        "\n"  // 3
        R"({"id": "a", "addresses": ["198.51.100.1", "100.64.0.0/24", "nope"], "consents": []})"
        "\n"  // 4
        R"({"id": "d", "addresses": [], "consents": []})"
        "\n"  // 5
        R"({"id": "e", "addresses": ["100.64.0.40"], "consents": [])"
        "\n"  // 6: cut short
        R"({"id": "f", "id": "g", "addresses": ["100.64.0.41"], "consents": []})"
        "\n"  // 7
        R"(["h", ["100.64.0.42"], []])"
        "\n"  // 8
        R"({"id": "i", "adresses": ["100.64.0.43"], "consents": []})"
        "\n"  // 9
        R"({"id": "j", "addresses": ["100.64.0.44"]})"
        "\n"  // 10
        R"({"id": "k", "addresses": "100.64.0.45", "consents": []})"
        "\n"  // 11
        R"({"id": "sub 1", "addresses": ["100.64.0.46"], "consents": []})"
        "\n"  // 12
        R"({"id": "l", "addresses": ["100.64.0.47"], "consents": []} {})"
        "\n"  // 13
        R"({"id": "m", "addresses": ["100.64.0.48"], "consents": []})"
        "\n");  // 14: valid
    CHECK_DIAG(ds, 2, 1, "'100.64.0.10' is already bound to subscriber 'a' at line 1");
    CHECK_DIAG(ds, 2, 1,
               "'2001:db8:1000:1::99' (subscriber key 2001:db8:1000:1::/64) is already bound to subscriber 'a'");
    CHECK_DIAG(ds, 2, 1, "unknown purpose 'advertsing'", "did you mean 'advertising'?");
    CHECK_DIAG(ds, 3, 1, "'100.64.0.20' is listed twice for subscriber 'c' (first at line 3)");
    CHECK_DIAG(ds, 3, 1, "unknown purpose 'telemetry'", "it defines: advertising, analytics");
    CHECK_DIAG(ds, 4, 1, "subscriber id 'a' is used twice (first at line 1)");
    CHECK_DIAG(ds, 4, 1, "'198.51.100.1' is not in the policy's subscriber prefixes");
    CHECK_DIAG(ds, 4, 1, "'100.64.0.0/24' is a prefix");
    CHECK_DIAG(ds, 4, 1, "'nope' is not an IPv4 or IPv6 address");
    CHECK_DIAG(ds, 5, 1, "subscriber 'd' lists no addresses");
    CHECK_DIAG(ds, 6, 1, "malformed JSON");
    CHECK_DIAG(ds, 7, 1, "duplicate key 'id'");
    CHECK_DIAG(ds, 8, 1, "a line must be one JSON object");
    CHECK_DIAG(ds, 9, 1, "unknown field 'adresses'");
    CHECK_DIAG(ds, 10, 1, "missing field 'consents'");
    CHECK_DIAG(ds, 11, 1, "field 'addresses' must be a list of strings");
    CHECK_DIAG(ds, 12, 1, "subscriber id 'sub 1' is not valid");
    CHECK_DIAG(ds, 13, 1, "unexpected content after the value");
    CHECK(ds.size() == 18);
}

TEST_CASE("NDJSON: a file of errors stops after 100 of them") {
    std::string text;
    for (int i = 0; i < 150; ++i)
        text += R"({"id": "x)" + std::to_string(i) +
                R"(", "addresses": [], "consents": []})"
                "\n";
    const auto ds = ndjson_errors(text);
    REQUIRE(ds.size() == 101);
    CHECK_DIAG(ds, 100, 1, "subscriber 'x99' lists no addresses");
    CHECK_DIAG(ds, 101, 1, "stopped at this line after 100 errors");
}

TEST_CASE("the format comes from the file's name") {
    CHECK(consent_format_of("consent.ndjson") == ConsentFormat::ndjson);
    CHECK(consent_format_of("/srv/x/consent.jsonl") == ConsentFormat::ndjson);
    CHECK(consent_format_of("consent.yaml") == ConsentFormat::yaml);
    CHECK(consent_format_of("consent.yml") == ConsentFormat::yaml);
    CHECK(consent_format_of("consent.ndjson.yaml") == ConsentFormat::yaml);
    CHECK(consent_format_of("ndjson") == ConsentFormat::yaml);
    try {
        load_consent_file("/nonexistent/consent.ndjson", policy_with_key_length());
        FAIL("should throw");
    } catch (const PolicyError& e) {
        REQUIRE(e.diagnostics().size() == 1);
        CHECK(e.diagnostics()[0].to_string().starts_with("/nonexistent/consent.ndjson: cannot read the file"));
    }
}

TEST_CASE("the example NDJSON consent file holds what the YAML one does") {
    const Policy p = load_policy_file(OPTGATE_SOURCE_ROOT "/config/policy.example.yaml").policy;
    const auto yaml = load_consent_file(OPTGATE_SOURCE_ROOT "/config/consent.example.yaml", p);
    const auto ndjson = load_consent_file(OPTGATE_SOURCE_ROOT "/config/consent.example.ndjson", p);
    REQUIRE(yaml.size() == 5);
    check_same(ndjson, yaml);
}

}  // TEST_SUITE("consent file")
