#include <doctest/doctest.h>

#include <random>

#include "core/dns_stage.hpp"
#include "dns_builder.hpp"
#include "pipeline_fixture.hpp"

using namespace optgate;
using namespace optgate::test;

namespace {

const EdnsOption kPadding{12, Bytes(5, 0)};  // not an identifier

Bytes dns_frame(const char* src, const char* dst, const DnsQuery& q, uint16_t dport = 53) {
    PacketBuilder b;
    if (std::string_view(src).find(':') != std::string_view::npos)
        b.ipv6(src, dst);
    else
        b.ipv4(src, dst);
    return b.udp(40000, dport).payload(dns_query(q)).build();
}

DnsQuery query(std::vector<EdnsOption> options) {
    return DnsQuery{.qname = "www.example.com", .edns_udp_size = 1232, .options = std::move(options)};
}

}  // namespace

TEST_CASE("scan finds the OPT record and counts identifier options") {
    auto rt = Runtime::compile(sample_policy());
    const Bytes msg = dns_query(query({kCookie, kEcs4, kMac}));
    DnsScan scan;
    CHECK(scan_dns_query(msg.data(), uint32_t(msg.size()), *rt, scan) == std::nullopt);
    CHECK(scan.has_opt);
    CHECK(scan.identifier_options == 2);
    CHECK(scan.rdata_end == msg.size());

    const Bytes plain = dns_query(DnsQuery{});
    CHECK(scan_dns_query(plain.data(), uint32_t(plain.size()), *rt, scan) == std::nullopt);
    CHECK_FALSE(scan.has_opt);
}

TEST_CASE("strip: identifier options made Padding of the same length, zeroed; nothing else changes") {
    PipelineFixture fx;
    // 100.64.0.12 has no consent; 198.18.0.53:53 is the advertising resolver.
    struct Case {
        const char* what;
        const char* src;
        const char* dst;
        std::vector<EdnsOption> in, expected;
    };
    const Case cases[] = {
        {"ECS only", "100.64.0.12", "198.18.0.53", {kEcs4}, {padding_for(kEcs4)}},
        {"ECS and MAC around a cookie",
         "100.64.0.12",
         "198.18.0.53",
         {kEcs4, kCookie, kMac},
         {padding_for(kEcs4), kCookie, padding_for(kMac)}},
        {"cookie, ECS, padding",
         "100.64.0.12",
         "198.18.0.53",
         {kCookie, kEcs4, kPadding},
         {kCookie, padding_for(kEcs4), kPadding}},
        {"to a resolver that is no collector",
         "100.64.0.10",
         "198.51.200.1",
         {kMac, kEcs4},
         {padding_for(kMac), padding_for(kEcs4)}},
        {"unknown subscriber", "100.64.0.99", "198.18.0.53", {kEcs4}, {padding_for(kEcs4)}},
        {"IPv6 subscriber not in the table",
         "2001:db8:1000:9::1",
         "2001:db8:ad::53",
         {kEcs4, kCookie},
         {padding_for(kEcs4), kCookie}},
        {"an empty identifier option", "100.64.0.12", "198.18.0.53", {{65001, {}}, kCookie}, {{12, {}}, kCookie}},
        {"odd lengths: the next option at an odd offset",
         "100.64.0.12",
         "198.18.0.53",
         {{10, {1, 2, 3}}, kEcs4, {65001, {9, 8, 7, 6, 5}}, kCookie},
         {{10, {1, 2, 3}}, padding_for(kEcs4), {12, Bytes(5, 0)}, kCookie}},
    };
    for (const auto& c : cases) {
        const std::string what = c.what;
        CAPTURE(what);
        const Bytes in = dns_frame(c.src, c.dst, query(c.in));
        const Bytes expected = dns_frame(c.src, c.dst, query(c.expected));
        const Bytes out = fx.run(in);
        CHECK_MESSAGE(out == expected, "got\n" << hexdump(out) << "expected\n" << hexdump(expected));
        CHECK(verify_checksums(out).ok());
    }
    CHECK(fx.count(Counter::dns_rewritten) == 8);
    CHECK(fx.count(Counter::verdict_strip_no_consent) == 5);
    CHECK(fx.count(Counter::verdict_strip_no_collector) == 1);        // 198.51.200.1
    CHECK(fx.count(Counter::verdict_strip_unknown_subscriber) == 2);  // 100.64.0.99, 2001:db8:1000:9::/64
}

