// Valid policies: what the loader builds from them (values, order, defaults),
// and the example policy shipped in config/.
#include <doctest/doctest.h>

#include "core/runtime.hpp"
#include "test_policy_support.hpp"

using namespace optgate;
using namespace optgate::policy;
using namespace optgate::policy::testing;
using namespace std::chrono_literals;

namespace {

Prefix prefix(const char* text) { return *Prefix::parse(text); }

Destination classify(const Runtime& rt, const char* addr, uint16_t port, const char* host = nullptr) {
    const IpAddr a = *IpAddr::parse(addr);
    const std::string_view h = host ? host : "";
    return rt.classify(a.family, a.bytes.data(), port, host ? &h : nullptr);
}

std::string destination_name(const Runtime& rt, const Destination& d) {
    return std::string(rt.destination_name(d.counter_slot));
}

}  // namespace

TEST_SUITE("policy loader") {

TEST_CASE("a full policy maps onto optgate::Policy") {
    const auto loaded = load_policy_text(R"(version: 1
purposes:
  analytics:
    description: >-
      Counting visits.
    benefit: >-
      Sites learn what to
      improve.
    data: [device identifier, client subnet]
    retention: "13 months"
  advertising:
    description: Ads chosen for you.
    benefit: Fewer irrelevant ads.
    data: [phone number]
    retention: 90 days
identifiers:
  dns_options:
    - code: 65001
      name: CPE MAC
    - code: 8
      name: ECS
  http_headers:
    - header: X-UIDH
      name: Verizon UIDH
    - header: x-acr
      name: AT&T ACR
collectors:
  - name: adnet
    purpose: advertising
    description: An ad network
    match:
      prefixes: [203.0.113.0/25, "2001:db8:ad::/48"]
      ports: [80, 8080, "8000-8099"]
      hosts: [Ads.Example.net., "*.Tracker.example"]
  - name: stats
    purpose: analytics
    description: An analytics firm
    match: {prefixes: [198.51.100.0/24]}
exemptions:
  - name: billing
    reason: Carrier billing.
    match: {prefixes: [203.0.113.200/29], ports: [443]}
subscribers:
  prefixes: [100.64.0.0/10, "2001:db8:1000::/36"]
  ipv6_key_length: 56
http: {ports: [80, "8080-8081"]}
dns: {ports: [53, 5353]}
enforcement:
  staleness_limit: 2m
  strip_filler: "_"
tagging:
  passed: af11
  stripped: 8
  exempt: EF
)",
                                         "full.yaml");
    CHECK(loaded.warnings.empty());
    const Policy& p = loaded.policy;

    // Purposes in file order: bit i is the i-th purpose.
    REQUIRE(p.purposes.size() == 2);
    CHECK(p.purposes[0].name == "analytics");
    CHECK(p.purposes[0].description == "Counting visits.");
    CHECK(p.purposes[0].data == std::vector<std::string>{"device identifier", "client subnet"});
    CHECK(p.purposes[0].retention == "13 months");
    CHECK(p.purposes[0].benefit == "Sites learn what to improve.");
    CHECK(p.purposes[1].name == "advertising");
    CHECK(p.purposes[1].benefit == "Fewer irrelevant ads.");
    CHECK(p.purpose_index("advertising") == 1u);

    // HTTP headers first, then DNS options, each in file order.
    REQUIRE(p.identifiers.size() == 4);
    CHECK(p.identifiers[0].kind == Identifier::Kind::http_header);
    CHECK(p.identifiers[0].header == "X-UIDH");
    CHECK(p.identifiers[0].name == "Verizon UIDH");
    CHECK(p.identifiers[1].header == "x-acr");
    CHECK(p.identifiers[2].kind == Identifier::Kind::dns_option);
    CHECK(p.identifiers[2].option_code == 65001);
    CHECK(p.identifiers[2].name == "CPE MAC");
    CHECK(p.identifiers[3].option_code == 8);

    REQUIRE(p.collectors.size() == 2);
    const Collector& ads = p.collectors[0];
    CHECK(ads.name == "adnet");
    CHECK(ads.purpose == 1);
    CHECK(ads.description == "An ad network");
    CHECK(ads.match.prefixes == std::vector<Prefix>{prefix("203.0.113.0/25"), prefix("2001:db8:ad::/48")});
    CHECK(ads.match.ports == std::vector<PortRange>{{80, 80}, {8080, 8080}, {8000, 8099}});
    REQUIRE(ads.match.hosts.size() == 2);
    CHECK(ads.match.hosts[0].name == "ads.example.net");
    CHECK_FALSE(ads.match.hosts[0].wildcard);
    CHECK(ads.match.hosts[1].name == "tracker.example");
    CHECK(ads.match.hosts[1].wildcard);
    CHECK(p.collectors[1].purpose == 0);
    CHECK(p.collectors[1].match.ports.empty());
    CHECK(p.collectors[1].match.hosts.empty());

    REQUIRE(p.exemptions.size() == 1);
    CHECK(p.exemptions[0].name == "billing");
    CHECK(p.exemptions[0].reason == "Carrier billing.");
    CHECK(p.exemptions[0].match.ports == std::vector<PortRange>{{443, 443}});

    CHECK(p.subscriber_prefixes == std::vector<Prefix>{prefix("100.64.0.0/10"), prefix("2001:db8:1000::/36")});
    CHECK(p.ipv6_key_length == 56);
    CHECK(p.http_ports == std::vector<PortRange>{{80, 80}, {8080, 8081}});
    CHECK(p.dns_ports == std::vector<PortRange>{{53, 53}, {5353, 5353}});
    CHECK(p.staleness_limit == 120000ms);
    CHECK(p.strip_filler == '_');
    CHECK(p.tagging.passed == 10);
    CHECK(p.tagging.stripped == 8);
    CHECK(p.tagging.exempt == 46);
}

