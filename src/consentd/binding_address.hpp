// Binding addresses: what the API and imports accept, and the one text form
// the ledger stores ("100.64.0.1"; "2001:db8:1000:1::/64").
//
// A binding is an IPv4 address, or an IPv6 prefix whose length is the
// policy's subscribers.ipv6_key_length; a bare IPv6 address stands for its
// prefix at that length. A new binding must lie inside the policy's
// subscriber prefixes. A stored binding that no longer fits the policy (after
// a reload) is inactive: it stays in the ledger, can be unbound, and is left
// out of the consent table.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "core/addr.hpp"
#include "core/consent_table.hpp"
#include "core/policy.hpp"

namespace optgate::consentd {

struct AddressText {
    Prefix prefix;
    bool bare = false;  // written without "/len"
};

// Syntax only: an address or a prefix without host bits.
std::optional<AddressText> parse_address_text(std::string_view text, std::string& error);

enum class AddressProblem { none, invalid, not_subscriber };

// The binding a bind request names under `policy`.
std::optional<Prefix> binding_for_bind(const AddressText& a, const Policy& policy, AddressProblem& problem,
                                       std::string& error);
// The binding an unbind request names: the same shapes, without requiring the
// address to be inside today's subscriber prefixes.
std::optional<Prefix> binding_for_unbind(const AddressText& a, const Policy& policy, std::string& error);

bool binding_active(const Prefix& binding, const Policy& policy) noexcept;
SubscriberKey binding_key(const Prefix& binding) noexcept;

// The stored text of a binding.
std::string binding_text(const Prefix& binding);
// Parses stored text; nullopt unless `text` is exactly binding_text() of it.
std::optional<Prefix> parse_binding_text(std::string_view text);

}  // namespace optgate::consentd
