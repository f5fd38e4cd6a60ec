#include "consentd/auth.hpp"

namespace optgate::consentd {

namespace {
constexpr std::string_view kRoleNames[] = {"none", "read", "write", "admin"};
}

std::string_view to_string(Role r) noexcept { return kRoleNames[unsigned(r)]; }

std::optional<Role> parse_role(std::string_view s) noexcept {
    for (unsigned i = 1; i < std::size(kRoleNames); ++i)
        if (kRoleNames[i] == s) return Role(i);
    return std::nullopt;
}

Caller TokenTable::authenticate(std::string_view authorization) const {
    Caller c;
    c.presented = !authorization.empty();
    // RFC 6750: the scheme is case-insensitive; one space, then the token.
    constexpr std::string_view kScheme = "bearer ";
    if (authorization.size() <= kScheme.size()) return c;
    for (size_t i = 0; i < kScheme.size(); ++i)
        if ((authorization[i] | 0x20) != kScheme[i]) return c;
    const std::string_view token = authorization.substr(kScheme.size());
    const Digest d = sha256(token);
    for (const auto& t : tokens_)
        if (digest_equal(d, t.sha256) && !c.token) c.token = &t;
    return c;
}

std::string hash_token(std::string_view token) { return to_hex(sha256(token)); }

}  // namespace optgate::consentd
