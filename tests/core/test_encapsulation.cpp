// Encapsulated frames (docs/pipeline.md#encapsulations): the parser follows
// the enabled encapsulations to the inner packet, and every edit of the inner
// packet leaves the outer lengths and checksums as the test builder's own
// encoders would have made them for the edited inner packet.
#include <doctest/doctest.h>

#include <functional>
#include <string>
#include <vector>

#include "core/dns_stage.hpp"
#include "core/packet.hpp"
#include "core/packet_edit.hpp"
#include "core/policy.hpp"
#include "dns_builder.hpp"
#include "packet_builder.hpp"

using namespace optgate;
using namespace optgate::test;

namespace {

constexpr EncapsulationSet kAll = kAllEncapsulations;

EncapsulationSet only(Encapsulation e) { return encapsulation_bit(e); }

ParseResult parse(const Bytes& f, ParsedPacket& p, EncapsulationSet enc) {
    return parse_packet(f.data(), uint32_t(f.size()), p, enc);
}

// One way of wrapping an inner frame, for either outer family.
struct Wrapper {
    const char* name;
    Encapsulation kind;
    std::function<Bytes(const Bytes& inner, bool outer_v6)> wrap;
};

PacketBuilder outer_ip(bool v6) {
    PacketBuilder b;
    b.ether("02:00:00:00:0a:01", "02:00:00:00:0a:02");
    if (v6)
        b.ipv6("2001:db8:ad::1", "2001:db8:ad::2");
    else
        b.ipv4("198.51.100.1", "198.51.100.2");
    return b;
}

// Every encapsulation and its variants (optional fields, checksums on and
// off). PPPoE and MPLS have no outer IP: `outer_v6` picks the VLAN tags.
const std::vector<Wrapper>& wrappers() {
    static const std::vector<Wrapper> w = {
        {"pppoe", Encapsulation::pppoe,
         [](const Bytes& in, bool v6) {
             PacketBuilder o;
             if (v6) o.vlan(10, kTpid8021ad).vlan(20);
             return wrap_pppoe(in, 0x2a, o);
         }},
        {"mpls", Encapsulation::mpls,
         [](const Bytes& in, bool v6) {
             return v6 ? wrap_mpls(in, {16, 17, 18}) : wrap_mpls(in, {100});
         }},
        {"gre", Encapsulation::gre, [](const Bytes& in, bool v6) { return wrap_gre(in, outer_ip(v6)); }},
        {"gre checksum key seq", Encapsulation::gre,
         [](const Bytes& in, bool v6) {
             return wrap_gre(in, outer_ip(v6), {.checksum = true, .key = 7, .sequence = 9});
         }},
        {"gre teb checksum", Encapsulation::gre,
         [](const Bytes& in, bool v6) { return wrap_gre(in, outer_ip(v6), {.checksum = true, .ethernet = true}); }},
        {"vxlan", Encapsulation::vxlan,
         [](const Bytes& in, bool v6) { return wrap_vxlan(in, outer_ip(v6).udp(49999, kPortVxlan), 42); }},
        {"vxlan no udp checksum", Encapsulation::vxlan,
         [](const Bytes& in, bool v6) {
             return wrap_vxlan(in, outer_ip(v6).udp(49999, kPortVxlan, {.zero_checksum = true}), 42);
         }},
        {"geneve options", Encapsulation::geneve,
         [](const Bytes& in, bool v6) {
             return wrap_geneve(in, outer_ip(v6).udp(50001, kPortGeneve), 5, {.options = Bytes(8, 0x5a)});
         }},
        {"geneve ip", Encapsulation::geneve,
         [](const Bytes& in, bool v6) {
             return wrap_geneve(in, outer_ip(v6).udp(50001, kPortGeneve), 5, {.ethernet = false});
         }},
        {"gtpu", Encapsulation::gtpu,
         [](const Bytes& in, bool v6) { return wrap_gtpu(in, outer_ip(v6).udp(kPortGtpu, kPortGtpu)); }},
        {"gtpu seq extensions", Encapsulation::gtpu,
         [](const Bytes& in, bool v6) {
             return wrap_gtpu(in, outer_ip(v6).udp(kPortGtpu, kPortGtpu),
                              {.teid = 99, .sequence = 3, .extensions = {Bytes{0x10, 0x09}, Bytes(6, 0x11)}});
         }},
        {"l2tp", Encapsulation::l2tp,
         [](const Bytes& in, bool v6) { return wrap_l2tp(in, outer_ip(v6).udp(kPortL2tp, kPortL2tp)); }},
        {"l2tp seq offset no length", Encapsulation::l2tp,
         [](const Bytes& in, bool v6) {
             return wrap_l2tp(in, outer_ip(v6).udp(40000, kPortL2tp),
                              {.length = false, .sequence = 4, .offset_pad = 3, .address_control = false});
         }},
    };
    return w;
}

Bytes inner_http(bool v6, const std::string& payload) {
    PacketBuilder b;
    if (v6)
        b.ipv6("2001:db8:1000:1::5", "2001:db8:ad::80");
    else
        b.ipv4("100.64.0.10", "203.0.113.80");
    return b.tcp(40000, 80, {.seq = 1000}).payload(payload).build();
}

PacketBuilder inner_dns(bool v6) {
    PacketBuilder b;
    if (v6)
        b.ipv6("2001:db8:1000:1::5", "2001:db8:ad::53");
    else
        b.ipv4("100.64.0.10", "198.18.0.53");
    b.udp(40001, 53);
    return b;
}

}  // namespace

