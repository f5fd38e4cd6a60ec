#include "core/checksum.hpp"

#include <bit>
#include <cstring>

namespace optgate::checksum {

uint32_t sum(const uint8_t* data, size_t len, uint32_t acc, bool odd_start) noexcept {
    // RFC 1071 §2: the sum is independent of byte order (§2(B)) and can be
    // taken over wider words and folded (§2(C)). Sum 32-bit words in the
    // machine's order into 64 bits (no overflow below 16 GiB), fold to 16,
    // and swap to network order once at the end on a little-endian machine.
    // A run that really starts at an odd offset is the swapped sum again.
    uint64_t s = 0;
    size_t i = 0;
    for (; i + 4 <= len; i += 4) {
        uint32_t w = 0;
        std::memcpy(&w, data + i, 4);
        s += w;
    }
    if (i + 2 <= len) {
        uint16_t w = 0;
        std::memcpy(&w, data + i, 2);
        s += w;
        i += 2;
    }
    if (i < len) {
        const uint8_t last[2] = {data[i], 0};  // pad the odd byte as the high byte of a word
        uint16_t w = 0;
        std::memcpy(&w, last, 2);
        s += w;
    }
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    uint32_t part = uint32_t(s);
    if constexpr (std::endian::native == std::endian::little) part = ((part & 0xff) << 8) | (part >> 8);
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