TEST_CASE("optional sections take their documented defaults") {
    const Policy p = load("").policy;
    CHECK(p.exemptions.empty());
    CHECK(p.collectors.empty());
    CHECK(p.ipv6_key_length == 64);
    CHECK(p.http_ports == std::vector<PortRange>{{80, 80}, {8080, 8080}});
    CHECK(p.dns_ports == std::vector<PortRange>{{53, 53}});
    CHECK(p.staleness_limit == 30s);
    CHECK(p.strip_filler == 'x');
    CHECK_FALSE(p.tagging.enabled());

    // Present but partial sections keep the other defaults.
    const Policy q = load("enforcement: {strip_filler: \"-\"}\ntagging: {stripped: cs1}\nhttp: {}\n").policy;
    CHECK(q.staleness_limit == 30s);
    CHECK(q.strip_filler == '-');
    CHECK(q.http_ports == std::vector<PortRange>{{80, 80}, {8080, 8080}});
    CHECK_FALSE(q.tagging.passed);
    CHECK(q.tagging.stripped == 8);
    CHECK_FALSE(q.tagging.exempt);

    // An empty port list turns that protocol's inspection off.
    CHECK(load("dns: {ports: []}\n").policy.dns_ports.empty());
}

TEST_CASE("encapsulations: PPPoE by default, a list of names, [] for none") {
    CHECK(load("").policy.encapsulations == encapsulation_bit(Encapsulation::pppoe));
    CHECK(load("encapsulations: []\n").policy.encapsulations == 0);
    const Policy p = load("encapsulations: [gre, vxlan, gtpu]\n").policy;
    CHECK(p.encapsulations == (encapsulation_bit(Encapsulation::gre) | encapsulation_bit(Encapsulation::vxlan) |
                               encapsulation_bit(Encapsulation::gtpu)));
    const Policy all = load("encapsulations: [pppoe, mpls, gre, l2tp, vxlan, geneve, gtpu]\n").policy;
    CHECK(all.encapsulations == (1u << kEncapsulationCount) - 1);

    const auto ds = diagnostics("encapsulations: [gre, ipip, gre]\n");
    CHECK_MESSAGE(has(ds, 1, 23, {"unknown encapsulation 'ipip'", "pppoe, mpls, gre, l2tp, vxlan, geneve, gtpu"}),
                  joined(ds));
    CHECK_MESSAGE(has(ds, 1, 29, {"encapsulation 'gre' is listed twice"}), joined(ds));
    const auto scalar = diagnostics("encapsulations: pppoe\n");
    CHECK_MESSAGE(has(scalar, 1, 17, {"'encapsulations' must be a list"}), joined(scalar));
}