TEST_CASE("every encapsulation parses to the inner packet when enabled") {
    for (const auto& w : wrappers()) {
        for (int outer6 = 0; outer6 < 2; ++outer6) {
            for (int inner6 = 0; inner6 < 2; ++inner6) {
                CAPTURE(w.name);
                CAPTURE(outer6);
                CAPTURE(inner6);
                const Bytes in = inner_http(inner6, "GET / HTTP/1.1\r\n\r\n");
                const Bytes f = w.wrap(in, outer6);
                ParsedPacket native, p;
                REQUIRE(parse(in, native, 0).ok);
                const ParseResult r = parse(f, p, only(w.kind));
                REQUIRE(r.ok);
                CHECK(p.note == Counter::encapsulated_inspected);
                CHECK(p.encapsulations == 1);
                CHECK(p.family == native.family);
                CHECK(p.src_addr() == native.src_addr());
                CHECK(p.dst_addr() == native.dst_addr());
                CHECK(p.l4_proto == kProtoTcp);
                CHECK(p.src_port == 40000);
                CHECK(p.dst_port == 80);
                CHECK(p.tcp_seq == 1000);
                CHECK(p.payload_len == native.payload_len);
                // The inner packet's bytes, where the view says they are.
                const uint32_t shift = p.l3_offset - native.l3_offset;
                CHECK(Bytes(f.begin() + p.l3_offset, f.begin() + p.ip_end) ==
                      Bytes(in.begin() + native.l3_offset, in.begin() + native.ip_end));
                CHECK(p.payload_offset == native.payload_offset + shift);
                CHECK(p.outer_count >= (w.kind == Encapsulation::mpls ? 0 : 1));
            }
        }
    }
}

