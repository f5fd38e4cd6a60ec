// Internet checksum (RFC 1071) and its incremental update (RFC 1624): the one
// place where checksums are computed or patched.
//
// Every rewrite in the core patches checksums incrementally from the sums of
// the bytes it changed, so a packet that arrived with a wrong checksum still
// has a wrong one (the receiver drops it as it would have), and a correct
// one stays correct.
#pragma once

#include <cstddef>
#include <cstdint>

namespace optgate::checksum {

// One's-complement sum of `len` bytes as big-endian 16-bit words, added to
// `acc` (not folded). `odd_start` says the first byte sits at an odd offset
// from the start of the checksummed data, i.e. it is the low byte of a word.
uint32_t sum(const uint8_t* data, size_t len, uint32_t acc = 0, bool odd_start = false) noexcept;

inline uint16_t fold(uint32_t acc) noexcept {
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    return uint16_t(acc);
}

inline uint32_t add16(uint32_t acc, uint16_t word) noexcept { return acc + word; }

// Full checksum: the complement of the folded sum.
inline uint16_t finish(uint32_t acc) noexcept { return uint16_t(~fold(acc)); }

// RFC 1624 eqn. 3 generalised to sums: the stored checksum `stored` covered
// data whose sum was `old_sum`; the data now sums to `new_sum`.
// HC' = ~(~HC + ~m + m').
inline uint16_t update(uint16_t stored, uint32_t old_sum, uint32_t new_sum) noexcept {
    uint32_t acc = uint16_t(~stored);
    acc += uint16_t(~fold(old_sum));
    acc += fold(new_sum);
    return uint16_t(~fold(acc));
}

// Same for a single 16-bit word changing from `old_word` to `new_word`.
inline uint16_t update16(uint16_t stored, uint16_t old_word, uint16_t new_word) noexcept {
    return update(stored, old_word, new_word);
}

// Sum of the TCP/UDP pseudo-header (RFC 768 / RFC 8200 §8.1).
uint32_t pseudo_header_sum(bool ipv6, const uint8_t* src, const uint8_t* dst, uint8_t proto,
                           uint32_t l4_length) noexcept;

}  // namespace optgate::checksum