TEST_CASE("a policy without identifiers loads, with a warning") {
    const auto loaded = load("identifiers: {}\n");
    CHECK(loaded.policy.identifiers.empty());
    REQUIRE(loaded.warnings.size() == 1);
    CHECK(loaded.warnings[0].to_string() ==
          "p.yaml:1:14: warning: 'identifiers' lists no HTTP header and no DNS option: optgate will strip nothing");
}

TEST_CASE("YAML anchors and block styles are ordinary YAML") {
    const auto p = load(R"(purposes:
  advertising:
    description: |
      Two
      lines.
    benefit: &gain A better web.
    data:
      - device identifier
    retention: &keep 90 days
  analytics: {description: x, benefit: *gain, data: [y], retention: *keep}
)")
                       .policy;
    CHECK(p.purposes[0].description == "Two\nlines.\n");
    CHECK(p.purposes[1].retention == "90 days");
    CHECK(p.purposes[1].benefit == "A better web.");
}

TEST_CASE("the example policy loads and classifies as its comments say") {
    const auto loaded = load_policy_file(OPTGATE_SOURCE_ROOT "/config/policy.example.yaml");
    CHECK(loaded.warnings.empty());
    const Policy& p = loaded.policy;
    REQUIRE(p.purposes.size() == 3);
    CHECK(p.purposes[0].name == "advertising");
    CHECK(p.purposes[1].name == "analytics");
    CHECK(p.purposes[2].name == "carrier-marketing");
    // Every purpose says what the subscriber gains.
    for (const auto& purpose : p.purposes) CHECK_FALSE(purpose.benefit.empty());

    std::vector<std::string> headers;
    std::vector<uint16_t> codes;
    for (const auto& id : p.identifiers)
        if (id.kind == Identifier::Kind::http_header)
            headers.push_back(id.header);
        else
            codes.push_back(id.option_code);
    CHECK(headers == std::vector<std::string>{"X-UIDH", "X-ACR", "X-MSISDN", "X-Up-Calling-Line-Id", "X-IMSI"});
    CHECK(codes == std::vector<uint16_t>{8, 65001, 65073, 65074, 20292});
    CHECK(p.subscriber_prefixes == std::vector<Prefix>{prefix("100.64.0.0/10"), prefix("2001:db8:1000::/36")});
    CHECK(p.ipv6_key_length == 64);
    CHECK_FALSE(p.tagging.enabled());  // commented out: off by default
    REQUIRE(p.exemptions.size() == 1);
    CHECK_FALSE(p.exemptions[0].reason.empty());

    const auto rt = Runtime::compile(p);
    REQUIRE(rt);
    auto name = [&](const char* addr, uint16_t port, const char* host = nullptr) {
        return destination_name(*rt, classify(*rt, addr, port, host));
    };
    CHECK(name("203.0.113.5", 80) == "example-adnet");
    CHECK(name("2001:db8:ad::1", 443) == "example-adnet");
    CHECK(name("203.0.113.201", 80) == "billing-fraud");
    CHECK(classify(*rt, "203.0.113.201", 80).kind == Destination::Kind::exemption);
    CHECK(name("203.0.113.130", 80) == "(none)");
    CHECK(name("198.51.100.7", 53) == "web-analytics");
    CHECK(name("198.18.0.53", 53) == "partner-resolver");
    CHECK(name("198.18.0.53", 80) == "(none)");
    CHECK(name("198.18.0.54", 53) == "(none)");
    CHECK(name("198.18.7.7", 80, "sdk.metrics.example") == "metrics-hosts");
    CHECK(name("198.18.7.7", 8080, "sdk.metrics.example") == "metrics-hosts");
    CHECK(name("198.18.7.7", 443, "sdk.metrics.example") == "(none)");
    CHECK(name("198.18.7.7", 80) == "(none)");  // host unknown: host rules never match
    CHECK(name("198.18.7.7", 80, "offers.carrier.example") == "carrier-offers");
    CHECK(rt->purpose_of(classify(*rt, "198.18.0.53", 53)) == 0u);
}

}  // TEST_SUITE("policy loader")
