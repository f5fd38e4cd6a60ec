#include "consentd/portal_link.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <stdexcept>
#include <vector>

#include "core/chars.hpp"
#include "policy/values.hpp"

namespace optgate::consentd {

namespace {

constexpr std::string_view kPayloadTag = "optgate-portal-link-v1";
constexpr std::string_view kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

std::optional<int64_t> parse_ms(std::string_view s) {
    const auto n = policy::syntax::parse_decimal(s);
    if (!n || *n > uint64_t(INT64_MAX)) return std::nullopt;
    return int64_t(*n);
}

}  // namespace

std::string random_hex(size_t bytes) {
    std::vector<unsigned char> b(bytes);
    if (RAND_bytes(b.data(), int(bytes)) != 1) throw std::runtime_error("RAND_bytes failed");
    return hex_chars::lower(b);
}

std::string base64url(std::string_view bytes) {
    std::string out;
    uint32_t acc = 0;
    int bits = 0;
    for (unsigned char c : bytes) {
        acc = (acc << 8) | c;
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out += kAlphabet[(acc >> bits) & 63];
        }
    }
    if (bits > 0) out += kAlphabet[(acc << (6 - bits)) & 63];
    return out;
}

std::optional<std::string> base64url_decode(std::string_view text) {
    std::string out;
    uint32_t acc = 0;
    int bits = 0;
    for (char c : text) {
        const auto i = kAlphabet.find(c);
        if (i == std::string_view::npos) return std::nullopt;
        acc = (acc << 6) | uint32_t(i);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += char((acc >> bits) & 0xff);
        }
    }
    // Leftover bits must be the zero padding of the last character.
    if (bits >= 6 || (acc & ((1u << bits) - 1)) != 0) return std::nullopt;
    return out;
}

PortalLinks::PortalLinks(std::string secret, std::string public_url, std::chrono::milliseconds lifetime,
                         size_t max_remembered)
    : secret_(std::move(secret)), public_url_(std::move(public_url)), lifetime_(lifetime),
      max_remembered_(max_remembered), started_ms_(ms(Clock::now())) {}

std::string PortalLinks::sign(std::string_view payload) const {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (!HMAC(EVP_sha256(), secret_.data(), int(secret_.size()), reinterpret_cast<const unsigned char*>(payload.data()),
              payload.size(), mac, &len))
        throw std::runtime_error("HMAC-SHA256 failed");
    return std::string(reinterpret_cast<const char*>(mac), len);
}

PortalLinks::Issued PortalLinks::issue(std::string_view subscriber, Clock::time_point now) {
    const int64_t issued = ms(now);
    const int64_t expires = issued + lifetime_.count();
    const std::string payload = std::string(kPayloadTag) + "\n" + std::to_string(issued) + "\n" +
                                std::to_string(expires) + "\n" + random_hex(16) + "\n" + std::string(subscriber);
    Issued i;
    i.url = public_url_ + "/link/" + base64url(payload) + "." + base64url(sign(payload));
    i.expires = Clock::time_point(std::chrono::milliseconds(expires));
    return i;
}

PortalLinks::Redeemed PortalLinks::redeem(std::string_view token, Clock::time_point now) {
    Redeemed r;
    const auto dot = token.find('.');
    if (token.size() > 1024 || dot == std::string_view::npos) return {Refusal::malformed, {}};
    const auto payload = base64url_decode(token.substr(0, dot));
    const auto mac = base64url_decode(token.substr(dot + 1));
    if (!payload || !mac) return {Refusal::malformed, {}};
    const std::string want = sign(*payload);
    if (mac->size() != want.size() || CRYPTO_memcmp(mac->data(), want.data(), want.size()) != 0)
        return {Refusal::bad_signature, {}};
    // Signed by us: the fields are as issue() wrote them.
    std::vector<std::string_view> f;
    std::string_view rest = *payload;
    for (int i = 0; i < 4; ++i) {
        const auto nl = rest.find('\n');
        if (nl == std::string_view::npos) return {Refusal::malformed, {}};
        f.push_back(rest.substr(0, nl));
        rest.remove_prefix(nl + 1);
    }
    const auto issued = parse_ms(f[1]);
    const auto expires = parse_ms(f[2]);
    if (f[0] != kPayloadTag || !issued || !expires || !policy::syntax::is_subscriber_id(rest))
        return {Refusal::malformed, {}};
    const int64_t t = ms(now);
    for (auto it = used_.begin(); it != used_.end();) it = it->second <= t ? used_.erase(it) : std::next(it);
    if (*expires <= t) return {Refusal::expired, {}};
    if (*issued < started_ms_) return {Refusal::before_restart, {}};
    const std::string nonce(f[3]);
    if (used_.count(nonce)) return {Refusal::used, {}};
    // Fail closed: a link we could not remember as used is not accepted.
    if (used_.size() >= max_remembered_) return {Refusal::busy, {}};
    used_.emplace(nonce, *expires);
    r.subscriber = std::string(rest);
    return r;
}

}  // namespace optgate::consentd
