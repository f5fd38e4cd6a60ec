// The test builder's own RFC 1071 Internet checksum. Deliberately written
// apart from src/core/checksum.*: tests that compare the core's output with
// the builder's then cross-check two implementations instead of one with itself.
// Plain byte loop: clarity over speed (the builder is not on any hot path).
#pragma once

#include <cstddef>
#include <cstdint>

namespace optgate::test::detail {

// One's-complement sum of big-endian 16-bit words, unfolded; an odd last
// byte is padded with zero on the right (RFC 1071 section 4.1).
inline uint64_t sum16(const uint8_t* p, size_t n, uint64_t acc = 0) {
    for (size_t i = 0; i + 1 < n; i += 2) acc += uint32_t(p[i]) << 8 | p[i + 1];
    if (n & 1) acc += uint32_t(p[n - 1]) << 8;
    return acc;
}

inline uint16_t fold(uint64_t acc) {
    while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
    return uint16_t(acc);
}

// The checksum to store (field zeroed before summing); a region that already
// holds a correct checksum sums to 0xffff, so this returns 0.
inline uint16_t inet_checksum(const uint8_t* p, size_t n) { return uint16_t(~fold(sum16(p, n))); }

// TCP/UDP checksum with the IPv4 (RFC 793/768) or IPv6 (RFC 8200 8.1)
// pseudo-header; addr_len is 4 or 16, `len` is the upper-layer length.
inline uint16_t l4_checksum(const uint8_t* src, const uint8_t* dst, size_t addr_len, uint8_t proto, const uint8_t* l4,
                            size_t len) {
    uint64_t acc = sum16(src, addr_len);
    acc = sum16(dst, addr_len, acc);
    acc += proto;
    acc += (len >> 16) + (len & 0xffff);
    return uint16_t(~fold(sum16(l4, len, acc)));
}

}  // namespace optgate::test::detail