TEST_CASE("an encapsulation not enabled is counted and parsed as before") {
    for (const auto& w : wrappers()) {
        CAPTURE(w.name);
        const Bytes f = w.wrap(inner_http(false, "GET / HTTP/1.1\r\n\r\n"), false);
        ParsedPacket p;
        const ParseResult r = parse(f, p, EncapsulationSet(kAll & ~only(w.kind)));
        const auto counter = Counter(unsigned(Counter::encapsulated_not_inspected_pppoe) + unsigned(w.kind));
        CHECK(p.encapsulations == 0);
        CHECK(p.outer_count == 0);
        if (w.kind == Encapsulation::pppoe || w.kind == Encapsulation::mpls) {
            // Not IP outside: not parsed at all, forwarded unchanged.
            CHECK_FALSE(r.ok);
            CHECK(r.reason == counter);
        } else {
            // An IP packet to its outer addresses, as before encapsulations.
            CHECK(r.ok);
            CHECK(p.note == counter);
            CHECK(p.src_addr() == IpAddr::from_v4(f.data() + 14 + 12));
        }
    }
}

TEST_CASE("the default set is PPPoE only") {
    CHECK(Policy{}.encapsulations == encapsulation_bit(Encapsulation::pppoe));
    CHECK(kDefaultEncapsulations == encapsulation_bit(Encapsulation::pppoe));
    for (unsigned i = 0; i < kEncapsulationCount; ++i)
        CHECK(encapsulation_from_name(encapsulation_name(Encapsulation(i))) == Encapsulation(i));
    CHECK_FALSE(encapsulation_from_name("ipip"));
}

TEST_CASE("native frames are unaffected by the enabled set") {
    const Bytes f = inner_http(false, "GET / HTTP/1.1\r\n\r\n");
    ParsedPacket a, b;
    const ParseResult ra = parse(f, a, 0), rb = parse(f, b, kAll);
    CHECK(ra.ok);
    CHECK(rb.ok);
    CHECK(a.note == Counter::packets);
    CHECK(b.note == Counter::packets);
    CHECK(b.encapsulations == 0);
    CHECK(a.payload_offset == b.payload_offset);
}

TEST_CASE("control and non-IP payloads are non_ip; unsupported headers are not looked into") {
    const Bytes in = inner_http(false, "x");
    ParsedPacket p;
    // PPP LCP inside PPPoE.
    Bytes lcp = wrap_pppoe(in, 1);
    lcp[14 + 6] = 0xc0;
    lcp[14 + 7] = 0x21;
    CHECK(parse(lcp, p, kAll).reason == Counter::non_ip);
    // GTP-U echo request.
    const Bytes echo = wrap_gtpu(in, outer_ip(false).udp(kPortGtpu, kPortGtpu), {.message_type = 1});
    CHECK(parse(echo, p, kAll).reason == Counter::non_ip);
    // GRE version 1 (PPTP) and a routing-present flag.
    Bytes gre = wrap_gre(in, outer_ip(false));
    gre[14 + 20 + 1] = 0x01;
    auto r = parse(gre, p, kAll);
    CHECK_FALSE(r.ok);
    CHECK(r.reason == Counter::encapsulated_not_inspected_gre);
    // VXLAN without the I flag.
    Bytes vx = wrap_vxlan(in, outer_ip(false).udp(1, kPortVxlan), 1);
    vx[14 + 20 + 8] = 0;
    CHECK(parse(vx, p, kAll).reason == Counter::encapsulated_not_inspected_vxlan);
    // MPLS with a pseudowire control word (first nibble 0) after the stack.
    Bytes pw = wrap_mpls(in, {5});
    pw[14 + 4] = 0x00;
    CHECK(parse(pw, p, kAll).reason == Counter::encapsulated_not_inspected_mpls);
    // A malformed inner packet is counted against its layer too.
    Bytes bad = wrap_vxlan(inner_http(false, "x"), outer_ip(false).udp(1, kPortVxlan), 1);
    bad[14 + 20 + 8 + 8 + 14] = 0x35;  // inner IPv4 IHL 5 -> version 3
    r = parse(bad, p, kAll);
    CHECK(r.reason == Counter::bad_ipv4_header);
    CHECK(p.note == Counter::encapsulated_not_inspected_vxlan);
}

