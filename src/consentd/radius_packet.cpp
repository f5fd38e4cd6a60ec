#include "consentd/radius_packet.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cstring>
#include <initializer_list>

#include "core/big_endian.hpp"

namespace optgate::consentd::radius {

namespace {

using Md5 = std::array<uint8_t, 16>;
using Bytes = std::span<const uint8_t>;

Bytes as_bytes(std::string_view s) noexcept { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

struct Ctx {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    Ctx() = default;
    ~Ctx() { EVP_MD_CTX_free(ctx); }
    Ctx(const Ctx&) = delete;
    Ctx& operator=(const Ctx&) = delete;
};

// MD5 over the concatenation of `parts`, after `prefix`; false if OpenSSL
// fails (no MD5 in a FIPS-only provider: then nothing authenticates and every
// packet is dropped). Fetched once, like sha256.cpp's digest.
bool md5(std::initializer_list<Bytes> parts, Md5& out, Bytes prefix = {}) noexcept {
    static const EVP_MD* const md = EVP_MD_fetch(nullptr, "MD5", nullptr);
    thread_local Ctx c;
    if (!md || !c.ctx || EVP_DigestInit_ex(c.ctx, md, nullptr) != 1 ||
        EVP_DigestUpdate(c.ctx, prefix.data(), prefix.size()) != 1)
        return false;
    for (const auto& p : parts)
        if (EVP_DigestUpdate(c.ctx, p.data(), p.size()) != 1) return false;
    unsigned len = 0;
    return EVP_DigestFinal_ex(c.ctx, out.data(), &len) == 1 && len == out.size();
}

// RFC 2104 with MD5, over the concatenation of `parts`.
bool hmac_md5(std::string_view secret, std::initializer_list<Bytes> parts, Md5& out) noexcept {
    std::array<uint8_t, 64> key{};
    if (secret.size() > key.size()) {
        Md5 k;
        if (!md5({as_bytes(secret)}, k)) return false;
        std::memcpy(key.data(), k.data(), k.size());
    } else {
        std::memcpy(key.data(), secret.data(), secret.size());
    }
    std::array<uint8_t, 64> ipad{}, opad{};
    for (size_t i = 0; i < key.size(); ++i) {
        ipad[i] = key[i] ^ 0x36;
        opad[i] = key[i] ^ 0x5c;
    }
    Md5 inner;
    return md5(parts, inner, ipad) && md5({opad, inner}, out);
}

constexpr std::array<uint8_t, 16> kZero16{};

}  // namespace

std::string_view to_string(Malformed m) noexcept {
    switch (m) {
    case Malformed::none: return "none";
    case Malformed::too_short: return "too_short";
    case Malformed::bad_length: return "bad_length";
    case Malformed::truncated: return "truncated";
    case Malformed::attribute_too_short: return "attribute_too_short";
    case Malformed::attribute_overrun: return "attribute_overrun";
    case Malformed::bad_message_authenticator_length: return "bad_message_authenticator";
    }
    return "unknown";
}

std::optional<Packet> decode(std::span<const uint8_t> d, Malformed& why) noexcept {
    why = Malformed::none;
    if (d.size() < kHeaderBytes) {
        why = Malformed::too_short;
        return std::nullopt;
    }
    const size_t length = big_endian::load16(d.data() + 2);
    if (length < kHeaderBytes || length > kMaxPacketBytes) {
        why = Malformed::bad_length;
        return std::nullopt;
    }
    if (d.size() < length) {
        why = Malformed::truncated;
        return std::nullopt;
    }
    Packet p;
    p.bytes_ = d.first(length);
    for (size_t at = kHeaderBytes; at < length;) {
        if (length - at < 2) {
            why = Malformed::attribute_overrun;  // a lone type octet at the end
            return std::nullopt;
        }
        const size_t len = d[at + 1];
        if (len < 2) {
            why = Malformed::attribute_too_short;
            return std::nullopt;
        }
        if (len > length - at) {
            why = Malformed::attribute_overrun;
            return std::nullopt;
        }
        if (d[at] == message_authenticator) {
            if (len != 18 || p.message_authenticator_at_) {
                why = Malformed::bad_message_authenticator_length;
                return std::nullopt;
            }
            p.message_authenticator_at_ = at + 2;
        }
        at += len;
    }
    return p;
}

std::optional<std::span<const uint8_t>> Packet::find(uint8_t type) const noexcept {
    for (size_t at = kHeaderBytes; at < bytes_.size(); at += bytes_[at + 1])
        if (bytes_[at] == type && bytes_[at + 1] > 2) return bytes_.subspan(at + 2, bytes_[at + 1] - 2u);
    return std::nullopt;
}

std::optional<std::span<const uint8_t>> Packet::find_vendor(uint32_t vendor, uint8_t vendor_type) const noexcept {
    for (size_t at = kHeaderBytes; at < bytes_.size(); at += bytes_[at + 1]) {
        if (bytes_[at] != vendor_specific) continue;
        const auto v = bytes_.subspan(at + 2, bytes_[at + 1] - 2u);
        if (v.size() < 4 || big_endian::load32(v.data()) != vendor) continue;
        // Sub-attributes: type, length (>= 2), value; stop at the first that
        // does not fit (a vendor format other than RFC 2865's).
        for (size_t s = 4; s + 2 <= v.size() && v[s + 1] >= 2 && v[s + 1] <= v.size() - s; s += v[s + 1])
            if (v[s] == vendor_type && v[s + 1] > 2) return v.subspan(s + 2, v[s + 1] - 2u);
    }
    return std::nullopt;
}

bool request_authenticator_ok(const Packet& p, std::string_view secret) noexcept {
    const auto b = p.bytes();
    Md5 want;
    if (!md5({b.first(4), kZero16, b.subspan(kHeaderBytes), as_bytes(secret)}, want)) return false;
    return CRYPTO_memcmp(want.data(), b.data() + 4, 16) == 0;
}

bool message_authenticator_ok(const Packet& p, std::string_view secret) noexcept {
    const size_t at = p.message_authenticator_at();
    if (!at) return true;
    const auto b = p.bytes();
    Md5 want;
    if (!hmac_md5(secret,
                  {b.first(4), kZero16, b.subspan(kHeaderBytes, at - kHeaderBytes), kZero16, b.subspan(at + 16)}, want))
        return false;
    return CRYPTO_memcmp(want.data(), b.data() + at, 16) == 0;
}

std::array<uint8_t, kHeaderBytes> accounting_response(const Packet& request, std::string_view secret) noexcept {
    std::array<uint8_t, kHeaderBytes> r{kAccountingResponse, request.identifier(), 0, kHeaderBytes};
    Md5 auth{};
    md5({std::span<const uint8_t>(r).first(4), request.authenticator(), as_bytes(secret)}, auth);
    std::memcpy(r.data() + 4, auth.data(), auth.size());
    return r;
}

std::optional<uint32_t> integer(std::span<const uint8_t> v) noexcept {
    if (v.size() != 4) return std::nullopt;
    return big_endian::load32(v.data());
}

std::optional<IpAddr> ipv4_address(std::span<const uint8_t> v) noexcept {
    if (v.size() != 4) return std::nullopt;
    return IpAddr::from_v4(v.data());
}

std::optional<IpAddr> ipv6_address(std::span<const uint8_t> v) noexcept {
    if (v.size() != 16) return std::nullopt;
    return IpAddr::from_v6(v.data());
}

std::optional<Prefix> ipv6_prefix(std::span<const uint8_t> v) noexcept {
    if (v.size() < 2 || v.size() > 18) return std::nullopt;
    const unsigned len = v[1];
    if (len > 128 || v.size() - 2 < (len + 7) / 8) return std::nullopt;
    std::array<uint8_t, 16> bytes{};
    std::memcpy(bytes.data(), v.data() + 2, v.size() - 2);
    return Prefix{IpAddr::from_v6(bytes.data()).masked(len), uint8_t(len)};
}

}  // namespace optgate::consentd::radius
