// fuzz_packet: any bytes as one Ethernet frame, through the packet parser
// and the whole pipeline (Worker::process_burst) of support/packet_rig.hpp,
// once as given and once with its checksums made right.
//
// Invariants (tests/fuzz/README.md):
//  - the core's parser agrees with the reference reader (support/reference)
//    on every frame both read as a whole TCP/UDP datagram;
//  - only a fragment may be dropped; a forwarded frame never grows, and
//    only a subscriber's frame changes (DSCP tag, scrubbed HTTP values, DNS
//    options removed); only a DNS query changes length;
//  - checksums right on input stay right;
//  - strip verdict, HTTP: every identifier value byte is the filler, and
//    any payload byte that changed became the filler; DNS: the query is
//    exactly the input without the identifier options;
//  - pass verdict: the payload is untouched.
//  - an encapsulated frame (every encapsulation is on in the rig): its inner
//    packet comes out exactly as that packet alone, behind a plain Ethernet
//    header, comes out of a fresh worker (which the checks above then
//    check); before it only the outer length and checksum fields may
//    change, and after it nothing but the moved tail; an inner fragment is
//    never held for reassembly, and only a first one may be dropped.
#include <algorithm>
#include <cstring>

#include "core/packet.hpp"
#include "inet_checksum.hpp"
#include "support/fuzz_check.hpp"
#include "support/packet_rig.hpp"

using namespace optgate;
using namespace optgate::fuzz;

