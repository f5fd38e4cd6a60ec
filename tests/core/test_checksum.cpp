#include <doctest/doctest.h>

#include <random>
#include <vector>

#include "core/checksum.hpp"

using namespace optgate;

namespace {

// Reference: the RFC 1071 definition, written plainly.
uint16_t reference_checksum(const std::vector<uint8_t>& d) {
    uint32_t s = 0;
    for (size_t i = 0; i < d.size(); i += 2) s += uint32_t(d[i]) << 8 | (i + 1 < d.size() ? d[i + 1] : 0);
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    return uint16_t(~s);
}

}  // namespace

TEST_CASE("RFC 1071 example sum") {
    // RFC 1071 §3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
    const uint8_t data[] = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
    CHECK(checksum::fold(checksum::sum(data, sizeof data)) == 0xddf2);
    CHECK(checksum::finish(checksum::sum(data, sizeof data)) == uint16_t(~0xddf2));
}

TEST_CASE("sum of split runs equals sum of the whole, at either parity") {
    std::mt19937 rng(7);
    for (int round = 0; round < 200; ++round) {
        std::vector<uint8_t> d(1 + rng() % 300);
        for (auto& b : d) b = uint8_t(rng());
        const size_t cut = rng() % d.size();
        const uint32_t whole = checksum::sum(d.data(), d.size());
        uint32_t parts = checksum::sum(d.data(), cut);
        parts = checksum::sum(d.data() + cut, d.size() - cut, parts, cut % 2 == 1);
        CHECK(checksum::fold(whole) == checksum::fold(parts));
        CHECK(checksum::finish(whole) == reference_checksum(d));
    }
}

TEST_CASE("incremental update equals recomputation (RFC 1624)") {
    std::mt19937 rng(11);
    for (int round = 0; round < 500; ++round) {
        std::vector<uint8_t> d(2 + rng() % 200);
        for (auto& b : d) b = uint8_t(rng());
        const uint16_t before = reference_checksum(d);
        const uint32_t old_sum = checksum::sum(d.data(), d.size());
        // Change a random run of bytes.
        const size_t at = rng() % d.size();
        const size_t len = 1 + rng() % (d.size() - at);
        for (size_t i = at; i < at + len; ++i) d[i] = uint8_t(rng());
        const uint32_t new_sum = checksum::sum(d.data(), d.size());
        CHECK(checksum::update(before, old_sum, new_sum) == reference_checksum(d));
    }
}

TEST_CASE("incremental update keeps a wrong checksum wrong by the same amount") {
    std::vector<uint8_t> d = {0x45, 0x00, 0x00, 0x54, 0x12, 0x34, 0x40, 0x00};
    const uint16_t correct = reference_checksum(d);
    const uint16_t wrong = uint16_t(correct + 5);
    const uint32_t old_sum = checksum::sum(d.data(), d.size());
    d[3] = 0x50;
    const uint32_t new_sum = checksum::sum(d.data(), d.size());
    const uint16_t patched = checksum::update(wrong, old_sum, new_sum);
    CHECK(patched != reference_checksum(d));
    CHECK(uint16_t(patched - reference_checksum(d)) == 5);
}

TEST_CASE("16-bit word update") {
    std::vector<uint8_t> d = {0x45, 0x00, 0x00, 0x54, 0xab, 0xcd};
    const uint16_t before = reference_checksum(d);
    d[1] = 0x28;  // DSCP AF11
    CHECK(checksum::update16(before, 0x4500, 0x4528) == reference_checksum(d));
}
