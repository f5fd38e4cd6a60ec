// Policies that load but cannot work as written (policy/usability.hpp):
// what `optgatectl check` warns about, and the staleness bound it shares
// with consentd.
#include <doctest/doctest.h>

#include "policy/usability.hpp"
#include "test_policy_support.hpp"

using namespace optgate;
using namespace optgate::policy;
using namespace optgate::policy::testing;
using namespace std::chrono_literals;

namespace {

std::vector<std::string> warnings_for(std::string_view yaml) { return usability_warnings(load(yaml).policy); }

std::string all(const std::vector<std::string>& ws) {
    std::string out;
    for (const auto& w : ws) out += w + "\n";
    return out;
}

}  // namespace

TEST_CASE("a policy that can work: no warning") {
    const auto ws = warnings_for(R"(identifiers:
  http_headers: [{header: X-UIDH, name: UIDH}]
  dns_options: [{code: 8, name: ECS}]
collectors:
  - {name: adnet, purpose: advertising, description: d, match: {prefixes: [203.0.113.0/24], ports: [80, 443]}}
  - {name: resolver, purpose: advertising, description: d, match: {prefixes: [198.18.0.53/32], ports: [53]}}
  - {name: web, purpose: analytics, description: d, match: {hosts: [stats.example], ports: [80]}}
exemptions:
  - {name: billing, reason: r, match: {prefixes: [198.51.100.200/29]}}
)");
    CHECK_MESSAGE(ws.empty(), all(ws));
}

TEST_CASE("header identifiers with no HTTP port") {
    const auto ws = warnings_for("identifiers:\n  http_headers: [{header: X-UIDH, name: UIDH}]\nhttp: {ports: []}\n");
    REQUIRE(ws.size() == 1);
    CHECK(ws[0].find("'http.ports' is empty") != std::string::npos);
    // DNS options alone need no HTTP port.
    CHECK(warnings_for("http: {ports: []}\n").empty());
}

TEST_CASE("a collector or exemption only on ports optgate never parses") {
    const auto ws = warnings_for(R"(collectors:
  - {name: tls, purpose: advertising, description: d, match: {prefixes: [203.0.113.0/24], ports: [443, "8443-8444"]}}
exemptions:
  - {name: billing, reason: r, match: {prefixes: [198.51.100.200/29], ports: [443]}}
)");
    REQUIRE(ws.size() == 2);
    CHECK(ws[0] ==
          "collector 'tls' matches only port(s) 443, 8443-8444, which optgate never parses (http.ports and "
          "dns.ports): no identifier is ever read there");
    CHECK(ws[1].starts_with("exemption 'billing' matches only port(s) 443,"));
    // A port the policy's own http.ports adds is parsed.
    CHECK(warnings_for(R"(collectors:
  - {name: tls, purpose: advertising, description: d, match: {prefixes: [203.0.113.0/24], ports: [8443]}}
http: {ports: [80, "8440-8450"]}
)")
              .empty());
}

TEST_CASE("a host-name collector only on DNS ports never matches") {
    const auto ws = warnings_for(R"(collectors:
  - {name: dnshost, purpose: advertising, description: d, match: {hosts: [resolver.example], ports: [53]}}
  - {name: mixed, purpose: analytics, description: d, match: {hosts: [x.example], ports: [53, 80]}}
)");
    REQUIRE(ws.size() == 1);
    CHECK(ws[0].starts_with("collector 'dnshost' matches host names but only DNS port(s) 53"));
}

TEST_CASE("the staleness limit: the bound consentd applies, with its default heartbeat") {
    CHECK(staleness_limit_problem(3s, 1s).empty());
    CHECK_FALSE(staleness_limit_problem(2999ms, 1s).empty());
    CHECK(staleness_limit_problem(30ms, kMinHeartbeatInterval).empty());
    CHECK(warnings_for("enforcement: {staleness_limit: 3s}\n").empty());
    const auto two = warnings_for("enforcement: {staleness_limit: 2s}\n");
    REQUIRE(two.size() == 1);
    CHECK(two[0].find("default dataplanes.heartbeat_interval refuses this policy") != std::string::npos);
    const auto tiny = warnings_for("enforcement: {staleness_limit: 20ms}\n");
    REQUIRE(tiny.size() == 1);
    CHECK(tiny[0].find("with any dataplanes.heartbeat_interval (at least 30ms)") != std::string::npos);
}
