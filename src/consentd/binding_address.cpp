#include "consentd/binding_address.hpp"

namespace optgate::consentd {

std::optional<AddressText> parse_address_text(std::string_view text, std::string& error) {
    if (text.empty()) {
        error = "the address is empty";
        return std::nullopt;
    }
    if (text.size() > 64) {
        error = "the address is too long to be an IP address or prefix";
        return std::nullopt;
    }
    auto p = Prefix::parse(text, &error);
    if (!p) return std::nullopt;
    return AddressText{*p, text.find('/') == std::string_view::npos};
}

namespace {

// The shape rules shared by bind and unbind.
std::optional<Prefix> shape(const AddressText& a, const Policy& policy, std::string& error) {
    Prefix p = a.prefix;
    if (p.addr.family == Family::v4) {
        if (p.len != 32) {
            error = p.to_string() + " is an IPv4 prefix: bind one IPv4 address at a time";
            return std::nullopt;
        }
        return p;
    }
    if (a.bare) {
        p.addr = p.addr.masked(policy.ipv6_key_length);
        p.len = policy.ipv6_key_length;
        return p;
    }
    if (p.len != policy.ipv6_key_length) {
        error = p.to_string() + " is a /" + std::to_string(p.len) + " prefix: IPv6 subscribers are /" +
                std::to_string(policy.ipv6_key_length) + " prefixes (the policy's subscribers.ipv6_key_length)";
        return std::nullopt;
    }
    return p;
}

bool inside_subscriber_prefixes(const Prefix& b, const Policy& policy) noexcept {
    for (const auto& s : policy.subscriber_prefixes)
        if (s.len <= b.len && s.contains(b.addr)) return true;
    return false;
}

}  // namespace

std::optional<Prefix> binding_for_bind(const AddressText& a, const Policy& policy, AddressProblem& problem,
                                       std::string& error) {
    auto p = shape(a, policy, error);
    if (!p) {
        problem = AddressProblem::invalid;
        return std::nullopt;
    }
    if (!inside_subscriber_prefixes(*p, policy)) {
        problem = AddressProblem::not_subscriber;
        error = binding_text(*p) + " is outside the policy's subscriber prefixes";
        return std::nullopt;
    }
    problem = AddressProblem::none;
    return p;
}

std::optional<Prefix> binding_for_unbind(const AddressText& a, const Policy& policy, std::string& error) {
    if (a.prefix.addr.family == Family::v6 && !a.bare) return a.prefix;  // any stored length can be unbound
    return shape(a, policy, error);
}

bool binding_active(const Prefix& b, const Policy& policy) noexcept {
    if (b.addr.family == Family::v4 ? b.len != 32 : b.len != policy.ipv6_key_length) return false;
    return inside_subscriber_prefixes(b, policy);
}

SubscriberKey binding_key(const Prefix& b) noexcept { return SubscriberKey{b.addr}; }

std::string binding_text(const Prefix& b) { return b.addr.family == Family::v4 ? b.addr.to_string() : b.to_string(); }

std::optional<Prefix> parse_binding_text(std::string_view text) {
    auto p = Prefix::parse(text);
    if (!p) return std::nullopt;
    if (p->addr.family == Family::v4 && p->len != 32) return std::nullopt;
    if (p->addr.family == Family::v6 && text.find('/') == std::string_view::npos) return std::nullopt;
    if (binding_text(*p) != text) return std::nullopt;
    return p;
}

}  // namespace optgate::consentd
