#include <doctest/doctest.h>

#include <initializer_list>

#include "core/big_endian.hpp"

using namespace optgate;

TEST_CASE("big-endian loads read network order, high bytes included, at any alignment") {
    // One byte of offset before the fields: loads never assume alignment.
    const uint8_t b[] = {0xee, 0x80, 0x01, 0xff, 0x7f, 0x00, 0xfe, 0x10, 0x02, 0xaa};
    CHECK(big_endian::load16(b + 1) == 0x8001);
    CHECK(big_endian::load16(b + 3) == 0xff7f);
    CHECK(big_endian::load32(b + 1) == 0x8001ff7fu);
    CHECK(big_endian::load32(b + 5) == 0x00fe1002u);
    CHECK(big_endian::load64(b + 1) == 0x8001ff7f00fe1002ull);
    CHECK(big_endian::load64(b + 2) == 0x01ff7f00fe1002aaull);
    const uint8_t ones[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    CHECK(big_endian::load16(ones) == 0xffff);
    CHECK(big_endian::load32(ones) == 0xffffffffu);
    CHECK(big_endian::load64(ones) == ~uint64_t(0));
    const uint8_t zeros[8] = {};
    CHECK(big_endian::load64(zeros) == 0);
}

TEST_CASE("store16 writes what load16 reads, and only its two bytes") {
    for (unsigned v : {0x0000u, 0x0001u, 0x0100u, 0x8000u, 0xabcdu, 0xffffu}) {
        uint8_t b[4] = {0x55, 0x55, 0x55, 0x55};
        big_endian::store16(b + 1, uint16_t(v));
        CHECK(b[1] == uint8_t(v >> 8));
        CHECK(b[2] == uint8_t(v));
        CHECK(big_endian::load16(b + 1) == v);
        CHECK(b[0] == 0x55);
        CHECK(b[3] == 0x55);
    }
}

TEST_CASE("the loads are usable at compile time") {
    static constexpr uint8_t b[] = {1, 2, 3, 4, 5, 6, 7, 8};
    static_assert(big_endian::load16(b) == 0x0102);
    static_assert(big_endian::load32(b) == 0x01020304u);
    static_assert(big_endian::load64(b) == 0x0102030405060708ull);
    CHECK(big_endian::load32(b + 4) == 0x05060708u);
}
