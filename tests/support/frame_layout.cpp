#include "frame_layout.hpp"

#include <cstring>

namespace optgate::test::detail {
namespace {

bool is_vlan_tpid(uint16_t t) { return t == 0x8100 || t == 0x88a8 || t == 0x9100; }

void parse_ipv4(const Bytes& f, FrameLayout& L) {
    if (f.size() < L.l3 + 20) {
        L.error = "truncated IPv4 header";
        return;
    }
    const uint8_t* h = &f[L.l3];
    if (h[0] >> 4 != 4) {
        L.error = "IPv4 EtherType but version " + std::to_string(h[0] >> 4);
        return;
    }
    L.ip_version = 4;
    L.ip_header_len = size_t(h[0] & 0x0f) * 4;
    size_t total = get16(f, L.l3 + 2);
    if (L.ip_header_len < 20 || total < L.ip_header_len) {
        L.error = "bad IPv4 IHL/total length";
        return;
    }
    if (L.l3 + total > f.size()) {
        L.error = "IPv4 total length " + std::to_string(total) + " beyond the frame";
        return;
    }
    L.ip_end = L.l3 + total;
    uint16_t frag = get16(f, L.l3 + 6);
    L.fragment = (frag & 0x2000) != 0 || (frag & 0x1fff) != 0;
    L.l4_proto = h[9];
    L.l4 = L.l3 + L.ip_header_len;
}

void parse_ipv6(const Bytes& f, FrameLayout& L) {
    if (f.size() < L.l3 + 40) {
        L.error = "truncated IPv6 header";
        return;
    }
    if (f[L.l3] >> 4 != 6) {
        L.error = "IPv6 EtherType but version " + std::to_string(f[L.l3] >> 4);
        return;
    }
    L.ip_version = 6;
    L.ip_header_len = 40;
    size_t plen = get16(f, L.l3 + 4);
    if (L.l3 + 40 + plen > f.size()) {
        L.error = "IPv6 payload length " + std::to_string(plen) + " beyond the frame";
        return;
    }
    L.ip_end = L.l3 + 40 + plen;
    uint8_t nh = f[L.l3 + 6];
    size_t off = L.l3 + 40;
    for (;;) {
        if (nh != kIp6HopByHop && nh != kIp6Routing && nh != kIp6Fragment && nh != kIp6DestOpts && nh != 51) break;
        if (off + 8 > L.ip_end) {
            L.error = "truncated IPv6 extension header " + std::to_string(nh);
            return;
        }
        size_t len = nh == kIp6Fragment ? 8 : nh == 51 ? (size_t(f[off + 1]) + 2) * 4 : (size_t(f[off + 1]) + 1) * 8;
        if (off + len > L.ip_end) {
            L.error = "IPv6 extension header " + std::to_string(nh) + " beyond the payload";
            return;
        }
        L.ext.push_back({nh, off, len});
        uint8_t next = f[off];
        // Segments left: the pseudo-header uses the final destination. With
        // several routing headers the one nearest the upper layer wins (as in
        // scapy), hence overwrite while walking outward-in.
        if (nh == kIp6Routing && f[off + 3] != 0) {
            uint8_t type = f[off + 2];
            size_t n_addr = (len - 8) / 16;
            if ((type == 0 || type == 2) && n_addr > 0) {
                std::array<uint8_t, 16> a{};
                std::memcpy(a.data(), &f[off + 8 + 16 * (n_addr - 1)], 16);
                L.final_dst = a;
            } else if (type == 4 && n_addr > 0) {
                std::array<uint8_t, 16> a{};
                std::memcpy(a.data(), &f[off + 8], 16);
                L.final_dst = a;
            }
        }
        off += len;
        if (nh == kIp6Fragment) {
            uint16_t fo = get16(f, off - 6);
            bool more = fo & 1;
            uint16_t offset8 = fo >> 3;
            if (more || offset8 != 0) L.fragment = true;
            nh = next;
            if (offset8 != 0) break;  // what follows is fragment data, not headers
            continue;
        }
        nh = next;
    }
    L.l4_proto = nh;
    L.l4 = off;
}

}  // namespace

FrameLayout parse_frame(const Bytes& f) {
    FrameLayout L;
    if (f.size() < 14) {
        L.error = "shorter than an Ethernet header";
        return L;
    }
    size_t off = 12;
    uint16_t type = get16(f, off);
    while (is_vlan_tpid(type)) {
        off += 4;
        if (off + 2 > f.size()) {
            L.error = "truncated VLAN tag";
            return L;
        }
        type = get16(f, off);
    }
    L.l3 = off + 2;
    if (type == 0x0800)
        parse_ipv4(f, L);
    else if (type == 0x86dd)
        parse_ipv6(f, L);
    else
        L.error = "not IP (EtherType " + std::to_string(type) + ")";
    return L;
}

}  // namespace optgate::test::detail
