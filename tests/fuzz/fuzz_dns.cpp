// fuzz_dns: the fuzz bytes as the DNS payload of a UDP/53 frame from a
// subscriber, through the pipeline (support/packet_rig.hpp).
//
// Input: byte 0 flags, then the DNS message.
//   bit 0  IPv6
//   bit 1  pass: from a subscriber who consents, to a DNS collector (else
//          from one who does not, to a resolver or a collector)
//   bit 2  an 802.1Q tag
//   bit 3  IPv4 UDP checksum 0 ("none")
//   bit 4  an Ethernet trailer (padding after the IP datagram)
//   bit 5  three bytes inside the IP payload after the UDP datagram (UDP
//          length shorter than the IP payload, which receivers accept)
//   bit 6  destination: a collector (else a resolver that is none)
//   bit 7  IPv4 options / an IPv6 hop-by-hop header
//
// Invariants: forwarded; no length changes (frame, UDP, IP) and the bytes
// after the datagram stay; checksums stay right; on strip a well-formed
// query (RFC 1035 and 6891, support/reference.hpp) comes out exactly with
// the policy's identifier options (ECS = 8 and 65001) made Padding of the
// same length, zeroed, so none is left in its OPT record; on pass the
// message is untouched.
#include <algorithm>

#include "packet_builder.hpp"
#include "support/fuzz_check.hpp"
#include "support/packet_rig.hpp"

using namespace optgate;
using namespace optgate::fuzz;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static PacketRig rig;
    static auto worker = rig.worker();  // the DNS stage keeps no state between packets
    if (size < 1 || size > 9000) return 0;
    const uint8_t flags = data[0];
    const Bytes msg(data + 1, data + size);
    const bool v6 = flags & 1, pass = flags & 2, vlan = flags & 4, no_checksum = (flags & 8) && !v6;
    const bool trailer = flags & 16, extra = flags & 32, collector = pass || (flags & 64), options = flags & 128;

    test::PacketBuilder b;
    if (vlan) b.vlan(7);
    const char* src = v6 ? (pass ? "2001:db8:1000:1::5" : "2001:db8:1000:2::5")
                         : (pass ? "100.64.0.10" : "100.64.0.12");
    const char* dst = v6 ? (collector ? "2001:db8:ad::53" : "2001:db8:53::53")
                         : (collector ? "198.18.0.53" : "198.18.1.1");
    if (v6) {
        b.ipv6(src, dst);
        if (options) b.ext_hop_by_hop();
    } else {
        b.ipv4(src, dst, {.options = options ? Bytes{1, 1, 1, 1} : Bytes{}});
    }
    Bytes payload = msg;
    if (extra) payload.insert(payload.end(), {0xab, 0xcd, 0xef});
    b.udp(40053, 53).payload(payload);
    if (trailer) b.trailer({0xee, 0xee, 0xee, 0xee});
    Bytes in = b.build();
    FrameView v = read_frame(in);
    FUZZ_CHECK(v.l4 && v.proto == 17, "the builder's frame does not read as UDP");
    if (extra) {  // the UDP datagram ends before the IP payload does
        put16(&in[v.l4_at + 4], uint16_t(8 + msg.size()));
        fix_checksums(in.data(), in.size());
        v = read_frame(in);
    }
    if (no_checksum) put16(&in[v.l4_at + 6], 0);
    FUZZ_CHECK(checksums_ok(in).value_or(false), "the input frame's checksums are wrong");

    Bytes out = in;
    FUZZ_CHECK(run_one(*worker, out, rig.now()), "a DNS query was dropped");
    const FrameView o = read_frame(out);
    FUZZ_CHECK(o.l4 && o.proto == 17 && o.dport == 53,
               "the output no longer reads as UDP to port 53:\n" + hex(out.data(), out.size()));
    std::string why;
    FUZZ_CHECK(checksums_ok(out, &why).value_or(false),
               "checksum wrong after the DNS stage: " + why + "\n" + hex(out.data(), out.size()));
    if (no_checksum) FUZZ_CHECK(get16(&out[o.l4_at + 6]) == 0, "a UDP checksum appeared where there was none");

    const Bytes got(&out[o.payload], &out[o.payload_end]);
    FUZZ_CHECK(out.size() == in.size() && got.size() == msg.size() && o.ip_end == v.ip_end,
               "the DNS stage changed a length");
    FUZZ_CHECK(std::equal(in.begin() + long(v.payload_end), in.end(), out.begin() + long(o.payload_end)),
               "bytes after the UDP datagram changed");
    FUZZ_CHECK(std::equal(in.begin(), in.begin() + long(v.l3), out.begin()), "the Ethernet header changed");

    const DnsQueryView q = read_dns_query(msg.data(), msg.size());
    if (pass) {
        FUZZ_CHECK(got == msg, "pass verdict, but the DNS message changed");
        return 0;
    }
    if (!q.well_formed) return 0;  // the core may leave a malformed message alone
    const Bytes want = dns_options_padded(msg.data(), msg.size(), q, rig.dns_codes());
    FUZZ_CHECK(got == want, "strip verdict: DNS message\n" + hex(got.data(), got.size()) + "\nexpected\n" +
                                hex(want.data(), want.size()));
    const DnsQueryView after = read_dns_query(got.data(), got.size());
    FUZZ_CHECK(after.well_formed, "the stripped query is no longer well formed");
    for (uint16_t code : dns_option_codes(got.data(), after))
        FUZZ_CHECK(std::find(rig.dns_codes().begin(), rig.dns_codes().end(), code) == rig.dns_codes().end(),
                   "identifier option " + std::to_string(code) + " left on a strip verdict");
    return 0;
}
