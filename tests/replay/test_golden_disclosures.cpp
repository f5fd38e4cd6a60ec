// optgate-replay --report's per-subscriber disclosure view over a generated
// capture from several subscribers, with the shipped example policy and
// consent files (see test_golden_dns.cpp for who consents to what):
//   sub-1001 100.64.0.10, 2001:db8:1000:1::/64   advertising, analytics
//   sub-1002 100.64.0.11                          analytics
//   sub-1003 100.64.1.20, 2001:db8:1000:2::/64   advertising
//   sub-1004 2001:db8:1000:3::/64                 carrier-marketing
// 100.64.9.9 is in the subscriber prefixes but in no one's record: unbound.
#include <doctest/doctest.h>

#include <sstream>

#include "dns_builder.hpp"
#include "golden_support.hpp"
#include "packet_builder.hpp"

using namespace optgate;
using namespace optgate::test;
using golden::replay;

namespace {

Bytes dns(const char* src, const char* dst, std::vector<EdnsOption> options) {
    PacketBuilder b;
    if (std::string_view(src).find(':') != std::string_view::npos)
        b.ipv6(src, dst);
    else
        b.ipv4(src, dst);
    return b.udp(40000, 53)
        .payload(dns_query({.qname = "www.example.org", .edns_udp_size = 1232, .options = std::move(options)}))
        .build();
}

std::vector<Bytes> http(const char* src, const char* dst, const std::string& fields) {
    PacketBuilder b;
    b.ipv4(src, dst);
    return {PacketBuilder(b).tcp(41000, 80, {.seq = 7, .flags = SYN}).build(),
            PacketBuilder(b)
                .tcp(41000, 80, {.seq = 8, .flags = PSH | ACK})
                .payload("GET / HTTP/1.1\r\nHost: ads.example\r\n" + fields + "\r\n")
                .build()};
}

std::string row(const boost::json::value& v) {
    const auto& o = v.as_object();
    auto text = [&](const char* k) { return std::string(o.at(k).as_string()); };
    std::ostringstream s;
    s << (o.at("subscriber").is_null() ? std::string("null") : text("subscriber")) << " " << text("key") << " "
      << text("destination") << " / " << text("identifier") << " " << o.at("passed").to_number<uint64_t>() << " "
      << o.at("stripped").to_number<uint64_t>();
    return s.str();
}

}  // namespace

TEST_CASE("golden: --report shows what was passed and stripped per subscriber, collector and identifier") {
    std::vector<Bytes> frames = {
        dns("100.64.0.10", "198.18.0.53", {kEcs4, kMac}),  // sub-1001, advertising: passes
        dns("100.64.0.10", "198.18.0.53", {kEcs4}),
        dns("2001:db8:1000:1::5", "2001:db8:ad::53", {kEcs4, kCpe}),  // sub-1001's IPv6 key
        dns("2001:db8:1000:1:ffff::9", "2001:db8:ad::53", {kCpe}),    // the same /64
        dns("100.64.0.11", "198.18.0.53", {kEcs4}),                   // sub-1002, analytics only: stripped
        dns("2001:db8:1000:3::42", "2001:db8:ffff::53", {kEcs4}),     // sub-1004, not a collector
        dns("100.64.9.9", "198.18.0.53", {kEcs4, kMac}),              // unbound key
        dns("198.51.100.9", "198.18.0.53", {kEcs4}),                  // not a subscriber: not counted
    };
    for (const Bytes& f : http("100.64.1.20", "203.0.113.5", "X-UIDH: abc\r\nX-MSISDN: 12075550123\r\n"))
        frames.push_back(f);  // sub-1003, advertising: X-UIDH and X-MSISDN pass to example-adnet
    const auto r = replay(frames);
    REQUIRE_MESSAGE(r.run.exit_code == 0, r.run.output);
    REQUIRE(r.report.contains("disclosures"));
    std::vector<std::string> rows;
    uint64_t passed = 0, stripped = 0;
    for (const auto& v : r.report.at("disclosures").as_array()) {
        rows.push_back(row(v));
        passed += v.at("passed").to_number<uint64_t>();
        stripped += v.at("stripped").to_number<uint64_t>();
    }
    const std::vector<std::string> expected = {
        "sub-1001 100.64.0.10 partner-resolver / CPE MAC address (dnsmasq add-mac) 1 0",
        "sub-1001 100.64.0.10 partner-resolver / EDNS client subnet 2 0",
        "sub-1001 2001:db8:1000:1::/64 example-adnet / CPE id (Nominum/Akamai) 2 0",
        "sub-1001 2001:db8:1000:1::/64 example-adnet / EDNS client subnet 1 0",
        "sub-1002 100.64.0.11 partner-resolver / EDNS client subnet 0 1",
        "sub-1003 100.64.1.20 example-adnet / Verizon unique identifier header 1 0",
        "sub-1003 100.64.1.20 example-adnet / subscriber phone number (MSISDN) 1 0",
        "sub-1004 2001:db8:1000:3::/64 (none) / EDNS client subnet 0 1",
        "null 100.64.9.9 partner-resolver / CPE MAC address (dnsmasq add-mac) 0 1",
        "null 100.64.9.9 partner-resolver / EDNS client subnet 0 1",
    };
    CHECK(rows == expected);
    // Every identifier instance the report counts is in the view, once.
    uint64_t id_passed = 0, id_stripped = 0;
    for (const auto& v : r.report.at("identifiers").as_array()) {
        id_passed += v.at("passed").to_number<uint64_t>();
        id_stripped += v.at("stripped").to_number<uint64_t>();
    }
    CHECK(passed == id_passed);
    CHECK(stripped == id_stripped);
    CHECK(r.report.at("disclosures_overflowed").to_number<uint64_t>() == 0);
}
