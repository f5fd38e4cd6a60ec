#include "consentd/sha256.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <stdexcept>

#include "core/chars.hpp"

namespace optgate::consentd {

namespace {

// Fetched once: an implicit fetch on every digest costs more than hashing a
// ledger event.
const EVP_MD* sha256_md() {
    static const EVP_MD* md = [] {
        EVP_MD* m = EVP_MD_fetch(nullptr, "SHA256", nullptr);
        if (!m) throw std::runtime_error("OpenSSL: SHA256 is not available");
        return m;
    }();
    return md;
}

struct Ctx {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    Ctx() = default;
    ~Ctx() { EVP_MD_CTX_free(ctx); }
    Ctx(const Ctx&) = delete;
    Ctx& operator=(const Ctx&) = delete;
};

}  // namespace

Digest sha256(std::string_view a, std::string_view b) {
    thread_local Ctx c;
    Digest out{};
    unsigned len = 0;
    if (!c.ctx || EVP_DigestInit_ex(c.ctx, sha256_md(), nullptr) != 1 ||
        EVP_DigestUpdate(c.ctx, a.data(), a.size()) != 1 || EVP_DigestUpdate(c.ctx, b.data(), b.size()) != 1 ||
        EVP_DigestFinal_ex(c.ctx, out.data(), &len) != 1 || len != out.size())
        throw std::runtime_error("OpenSSL: SHA-256 failed");
    return out;
}

Digest sha256(std::string_view data) { return sha256(data, {}); }

std::string to_hex(std::span<const uint8_t> d) { return hex_chars::lower(d); }

std::optional<Digest> digest_from_hex(std::string_view text) {
    if (text.size() != 64) return std::nullopt;
    Digest d{};
    for (size_t i = 0; i < d.size(); ++i) {
        const int hi = hex_chars::value(text[2 * i]), lo = hex_chars::value(text[2 * i + 1]);
        if (hi < 0 || lo < 0) return std::nullopt;
        d[i] = uint8_t(hi << 4 | lo);
    }
    return d;
}

bool digest_equal(const Digest& a, const Digest& b) noexcept {
    return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace optgate::consentd
