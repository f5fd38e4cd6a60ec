// A policy built in code for core tests (the YAML loader has its own tests).
#pragma once

#include <string>
#include <string_view>

#include "core/policy.hpp"

namespace optgate::test {

inline Prefix P(const char* text) { return *Prefix::parse(text); }

// purposes: 0 advertising, 1 analytics
// identifiers: 0 X-UIDH (http), 1 X-MSISDN (http), 2 ECS (dns 8), 3 MAC (dns 65001)
// collectors:
//   0 adnet      advertising  203.0.113.0/25, 2001:db8:ad::/48
//   1 adnet-dns  advertising  198.18.0.53/32 port 53
//   2 metrics    analytics    hosts *.metrics.example (no prefixes)
//   3 ads-web    advertising  198.51.100.0/24 ports 80, 8080 hosts ads.example.net
//   4 analytics  analytics    198.51.100.0/24
// exemptions:
//   0 billing    203.0.113.200/29
inline Policy sample_policy() {
    Policy p;
    p.purposes = {{"advertising", "Ads tailored to you", {"device identifier"}, "90 days"},
                  {"analytics", "Measuring audiences", {"phone number"}, "30 days"}};
    p.identifiers = {
        {Identifier::Kind::http_header, "Verizon UIDH", "X-UIDH", 0},
        {Identifier::Kind::http_header, "MSISDN", "X-MSISDN", 0},
        {Identifier::Kind::dns_option, "EDNS client subnet", "", 8},
        {Identifier::Kind::dns_option, "MAC address", "", 65001},
    };
    Collector adnet{"adnet", 0, {{P("203.0.113.0/25"), P("2001:db8:ad::/48")}, {}, {}}, "An ad network"};
    Collector adnet_dns{"adnet-dns", 0, {{P("198.18.0.53/32")}, {{53, 53}}, {}}, "Ad network resolver"};
    Collector metrics{"metrics", 1, {{}, {}, {{"metrics.example", true}}}, "Audience metrics"};
    Collector ads_web{
        "ads-web", 0, {{P("198.51.100.0/24")}, {{80, 80}, {8080, 8080}}, {{"ads.example.net", false}}}, "Ad server"};
    Collector analytics{"analytics", 1, {{P("198.51.100.0/24")}, {}, {}}, "Analytics"};
    p.collectors = {adnet, adnet_dns, metrics, ads_web, analytics};
    p.exemptions = {{"billing", {{P("203.0.113.200/29")}, {}, {}}, "Billing and fraud prevention"}};
    p.subscriber_prefixes = {P("100.64.0.0/10"), P("2001:db8:1000::/36")};
    return p;
}

// The same policy as YAML text, for the tests that give one to consentd
// or a data plane (e2e, proto): advertising (bit 0) to example-adnet
// 203.0.113.0/25, analytics (bit 1) to web-analytics 198.51.100.0/24; the
// EDNS0 client subnet option (8) is the identifier; subscribers
// 100.64.0.0/10 and 2001:db8:1000::/36 keyed at /64; the purposes' `data`
// and the staleness limit ("1s", "60s") as given.
inline std::string ecs_policy_yaml(std::string_view staleness_limit, std::string_view data = "client subnet") {
    const std::string d(data);
    return R"(version: 1
purposes:
  advertising:
    description: Advertising partners receive an identifier for your device.
    benefit: Ads chosen for your interests, and 2 EUR off your monthly bill.
    data: [)" +
           d + R"(]
    retention: 90 days
  analytics:
    description: Analytics providers count visits.
    benefit: The sites and apps you use learn what to improve.
    data: [)" +
           d + R"(]
    retention: 13 months
identifiers:
  dns_options:
    - code: 8
      name: EDNS client subnet
collectors:
  - name: example-adnet
    purpose: advertising
    description: Example Ad Network Ltd.
    match:
      prefixes: [203.0.113.0/25]
  - name: web-analytics
    purpose: analytics
    description: Example Analytics Inc.
    match:
      prefixes: [198.51.100.0/24]
subscribers:
  prefixes: [100.64.0.0/10, "2001:db8:1000::/36"]
  ipv6_key_length: 64
enforcement:
  staleness_limit: )" +
           std::string(staleness_limit) + "\n";
}

}  // namespace optgate::test
