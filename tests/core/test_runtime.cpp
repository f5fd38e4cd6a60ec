#include <doctest/doctest.h>

#include <random>

#include "core/runtime.hpp"
#include "policy_fixture.hpp"

using namespace optgate;
using optgate::test::P;

namespace {

Destination classify(const Runtime& rt, const char* addr, uint16_t port, const char* host = nullptr) {
    const IpAddr a = *IpAddr::parse(addr);
    std::string_view h = host ? host : "";
    return rt.classify(a.family, a.bytes.data(), port, host ? &h : nullptr);
}

std::string name_of(const Runtime& rt, const Destination& d) {
    return std::string(rt.destination_name(d.counter_slot));
}

}  // namespace

TEST_CASE("subscriber prefixes") {
    auto rt = Runtime::compile(test::sample_policy());
    REQUIRE(rt);
    auto sub = [&](const char* s) {
        const IpAddr a = *IpAddr::parse(s);
        return rt->is_subscriber(a.family, a.bytes.data());
    };
    CHECK(sub("100.64.0.1"));
    CHECK(sub("100.127.255.255"));
    CHECK_FALSE(sub("100.128.0.0"));
    CHECK_FALSE(sub("100.63.255.255"));
    CHECK(sub("2001:db8:1000::1"));
    CHECK(sub("2001:db8:1fff:ffff::1"));
    CHECK_FALSE(sub("2001:db8:2000::1"));
    CHECK_FALSE(sub("203.0.113.5"));
}

TEST_CASE("collectors: longest prefix first, ports, hosts, exemptions") {
    auto rt = Runtime::compile(test::sample_policy());
    REQUIRE(rt);
    CHECK(name_of(*rt, classify(*rt, "203.0.113.5", 80)) == "adnet");
    CHECK(classify(*rt, "203.0.113.5", 80).kind == Destination::Kind::collector);
    CHECK(name_of(*rt, classify(*rt, "2001:db8:ad:1::5", 443)) == "adnet");
    CHECK(classify(*rt, "203.0.113.128", 80).kind == Destination::Kind::none);
    // Exemption inside the /24 but outside the collector's /25.
    auto ex = classify(*rt, "203.0.113.201", 80);
    CHECK(ex.kind == Destination::Kind::exemption);
    CHECK(name_of(*rt, ex) == "billing");
    // Port-restricted /32.
    CHECK(name_of(*rt, classify(*rt, "198.18.0.53", 53)) == "adnet-dns");
    CHECK(classify(*rt, "198.18.0.53", 5353).kind == Destination::Kind::none);
    CHECK(classify(*rt, "198.18.0.54", 53).kind == Destination::Kind::none);
    // Same prefix, two rules: the first (ports + host) needs the host.
    CHECK(name_of(*rt, classify(*rt, "198.51.100.7", 80, "ads.example.net")) == "ads-web");
    CHECK(name_of(*rt, classify(*rt, "198.51.100.7", 80)) == "analytics");  // host unknown
    CHECK(name_of(*rt, classify(*rt, "198.51.100.7", 80, "other.example")) == "analytics");
    CHECK(name_of(*rt, classify(*rt, "198.51.100.7", 443, "ads.example.net")) == "analytics");
    // Host-only collector: any address, only with a matching host.
    CHECK(name_of(*rt, classify(*rt, "198.18.9.9", 80, "a.metrics.example")) == "metrics");
    CHECK(name_of(*rt, classify(*rt, "198.18.9.9", 80, "x.y.metrics.example")) == "metrics");
    CHECK(classify(*rt, "198.18.9.9", 80, "metrics.example").kind == Destination::Kind::none);
    CHECK(classify(*rt, "198.18.9.9", 80, "badmetrics.example").kind == Destination::Kind::none);
    CHECK(classify(*rt, "198.18.9.9", 80).kind == Destination::Kind::none);
    // No-collector counter slot is the last one.
    CHECK(classify(*rt, "198.18.9.9", 80).counter_slot == rt->no_collector_slot());
    CHECK(rt->destination_name(rt->no_collector_slot()) == "(none)");
}

TEST_CASE("nested prefixes: the more specific wins, shorter ones still cover the rest") {
    Policy p = test::sample_policy();
    p.collectors = {
        {"wide", 0, {{P("198.18.0.0/15")}, {}, {}}, ""},
        {"narrow", 1, {{P("198.18.4.0/22")}, {}, {}}, ""},
        {"narrower-web", 0, {{P("198.18.5.0/24")}, {{80, 80}}, {}}, ""},
        {"host", 1, {{P("198.19.0.0/16")}, {}, {}}, ""},
        {"v6-wide", 0, {{P("2001:db8:ad::/48")}, {}, {}}, ""},
        {"v6-narrow", 1, {{P("2001:db8:ad:10::/60")}, {}, {}}, ""},
    };
    p.exemptions.clear();
    auto rt = Runtime::compile(p);
    REQUIRE(rt);
    CHECK(name_of(*rt, classify(*rt, "198.18.0.1", 1)) == "wide");
    CHECK(name_of(*rt, classify(*rt, "198.18.4.1", 1)) == "narrow");
    CHECK(name_of(*rt, classify(*rt, "198.18.7.255", 1)) == "narrow");
    CHECK(name_of(*rt, classify(*rt, "198.18.8.0", 1)) == "wide");
    CHECK(name_of(*rt, classify(*rt, "198.18.5.9", 80)) == "narrower-web");
    CHECK(name_of(*rt, classify(*rt, "198.18.5.9", 81)) == "narrow");  // falls back to the covering /22
    CHECK(name_of(*rt, classify(*rt, "198.19.200.1", 1)) == "host");
    CHECK(classify(*rt, "198.20.0.0", 1).kind == Destination::Kind::none);
    CHECK(name_of(*rt, classify(*rt, "2001:db8:ad:1f::1", 1)) == "v6-narrow");
    CHECK(name_of(*rt, classify(*rt, "2001:db8:ad:20::1", 1)) == "v6-wide");
    CHECK(classify(*rt, "2001:db8:ae::1", 1).kind == Destination::Kind::none);
}

