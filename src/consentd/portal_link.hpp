// Signed, single-use, expiring links to the privacy page (docs/portal.md,
// "signed-link mode"). The ISP's account site, where the customer is logged
// in, asks POST /v1/subscribers/{id}/portal-links; opening the link starts a
// portal session for that subscriber.
//
//   link  = PUBLIC_URL "/link/" token
//   token = base64url(payload) "." base64url(HMAC-SHA256(secret, payload))
//   payload = "optgate-portal-link-v1\n" issued_ms "\n" expires_ms "\n" nonce_hex "\n" subscriber
//
// Single use: a redeemed nonce is remembered until its link expires. That
// memory is this process's, so links issued before this consentd started are
// refused as well: a restart never makes a used link usable again.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace optgate::consentd {

class PortalLinks {
public:
    using Clock = std::chrono::system_clock;

    PortalLinks(std::string secret, std::string public_url, std::chrono::milliseconds lifetime,
                size_t max_remembered = 1000000);

    struct Issued {
        std::string url;
        Clock::time_point expires;
    };
    Issued issue(std::string_view subscriber, Clock::time_point now = Clock::now());

    enum class Refusal : uint8_t { none, malformed, bad_signature, expired, used, before_restart, busy };
    struct Redeemed {
        Refusal refusal = Refusal::none;
        std::string subscriber;  // when accepted
    };
    // Checks the token and, if it is good, marks it used.
    Redeemed redeem(std::string_view token, Clock::time_point now = Clock::now());

    // Links start with this (set once the listener is bound).
    void set_public_url(std::string url) { public_url_ = std::move(url); }

    // For tests: links issued before `t` are refused (a restart at `t`).
    void set_started(Clock::time_point t) { started_ms_ = ms(t); }

private:
    static int64_t ms(Clock::time_point t) {
        return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
    }
    std::string sign(std::string_view payload) const;

    std::string secret_, public_url_;
    std::chrono::milliseconds lifetime_;
    size_t max_remembered_;
    int64_t started_ms_;
    std::unordered_map<std::string, int64_t> used_;  // nonce -> expires_ms
};

// `bytes` random bytes (OpenSSL's RAND_bytes) as hex: nonces, session ids.
std::string random_hex(size_t bytes);

std::string base64url(std::string_view bytes);
std::optional<std::string> base64url_decode(std::string_view text);

}  // namespace optgate::consentd
