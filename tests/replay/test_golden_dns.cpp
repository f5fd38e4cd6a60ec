// Golden DNS replays with the shipped example policy and consent files
// (config/policy.example.yaml, config/consent.example.yaml):
//   sub-1001 100.64.0.10, 2001:db8:1000:1::/64   advertising, analytics
//   sub-1002 100.64.0.11                          analytics
//   sub-1003 100.64.1.20, 2001:db8:1000:2::/64   advertising
//   sub-1004 2001:db8:1000:3::/64                 carrier-marketing
//   sub-1005 100.64.0.12                          (none)
// partner-resolver 198.18.0.53/32 port 53 and example-adnet 2001:db8:ad::/48
// are advertising collectors; 198.18.1.1 and 2001:db8:ffff::53 are not.
#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

#include "dns_builder.hpp"
#include "golden_support.hpp"
#include "packet_builder.hpp"

using namespace optgate;
using namespace optgate::test;
using golden::replay;

namespace {

const EdnsOption kDevice{65073, {'c', 'p', 'e', '-', '7'}};
const EdnsOption kUmbrella{20292, {'O', 'D', 'N', 'S', 0, 0, 0, 1, 0, 0, 0, 2}};

struct Row {
    const char* what;
    const char* src;
    const char* dst;
    std::vector<EdnsOption> in;
    std::vector<EdnsOption> out;  // what must arrive: identifier options made Padding on strip
    uint16_t dport = 53;
    int vlans = 0;
    bool response = false;
};

Bytes frame(const Row& r, const std::vector<EdnsOption>& options) {
    PacketBuilder b;
    if (r.vlans == 1) b.vlan(100);
    if (r.vlans == 2) b.vlan(10, kTpid8021ad).vlan(20);
    if (std::string_view(r.src).find(':') != std::string_view::npos)
        b.ipv6(r.src, r.dst);
    else
        b.ipv4(r.src, r.dst);
    Bytes msg = dns_query({.id = 0x5151, .qname = "www.example.org", .edns_udp_size = 1232, .options = options});
    if (r.response) msg[2] |= 0x80;
    return b.udp(r.response ? 53 : 40000, r.response ? 40000 : r.dport).payload(msg).build();
}

const std::vector<Row>& rows() {
    static const std::vector<Row> r = {
        {"1 consent, collector", "100.64.0.10", "198.18.0.53", {kEcs4, kMac}, {kEcs4, kMac}},
        {"2 analytics only, advertising collector",
         "100.64.0.11",
         "198.18.0.53",
         {kEcs4, kMac},
         {padding_for(kEcs4), padding_for(kMac)}},
        {"3 no consent", "100.64.0.12", "198.18.0.53", {kEcs4}, {padding_for(kEcs4)}},
        {"4 unknown subscriber, cookie kept",
         "100.64.9.9",
         "198.18.0.53",
         {kEcs4, kCookie},
         {padding_for(kEcs4), kCookie}},
        {"5 consent, but not a collector", "100.64.0.10", "198.18.1.1", {kEcs4}, {padding_for(kEcs4)}},
        {"6 no options", "100.64.0.10", "198.18.0.53", {}, {}},
        {"7 only a cookie", "100.64.0.12", "198.18.0.53", {kCookie}, {kCookie}},
        {"8 IPv6 consent, collector", "2001:db8:1000:1::5", "2001:db8:ad::53", {kEcs6, kCpe}, {kEcs6, kCpe}},
        {"9 IPv6 other purpose", "2001:db8:1000:3::42", "2001:db8:ad::53", {kEcs6}, {padding_for(kEcs6)}},
        {"10 IPv6 not a collector",
         "2001:db8:1000:2::20",
         "2001:db8:ffff::53",
         {kEcs6, kUmbrella},
         {padding_for(kEcs6), padding_for(kUmbrella)}},
        {"11 VLAN, consent", "100.64.1.20", "198.18.0.53", {kDevice}, {kDevice}, 53, 1},
        {"12 QinQ, no consent",
         "100.64.0.12",
         "198.18.0.53",
         {kDevice, kCookie, kEcs4},
         {padding_for(kDevice), kCookie, padding_for(kEcs4)},
         53,
         2},
        {"13 not from a subscriber", "198.51.100.9", "198.18.0.53", {kEcs4}, {kEcs4}},
        {"14 a response", "198.18.0.53", "100.64.0.12", {kEcs4}, {kEcs4}, 53, 0, true},
        {"15 not a DNS port", "100.64.0.12", "198.18.0.53", {kEcs4}, {kEcs4}, 5353},
    };
    return r;
}

}  // namespace

