// Golden HTTP replays with the shipped example policy and consent files
// (config/policy.example.yaml, config/consent.example.yaml; the first case
// also with config/consent.example.ndjson):
//   sub-1001 100.64.0.10, 2001:db8:1000:1::/64   advertising, analytics
//   sub-1002 100.64.0.11                          analytics
//   sub-1003 100.64.1.20, 2001:db8:1000:2::/64   advertising
//   sub-1004 2001:db8:1000:3::/64                 carrier-marketing
//   sub-1005 100.64.0.12                          (none)
// example-adnet (advertising) 203.0.113.0/25 and 2001:db8:ad::/48;
// web-analytics (analytics) 198.51.100.0/24; metrics-hosts (analytics)
// *.metrics.example on ports 80, 8000-8099; carrier-offers
// (carrier-marketing) offers.carrier.example; billing-fraud exemption
// 203.0.113.200/29. Identifiers: X-UIDH, X-ACR, X-MSISDN,
// X-Up-Calling-Line-Id, X-IMSI.
//
// Each connection is written twice: as sent, and as it must come out
// (values overwritten with 'x', checksums computed from scratch by the
// builder), so the output pcap is compared byte for byte.
#include <doctest/doctest.h>

#include <fstream>
#include <iterator>
#include <map>

#include "golden_support.hpp"
#include "packet_builder.hpp"

using namespace optgate;
using namespace optgate::test;
using golden::Conn;
using golden::replay;

namespace {

std::string request(const std::string& host, const std::string& ids, bool host_first = true) {
    const std::string h = host.empty() ? "" : "Host: " + host + "\r\n";
    return "GET /p?x=1 HTTP/1.1\r\n" + (host_first ? h : "") + "User-Agent: golden/1.0\r\n" + ids +
           (host_first ? "" : h) + "Accept: */*\r\n\r\n";
}

// `text` with every value of the listed fields overwritten with 'x'.
std::string scrub(std::string text, std::initializer_list<std::string_view> names) {
    for (std::string_view name : names) {
        for (size_t at = 0; (at = text.find(std::string(name) + ": ", at)) != std::string::npos;) {
            at += name.size() + 2;
            const size_t end = text.find("\r\n", at);
            for (size_t k = at; k < end; ++k) text[k] = 'x';
        }
    }
    return text;
}

// Frames sent, and what must come out (nothing for a dropped frame).
struct Expect {
    std::vector<Bytes> in, out;
    void same(const Bytes& f) {
        in.push_back(f);
        out.push_back(f);
    }
    void changed(const Bytes& f, const Bytes& expected) {
        in.push_back(f);
        out.push_back(expected);
    }
    void dropped(const Bytes& f) { in.push_back(f); }
};

// The replay forwarded exactly the frames `want`, each with right checksums.
void check_forwarded(const golden::Replay& result, const std::vector<Bytes>& want) {
    REQUIRE(result.output.size() == want.size());
    for (size_t i = 0; i < want.size(); ++i) {
        CAPTURE(i);
        CHECK_MESSAGE(result.output[i].data == want[i], "got\n"
                                                            << hexdump(result.output[i].data) << "expected\n"
                                                            << hexdump(want[i]));
        CHECK(verify_checksums(result.output[i].data).ok());
    }
}

const std::string kUidh = "X-UIDH: OTgxNTk2NDk0ADJVquRu5NS5+rSbBANlrp+13QL7CXLGsFHpMi4LsUHw\r\n";
const std::string kMsisdn = "X-MSISDN: 12075550123\r\n";
const std::string kAcr = "x-acr: bWFzdGVyLWFjci0wMDE=\r\n";

}  // namespace

