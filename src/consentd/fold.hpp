// The derived state is, by definition, the fold of the ledger's events:
//   grant  -> the (subscriber, purpose) consent row is this event
//   revoke -> no consent row for (subscriber, purpose)
//   bind   -> the address's binding row is this event
//   unbind -> no binding row for the address
// consentd maintains the same rows incrementally with SQL in the commit that
// records each event (ledger.cpp); verify-ledger and the tests recompute them
// here, independently, and compare.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>

#include "consentd/event.hpp"

namespace optgate::consentd {

// A current consent: the latest grant event since which it has held.
struct ConsentRow {
    std::string subscriber;
    std::string purpose;
    uint64_t seq = 0;
    std::string time;
    std::string source;
    std::optional<std::string> notice_version;
    std::string credential;
    friend bool operator==(const ConsentRow&, const ConsentRow&) = default;
};

// A current binding: the latest bind event of the address.
struct BindingRow {
    std::string address;
    std::string subscriber;
    uint64_t seq = 0;
    std::string time;
    std::string source;
    std::string credential;
    friend bool operator==(const BindingRow&, const BindingRow&) = default;
};

class LedgerFold {
public:
    // Applies one event. Returns why the event contradicts the state before
    // it (empty when it does not): an unbind of an address that is not bound
    // to that subscriber, or a bind of an address another subscriber holds
    // (consentd always records that holder's unbind first).
    std::string apply(const Event& e);

    static std::string consent_key(std::string_view subscriber, std::string_view purpose);

    using Consents = std::unordered_map<std::string, ConsentRow>;  // by consent_key()
    using Bindings = std::unordered_map<std::string, BindingRow>;  // by address
    const Consents& consents() const noexcept { return consents_; }
    const Bindings& bindings() const noexcept { return bindings_; }
    Consents& consents() noexcept { return consents_; }
    Bindings& bindings() noexcept { return bindings_; }

private:
    Consents consents_;
    Bindings bindings_;
};

}  // namespace optgate::consentd