TEST_CASE("golden DNS replay: byte-exact output, timestamps and order kept") {
    std::vector<Bytes> in;
    for (const auto& r : rows()) in.push_back(frame(r, r.in));
    const auto result = replay(in);
    REQUIRE(result.output.size() == rows().size());
    size_t changed = 0;
    for (size_t i = 0; i < rows().size(); ++i) {
        const std::string what = rows()[i].what;
        CAPTURE(what);
        const Bytes expected = frame(rows()[i], rows()[i].out);
        CHECK_MESSAGE(result.output[i].data == expected, "got\n"
                                                             << hexdump(result.output[i].data) << "expected\n"
                                                             << hexdump(expected));
        CHECK(result.output[i].ts_ns == result.input[i].ts_ns);
        CHECK(verify_checksums(result.output[i].data).ok());
        changed += expected != in[i];
    }
    CHECK(changed == 7);

    CHECK(result.counter("packets") == 15);
    CHECK(result.counter("forwarded") == 15);
    CHECK(result.counter("rewritten") == 7);
    CHECK(result.counter("dns_rewritten") == 7);
    CHECK(result.counter("dns_queries") == 12);
    CHECK(result.counter("dns_with_identifiers") == 10);
    CHECK(result.counter("dns_not_query") == 0);  // the response comes from a non-subscriber
    CHECK(result.counter("not_from_subscriber") == 2);
    CHECK(result.counter("verdict_pass_consent") == 3);
    CHECK(result.counter("verdict_strip_no_consent") == 4);
    CHECK(result.counter("verdict_strip_unknown_subscriber") == 1);
    CHECK(result.counter("verdict_strip_no_collector") == 2);
    CHECK(result.passed_to("partner-resolver") == 3);
    CHECK(result.stripped_to("partner-resolver") == 6);
    CHECK(result.passed_to("example-adnet") == 2);
    CHECK(result.stripped_to("example-adnet") == 1);
    CHECK(result.stripped_to("(none)") == 3);
    CHECK(result.passed_to("(none)") == 0);

    // Per identifier kind.
    std::map<std::string, std::pair<uint64_t, uint64_t>> by_name;
    for (const auto& id : result.report.at("identifiers").as_array()) {
        if (id.at("kind").as_string() != "dns_option") continue;
        by_name[std::string(id.at("name").as_string())] = {id.at("stripped").to_number<uint64_t>(),
                                                           id.at("passed").to_number<uint64_t>()};
    }
    CHECK(by_name.at("EDNS client subnet") == std::pair<uint64_t, uint64_t>{7, 2});
    CHECK(by_name.at("CPE MAC address (dnsmasq add-mac)") == std::pair<uint64_t, uint64_t>{1, 1});
    CHECK(by_name.at("device id (Nominum/Akamai CPE)") == std::pair<uint64_t, uint64_t>{1, 1});
    CHECK(by_name.at("CPE id (Nominum/Akamai)") == std::pair<uint64_t, uint64_t>{0, 1});
    CHECK(by_name.at("Cisco Umbrella device id") == std::pair<uint64_t, uint64_t>{1, 0});
}

TEST_CASE("golden: a pcap with nothing to change comes out byte-identical") {
    std::vector<Bytes> in;
    for (const auto& r : rows())
        if (frame(r, r.in) == frame(r, r.out)) in.push_back(frame(r, r.in));
    in.push_back(
        PacketBuilder().ipv4("100.64.0.10", "203.0.113.5").tcp(40000, 443).payload("\x16\x03\x01 hello").build());
    in.push_back(PacketBuilder().ethertype(0x0806).payload(std::string(28, '\0')).build());
    const auto result = replay(in);
    REQUIRE(result.output.size() == in.size());
    for (size_t i = 0; i < in.size(); ++i) CHECK(result.output[i].data == in[i]);
    CHECK(result.counter("rewritten") == 0);
}

TEST_CASE("golden: the demo's sample pcap") {
    // tools/sample_traffic.cpp, as scripts/demo replays it. Its DNS part:
    // 5 IPv4 sources (100.64.0.10, .11, 100.64.1.20, .12 and the unknown
    // 100.64.9.9) each send the partner resolver one query with ECS + MAC and
    // one with cookie + device id (3 identifiers), and an ordinary resolver
    // one query with ECS; only 100.64.0.10 and 100.64.1.20 consented to
    // advertising. 3 IPv6 subscribers send example-adnet's resolver ECS +
    // cookie (only 2001:db8:1000:1::/64 and :2::/64 consented) and an
    // ordinary resolver ECS.
    const std::string sample = std::getenv("OPTGATE_SAMPLE_PCAP");
    golden::TempDir tmp;
    const auto run = golden::run_replay({"--policy", golden::example_policy(), "--consent", golden::example_consent(),
                                         "--report", tmp.file("r.json"), sample, tmp.file("out.pcap")});
    INFO(run.output);
    REQUIRE(run.exit_code == 0);
    // The human summary names every collector.
    CHECK(run.output.find("partner-resolver") != std::string::npos);
    CHECK(run.output.find("billing-fraud (exemption)") != std::string::npos);
    const auto in = read_pcap(sample);
    const auto out = read_pcap(tmp.file("out.pcap"));
    REQUIRE(out.size() == in.size());
    for (size_t i = 0; i < out.size(); ++i) {
        CHECK(out[i].ts_ns == in[i].ts_ns);
        if (out[i].data != in[i].data) CHECK(verify_checksums(out[i].data).ok());
    }
    std::ifstream f(tmp.file("r.json"));
    std::stringstream text;
    text << f.rdbuf();
    golden::Replay r;
    r.report = boost::json::parse(text.str()).as_object();
    CHECK(r.counter("dns_queries") == 5 * 4 + 3 * 2);
    CHECK(r.passed_to("partner-resolver") == 2 * 3);
    CHECK(r.stripped_to("partner-resolver") == 3 * 3);
    CHECK(r.counter("dns_rewritten") == 3 * 2 + 5 + 1 + 3);
}