TEST_CASE("golden HTTP replay: byte-exact output over IPv4, IPv6, VLAN and QinQ") {
    Expect e;
    std::map<std::string, int> rewritten;

    // 1. consent (advertising) to example-adnet: passes untouched.
    const Conn c1{"100.64.0.10", "203.0.113.10", 40001};
    const std::string r1 = request("ads.example.net", kUidh + kMsisdn);
    e.same(c1.syn());
    e.same(c1.data(0, r1));
    e.same(c1.response("HTTP/1.1 204 No Content\r\n\r\n"));

    // 2. no consent to example-adnet: both values overwritten.
    const Conn c2{"100.64.0.12", "203.0.113.10", 40002};
    const std::string r2 = request("ads.example.net", kUidh + kMsisdn);
    e.same(c2.syn());
    e.changed(c2.data(0, r2), c2.data(0, scrub(r2, {"X-UIDH", "X-MSISDN"})));

    // 3. analytics consent, hostname-only collector (metrics-hosts): the Host
    //    before the identifier lets it pass; a Host after it does not.
    const Conn c3{"100.64.0.11", "198.18.2.2", 40003};
    const std::string r3a = request("sdk.metrics.example", kUidh);
    const std::string r3b = request("sdk.metrics.example", kUidh, false);
    e.same(c3.syn());
    e.same(c3.data(0, r3a));
    e.changed(c3.data(r3a.size(), r3b), c3.data(r3a.size(), scrub(r3b, {"X-UIDH"})));

    // 4. IPv6: carrier-marketing consent to carrier-offers (by Host) passes;
    //    an advertising-only subscriber to the same host is stripped.
    const Conn c4{"2001:db8:1000:3::42", "2001:db8:ffff::80", 40004};
    const std::string r4 = request("offers.carrier.example", kMsisdn);
    e.same(c4.syn());
    e.same(c4.data(0, r4));
    const Conn c5{"2001:db8:1000:2::5", "2001:db8:ffff::80", 40005, 1};
    e.same(c5.syn());
    e.changed(c5.data(0, r4), c5.data(0, scrub(r4, {"X-MSISDN"})));

    // 5. QinQ, no consent, to the billing exemption: passes without consent.
    const Conn c6{"100.64.0.12", "203.0.113.201", 40006, 2};
    const std::string r6 = request("pay.carrier.example", kMsisdn + kAcr);
    e.same(c6.syn());
    e.same(c6.data(0, r6));

    // 6. IPv6 to example-adnet without consent, in three segments cutting
    //    the name and the value; a retransmission of the middle one gets the
    //    same rewrite; a segment after a hole in the header block is dropped
    //    and comes again after the hole is filled.
    const Conn c7{"2001:db8:1000:4::9", "2001:db8:ad::80", 40007};
    const std::string r7 = request("ads.example.net", kAcr + kUidh) + request("ads.example.net", kUidh);
    const std::string s7 = scrub(r7, {"x-acr", "X-UIDH"});
    const size_t a = r7.find("X-UI") + 4, b = r7.find("+rSb"), d = r7.size() - 40;
    e.same(c7.syn());
    auto part = [&](size_t from, size_t to, bool scrubbed_differs = true) {
        const Bytes in = c7.data(from, r7.substr(from, to - from));
        const Bytes out = c7.data(from, s7.substr(from, to - from));
        if (scrubbed_differs && in != out)
            e.changed(in, out);
        else
            e.same(in);
    };
    part(0, a);
    part(a, b);
    part(a, b);                           // retransmitted
    e.dropped(c7.data(d, r7.substr(d)));  // out of order, inside the second request's fields
    part(b, d);
    part(d, r7.size());

    // The same subscribers from the YAML consent file and from its NDJSON
    // twin (docs/consent-file.md): the same bytes out.
    for (const std::string& consent :
         {golden::example_consent(), golden::source_path("config/consent.example.ndjson")}) {
        CAPTURE(consent);
        const auto result = replay(e.in, golden::example_policy(), consent);
        INFO(result.run.output);
        check_forwarded(result, e.out);

        CHECK(result.counter("packets") == e.in.size());
        CHECK(result.counter("dropped") == 1);
        CHECK(result.counter("http_out_of_order_dropped") == 1);
        CHECK(result.counter("http_retransmitted") == 1);
        CHECK(result.counter("http_requests") == 9);
        CHECK(result.counter("http_requests_with_identifiers") == 9);
        CHECK(result.counter("http_conservative_flows") == 0);
        CHECK(result.counter("verdict_pass_consent") == 3);
        CHECK(result.counter("verdict_pass_exempt") == 1);
        CHECK(result.counter("verdict_strip_no_consent") == 2);
        CHECK(result.counter("verdict_strip_no_collector") == 1);
        CHECK(result.counter("verdict_strip_unknown_subscriber") == 2);
        CHECK(result.passed_to("example-adnet") == 2);
        CHECK(result.stripped_to("example-adnet") == 2 + 3);
        CHECK(result.passed_to("metrics-hosts") == 1);
        CHECK(result.stripped_to("(none)") == 1);
        CHECK(result.passed_to("carrier-offers") == 1);
        CHECK(result.stripped_to("carrier-offers") == 1);
        CHECK(result.passed_to("billing-fraud") == 2);

        std::map<std::string, std::pair<uint64_t, uint64_t>> by_name;  // stripped, passed
        for (const auto& id : result.report.at("identifiers").as_array()) {
            if (id.at("kind").as_string() != "http_header") continue;
            by_name[std::string(id.at("name").as_string())] = {id.at("stripped").to_number<uint64_t>(),
                                                               id.at("passed").to_number<uint64_t>()};
        }
        CHECK(by_name.at("Verizon unique identifier header") == std::pair<uint64_t, uint64_t>{4, 2});
        CHECK(by_name.at("subscriber phone number (MSISDN)") == std::pair<uint64_t, uint64_t>{2, 3});
        CHECK(by_name.at("AT&T anonymous customer reference") == std::pair<uint64_t, uint64_t>{1, 1});
    }
}