TEST_CASE("depth is bounded: five layers are too deep, four are not") {
    Bytes f = inner_http(false, "GET / HTTP/1.1\r\n\r\n");
    for (int layers = 1; layers <= 5; ++layers) {
        f = wrap_gre(f, outer_ip(layers % 2 == 0), {.ethernet = layers % 2 == 1});
        ParsedPacket p;
        const ParseResult r = parse(f, p, kAll);
        CAPTURE(layers);
        if (layers <= int(kMaxEncapsulationLayers)) {
            CHECK(r.ok);
            CHECK(p.encapsulations == layers);
            CHECK(p.dst_port == 80);
        } else {
            CHECK_FALSE(r.ok);
            CHECK(r.reason == Counter::encapsulated_too_deep);
        }
    }
}

TEST_CASE("outer fragments are not looked into and say so") {
    const Bytes f = wrap_vxlan(inner_http(false, std::string(300, 'a')), outer_ip(false).udp(1, kPortVxlan), 1);
    const auto frags = fragment_ipv4(f, 128);
    REQUIRE(frags.size() > 1);
    ParsedPacket p;
    const ParseResult r = parse(frags[0], p, kAll);
    CHECK(r.ok);
    CHECK(p.note == Counter::encapsulated_fragment_not_inspected);
    CHECK(p.encapsulations == 0);
    CHECK(p.fragment);
}

TEST_CASE("no frame prefix is read out of bounds or parsed past its end") {
    for (const auto& w : wrappers()) {
        for (int v6 = 0; v6 < 2; ++v6) {
            const Bytes f = w.wrap(inner_http(v6, "GET / HTTP/1.1\r\nX-UIDH: 1\r\n\r\n"), v6);
            for (size_t len = 0; len < f.size(); ++len) {
                // A copy of exactly `len` bytes, so ASan sees any read past it.
                const Bytes cut(f.begin(), f.begin() + long(len));
                ParsedPacket p;
                const ParseResult r = parse(cut, p, kAll);
                if (r.ok) CHECK(p.ip_end <= len);
            }
        }
    }
}

TEST_CASE("l4_fill_bytes inside an encapsulation: inner and outer checksums as the builder makes them") {
    const std::string payload = "GET / HTTP/1.1\r\nX-UIDH: 0123456789abcdef\r\nHost: a.example\r\n\r\n";
    for (const auto& w : wrappers()) {
        for (int outer6 = 0; outer6 < 2; ++outer6) {
            for (int inner6 = 0; inner6 < 2; ++inner6) {
                CAPTURE(w.name);
                CAPTURE(outer6);
                CAPTURE(inner6);
                const Bytes f0 = w.wrap(inner_http(inner6, payload), outer6);
                ParsedPacket p;
                REQUIRE(parse(f0, p, kAll).ok);
                for (uint32_t start : {16u, 17u, 24u}) {
                    for (uint32_t len : {1u, 15u, 16u}) {
                        Bytes f = f0;
                        l4_fill_bytes(f.data(), p, p.payload_offset + start, len, 'x');
                        std::string filled = payload;
                        filled.replace(start, len, len, 'x');
                        CHECK(f == w.wrap(inner_http(inner6, filled), outer6));
                    }
                }
            }
        }
    }
}

TEST_CASE("pad_dns_option inside an encapsulation: inner and every outer checksum as the builder makes them") {
    // A 3-byte option first puts the next one at an odd offset.
    const EdnsOption odd{10, {1, 2, 3}}, ecs{8, ecs_option_data("100.64.0.0/24")}, mac{65001, Bytes(6, 0x42)};
    const Bytes in_msg = dns_query({.edns_udp_size = 1232, .options = {odd, ecs, mac}});
    const Bytes out_msg = dns_query({.edns_udp_size = 1232, .options = {odd, padding_for(ecs), padding_for(mac)}});
    const uint32_t mac_at = uint32_t(in_msg.size() - 4 - mac.data.size());
    const uint32_t ecs_at = uint32_t(mac_at - 4 - ecs.data.size());
    for (const auto& w : wrappers()) {
        for (int outer6 = 0; outer6 < 2; ++outer6) {
            for (int inner6 = 0; inner6 < 2; ++inner6) {
                CAPTURE(w.name);
                CAPTURE(outer6);
                CAPTURE(inner6);
                Bytes f = w.wrap(inner_dns(inner6).payload(in_msg).build(), outer6);
                ParsedPacket p;
                REQUIRE(parse(f, p, kAll).ok);
                pad_dns_option(f.data(), p, p.payload_offset + ecs_at);
                pad_dns_option(f.data(), p, p.payload_offset + mac_at);
                CHECK(f == w.wrap(inner_dns(inner6).payload(out_msg).build(), outer6));
            }
        }
    }
}