namespace {

bool from_subscriber(const FrameView& v, const Bytes& f) {
    const uint8_t* s = &f[v.src_at];
    if (v.v6) return s[0] == 0x20 && s[1] == 0x01 && s[2] == 0x0d && s[3] == 0xb8 && (s[4] >> 4) == 1;  // /36
    return s[0] == 100 && (s[1] & 0xc0) == 64;
}

// Bytes the tag stage may change: IPv4 TOS and header checksum, IPv6 traffic class.
bool tag_byte(const FrameView& v, size_t i) {
    if (v.v6) return i == v.l3 || i == v.l3 + 1;
    return i == v.l3 + 1 || i == v.l3 + 10 || i == v.l3 + 11;
}

void check_parser(const Bytes& in, const FrameView& v) {
    ParsedPacket p;
    const ParseResult r = parse_packet(in.data(), uint32_t(in.size()), p);
    const bool core_whole = r.ok && p.has_l4 && !p.fragment && (p.l4_proto == 6 || p.l4_proto == 17);
    FUZZ_CHECK(core_whole == v.l4, std::string("core parser: ") + (core_whole ? "whole" : "not whole") +
                                       " TCP/UDP datagram, reference: " + (v.l4 ? "whole" : "not whole") + " (reason " +
                                       std::to_string(int(r.reason)) + ")\n" + hex(in.data(), in.size()));
    if (!v.l4) return;
    FUZZ_CHECK(p.l3_offset == v.l3 && p.l4_offset == v.l4_at && p.ip_end == v.ip_end && p.l4_proto == v.proto &&
                   p.payload_offset == v.payload && p.payload_len == v.payload_end - v.payload &&
                   p.src_port == v.sport && p.dst_port == v.dport && (p.family == Family::v6) == v.v6,
               "core parser offsets differ from the reference:\n" + hex(in.data(), in.size()));
}

void check_http(const PacketRig& rig, const Bytes& in, const Bytes& out, const FrameView& v, bool strip) {
    const std::string_view stream(reinterpret_cast<const char*>(&in[v.payload]), v.payload_end - v.payload);
    const uint8_t* got = &out[v.payload];
    if (!strip) {
        FUZZ_CHECK(std::memcmp(got, stream.data(), stream.size()) == 0, "pass verdict, but the payload changed");
        return;
    }
    for (size_t k = 0; k < stream.size(); ++k)
        FUZZ_CHECK(got[k] == uint8_t(stream[k]) || got[k] == uint8_t(rig.filler()),
                   "a payload byte changed into something other than the filler at " + show_bytes(stream, k));
    const bool midstream = !(v.tcp_flags & 0x02);  // no SYN: conservative mode from the first byte
    for (const ValueRange& r : http_identifier_values(stream, rig.http_names(), midstream))
        for (size_t k = r.begin; k < r.end; ++k)
            FUZZ_CHECK(stream[k] == '\r' || got[k] == uint8_t(rig.filler()),
                       std::string("identifier value byte left on a strip verdict (") +
                           (midstream ? "mid-stream" : "from SYN") + ") at " + show_bytes(stream, k));
}

void check_dns(const PacketRig& rig, const Bytes& in, const Bytes& out, const FrameView& v, bool strip) {
    const uint8_t* msg = &in[v.payload];
    const size_t len = v.payload_end - v.payload;
    const DnsQueryView q = read_dns_query(msg, len);
    if (!q.well_formed) return;
    const Bytes want = strip ? dns_options_padded(msg, len, q, rig.dns_codes()) : Bytes(msg, msg + len);
    const FrameView o = read_frame(out);
    FUZZ_CHECK(o.l4 && o.proto == 17, "the DNS frame no longer reads as UDP");
    const Bytes got(&out[o.payload], &out[o.payload_end]);
    FUZZ_CHECK(got == want, std::string(strip ? "strip" : "pass") + " verdict: DNS message\n" +
                                hex(got.data(), got.size()) + "\nexpected\n" + hex(want.data(), want.size()));
    FUZZ_CHECK(out.size() == in.size() && o.payload_end == v.payload_end && o.ip_end == v.ip_end,
               "the DNS stage changed a length");
    // Everything after the UDP datagram (IP payload past it, Ethernet trailer) is kept.
    FUZZ_CHECK(std::equal(in.begin() + long(v.payload_end), in.end(), out.begin() + long(o.payload_end)),
               "bytes after the UDP datagram changed");
}

// Bytes of an outer header that an edit of the inner packet may change.
bool outer_field_byte(const ParsedPacket& p, size_t i) {
    for (unsigned k = 0; k < p.outer_count; ++k) {
        const OuterField& f = p.outer[k];
        auto in = [&](unsigned at, unsigned n) { return i >= f.offset + at && i < f.offset + at + n; };
        switch (f.kind) {
        case OuterField::Kind::ipv4:
            if (in(2, 2) || in(10, 2)) return true;
            break;
        case OuterField::Kind::ipv6:
        case OuterField::Kind::pppoe:
            if (in(4, 2)) return true;
            break;
        case OuterField::Kind::udp:
            if (in(4, 4)) return true;
            break;
        case OuterField::Kind::gre_checksum:
            if (in(4, 2)) return true;
            break;
        case OuterField::Kind::gtpu:
        case OuterField::Kind::l2tp:
            if (in(2, 2)) return true;
            break;
        }
    }
    return false;
}

void check_frame(PacketRig& rig, const Bytes& in);

// An encapsulated frame against its inner packet sent alone.
void check_encapsulated(PacketRig& rig, const Bytes& in, const ParsedPacket& p) {
    Bytes native(in.begin(), in.begin() + 12);
    native.push_back(p.family == Family::v4 ? 0x08 : 0x86);
    native.push_back(p.family == Family::v4 ? 0x00 : 0xdd);
    native.insert(native.end(), in.begin() + p.l3_offset, in.begin() + p.ip_end);
    check_frame(rig, native);

    if (p.fragment) {
        // Fragments inside a tunnel never reach the reassembly store (its
        // rebuilt datagrams have no tunnel headers): forwarded at the same
        // length, or dropped if a first fragment (docs/pipeline.md#encapsulations).
        auto worker = rig.worker();
        Bytes out = in;
        const bool forwarded = run_one(*worker, out, rig.now());
        FUZZ_CHECK(worker->counters().get(Counter::fragment_held) == 0,
                   "a fragment inside a tunnel was held for reassembly:\n" + hex(in.data(), in.size()));
        FUZZ_CHECK(forwarded ? out.size() == in.size() : p.first_fragment,
                   "a fragment inside a tunnel was dropped or resized:\n" + hex(in.data(), in.size()));
        return;
    }

    Bytes alone = native;
    const bool alone_forwarded = run_one(*rig.worker(), alone, rig.now());
    Bytes out = in;
    const bool forwarded = run_one(*rig.worker(), out, rig.now());
    FUZZ_CHECK(forwarded == alone_forwarded,
               "encapsulated and alone, the inner packet met different fates:\n" + hex(in.data(), in.size()));
    if (!forwarded) return;
    FUZZ_CHECK(out.size() <= in.size() && in.size() - out.size() == native.size() - alone.size(),
               "the encapsulated frame shrank unlike its inner packet alone");
    const size_t removed = in.size() - out.size();
    FUZZ_CHECK(std::equal(alone.begin() + 14, alone.end(), out.begin() + p.l3_offset),
               "the inner packet differs from the same packet sent alone:\n" + hex(in.data(), in.size()) +
                   "\noutput\n" + hex(out.data(), out.size()));
    for (size_t i = 0; i < p.l3_offset; ++i)
        FUZZ_CHECK(in[i] == out[i] || outer_field_byte(p, i),
                   "outer byte " + std::to_string(i) + " changed, not a length or checksum field");
    FUZZ_CHECK(std::equal(in.begin() + p.ip_end, in.end(), out.begin() + long(p.ip_end - removed)),
               "bytes after the inner packet changed");
}

void check_frame(PacketRig& rig, const Bytes& in) {
    {
        ParsedPacket p;
        if (parse_packet(in.data(), uint32_t(in.size()), p, kAllEncapsulations).ok && p.encapsulations) {
            check_encapsulated(rig, in, p);
            return;
        }
    }
    const FrameView v = read_frame(in);
    check_parser(in, v);

    auto worker = rig.worker();
    Bytes out = in;
    const bool forwarded = run_one(*worker, out, rig.now());
    FUZZ_CHECK(forwarded || v.fragment, "a frame that is not a fragment was dropped:\n" + hex(in.data(), in.size()));
    if (!forwarded) return;
    if (out == in) return;

    FUZZ_CHECK(out.size() >= 14, "a changed frame is shorter than an Ethernet header");
    FUZZ_CHECK(v.ip && from_subscriber(v, in), "a frame not from a subscriber changed:\n" + hex(in.data(), in.size()));
    const bool http = v.l4 && v.proto == 6 && (v.dport == 80 || v.dport == 8080);
    const bool dns = v.l4 && v.proto == 17 && v.dport == 53;
    FUZZ_CHECK(out.size() == in.size() || dns, "a frame that is not a DNS query changed length");

    if (const auto ok = checksums_ok(in); ok && *ok) {
        std::string why;
        FUZZ_CHECK(checksums_ok(out, &why).value_or(false), "checksums right on input are wrong on output: " + why +
                                                                "\ninput\n" + hex(in.data(), in.size()) + "\noutput\n" +
                                                                hex(out.data(), out.size()));
    }
    if (!v.v6 && out.size() >= v.l3 + v.ip_header) {
        const bool before = test::detail::inet_checksum(&in[v.l3], v.ip_header) == 0;
        FUZZ_CHECK(!before || test::detail::inet_checksum(&out[v.l3], v.ip_header) == 0,
                   "a right IPv4 header checksum became wrong");
    }

    const uint8_t* src = &in[v.src_at];
    const uint8_t* dst = &in[v.dst_at];
    const bool strip = PacketRig::must_strip(v.v6, src, dst);
    const bool pass = PacketRig::must_pass(v.v6, src, dst);
    if (http) {  // headers: only the tag and the TCP checksum may change
        for (size_t i = 0; i < v.payload; ++i)
            FUZZ_CHECK(in[i] == out[i] || tag_byte(v, i) || i == v.l4_at + 16 || i == v.l4_at + 17,
                       "header byte " + std::to_string(i) + " of a TCP segment changed");
        FUZZ_CHECK(std::equal(in.begin() + long(v.payload_end), in.end(), out.begin() + long(v.payload_end)),
                   "bytes after a TCP segment changed");
    }
    if (http && !(v.tcp_flags & 0x04) && (strip || pass)) check_http(rig, in, out, v, strip);
    if (dns && (strip || pass)) check_dns(rig, in, out, v, strip);
    if (!http && !dns) {
        for (size_t i = 0; i < in.size(); ++i)
            FUZZ_CHECK(in[i] == out[i] || tag_byte(v, i),
                       "byte " + std::to_string(i) + " changed in a frame that is not inspected");
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static PacketRig rig;
    Bytes in(data, data + size);
    check_frame(rig, in);
    Bytes fixed = in;
    fix_checksums(fixed.data(), fixed.size());
    if (fixed != in) check_frame(rig, fixed);
    return 0;
}
