// Big-endian (network order) loads and stores: the one place where bytes of
// a header or frame become integers. Callers check bounds first; these read
// exactly 2, 4 or 8 bytes, any alignment. gcc and clang compile each to one
// load and a byte swap.
#pragma once

#include <cstdint>

namespace optgate::big_endian {

constexpr uint16_t load16(const uint8_t* p) noexcept { return uint16_t(p[0] << 8 | p[1]); }
constexpr uint32_t load32(const uint8_t* p) noexcept {
    return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3];
}
constexpr uint64_t load64(const uint8_t* p) noexcept { return uint64_t(load32(p)) << 32 | load32(p + 4); }

constexpr void store16(uint8_t* p, uint16_t v) noexcept {
    p[0] = uint8_t(v >> 8);
    p[1] = uint8_t(v);
}

}  // namespace optgate::big_endian
