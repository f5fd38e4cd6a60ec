// Checking and showing frames: verify_checksums(), hexdump(), from_hex().
#include <cstdio>
#include <stdexcept>

#include "frame_layout.hpp"
#include "inet_checksum.hpp"
#include "packet_builder.hpp"

namespace optgate::test {
namespace {

std::string hex16(uint16_t v) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "0x%04x", v);
    return buf;
}

void check_l4(const Bytes& f, const detail::FrameLayout& L, ChecksumReport& r) {
    const bool udp = L.l4_proto == 17;
    const size_t len = L.ip_end - L.l4;
    const char* name = udp ? "udp" : "tcp";
    if (len < (udp ? 8u : 20u)) {
        r.detail += std::string("; ") + name + " header truncated";
        return;
    }
    r.l4_present = true;
    const size_t csum_at = L.l4 + (udp ? 6 : 16);
    const uint16_t stored = get16(f, csum_at);
    if (udp && get16(f, L.l4 + 4) != len) {
        r.detail += "; udp length " + std::to_string(get16(f, L.l4 + 4)) + " != IP payload " + std::to_string(len);
        return;
    }
    if (!udp && size_t(f[L.l4 + 12] >> 4) * 4 > len) {
        r.detail += "; tcp data offset beyond the segment";
        return;
    }
    if (udp && stored == 0) {
        r.l4_ok = L.ip_version == 4;  // IPv6 requires a UDP checksum (RFC 8200 8.1)
        r.detail += L.ip_version == 4 ? "; udp checksum unused (0)" : "; udp checksum 0 over IPv6";
        return;
    }
    const size_t alen = L.ip_version == 4 ? 4 : 16;
    const uint8_t* src = &f[L.l3 + (L.ip_version == 4 ? 12 : 8)];
    const uint8_t* dst = L.final_dst ? L.final_dst->data() : &f[L.l3 + (L.ip_version == 4 ? 16 : 24)];
    // Sum including the stored checksum: 0 means the checksum is right.
    r.l4_ok = detail::l4_checksum(src, dst, alen, L.l4_proto, &f[L.l4], len) == 0;
    if (r.l4_ok) {
        r.detail += std::string("; ") + name + " checksum ok";
    } else {
        Bytes copy(f.begin() + L.l4, f.begin() + L.ip_end);
        copy[csum_at - L.l4] = copy[csum_at - L.l4 + 1] = 0;
        uint16_t want = detail::l4_checksum(src, dst, alen, L.l4_proto, copy.data(), copy.size());
        if (udp && want == 0) want = 0xffff;
        r.detail += std::string("; ") + name + " checksum " + hex16(stored) + ", expected " + hex16(want);
    }
}

}  // namespace

ChecksumReport verify_checksums(const Bytes& frame) {
    ChecksumReport r;
    detail::FrameLayout L = detail::parse_frame(frame);
    if (!L.error.empty()) {
        r.detail = L.error;
        return r;
    }
    r.parsed = true;
    if (L.ip_version == 4) {
        r.ipv4_header_ok = detail::inet_checksum(&frame[L.l3], L.ip_header_len) == 0;
        r.detail = r.ipv4_header_ok ? "ipv4 header checksum ok"
                                    : "ipv4 header checksum " + hex16(get16(frame, L.l3 + 10)) + " wrong";
    } else {
        r.ipv4_header_ok = true;
        r.detail = "ipv6";
    }
    if (L.fragment)
        r.detail += "; fragment: l4 not checked";
    else if (L.l4_proto == 6 || L.l4_proto == 17)
        check_l4(frame, L, r);
    else
        r.detail += "; no tcp/udp (protocol " + std::to_string(L.l4_proto) + ")";
    return r;
}

std::string hexdump(const Bytes& bytes) {
    std::string out;
    char buf[24];
    for (size_t i = 0; i < bytes.size(); ++i) {
        if (i % 16 == 0) {
            if (i) out += '\n';
            std::snprintf(buf, sizeof buf, "%04zx ", i);
            out += buf;
        }
        std::snprintf(buf, sizeof buf, " %02x", bytes[i]);
        out += buf;
    }
    return out;
}

Bytes from_hex(std::string_view hex) {
    Bytes out;
    int hi = -1;
    for (char c : hex) {
        int v = 0;
        if (c >= '0' && c <= '9')
            v = c - '0';
        else if (c >= 'a' && c <= 'f')
            v = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v = c - 'A' + 10;
        else if (c == ' ' || c == '\n' || c == '\t' || c == ':' || c == '-')
            continue;
        else
            throw std::invalid_argument(std::string("from_hex: bad character '") + c + "'");
        if (hi < 0) {
            hi = v;
        } else {
            out.push_back(uint8_t(hi << 4 | v));
            hi = -1;
        }
    }
    if (hi >= 0) throw std::invalid_argument("from_hex: odd number of hex digits");
    return out;
}

}  // namespace optgate::test
