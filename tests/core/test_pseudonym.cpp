#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/pseudonym.hpp"

using namespace optgate;

namespace {

PseudonymKey key_of(uint8_t first) {
    PseudonymKey k{};
    for (size_t i = 0; i < k.size(); ++i) k[i] = uint8_t(first + i);
    return k;
}

std::string pseudonym_of(const PseudonymKey& k, const std::string& v) {
    std::string out(v.size(), '\0');
    pseudonymise(k, reinterpret_cast<const uint8_t*>(v.data()), v.size(), reinterpret_cast<uint8_t*>(out.data()));
    return out;
}

bool all_in(const std::string& s, std::string_view alphabet) {
    return s.find_first_not_of(alphabet) == std::string::npos;
}

constexpr std::string_view kDigits = "0123456789";
constexpr std::string_view kHexLower = "0123456789abcdef";
constexpr std::string_view kHexUpper = "0123456789ABCDEF";
constexpr std::string_view kBase64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr std::string_view kBase64Url = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
constexpr std::string_view kToken = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

std::string random_of(std::mt19937_64& rng, std::string_view alphabet, size_t n) {
    std::string s(n, '\0');
    for (auto& c : s) c = alphabet[rng() % alphabet.size()];
    return s;
}

}  // namespace

TEST_CASE("SipHash-2-4 gives the reference implementation's vectors") {
    // vectors.h of the reference implementation (github.com/veorq/SipHash):
    // key 00 01 .. 0f, message 00 01 .. (n-1); n = 15 is the paper's
    // Appendix A example.
    const PseudonymKey key = key_of(0);
    uint8_t msg[64];
    for (unsigned i = 0; i < 64; ++i) msg[i] = uint8_t(i);
    const std::pair<size_t, uint64_t> vectors[] = {
        {0, 0x726fdb47dd0e0e31ull},  {1, 0x74f839c593dc67fdull},  {2, 0x0d6c8009d9a94f5aull},
        {7, 0xab0200f58b01d137ull},  {8, 0x93f5f5799a932462ull},  {15, 0xa129ca6149be45e5ull},
        {16, 0x3f2acc7f57c29bdbull}, {63, 0x958a324ceb064572ull},
    };
    for (const auto& v : vectors) {  // no structured binding: clang 14 cannot capture one in INFO
        INFO("length " << v.first);
        CHECK(siphash24(key, msg, v.first) == v.second);
    }
}

TEST_CASE("value classes") {
    auto cls = [](std::string_view v) { return value_class(reinterpret_cast<const uint8_t*>(v.data()), v.size()); };
    CHECK(cls("0123456789") == ValueClass::digits);
    CHECK(cls("deadbeef01") == ValueClass::hex_lower);
    CHECK(cls("DEADBEEF01") == ValueClass::hex_upper);
    CHECK(cls("DeadBeef01") == ValueClass::base64);  // mixed case: not hex
    CHECK(cls("YWJjZA==") == ValueClass::base64);
    CHECK(cls("a+b/cQ=") == ValueClass::base64);
    CHECK(cls("a-b_cQ") == ValueClass::base64url);
    CHECK(cls("a-b/cQ") == ValueClass::token);    // both alphabets
    CHECK(cls("ab=cd") == ValueClass::token);     // '=' inside
    CHECK(cls("abc d") == ValueClass::token);     // space
    CHECK(cls("==") == ValueClass::token);        // padding only
    CHECK(cls("12345==") == ValueClass::base64);  // padded digits are base64
}

TEST_CASE("a pseudonym keeps the value's length and character class (random values)") {
    std::mt19937_64 rng(20261205);
    const PseudonymKey key = key_of(7);
    struct Case {
        std::string_view alphabet;
        std::string_view out;  // what the pseudonym may hold
    };
    const Case cases[] = {{kDigits, kDigits}, {kHexLower, kHexLower},   {kHexUpper, kHexUpper},
                          {kBase64, kBase64}, {kBase64Url, kBase64Url}, {" ,;=\"/()<>@x\x01\x80", kToken}};
    for (const auto& c : cases) {
        for (int i = 0; i < 500; ++i) {
            const size_t n = 1 + rng() % 96;
            std::string v = random_of(rng, c.alphabet, n);
            if (c.alphabet == kBase64 && n > 2 && rng() % 2) v.replace(n - 1 - rng() % 2, std::string::npos, 2, '=');
            v.resize(n);
            const std::string p = pseudonym_of(key, v);
            INFO("value '" << v << "' pseudonym '" << p << "'");
            REQUIRE(p.size() == v.size());
            // The class the value has (a random hex value may be all digits).
            const ValueClass vc = value_class(reinterpret_cast<const uint8_t*>(v.data()), n);
            const bool class_kept = value_class(reinterpret_cast<const uint8_t*>(p.data()), n) != ValueClass::token ||
                                    vc == ValueClass::token;
            CHECK(class_kept);
            switch (vc) {
            case ValueClass::digits: CHECK(all_in(p, kDigits)); break;
            case ValueClass::hex_lower: CHECK(all_in(p, kHexLower)); break;
            case ValueClass::hex_upper: CHECK(all_in(p, kHexUpper)); break;
            case ValueClass::base64:
            case ValueClass::base64url: {
                // '=' padding in place, the rest in the alphabet.
                size_t pad = 0;
                while (pad < n && v[n - 1 - pad] == '=') ++pad;
                CHECK(p.substr(n - pad) == v.substr(n - pad));
                CHECK(all_in(p.substr(0, n - pad), vc == ValueClass::base64 ? kBase64 : kBase64Url));
                break;
            }
            case ValueClass::token: CHECK(all_in(p, kToken)); break;
            }
            if (n >= 8) CHECK(p != v);
        }
    }
}

TEST_CASE("pseudonyms: stable per key and value, different across keys, values and periods") {
    const PseudonymKey ad = key_of(1), analytics = key_of(100);
    PseudonymKey next_period = ad;
    next_period[15] ^= 0x80;  // consentd's key for the same collector, next period
    const std::string uidh = "0123456789abcdef0123456789abcdef0123";
    const std::string a = pseudonym_of(ad, uidh);
    CHECK(a == pseudonym_of(ad, uidh));  // stable
    CHECK(a != uidh);
    CHECK(a != pseudonym_of(analytics, uidh));    // collectors cannot link
    CHECK(a != pseudonym_of(next_period, uidh));  // rotation changes it
    CHECK(a != pseudonym_of(ad, "0123456789abcdef0123456789abcdef0124"));
    // In place, as the HTTP stage writes it.
    std::string in_place = uidh;
    pseudonymise(ad, reinterpret_cast<const uint8_t*>(in_place.data()), in_place.size(),
                 reinterpret_cast<uint8_t*>(in_place.data()));
    CHECK(in_place == a);
    // Distinct values rarely share a pseudonym: none among 20000 short ones.
    std::vector<std::string> seen;
    seen.reserve(20000);
    for (int i = 0; i < 20000; ++i) seen.push_back(pseudonym_of(ad, std::to_string(100000000000ull + i)));
    std::sort(seen.begin(), seen.end());
    CHECK(std::adjacent_find(seen.begin(), seen.end()) == seen.end());
}
