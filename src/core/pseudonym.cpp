#include "core/pseudonym.hpp"

#include <array>
#include <bit>
#include <string_view>

#include "core/chars.hpp"

namespace optgate {
namespace {

inline uint64_t load_le64(const uint8_t* p) noexcept {
    uint64_t v = 0;
    for (unsigned i = 0; i < 8; ++i) v |= uint64_t(p[i]) << (8 * i);
    return v;
}

struct SipState {
    uint64_t v0, v1, v2, v3;
    void round() noexcept {
        v0 += v1;
        v1 = std::rotl(v1, 13);
        v1 ^= v0;
        v0 = std::rotl(v0, 32);
        v2 += v3;
        v3 = std::rotl(v3, 16);
        v3 ^= v2;
        v0 += v3;
        v3 = std::rotl(v3, 21);
        v3 ^= v0;
        v2 += v1;
        v1 = std::rotl(v1, 17);
        v1 ^= v2;
        v2 = std::rotl(v2, 32);
    }
    void absorb(uint64_t m) noexcept {
        v3 ^= m;
        round();
        round();
        v0 ^= m;
    }
};

inline uint64_t splitmix64(uint64_t& s) noexcept {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

constexpr std::string_view kDigits = "0123456789";
constexpr std::string_view kHexLower = hex_chars::kLowerDigits;
constexpr std::string_view kHexUpper = "0123456789ABCDEF";
constexpr std::string_view kBase64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr std::string_view kBase64Url = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
// RFC 9110 tchar: what a token may hold, so a pseudonym never adds a
// separator, a quote or whitespace a recipient's parser would split on.
constexpr std::string_view kToken = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

constexpr bool is_digit(uint8_t c) noexcept { return c >= '0' && c <= '9'; }
constexpr bool is_alpha(uint8_t c) noexcept { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }

// What each byte is, for value_class.
enum : uint8_t {
    kDigit = 1,
    kHexLower_ = 2,  // a-f
    kHexUpper_ = 4,  // A-F
    kOtherAlpha = 8,
    kPlusSlash = 16,
    kDashUnder = 32,
    kOther = 64,
};
constexpr std::array<uint8_t, 256> kCharKinds = [] {
    std::array<uint8_t, 256> t{};
    for (unsigned c = 0; c < 256; ++c) {
        uint8_t k = kOther;
        if (is_digit(uint8_t(c)))
            k = kDigit;
        else if (c >= 'a' && c <= 'f')
            k = kHexLower_;
        else if (c >= 'A' && c <= 'F')
            k = kHexUpper_;
        else if (is_alpha(uint8_t(c)))
            k = kOtherAlpha;
        else if (c == '+' || c == '/')
            k = kPlusSlash;
        else if (c == '-' || c == '_')
            k = kDashUnder;
        t[c] = k;
    }
    return t;
}();

std::string_view alphabet(ValueClass c) noexcept {
    switch (c) {
    case ValueClass::digits: return kDigits;
    case ValueClass::hex_lower: return kHexLower;
    case ValueClass::hex_upper: return kHexUpper;
    case ValueClass::base64: return kBase64;
    case ValueClass::base64url: return kBase64Url;
    case ValueClass::token: break;
    }
    return kToken;
}

}  // namespace

uint64_t siphash24(const PseudonymKey& key, const uint8_t* d, size_t n) noexcept {
    const uint64_t k0 = load_le64(key.data()), k1 = load_le64(key.data() + 8);
    SipState s{k0 ^ 0x736f6d6570736575ull, k1 ^ 0x646f72616e646f6dull, k0 ^ 0x6c7967656e657261ull,
               k1 ^ 0x7465646279746573ull};
    const size_t whole = n & ~size_t{7};
    for (size_t i = 0; i < whole; i += 8) s.absorb(load_le64(d + i));
    uint64_t last = uint64_t(n & 0xff) << 56;
    for (size_t i = whole; i < n; ++i) last |= uint64_t(d[i]) << (8 * (i - whole));
    s.absorb(last);
    s.v2 ^= 0xff;
    for (int r = 0; r < 4; ++r) s.round();
    return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

ValueClass value_class(const uint8_t* d, size_t n) noexcept {
    if (n == 0) return ValueClass::token;
    // '=' only as trailing padding (at most two, as base64 writes it).
    size_t pad = 0;
    while (pad < n && pad < 2 && d[n - 1 - pad] == '=') ++pad;
    uint8_t seen = 0;  // one table load per byte: the value's kinds of characters
    for (size_t i = 0; i < n - pad; ++i) seen |= kCharKinds[d[i]];
    const bool both_cases = (seen & kHexLower_) && (seen & kHexUpper_);
    if (pad == 0) {
        if (seen == kDigit) return ValueClass::digits;
        if (!(seen & (kOtherAlpha | kPlusSlash | kDashUnder | kOther)) && !both_cases)
            return (seen & kHexLower_) ? ValueClass::hex_lower : ValueClass::hex_upper;
    }
    if (!(seen & kOther) && !((seen & kPlusSlash) && (seen & kDashUnder)) && pad < n)
        return (seen & kDashUnder) ? ValueClass::base64url : ValueClass::base64;
    return ValueClass::token;
}

void pseudonymise(const PseudonymKey& key, const uint8_t* d, size_t n, uint8_t* out) noexcept {
    const ValueClass c = value_class(d, n);
    const std::string_view a = alphabet(c);
    uint64_t s = siphash24(key, d, n);
    // base64 padding stays in place: everything before it is replaced.
    size_t end = n;
    if (c == ValueClass::base64 || c == ValueClass::base64url)
        while (end > 0 && d[end - 1] == '=') --end;
    uint64_t bits = 0;
    unsigned left = 0;
    for (size_t i = 0; i < end; ++i) {
        if (left == 0) {
            bits = splitmix64(s);
            left = 4;
        }
        // 16 bits per character, multiply-shift into the alphabet.
        out[i] = uint8_t(a[(uint32_t(bits & 0xffff) * uint32_t(a.size())) >> 16]);
        bits >>= 16;
        --left;
    }
    for (size_t i = end; i < n; ++i) out[i] = '=';
}

}  // namespace optgate
