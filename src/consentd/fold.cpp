#include "consentd/fold.hpp"

namespace optgate::consentd {

std::string LedgerFold::consent_key(std::string_view subscriber, std::string_view purpose) {
    std::string k;
    k.reserve(subscriber.size() + 1 + purpose.size());
    k.append(subscriber);
    k.push_back('\0');  // not allowed in either part
    k.append(purpose);
    return k;
}

std::string LedgerFold::apply(const Event& e) {
    switch (e.action) {
    case Action::grant:
        consents_[consent_key(e.subscriber, *e.purpose)] = ConsentRow{
            e.subscriber, *e.purpose, e.seq, e.time, e.source, e.notice_version, e.credential};
        return {};
    case Action::revoke: consents_.erase(consent_key(e.subscriber, *e.purpose)); return {};
    case Action::bind: {
        auto [it, fresh] = bindings_.try_emplace(*e.address);
        if (!fresh && it->second.subscriber != e.subscriber) {
            const std::string holder = it->second.subscriber;
            it->second = BindingRow{*e.address, e.subscriber, e.seq, e.time, e.source, e.credential};
            return "binds " + *e.address + " to '" + e.subscriber + "' while '" + holder +
                   "' holds it (no unbind recorded first)";
        }
        it->second = BindingRow{*e.address, e.subscriber, e.seq, e.time, e.source, e.credential};
        return {};
    }
    case Action::unbind: {
        const auto it = bindings_.find(*e.address);
        if (it == bindings_.end()) return "unbinds " + *e.address + ", which is not bound";
        if (it->second.subscriber != e.subscriber) {
            const std::string holder = it->second.subscriber;
            bindings_.erase(it);
            return "unbinds " + *e.address + " from '" + e.subscriber + "' but '" + holder + "' holds it";
        }
        bindings_.erase(it);
        return {};
    }
    }
    return {};
}

}  // namespace optgate::consentd
