#include "core/checksum.hpp"

namespace optgate::checksum {

uint32_t sum(const uint8_t* data, size_t len, uint32_t acc, bool odd_start) noexcept {
    // Sum as if the data started at an even offset; a run that really starts
    // at an odd offset is the byte-swapped sum (RFC 1071 §2(B)).
    uint64_t s = 0;
    size_t i = 0;
    for (; i + 1 < len; i += 2) s += uint32_t(data[i]) << 8 | data[i + 1];
    if (i < len) s += uint32_t(data[i]) << 8;
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    uint32_t part = uint32_t(s);
    if (odd_start) part = ((part & 0xff) << 8) | (part >> 8);
    uint64_t total = uint64_t(acc) + part;
    while (total >> 32) total = (total & 0xffffffffull) + (total >> 32);
    return uint32_t(total);
}

uint32_t pseudo_header_sum(bool ipv6, const uint8_t* src, const uint8_t* dst, uint8_t proto,
                           uint32_t l4_length) noexcept {
    const size_t alen = ipv6 ? 16 : 4;
    uint32_t acc = sum(src, alen);
    acc = sum(dst, alen, acc);
    acc += proto;
    acc += l4_length >> 16;
    acc += l4_length & 0xffff;
    return acc;
}

}  // namespace optgate::checksum
