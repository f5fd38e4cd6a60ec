#include "core/stream_record.hpp"

#include <sys/random.h>

#include <bit>
#include <chrono>
#include <cstring>

namespace optgate {
namespace {

constexpr uint64_t kP = (uint64_t{1} << 61) - 1;

// a < 2^62, b < 2^61: a*b mod p, fully reduced.
inline uint64_t mulmod(uint64_t a, uint64_t b) noexcept {
    const unsigned __int128 m = static_cast<unsigned __int128>(a) * b;
    uint64_t r = (uint64_t(m) & kP) + uint64_t(m >> 61);
    r = (r & kP) + (r >> 61);
    return r >= kP ? r - kP : r;
}

// The 7 bytes at d as a number (reads 8).
inline uint64_t word7(const uint8_t* d) noexcept {
    uint64_t w = 0;
    std::memcpy(&w, d, 8);
    if constexpr (std::endian::native == std::endian::little) return w & 0x00ffffffffffffffull;
    return w >> 8;
}

}  // namespace

StreamFingerprint::StreamFingerprint(uint64_t key) noexcept
    : r1_(key % (kP - 2) + 2),  // a point in [2, p-1]
      r2_(mulmod(r1_, r1_)), r3_(mulmod(r2_, r1_)), r4_(mulmod(r2_, r2_)) {}

StreamFingerprint StreamFingerprint::random() noexcept {
    uint64_t key = 0;
    if (getrandom(&key, sizeof key, 0) != ssize_t(sizeof key))
        key = uint64_t(std::chrono::steady_clock::now().time_since_epoch().count()) * 0x9e3779b97f4a7c15ull;
    return StreamFingerprint(key);
}

uint64_t StreamFingerprint::operator()(const uint8_t* d, uint32_t n) const noexcept {
    using u128 = unsigned __int128;
    uint64_t h = 0;  // < 2^62 between steps
    uint32_t i = 0;
    // Four words (28 bytes) per step, reduced once: (h + a) r^4 < 2^123 and
    // b r^3, c r^2, e r < 2^117 each, so their sum is below 2^124. Reading
    // 8 bytes for each 7 needs one byte past the fourth word: hence 29.
    for (; i + 29 <= n; i += 28) {
        const u128 m = u128(h + word7(d + i)) * r4_ + u128(word7(d + i + 7)) * r3_ + u128(word7(d + i + 14)) * r2_ +
                       u128(word7(d + i + 21)) * r1_;
        h = (uint64_t(m) & kP) + uint64_t(m >> 61);  // < 2^61 + 2^63
        h = (h & kP) + (h >> 61);
    }
    for (; i + 8 <= n; i += 7) h = mulmod(h + word7(d + i), r1_);
    if (i < n) {  // the last, partial word
        uint64_t w = 0;
        for (uint32_t k = n - i; k > 0; --k) w = w << 8 | d[i + k - 1];
        h = mulmod(h + w, r1_);
    }
    return mulmod(h + n, r1_);
}

bool ForwardedRecord::push(uint32_t at, uint32_t n, uint64_t h, uint32_t& forgotten_end) noexcept {
    bool forgot = false;
    if (count == kRanges) {
        forgotten_end = seq[0] + len[0];
        forgot = true;
        for (unsigned i = 1; i < kRanges; ++i) {
            seq[i - 1] = seq[i];
            len[i - 1] = len[i];
            hash[i - 1] = hash[i];
        }
        --count;
    }
    seq[count] = at;
    len[count] = uint16_t(n);
    hash[count] = h;
    ++count;
    return forgot;
}

ForwardedRecord::Check ForwardedRecord::check(uint32_t at, const uint8_t* d, uint32_t n,
                                              const StreamFingerprint& fp) const noexcept {
    for (unsigned r = 0; r < count; ++r) {
        // Offsets from `at`, in sequence space (wrap-safe as differences).
        const int64_t from = int32_t(seq[r] - at), to = from + len[r];
        if (to <= 0 || from >= int64_t(n)) continue;  // no overlap
        if (from < 0 || to > int64_t(n)) return Check::unverifiable;
        if (fp(d + from, len[r]) != hash[r]) return Check::inconsistent;
    }
    return Check::consistent;
}

}  // namespace optgate