TEST_CASE("pass: a consenting subscriber's query to the collector is untouched") {
    PipelineFixture fx;
    const Bytes in = dns_frame("100.64.0.10", "198.18.0.53", query({kEcs4, kMac}));
    CHECK(fx.run(in) == in);
    CHECK(fx.count(Counter::verdict_pass_consent) == 1);
    CHECK(fx.count(Counter::dns_rewritten) == 0);
    CHECK(fx.count(Counter::rewritten) == 0);
    // Counted as passed for the collector and for each identifier.
    const auto& c = fx.worker->counters();
    CHECK(c.destination_passed[1] == 2);  // adnet-dns
    CHECK(c.identifier_passed[2] == 1);   // ECS
    CHECK(c.identifier_passed[3] == 1);   // MAC
    CHECK(c.destination_stripped[1] == 0);
}

TEST_CASE("the same query is stripped for a subscriber without that purpose") {
    PipelineFixture fx;
    const Bytes in = dns_frame("100.64.0.11", "198.18.0.53", query({kEcs4}));  // analytics only
    const Bytes out = fx.run(in);
    CHECK(out == dns_frame("100.64.0.11", "198.18.0.53", query({padding_for(kEcs4)})));
    const auto& c = fx.worker->counters();
    CHECK(c.destination_stripped[1] == 1);
    CHECK(c.identifier_stripped[2] == 1);
}

TEST_CASE("queries without identifiers, responses and other ports are untouched") {
    PipelineFixture fx;
    const Bytes no_opt = dns_frame("100.64.0.12", "198.18.0.53", DnsQuery{});
    const Bytes cookie_only = dns_frame("100.64.0.12", "198.18.0.53", query({kCookie}));
    const Bytes other_port = dns_frame("100.64.0.12", "198.18.0.53", query({kEcs4}), 5353);
    Bytes response = dns_query(query({kEcs4}));
    response[2] |= 0x80;  // QR
    const Bytes resp_frame =
        PacketBuilder().ipv4("100.64.0.12", "198.18.0.53").udp(40000, 53).payload(response).build();
    const Bytes from_internet = dns_frame("203.0.113.9", "198.18.0.53", query({kEcs4}));
    for (const Bytes& f : {no_opt, cookie_only, other_port, resp_frame, from_internet}) CHECK(fx.run(f) == f);
    CHECK(fx.count(Counter::dns_not_query) == 1);
    CHECK(fx.count(Counter::not_from_subscriber) == 1);
    CHECK(fx.count(Counter::dns_queries) == 2);
    CHECK(fx.count(Counter::dns_with_identifiers) == 0);
}

TEST_CASE("VLAN, IPv6 extension headers and OPT not last") {
    PipelineFixture fx;
    const Bytes tsig_like = dns_rr("key.example", 250, 255, 0, Bytes(10, 0xaa));
    DnsQuery q = query({kEcs4, kCookie});
    q.extra_additional = {tsig_like};
    DnsQuery expected_q = query({padding_for(kEcs4), kCookie});
    expected_q.extra_additional = {tsig_like};
    auto build = [&](const DnsQuery& dq) {
        return PacketBuilder()
            .vlan(10, kTpid8021ad)
            .vlan(20)
            .ipv6("2001:db8:1000:9::1", "2001:db8:ad::53")
            .ext_hop_by_hop()
            .ext_dest_opts()
            .udp(40000, 53)
            .payload(dns_query(dq))
            .build();
    };
    const Bytes out = fx.run(build(q));
    CHECK(out == build(expected_q));
    CHECK(verify_checksums(out).ok());
}

TEST_CASE("UDP checksum zero over IPv4 stays zero; a wrong checksum stays wrong") {
    PipelineFixture fx;
    auto frame = [&](std::vector<EdnsOption> opts, bool zero) {
        return PacketBuilder()
            .ipv4("100.64.0.12", "198.18.0.53")
            .udp(40000, 53, {.zero_checksum = zero})
            .payload(dns_query(query(std::move(opts))))
            .build();
    };
    CHECK(fx.run(frame({kEcs4, kCookie}, true)) == frame({padding_for(kEcs4), kCookie}, true));

    auto plain = [&](std::vector<EdnsOption> opts) {
        return PacketBuilder()
            .ipv4("100.64.0.12", "198.18.0.53")
            .udp(40000, 53)
            .payload(dns_query(query(std::move(opts))))
            .build();
    };
    Bytes in = plain({kEcs4, kCookie});
    const size_t cks = 14 + 20 + 6;          // UDP checksum field
    in[cks + 1] = uint8_t(in[cks + 1] + 3);  // off by 3: the receiver must still drop it
    const Bytes out = fx.run(in);
    const auto report = verify_checksums(out);
    CHECK(report.parsed);
    CHECK(report.ipv4_header_ok);
    CHECK(report.l4_present);
    CHECK_FALSE(report.l4_ok);
    // Everything but the checksum is as if sent as Padding; the checksum is off
    // by the same 3 (incremental update preserves the error).
    Bytes expected = plain({padding_for(kEcs4), kCookie});
    REQUIRE(out.size() == expected.size());
    const uint16_t got = uint16_t(out[cks] << 8 | out[cks + 1]);
    const uint16_t right = uint16_t(expected[cks] << 8 | expected[cks + 1]);
    CHECK(uint16_t(got - right) == 3);
    expected[cks] = out[cks];
    expected[cks + 1] = out[cks + 1];
    CHECK(out == expected);
}