TEST_CASE("pad_dns_option keeps inner Ethernet padding inside VXLAN and the outer checksum right") {
    // A short inner frame padded to 60 bytes: the outer UDP checksum covers
    // the padding, which stays where it was.
    const EdnsOption mac{65001, Bytes(6, 0x42)};
    auto frame = [](const EdnsOption& o) {
        const Bytes inner = inner_dns(false)
                                .payload(dns_query({.edns_udp_size = 1232, .options = {o}}))
                                .trailer(Bytes(10, 0xee))
                                .build();
        return wrap_vxlan(inner, outer_ip(false).udp(1, kPortVxlan), 3);
    };
    Bytes f = frame(mac);
    ParsedPacket p;
    REQUIRE(parse(f, p, kAll).ok);
    pad_dns_option(f.data(), p, p.payload_offset + p.payload_len - 4 - uint32_t(mac.data.size()));
    CHECK(f == frame(padding_for(mac)));
}

TEST_CASE("set_dscp inside an encapsulation fixes the outer checksums") {
    for (const auto& w : wrappers()) {
        for (int inner6 = 0; inner6 < 2; ++inner6) {
            CAPTURE(w.name);
            CAPTURE(inner6);
            Bytes f = w.wrap(inner_http(inner6, "GET / HTTP/1.1\r\n\r\n"), true);
            ParsedPacket p;
            REQUIRE(parse(f, p, kAll).ok);
            CHECK(set_dscp(f.data(), p, 46));
            PacketBuilder b;
            if (inner6)
                b.ipv6("2001:db8:1000:1::5", "2001:db8:ad::80", {.traffic_class = 46 << 2});
            else
                b.ipv4("100.64.0.10", "203.0.113.80", {.tos = 46 << 2});
            const Bytes expected = b.tcp(40000, 80, {.seq = 1000}).payload("GET / HTTP/1.1\r\n\r\n").build();
            CHECK(f == w.wrap(expected, true));
        }
    }
}

TEST_CASE("a wrong outer checksum stays wrong after an edit") {
    Bytes f = wrap_gre(inner_http(false, "GET / HTTP/1.1\r\nX-UIDH: 1\r\n\r\n"), outer_ip(false), {.checksum = true});
    f[14 + 20 + 4] ^= 0x01;  // GRE checksum off by one bit
    const Bytes damaged = f;
    ParsedPacket p;
    REQUIRE(parse(f, p, kAll).ok);
    l4_fill_bytes(f.data(), p, p.payload_offset + 24, 1, 'x');
    const Bytes right = wrap_gre(inner_http(false, "GET / HTTP/1.1\r\nX-UIDH: x\r\n\r\n"), outer_ip(false),
                                 {.checksum = true});
    CHECK(damaged != f);
    CHECK(f.size() == right.size());
    // Everything as the builder makes it, except the GRE checksum: still wrong.
    CHECK(Bytes(f.begin(), f.begin() + 38) == Bytes(right.begin(), right.begin() + 38));
    CHECK(Bytes(f.begin() + 40, f.end()) == Bytes(right.begin() + 40, right.end()));
    CHECK((f[38] != right[38] || f[39] != right[39]));
}