// Header families: the example policy plus `header_prefix: X-Nokia-`.
TEST_CASE("golden HTTP replay: a header_prefix identifier scrubs the whole family, by consent") {
    const TempDir dir;
    std::string policy;
    {
        std::ifstream in(golden::example_policy());
        policy.assign(std::istreambuf_iterator<char>(in), {});
    }
    const std::string anchor = "  http_headers:";
    const size_t at = policy.find('\n', policy.find(anchor)) + 1;
    policy.insert(at, "    - header_prefix: X-Nokia-\n      name: Nokia subscriber headers\n");
    const std::string policy_file = dir.write("policy.yaml", policy);

    const std::string family =
        "X-Nokia-Msisdn: 4915112345678\r\nX-Nokiax: not-in-the-family\r\n"
        "x-nokia-imsi: 262011234567890\r\n";
    Expect e;
    // Consent (advertising) to example-adnet: passes untouched.
    const Conn c1{"100.64.0.10", "203.0.113.10", 41001};
    const std::string r1 = request("ads.example.net", family);
    e.same(c1.syn());
    e.same(c1.data(0, r1));
    // No consent: both family members scrubbed, X-Nokiax and X-UIDH's
    // neighbours untouched; the name cut across segments.
    const Conn c2{"100.64.0.12", "203.0.113.10", 41002};
    const std::string r2 = request("ads.example.net", family + kUidh);
    const std::string s2 = scrub(scrub(scrub(r2, {"X-Nokia-Msisdn"}), {"x-nokia-imsi"}), {"X-UIDH"});
    const size_t cut = r2.find("X-Nokia-Ms") + 6;
    e.same(c2.syn());
    e.changed(c2.data(0, r2.substr(0, cut)), c2.data(0, s2.substr(0, cut)));
    e.changed(c2.data(cut, r2.substr(cut)), c2.data(cut, s2.substr(cut)));

    const auto result = replay(e.in, policy_file);
    INFO(result.run.output);
    check_forwarded(result, e.out);
    CHECK(result.passed_to("example-adnet") == 2);
    CHECK(result.stripped_to("example-adnet") == 3);
    bool found = false;
    for (const auto& id : result.report.at("identifiers").as_array()) {
        if (id.at("name").as_string() != "Nokia subscriber headers") continue;
        found = true;
        CHECK(id.at("header_prefix").as_string() == "X-Nokia-");
        CHECK(id.at("stripped").to_number<uint64_t>() == 2);
        CHECK(id.at("passed").to_number<uint64_t>() == 2);
    }
    CHECK(found);
}

// Global Privacy Control with the example policy (every purpose honours it
// by default): the advertising subscriber's identifiers to example-adnet are
// stripped in a request carrying Sec-GPC: 1, before or after the signal.
TEST_CASE("golden HTTP replay: Sec-GPC: 1 strips consented identifiers, counted") {
    Expect e;
    const Conn c1{"100.64.0.10", "203.0.113.10", 42001};
    const std::string r1 = "GET /p HTTP/1.1\r\nHost: ads.example.net\r\n" + kUidh + "Sec-GPC: 1\r\n" + kMsisdn + "\r\n";
    e.same(c1.syn());
    e.changed(c1.data(0, r1), c1.data(0, scrub(r1, {"X-UIDH", "X-MSISDN"})));
    // The next request on the connection carries no signal: it passes.
    const std::string r2 = request("ads.example.net", kUidh);
    e.same(c1.data(r1.size(), r2));

    const auto result = replay(e.in);
    INFO(result.run.output);
    check_forwarded(result, e.out);
    CHECK(result.counter("http_gpc_requests") == 1);
    CHECK(result.counter("http_gpc_stripped") == 2);
    CHECK(result.counter("http_gpc_too_late") == 0);
    CHECK(result.counter("verdict_strip_gpc") == 1);
    CHECK(result.counter("verdict_pass_consent") == 1);
    CHECK(result.stripped_to("example-adnet") == 2);
    CHECK(result.passed_to("example-adnet") == 1);
}