TEST_CASE("Ethernet padding is kept") {
    PipelineFixture fx;
    auto frame = [&](std::vector<EdnsOption> opts) {
        return PacketBuilder()
            .ipv4("100.64.0.12", "198.18.0.53")
            .udp(40000, 53)
            .payload(dns_query(query(std::move(opts))))
            .trailer({0xde, 0xad, 0xbe, 0xef})
            .build();
    };
    CHECK(fx.run(frame({kEcs4})) == frame({padding_for(kEcs4)}));
}

TEST_CASE("malformed DNS is forwarded unchanged and counted by reason") {
    PipelineFixture fx;
    const Bytes good = dns_query(query({kEcs4}));
    struct Case {
        const char* what;
        Bytes msg;
        Counter reason;
    };
    std::vector<Case> cases;
    cases.push_back({"header only 11 bytes", Bytes(good.begin(), good.begin() + 11), Counter::dns_malformed_header});
    {
        Bytes m = good;
        m.resize(20);  // cut inside the question name
        cases.push_back({"truncated name", m, Counter::dns_malformed_name});
    }
    {
        Bytes m = good;
        m[12] = 0x40;  // reserved label type
        cases.push_back({"reserved label type", m, Counter::dns_malformed_name});
    }
    {
        DnsQuery q = query({kEcs4});
        q.arcount = 2;  // claims one more record than present
        cases.push_back({"count past the end", dns_query(q), Counter::dns_malformed_record});
    }
    {
        DnsQuery q = query({kEcs4});
        q.extra_additional = {edns_opt_rr(512, {kMac})};
        cases.push_back({"two OPT records", dns_query(q), Counter::dns_multiple_opt});
    }
    {
        Bytes m = good;
        // The ECS option length byte: claim more than RDLENGTH holds.
        const size_t opt_len_at = m.size() - kEcs4.data.size() - 1;
        m[opt_len_at] = uint8_t(m[opt_len_at] + 4);
        cases.push_back({"option overruns RDATA", m, Counter::dns_malformed_opt});
    }
    {
        // A compression pointer to itself (a loop if followed).
        Bytes m(good.begin(), good.begin() + 12);
        m[5] = 1;                 // qdcount 1
        m[7] = m[9] = m[11] = 0;  // no records
        m.insert(m.end(), {0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01});
        cases.push_back({"pointer loop", m, Counter::dns_malformed_name});
    }
    {
        // A name of 300 bytes in 63-byte labels.
        Bytes m(good.begin(), good.begin() + 12);
        m[5] = 1;
        m[7] = m[9] = m[11] = 0;
        for (int i = 0; i < 5; ++i) {
            m.push_back(63);
            m.insert(m.end(), 63, 'a');
        }
        m.push_back(0);
        m.insert(m.end(), {0, 1, 0, 1});
        cases.push_back({"name over 255 bytes", m, Counter::dns_malformed_name});
    }
    for (const auto& c : cases) {
        const std::string what = c.what;
        CAPTURE(what);
        const uint64_t before = fx.count(c.reason);
        const Bytes f = PacketBuilder().ipv4("100.64.0.12", "198.18.0.53").udp(40000, 53).payload(c.msg).build();
        CHECK(fx.run(f) == f);
        CHECK(fx.count(c.reason) == before + 1);
    }
    CHECK(fx.count(Counter::dns_rewritten) == 0);
}

TEST_CASE("random DNS payloads never crash the stage and never change a packet's length") {
    PipelineFixture fx;
    std::mt19937 rng(99);
    const Bytes good = dns_query(query({kEcs4, kCookie, kMac}));
    for (int i = 0; i < 20000; ++i) {
        Bytes m = good;
        const int flips = 1 + int(rng() % 4);
        for (int k = 0; k < flips; ++k) m[rng() % m.size()] = uint8_t(rng());
        if (rng() % 3 == 0) m.resize(rng() % m.size());
        const Bytes f = PacketBuilder().ipv4("100.64.0.12", "198.18.0.53").udp(40000, 53).payload(m).build();
        const Bytes out = fx.run(f);
        REQUIRE(out.size() == f.size());
        if (out != f) REQUIRE(verify_checksums(out).ok());
    }
}