TEST_CASE("a default route collector and a /32 inside it") {
    Policy p = test::sample_policy();
    p.collectors = {{"everything", 0, {{P("0.0.0.0/0")}, {}, {}}, ""}, {"one", 1, {{P("203.0.113.9/32")}, {}, {}}, ""}};
    p.exemptions.clear();
    auto rt = Runtime::compile(p);
    REQUIRE(rt);
    CHECK(name_of(*rt, classify(*rt, "8.8.8.8", 53)) == "everything");
    CHECK(name_of(*rt, classify(*rt, "203.0.113.9", 53)) == "one");
    CHECK(name_of(*rt, classify(*rt, "203.0.113.10", 53)) == "everything");
    CHECK(classify(*rt, "2001:db8::1", 53).kind == Destination::Kind::none);
}

TEST_CASE("ports and identifiers compile to lookups") {
    Policy p = test::sample_policy();
    p.http_ports = {{80, 80}, {8000, 8099}};
    p.dns_ports = {{53, 53}, {5353, 5353}};
    auto rt = Runtime::compile(p);
    REQUIRE(rt);
    CHECK(rt->is_http_port(80));
    CHECK(rt->is_http_port(8042));
    CHECK_FALSE(rt->is_http_port(8100));
    CHECK_FALSE(rt->is_http_port(443));
    CHECK(rt->is_dns_port(5353));
    CHECK_FALSE(rt->is_dns_port(54));
    CHECK(rt->dns_identifier(8) == 2);
    CHECK(rt->dns_identifier(65001) == 3);
    CHECK(rt->dns_identifier(10) == -1);
    CHECK(rt->http_identifier("x-uidh") == 0);
    CHECK(rt->http_identifier("x-msisdn") == 1);
    CHECK(rt->http_identifier("X-UIDH") == -1);  // callers pass lowercase
}

TEST_CASE("compile refuses what the packet path cannot hold") {
    Policy p = test::sample_policy();
    p.purposes.resize(33, p.purposes[0]);
    std::string error;
    CHECK_FALSE(Runtime::compile(p, &error));
    CHECK(error.find("purposes") != std::string::npos);

    Policy q = test::sample_policy();
    q.collectors[0].purpose = 7;
    CHECK_FALSE(Runtime::compile(q, &error));
    CHECK(error.find("adnet") != std::string::npos);
}

TEST_CASE("subscriber check agrees with Prefix::contains, with few prefixes and with many") {
    std::mt19937 rng(3);
    auto random_addr = [&](bool v6) {
        IpAddr a;
        if (v6) {
            a = *IpAddr::parse("2001:db8:1000::");
            for (int i = 4; i < 16; ++i) a.bytes[i] = uint8_t(rng());
            if (rng() % 4 == 0) a.bytes[3] = uint8_t(rng());  // sometimes outside /36
        } else {
            a = IpAddr::from_v4_host(0x64000000u | (rng() & 0x00ffffffu));  // 100.0.0.0/8
        }
        return a;
    };
    for (int many = 0; many < 2; ++many) {
        Policy p = test::sample_policy();
        p.subscriber_prefixes = {P("100.64.0.0/10"), P("2001:db8:1000::/36"), P("2001:db8:1000:5:6::/80"),
                                 P("100.1.2.3/32")};
        if (many)
            for (int i = 0; i < 20; ++i)
                p.subscriber_prefixes.push_back(*Prefix::parse("100." + std::to_string(2 + i) + ".0.0/16"));
        auto rt = Runtime::compile(p);
        REQUIRE(rt);
        for (int i = 0; i < 20000; ++i) {
            const IpAddr a = random_addr(i & 1);
            bool expected = false;
            for (const auto& prefix : p.subscriber_prefixes) expected = expected || prefix.contains(a);
            REQUIRE(rt->is_subscriber(a.family, a.bytes.data()) == expected);
        }
        const IpAddr exact = *IpAddr::parse("100.1.2.3");
        CHECK(rt->is_subscriber(exact.family, exact.bytes.data()));
        const IpAddr next = *IpAddr::parse("100.1.2.4");
        CHECK_FALSE(rt->is_subscriber(next.family, next.bytes.data()));
    }
}

TEST_CASE("has_host_rules says whether a Host can pick a destination") {
    CHECK(Runtime::compile(test::sample_policy())->has_host_rules());
    Policy p = test::sample_policy();
    p.collectors.erase(p.collectors.begin() + 2, p.collectors.begin() + 4);  // metrics, ads-web
    CHECK_FALSE(Runtime::compile(p)->has_host_rules());
    p.exemptions[0].match.hosts = {{"pay.example", false}};
    CHECK(Runtime::compile(p)->has_host_rules());
}
