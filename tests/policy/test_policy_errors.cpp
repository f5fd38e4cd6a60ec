// Every class of policy error (issue 4), each with its exact location.
// The YAML under test starts at line 1; with_defaults() appends whatever
// required section a test leaves out, after it.
#include <doctest/doctest.h>

#include <algorithm>

#include "core/counters.hpp"
#include "test_policy_support.hpp"

using namespace optgate;
using namespace optgate::policy;
using namespace optgate::policy::testing;

TEST_SUITE("policy errors") {

TEST_CASE("a YAML syntax error is reported at its line and column") {
    const auto ds = diagnostics_raw(
        "version: 1\n"
        "collectors: [\n"
        "purposes: {}\n");
    REQUIRE(ds.size() == 1);
    // yaml-cpp gives up at the end of the document: line 4, column 1.
    CHECK(ds[0].to_string().starts_with("p.yaml:4:1: YAML syntax error: "));

    const auto tab = diagnostics_raw("version: 1\npurposes:\n\t- x\n");
    REQUIRE(tab.size() == 1);
    CHECK_DIAG(tab, 3, 2, "YAML syntax error");
}

// Found by tests/fuzz (regressions/policy/yaml-cpp-comma-hang): yaml-cpp
// 0.7's LoadAll never returns on a ',' where a document may start. Each of
// these must come back at once (a hang fails the test by its timeout) with
// the comma's location.
TEST_CASE("a comma outside a flow collection is an error, not a hang") {
    CHECK_DIAG(diagnostics_raw(", a"), 1, 1, "unexpected ','");
    CHECK_DIAG(diagnostics_raw(","), 1, 1, "unexpected ','");
    CHECK_DIAG(diagnostics_raw("[a]\n,"), 2, 1, "unexpected ','");
    const auto ds = diagnostics_raw("version: 1\n, purposes: {}\n");
    REQUIRE(ds.size() == 1);
    CHECK(ds[0].to_string().starts_with("p.yaml:2:1: YAML syntax error"));
}

TEST_CASE("an empty file or several documents are errors") {
    CHECK_DIAG(diagnostics_raw(""), 1, 1, "the file is empty");
    CHECK_DIAG(diagnostics_raw("# only a comment\n"), 1, 1, "the file is empty");
    const std::string one = with_defaults("");
    const int lines = int(std::count(one.begin(), one.end(), '\n'));
    const auto two = diagnostics_raw(one + "---\nversion: 1\n");
    REQUIRE(two.size() == 1);
    CHECK_DIAG(two, lines + 2, 1, "second YAML document");
}

TEST_CASE("version: missing or not 1") {
    const std::string rest = with_defaults("version: 1\n").substr(std::string("version: 1\n").size());
    const auto missing = diagnostics_raw(rest);
    REQUIRE(missing.size() == 1);
    CHECK_DIAG(missing, 1, 1, "missing 'version: 1'");

    const auto two = diagnostics("version: 2\n");
    REQUIRE(two.size() == 1);  // nothing else: the rest was written for another format
    CHECK_DIAG(two, 1, 10, "unsupported policy version '2'", "reads version 1");
}

TEST_CASE("unknown keys, with a suggestion for near misses") {
    const auto ds = diagnostics(
        "colectors:\n"                          // 1
        "  - name: adnet\n"                     // 2
        "    purpose: advertising\n"            // 3
        "    descripton: Example ad network\n"  // 4
        "    match:\n"                          // 5
        "      prefix: [203.0.113.0/25]\n"      // 6
        "      colour: blue\n"                  // 7
        "enforcement: {staleness: 10s}\n"       // 8
        "Tagging: {}\n");                       // 9
    CHECK_DIAG(ds, 1, 1, "unknown key 'colectors' in the policy", "did you mean 'collectors'?");
    CHECK_DIAG(ds, 8, 15, "unknown key 'staleness' in 'enforcement'", "did you mean 'staleness_limit'?");
    CHECK_DIAG(ds, 9, 1, "unknown key 'Tagging'", "did you mean 'tagging'?");
    // The misspelt section is not read further: its own typos surface once
    // its name is fixed (next case).
    CHECK(ds.size() == 3);

    const auto nested = diagnostics(
        "collectors:\n"                         // 1
        "  - name: adnet\n"                     // 2
        "    purpose: advertising\n"            // 3
        "    descripton: Example ad network\n"  // 4
        "    match:\n"                          // 5
        "      prefix: [203.0.113.0/25]\n"      // 6
        "      colour: blue\n");                // 7
    CHECK_DIAG(nested, 4, 5, "unknown key 'descripton' in collector 'adnet'", "did you mean 'description'?");
    CHECK_DIAG(nested, 6, 7, "unknown key 'prefix' in 'match' of collector 'adnet'", "did you mean 'prefixes'?");
    CHECK_DIAG(nested, 7, 7, "unknown key 'colour'", "expected one of: prefixes, ports, hosts");
    CHECK_DIAG(nested, 2, 5, "collector 'adnet' is missing the required key 'description'");
    CHECK_DIAG(nested, 6, 7, "needs 'prefixes' or 'hosts'");
}

TEST_CASE("wrong types") {
    const auto ds = diagnostics(
        "purposes:\n"                            // 1
        "  advertising:\n"                       // 2
        "    description: [not, text]\n"         // 3
        "    benefit: {money: 2}\n"              // 4
        "    data: device identifier\n"          // 5
        "    retention: {days: 90}\n"            // 6
        "collectors:\n"                          // 7
        "  - name: adnet\n"                      // 8
        "    purpose: advertising\n"             // 9
        "    description: Example ad network\n"  // 10
        "    match:\n"                           // 11
        "      prefixes: 203.0.113.0/25\n"       // 12
        "      ports: {http: 80}\n"              // 13
        "subscribers:\n"                         // 14
        "  prefixes: [100.64.0.0/10]\n"          // 15
        "  ipv6_key_length: sixty-four\n"        // 16
        "http: [80]\n");                         // 17
    CHECK_DIAG(ds, 3, 18, "'description' must be text, not a list");
    CHECK_DIAG(ds, 4, 14, "'benefit' must be text, not a map");
    CHECK_DIAG(ds, 5, 11, "'data' must be a list, not text");
    CHECK_DIAG(ds, 6, 16, "'retention' must be text, not a map");
    CHECK_DIAG(ds, 12, 17, "'prefixes' must be a list, not text");
    CHECK_DIAG(ds, 13, 14, "'ports' must be a list, not a map");
    CHECK_DIAG(ds, 16, 20, "'ipv6_key_length' must be a whole number, not 'sixty-four'");
    CHECK_DIAG(ds, 17, 7, "'http' must be a map, not a list");
    CHECK(ds.size() == 8);

    CHECK_DIAG(diagnostics_raw("- version: 1\n"), 1, 1, "the policy must be a map, not a list");
    CHECK_DIAG(diagnostics("purposes: [advertising]\n"), 1, 11, "'purposes' must be a map, not a list");
}

TEST_CASE("missing required fields") {
    const auto ds = diagnostics(
        "purposes:\n"                                // 1
        "  advertising:\n"                           // 2
        "    description: Ads chosen for you.\n"     // 3
        "    data: [device identifier]\n"            // 4
        "collectors:\n"                              // 5
        "  - name: adnet\n"                          // 6
        "    description: Example ad network\n"      // 7
        "    match: {prefixes: [203.0.113.0/25]}\n"  // 8
        "  - purpose: advertising\n"                 // 9
        "    description: Unnamed\n"                 // 10
        "    match:\n"                               // 11
        "subscribers:\n"                             // 12
        "  ipv6_key_length: 64\n");                  // 13
    CHECK_DIAG(ds, 3, 5, "purpose 'advertising' is missing the required key 'retention'");
    CHECK_DIAG(ds, 3, 5, "purpose 'advertising' has no 'benefit'", "what the subscriber gains by opting in");
    CHECK_DIAG(ds, 6, 5, "collector 'adnet' is missing the required key 'purpose'");
    CHECK_DIAG(ds, 9, 5, "collector 2 is missing the required key 'name'");
    CHECK_DIAG(ds, 11, 5, "'match' is empty: expected a map");
    CHECK_DIAG(ds, 13, 3, "'subscribers' is missing the required key 'prefixes'");
    CHECK(ds.size() == 6);

    const auto top = diagnostics_raw("version: 1\n");
    CHECK_DIAG(top, 1, 1, "the policy is missing the required key 'purposes'");
    CHECK_DIAG(top, 1, 1, "the policy is missing the required key 'identifiers'");
    CHECK_DIAG(top, 1, 1, "the policy is missing the required key 'collectors'");
    CHECK_DIAG(top, 1, 1, "the policy is missing the required key 'subscribers'");
    CHECK(top.size() == 4);

    const auto empty_text = diagnostics(
        "purposes:\n"
        "  advertising: {description: \"  \", benefit: \" \", data: [\"\"], retention: }\n"
        "  analytics: {description: d, benefit: , data: [x], retention: r}\n");
    CHECK_DIAG(empty_text, 2, 30, "'description' must not be empty");
    CHECK_DIAG(empty_text, 2, 45, "'benefit' must not be empty");
    CHECK_DIAG(empty_text, 2, 57, "item 1 of 'data' must not be empty");
    CHECK_DIAG(empty_text, 2, 62, "'retention' is empty: expected text");
    CHECK_DIAG(empty_text, 3, 31, "'benefit' is empty: expected text");
    CHECK(empty_text.size() == 5);
}

TEST_CASE("invalid prefixes and prefixes with host bits set") {
    const auto ds = diagnostics(
        "collectors:\n"                          // 1
        "  - name: adnet\n"                      // 2
        "    purpose: advertising\n"             // 3
        "    description: Example ad network\n"  // 4
        "    match:\n"                           // 5
        "      prefixes: [203.0.113.7/25, \"2001:db8:ad::1/48\", 203.0.113.0/33, ads.example, 198.51.100.0/x]\n"
        "subscribers:\n"                   // 7
        "  prefixes: [100.64.0.1/10]\n");  // 8
    CHECK_DIAG(ds, 6, 18, "'203.0.113.7/25' has host bits set", "did you mean 203.0.113.0/25?");
    CHECK_DIAG(ds, 6, 34, "'2001:db8:ad::1/48' has host bits set", "did you mean 2001:db8:ad::/48?");
    CHECK_DIAG(ds, 6, 55, "prefix length /33 is longer than 32 bits");
    CHECK_DIAG(ds, 6, 71, "'ads.example' is not an IPv4 or IPv6 address");
    CHECK_DIAG(ds, 6, 84, "prefix length 'x' is not a number");
    CHECK_DIAG(ds, 8, 14, "'100.64.0.1/10' has host bits set", "did you mean 100.64.0.0/10?");
    CHECK(ds.size() == 6);
}

TEST_CASE("ports out of range and bad port ranges") {
    const auto ds = diagnostics(
        "collectors:\n"                                                       // 1
        "  - name: adnet\n"                                                   // 2
        "    purpose: advertising\n"                                          // 3
        "    description: Example ad network\n"                               // 4
        "    match:\n"                                                        // 5
        "      prefixes: [203.0.113.0/25]\n"                                  // 6
        "      ports: [0, 65536, \"9000-8000\", \"8000-70000\", http, 80]\n"  // 7
        "http: {ports: [80, -1]}\n"                                           // 8
        "dns: {ports: []}\n");                                                // 9
    CHECK_DIAG(ds, 7, 15, "port 0 is out of range: ports are 1..65535");
    CHECK_DIAG(ds, 7, 18, "port 65536 is out of range");
    CHECK_DIAG(ds, 7, 25, "port range '9000-8000' is backwards");
    CHECK_DIAG(ds, 7, 38, "port 70000 is out of range");
    CHECK_DIAG(ds, 7, 52, "'http' is not a port");
    CHECK_DIAG(ds, 8, 20, "'-1' is not a port");
    // An empty dns port list is allowed: it turns DNS inspection off.
    CHECK(ds.size() == 6);

    const auto empty = diagnostics(
        "collectors:\n"
        "  - {name: adnet, purpose: advertising, description: d, match: {prefixes: [203.0.113.0/25], ports: []}}\n");
    CHECK_DIAG(empty, 2, 100, "'ports' is empty", "no 'ports' means any port");
}

TEST_CASE("duplicate names") {
    const auto ds = diagnostics(
        "purposes:\n"                                                             // 1
        "  advertising: {description: a, benefit: a, data: [x], retention: r}\n"  // 2
        "  advertising: {description: b, benefit: b, data: [y], retention: s}\n"  // 3
        "collectors:\n"                                                           // 4
        "  - {name: adnet, purpose: advertising, description: d, match: {prefixes: [203.0.113.0/25]}}\n"
        "  - {name: adnet, purpose: advertising, description: d, match: {prefixes: [198.51.100.0/24]}}\n"
        "  - name: other\n"                                                         // 7
        "    purpose: advertising\n"                                                // 8
        "    purpose: advertising\n"                                                // 9
        "    description: d\n"                                                      // 10
        "    match: {prefixes: [198.18.0.0/24]}\n"                                  // 11
        "exemptions:\n"                                                             // 12
        "  - {name: adnet, reason: billing, match: {prefixes: [198.18.1.0/24]}}\n"  // 13
        "identifiers:\n"                                                            // 14
        "  http_headers:\n"                                                         // 15
        "    - {header: X-UIDH, name: a}\n"                                         // 16
        "    - {header: x-uidh, name: b}\n"                                         // 17
        "  dns_options:\n"                                                          // 18
        "    - {code: 8, name: a}\n"                                                // 19
        "    - {code: 8, name: b}\n");                                              // 20
    CHECK_DIAG(ds, 3, 3, "duplicate name 'advertising' in 'purposes' (first at line 2)");
    CHECK_DIAG(ds, 6, 12, "the name 'adnet' is already used at line 5");
    CHECK_DIAG(ds, 9, 5, "duplicate key 'purpose' in collector 'other' (first at line 8)");
    CHECK_DIAG(ds, 13, 12, "the name 'adnet' is already used at line 5");
    CHECK_DIAG(ds, 17, 16, "HTTP header 'x-uidh' is listed twice (first at line 16", "case-insensitive");
    CHECK_DIAG(ds, 20, 14, "EDNS0 option code 8 is listed twice (first at line 19)");
    CHECK(ds.size() == 6);
}

TEST_CASE("a collector naming an undefined purpose") {
    const auto ds = diagnostics(
        "collectors:\n"  // 1
        "  - {name: adnet, purpose: advertsing, description: d, match: {prefixes: [203.0.113.0/25]}}\n"
        "  - {name: other, purpose: telemetry, description: d, match: {prefixes: [198.51.100.0/24]}}\n");
    CHECK_DIAG(ds, 2, 28, "collector 'adnet' names purpose 'advertsing', which is not defined under 'purposes'",
               "did you mean 'advertising'?");
    CHECK_DIAG(ds, 3, 28, "names purpose 'telemetry', which is not defined");
    CHECK(ds.size() == 2);
    CHECK(ds[1].message.find("did you mean") == std::string::npos);
}

TEST_CASE("an identifier header that is not a valid HTTP token") {
    const auto ds = diagnostics(
        "identifiers:\n"                             // 1
        "  http_headers:\n"                          // 2
        "    - {header: \"X UIDH\", name: a}\n"      // 3
        "    - {header: \"X-UIDH:\", name: b}\n"     // 4
        "    - {header: \"X-Ünïcode\", name: c}\n"   // 5
        "    - {header: Content-Length, name: d}\n"  // 6
        "    - {header: X-ACR, name: e}\n");         // 7
    CHECK_DIAG(ds, 3, 16, "'X UIDH' is not a valid HTTP header name", "RFC 9110 token");
    CHECK_DIAG(ds, 4, 16, "'X-UIDH:' is not a valid HTTP header name");
    CHECK_DIAG(ds, 5, 16, "is not a valid HTTP header name");
    CHECK_DIAG(ds, 6, 16, "'Content-Length' cannot be an identifier");
    CHECK(ds.size() == 4);
}

TEST_CASE("header prefixes: tokens, exactly one of header and header_prefix, framing headers, duplicates") {
    const auto ds = diagnostics(
        "identifiers:\n"                                       // 1
        "  http_headers:\n"                                    // 2
        "    - {header_prefix: \"X Nokia\", name: a}\n"        // 3
        "    - {header_prefix: \"\", name: b}\n"               // 4
        "    - {header_prefix: Content-, name: c}\n"           // 5
        "    - {header_prefix: Con, name: d}\n"                // 6
        "    - {header: X-A, header_prefix: X-A-, name: e}\n"  // 7
        "    - {name: f}\n"                                    // 8
        "    - {header_prefix: X-Nokia-, name: g}\n"           // 9
        "    - {header_prefix: x-nokia-, name: h}\n"           // 10
        "    - {header: X-Nokia-, name: i}\n");                // 11
    CHECK_DIAG(ds, 3, 23, "'X Nokia' is not a valid header name prefix", "RFC 9110 token");
    CHECK_DIAG(ds, 4, 23, "'header_prefix' must not be empty");
    CHECK_DIAG(ds, 5, 23, "header prefix 'Content-' covers 'content-length'", "frame or route");
    CHECK_DIAG(ds, 6, 23, "header prefix 'Con' covers 'content-length'");
    CHECK_DIAG(ds, 7, 36, "either 'header' (one name) or 'header_prefix'", "not both");
    CHECK_DIAG(ds, 8, 7, "missing the required key 'header'", "'header_prefix'");
    CHECK_DIAG(ds, 10, 23, "header prefix 'x-nokia-' is listed twice (first at line 9");
    CHECK_DIAG(ds, 11, 16, "HTTP header 'X-Nokia-' is listed twice (first at line 9");
    CHECK(count(ds, Severity::error) == 8);
}

TEST_CASE("header prefixes: warnings for short prefixes and names a prefix also covers") {
    const auto r = load(
        "identifiers:\n"                                         // 1
        "  http_headers:\n"                                      // 2
        "    - {header_prefix: X-, name: every x header}\n"      // 3
        "    - {header_prefix: X-Nokia-, name: nokia family}\n"  // 4
        "    - {header: X-Nokia-Id, name: nokia device id}\n"    // 5
        "    - {header: X-UIDH, name: uidh}\n");                 // 6
    const auto& ds = r.warnings;
    CHECK_WARNING(ds, 3, 23, "header prefix 'X-' is short", "stripped without consent");
    CHECK_WARNING(ds, 4, 23, "header prefix 'X-Nokia-' is also covered by the header prefix 'X-' (line 3)",
                  "counts as 'nokia family'");
    CHECK_WARNING(ds, 5, 16, "header 'X-Nokia-Id' is also covered by the header prefix 'X-Nokia-' (line 4)",
                  "counts as 'nokia device id', not as 'nokia family'");
    CHECK_WARNING(ds, 5, 16, "header 'X-Nokia-Id' is also covered by the header prefix 'X-' (line 3)");
    CHECK_WARNING(ds, 6, 16, "header 'X-UIDH' is also covered by the header prefix 'X-' (line 3)");
    CHECK(ds.size() == 5);
    REQUIRE(r.policy.identifiers.size() == 4);
    CHECK(r.policy.identifiers[0].header_prefix);
    CHECK(r.policy.identifiers[0].header == "X-");
    CHECK(r.policy.identifiers[1].header_prefix);
    CHECK_FALSE(r.policy.identifiers[2].header_prefix);

    // A longer prefix alone says nothing.
    CHECK(diagnostics("identifiers:\n  http_headers: [{header_prefix: X-Nokia-, name: n}, {header: X-UIDH, name: u}]\n")
              .empty());
}

TEST_CASE("honour_gpc: true by default, true or false, and Sec-GPC cannot be an identifier") {
    const auto r = load(
        "purposes:\n"
        "  a: {description: d, benefit: b, data: [x], retention: r}\n"
        "  b: {description: d, benefit: b, data: [x], retention: r, honour_gpc: false}\n"
        "  c: {description: d, benefit: b, data: [x], retention: r, honour_gpc: true}\n");
    REQUIRE(r.policy.purposes.size() == 3);
    CHECK(r.policy.purposes[0].honour_gpc);
    CHECK_FALSE(r.policy.purposes[1].honour_gpc);
    CHECK(r.policy.purposes[2].honour_gpc);

    const auto ds = diagnostics(
        "purposes:\n"                                                                       // 1
        "  a: {description: d, benefit: b, data: [x], retention: r, honour_gpc: yes}\n"     // 2
        "identifiers:\n"                                                                    // 3
        "  http_headers: [{header: Sec-GPC, name: g}, {header_prefix: Sec-, name: s}]\n");  // 4
    CHECK_DIAG(ds, 2, 72, "'honour_gpc' must be true or false, not 'yes'");
    CHECK_DIAG(ds, 4, 27, "'Sec-GPC' cannot be an identifier", "Global Privacy Control");
    CHECK_DIAG(ds, 4, 62, "'Sec-' cannot be an identifier");
    CHECK(count(ds, Severity::error) == 3);
}

TEST_CASE("EDNS0 option codes out of range") {
    const auto ds = diagnostics(
        "identifiers:\n"                    // 1
        "  dns_options:\n"                  // 2
        "    - {code: 0, name: a}\n"        // 3
        "    - {code: 65535, name: b}\n"    // 4
        "    - {code: 65536, name: c}\n"    // 5
        "    - {code: ecs, name: d}\n"      // 6
        "    - {code: 65534, name: e}\n");  // 7
    CHECK_DIAG(ds, 3, 14, "EDNS0 option code 0 is reserved");
    CHECK_DIAG(ds, 4, 14, "EDNS0 option code 65535 is reserved");
    CHECK_DIAG(ds, 5, 14, "EDNS0 option code 65536 is out of range: codes are 1..65534");
    CHECK_DIAG(ds, 6, 14, "EDNS0 option code 'ecs' is not a number");
    CHECK(ds.size() == 4);
}

TEST_CASE("more purposes than the consent bitmask holds") {
    std::string yaml = "purposes:\n";
    for (int i = 0; i < 34; ++i)
        yaml += "  p" + std::to_string(i) + ": {description: d, benefit: b, data: [x], retention: r}\n";
    const auto ds = diagnostics(yaml);
    REQUIRE(ds.size() == 1);
    CHECK_DIAG(ds, 34, 3, "more than 32 purposes");  // the 33rd purpose, on line 34

    yaml = "purposes:\n";
    for (int i = 0; i < 32; ++i)
        yaml += "  p" + std::to_string(i) + ": {description: d, benefit: b, data: [x], retention: r}\n";
    CHECK(load(yaml).policy.purposes.size() == 32);
}

TEST_CASE("more collectors and exemptions, or identifiers, than the counters hold") {
    std::string yaml = "collectors:\n";
    for (size_t i = 0; i < kMaxCollectors; ++i)
        yaml += "  - {name: c" + std::to_string(i) + ", purpose: advertising, description: d, match: {hosts: [h" +
                std::to_string(i) + ".example]}}\n";
    yaml += "exemptions:\n  - {name: e, reason: r, match: {hosts: [billing.example]}}\n";
    const auto ds = diagnostics(yaml);
    REQUIRE(ds.size() == 1);
    CHECK_DIAG(ds, int(kMaxCollectors) + 3, 5, "more than 1024 collectors and exemptions");

    std::string ids = "identifiers:\n  dns_options:\n";
    for (size_t i = 0; i <= kMaxIdentifiers; ++i) ids += "    - {code: " + std::to_string(1000 + i) + ", name: n}\n";
    const auto too_many = diagnostics(ids);
    REQUIRE(too_many.size() == 1);
    CHECK_DIAG(too_many, int(kMaxIdentifiers) + 3, 7, "more than 256 identifiers");
}

TEST_CASE("an exemption without a reason") {
    const auto ds = diagnostics(
        "exemptions:\n"                                                         // 1
        "  - name: billing\n"                                                   // 2
        "    match: {prefixes: [203.0.113.200/29]}\n"                           // 3
        "  - {name: fraud, reason: \"\", match: {hosts: [fraud.example]}}\n");  // 4
    CHECK_DIAG(ds, 2, 5, "exemption 'billing' has no 'reason'", "must say why");
    CHECK_DIAG(ds, 4, 27, "'reason' must not be empty");
    CHECK(ds.size() == 2);
}

TEST_CASE("a collector and an exemption that overlap are an error") {
    const auto ds = diagnostics(
        "collectors:\n"  // 1
        "  - {name: adnet, purpose: advertising, description: d, match: {prefixes: [203.0.113.0/24]}}\n"
        "  - {name: sdk, purpose: analytics, description: d, match: {hosts: [\"*.metrics.example\"]}}\n"
        "exemptions:\n"                                                                         // 4
        "  - name: billing\n"                                                                   // 5
        "    reason: carrier billing\n"                                                         // 6
        "    match: {prefixes: [198.51.100.0/24, 203.0.113.200/29]}\n"                          // 7
        "  - {name: fraud, reason: fraud checks, match: {hosts: [fraud.metrics.example]}}\n");  // 8
    CHECK_DIAG(ds, 7, 41, "exemption 'billing' overlaps collector 'adnet' (line 2)",
               "203.0.113.200/29 overlaps 203.0.113.0/24");
    CHECK_DIAG(ds, 8, 57, "exemption 'fraud' overlaps collector 'sdk' (line 3)",
               "host 'fraud.metrics.example' overlaps '*.metrics.example'");
    CHECK(ds.size() == 2);
}

TEST_CASE("collector and exemption rules that cannot both match do not overlap") {
    // Disjoint ports; disjoint hosts on the same prefix; a prefix rule and a
    // host-only rule (prefix rules are always tried first).
    const auto loaded = load(
        "collectors:\n"
        "  - {name: adnet, purpose: advertising, description: d, match: {prefixes: [203.0.113.0/24], ports: [80]}}\n"
        "  - {name: ads2, purpose: advertising, description: d, match: {prefixes: [198.51.100.0/24], hosts: "
        "[ads.example]}}\n"
        "  - {name: sdk, purpose: analytics, description: d, match: {hosts: [\"*.metrics.example\"]}}\n"
        "exemptions:\n"
        "  - {name: billing, reason: r, match: {prefixes: [203.0.113.200/29], ports: [443, \"8000-8099\"]}}\n"
        "  - {name: pay, reason: r, match: {prefixes: [198.51.100.0/24], hosts: [pay.example]}}\n"
        "  - {name: portal, reason: r, match: {prefixes: [198.18.0.0/24]}}\n"
        "  - {name: fraud, reason: r, match: {hosts: [metrics.example]}}\n");
    CHECK(loaded.warnings.empty());
    CHECK(loaded.policy.exemptions.size() == 4);
}

TEST_CASE("two collectors with different purposes that overlap are a warning") {
    const auto ds = diagnostics(
        "collectors:\n"  // 1
        "  - {name: adnet, purpose: advertising, description: d, match: {prefixes: [203.0.113.0/24]}}\n"
        "  - {name: stats, purpose: analytics, description: d, match: {prefixes: [203.0.113.128/25]}}\n"
        "  - {name: more-ads, purpose: advertising, description: d, match: {prefixes: [203.0.113.0/26]}}\n"
        "  - {name: sdk, purpose: analytics, description: d, match: {hosts: [\"*.example\"]}}\n"
        "  - {name: sdk-ads, purpose: advertising, description: d, match: {hosts: [ads.example]}}\n");
    CHECK(count(ds, Severity::error) == 0);
    CHECK_WARNING(ds, 3, 74,
                  "collector 'stats' (purpose analytics) overlaps collector 'adnet' (purpose advertising, line 2)",
                  "the more specific prefix wins");
    CHECK_WARNING(ds, 6, 75, "collector 'sdk-ads' (purpose advertising) overlaps collector 'sdk'",
                  "the one listed first wins");
    // adnet and more-ads share a purpose: no warning between them.
    CHECK(ds.size() == 2);

    // Loading succeeds and hands the warnings back.
    const auto loaded = load(
        "collectors:\n"
        "  - {name: adnet, purpose: advertising, description: d, match: {prefixes: [203.0.113.0/24]}}\n"
        "  - {name: stats, purpose: analytics, description: d, match: {prefixes: [203.0.113.0/24], ports: [80]}}\n");
    REQUIRE(loaded.warnings.size() == 1);
    CHECK(loaded.warnings[0].to_string().starts_with("p.yaml:3:74: warning: collector 'stats'"));
    CHECK(loaded.policy.collectors.size() == 2);
}

TEST_CASE("host names, durations, DSCP, filler, key length and matches are checked") {
    const auto ds = diagnostics(
        "collectors:\n"               // 1
        "  - name: adnet\n"           // 2
        "    purpose: advertising\n"  // 3
        "    description: d\n"        // 4
        "    match:\n"                // 5
        "      hosts: [\"ads.example:8080\", \"a*.example\", \"*.\", \"http://x.example\", \"a..b\"]\n"
        "  - {name: empty, purpose: advertising, description: d, match: {ports: [80]}}\n"  // 7
        "subscribers:\n"                                                                   // 8
        "  prefixes: [100.64.0.0/10]\n"                                                    // 9
        "  ipv6_key_length: 0\n"                                                           // 10
        "enforcement:\n"                                                                   // 11
        "  staleness_limit: 30\n"                                                          // 12
        "  strip_filler: \"xy\"\n"                                                         // 13
        "tagging:\n"                                                                       // 14
        "  passed: af44\n"                                                                 // 15
        "  stripped: 64\n"                                                                 // 16
        "  exempt: ef\n");                                                                 // 17
    CHECK_DIAG(ds, 6, 15, "'ads.example:8080' is not a host name", "without a port");
    CHECK_DIAG(ds, 6, 35, "'a*.example' is not a host name", "leading \"*.\"");
    CHECK_DIAG(ds, 6, 49, "'*.' is not a host name");
    CHECK_DIAG(ds, 6, 55, "'http://x.example' is not a host name", "without a scheme");
    CHECK_DIAG(ds, 6, 75, "'a..b' is not a host name", "empty label");
    CHECK_DIAG(ds, 7, 64, "'match' of collector 'empty' needs 'prefixes' or 'hosts'");
    CHECK_DIAG(ds, 10, 20, "'ipv6_key_length' is out of range: 0 is not in 1..128");
    CHECK_DIAG(ds, 12, 20, "'staleness_limit'", "'30' is not a duration");
    CHECK_DIAG(ds, 13, 17, "'strip_filler' must be one character", "not 'xy'");
    CHECK_DIAG(ds, 15, 11, "'passed'", "'af44' is not a DSCP value");
    CHECK_DIAG(ds, 16, 13, "'stripped'", "DSCP 64 is out of range");
    CHECK(ds.size() == 11);

    const auto limits = diagnostics("enforcement: {staleness_limit: 25h, strip_filler: \":\"}\n");
    CHECK_DIAG(limits, 1, 32, "longer than the maximum of 24h");
    CHECK_DIAG(limits, 1, 51, "'strip_filler' must be one character", "not ':'");
}

TEST_CASE("every error is reported, in file order, as FILE:LINE:COLUMN: message") {
    try {
        load_policy_text(
            with_defaults("purposes:\n"
                          "  advertising: {description: d, benefit: b, data: [x], retention: r, extra: 1}\n"
                          "collectors:\n"
                          "  - {name: adnet, purpose: nope, description: d, match: {prefixes: [203.0.113.1/24]}}\n"
                          "tagging: {passed: 99}\n"),
            "edge.yaml");
        FAIL("the policy should not load");
    } catch (const PolicyError& e) {
        const auto& ds = e.diagnostics();
        REQUIRE(ds.size() == 4);
        CHECK(ds[0].to_string() ==
              "edge.yaml:2:70: unknown key 'extra' in purpose 'advertising' (expected one of: "
              "description, benefit, data, retention, honour_gpc)");
        CHECK(ds[1].to_string().starts_with("edge.yaml:4:28: collector 'adnet' names purpose 'nope'"));
        CHECK(ds[2].to_string().starts_with("edge.yaml:4:69: '203.0.113.1/24' has host bits set"));
        CHECK(ds[3].to_string().starts_with("edge.yaml:5:19: 'passed': DSCP 99 is out of range"));
        // what() is every diagnostic, one per line.
        const std::string what = e.what();
        CHECK(std::count(what.begin(), what.end(), '\n') == 3);
        CHECK(what.find(ds[3].to_string()) != std::string::npos);
    }
}

TEST_CASE("a file that cannot be read is reported with its name") {
    try {
        load_policy_file("/nonexistent/optgate/policy.yaml");
        FAIL("should throw");
    } catch (const PolicyError& e) {
        REQUIRE(e.diagnostics().size() == 1);
        CHECK(e.diagnostics()[0].to_string() ==
              "/nonexistent/optgate/policy.yaml: cannot read the file: No such file or directory");
    }
}

TEST_CASE("deliver and rotate: pseudonym collectors, their period and its bounds") {
    const auto r = load(
        "collectors:\n"
        "  - {name: a, purpose: analytics, description: d, match: {prefixes: [198.51.100.0/24]}}\n"
        "  - {name: b, purpose: analytics, description: d, match: {prefixes: [198.18.0.0/24]}, deliver: pseudonym}\n"
        "  - {name: c, purpose: analytics, description: d, match: {prefixes: [198.18.1.0/24]}, deliver: pseudonym,"
        " rotate: 7d}\n"
        "  - {name: e, purpose: analytics, description: d, match: {prefixes: [198.18.2.0/24]}, deliver: raw}\n");
    REQUIRE(r.policy.collectors.size() == 4);
    CHECK(r.policy.collectors[0].deliver == Collector::Delivery::raw);
    CHECK(r.policy.collectors[1].deliver == Collector::Delivery::pseudonym);
    CHECK(r.policy.collectors[1].rotate_days == Collector::kDefaultRotateDays);
    CHECK(r.policy.collectors[2].rotate_days == 7);
    CHECK(r.policy.collectors[3].deliver == Collector::Delivery::raw);
    CHECK_FALSE(r.policy.collectors[1].pseudonym_key);  // never from the file

    const auto ds = diagnostics(
        "collectors:\n"                                                                            // 1
        "  - {name: a, purpose: analytics, description: d, match: {prefixes: [198.18.0.0/24]},\n"  // 2
        "     deliver: hashed}\n"                                                                  // 3
        "  - {name: b, purpose: analytics, description: d, match: {prefixes: [198.18.1.0/24]},\n"  // 4
        "     rotate: 30d}\n"                                                                      // 5
        "  - {name: c, purpose: analytics, description: d, match: {prefixes: [198.18.2.0/24]},\n"  // 6
        "     deliver: pseudonym, rotate: 0d}\n"                                                   // 7
        "  - {name: e, purpose: analytics, description: d, match: {prefixes: [198.18.3.0/24]},\n"  // 8
        "     deliver: pseudonym, rotate: 400d}\n"                                                 // 9
        "  - {name: f, purpose: analytics, description: d, match: {prefixes: [198.18.4.0/24]},\n"  // 10
        "     deliver: pseudonym, rotate: 30}\n"                                                   // 11
        "identifiers:\n"                                                                           // 12
        "  http_headers: [{header: X-A, name: uid (pseudonym)}]\n");                               // 13
    CHECK_DIAG(ds, 3, 15, "'deliver' is 'hashed'", "raw (the default) or pseudonym");
    CHECK_DIAG(ds, 5, 14, "'rotate'", "needs 'deliver: pseudonym'");
    CHECK_DIAG(ds, 7, 34, "'rotate': '0d' is out of range", "from 1d to 366d");
    CHECK_DIAG(ds, 9, 34, "'rotate': '400d' is out of range");
    CHECK_DIAG(ds, 11, 34, "'30' is not a number of days");
    CHECK_DIAG(ds, 13, 38, "ends with ' (pseudonym)'");
    CHECK(count(ds, Severity::error) == 6);
}

TEST_CASE("a pseudonym collector that may receive DNS: a warning (DNS options are always stripped)") {
    const auto ds = diagnostics(
        "collectors:\n"  // 1
        "  - {name: a, purpose: analytics, description: d, match: {prefixes: [198.18.0.0/24]}, deliver: "
        "pseudonym}\n"                                                                                          // 2
        "  - {name: b, purpose: analytics, description: d, match: {prefixes: [198.18.1.0/24], ports: [80]},\n"  // 3
        "     deliver: pseudonym}\n"                                                                            // 4
        "  - {name: c, purpose: analytics, description: d, match: {prefixes: [198.18.2.0/24]}}\n");             // 5
    CHECK_WARNING(ds, 2, 12, "collector 'a' receives pseudonyms", "DNS options to it are always stripped");
    CHECK(count(ds, Severity::warning) == 1);
    CHECK(count(ds, Severity::error) == 0);
}

TEST_CASE("at most 15 collectors receive pseudonyms") {
    std::string yaml = "collectors:\n";
    for (int i = 0; i < 16; ++i)
        yaml += "  - {name: c" + std::to_string(i) +
                ", purpose: analytics, description: d, match: {prefixes: [198.18." + std::to_string(i) +
                ".0/24]}, deliver: pseudonym}\n";
    const auto ds = diagnostics(yaml);
    CHECK_DIAG(ds, 17, 99, "more than 15 collectors receive pseudonyms");
    CHECK(count(ds, Severity::error) == 1);
}

TEST_CASE("pseudonym keys: one per pseudonym collector, 32 hex digits") {
    auto policy = load(
                      "collectors:\n"
                      "  - {name: a, purpose: analytics, description: d, match: {prefixes: [198.51.100.0/24]}}\n"
                      "  - {name: b, purpose: analytics, description: d, match: {prefixes: [198.18.0.0/24]}, deliver: "
                      "pseudonym}\n"
                      "  - {name: c, purpose: analytics, description: d, match: {prefixes: [198.18.1.0/24]}, deliver: "
                      "pseudonym}\n")
                      .policy;
    apply_pseudonym_keys_text("# comment\n\nb 000102030405060708090A0B0C0D0E0F  # b's key\n", policy);
    REQUIRE(policy.collectors[1].pseudonym_key);
    CHECK((*policy.collectors[1].pseudonym_key)[10] == 0x0a);
    CHECK_FALSE(policy.collectors[2].pseudonym_key);  // no key: its identifiers strip
    try {
        apply_pseudonym_keys_text(
            "a 000102030405060708090a0b0c0d0e0f\n"
            "z 000102030405060708090a0b0c0d0e0f\n"
            "c 0001020304050607\n"
            "c 000102030405060708090a0b0c0d0e0g\n"
            "b 000102030405060708090a0b0c0d0e0f\n"
            "b 000102030405060708090a0b0c0d0e0f\n",
            policy, "k.txt");
        FAIL("no error");
    } catch (const PolicyError& e) {
        const auto& ds = e.diagnostics();
        REQUIRE(ds.size() == 5);
        CHECK(ds[0].to_string() == "k.txt:1:1: collector 'a' does not receive pseudonyms ('deliver: pseudonym')");
        CHECK(ds[1].to_string() == "k.txt:2:1: no collector named 'z' in the policy");
        CHECK(ds[2].to_string() == "k.txt:3:1: collector 'c': the key must be 32 hex digits (16 bytes)");
        CHECK(ds[3].line == 4);
        CHECK(ds[4].to_string() == "k.txt:6:1: a second key for collector 'b'");
        // The errors name no key bytes.
        CHECK(std::string(e.what()).find("0001020304") == std::string::npos);
    }
}

}  // TEST_SUITE("policy errors")
