// consentd's in-memory view of the current state: which purposes each
// subscriber has granted, which addresses are bound to whom, and the consent
// table derived from them (subscriber key -> purpose bitmask, bit i =
// policy.purposes[i]) that data planes enforce.
//
// The table holds one entry per active binding (binding_address.hpp), with
// the holder's mask, possibly 0: a known subscriber without consent (the data
// plane counts that apart from an unknown address). Grants of purposes the
// policy no longer defines are kept but set no bit; if the purpose returns,
// so does its bit.
//
// Owned by the ledger writer, which changes it in step with each commit; not
// thread-safe by itself (LedgerService locks around it).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/addr.hpp"
#include "core/addr_hash.hpp"
#include "core/consent_table.hpp"
#include "core/policy.hpp"
#include "proto/wire.hpp"

namespace optgate::consentd {

// Keeps the last change per key, in first-change order: what a commit did to
// the table, as data planes should apply it.
std::vector<proto::TableChange> coalesce(std::vector<proto::TableChange> changes);

// A digest of what the table's keys and bits mean under `policy` (purpose
// names in order, IPv6 key length, subscriber prefixes): equal digests mean a
// table built under one policy is valid under the other.
std::string table_version(const Policy& policy);

class ConsentState {
public:
    explicit ConsentState(std::shared_ptr<const Policy> policy);

    const Policy& policy() const noexcept { return *policy_; }
    const std::shared_ptr<const Policy>& policy_ptr() const noexcept { return policy_; }
    const std::string& table_version() const noexcept { return table_version_; }

    // ---- changes; each appends the table changes it causes to *out (if set) ----
    // Returns whether the grant state flipped.
    bool set_consent(std::string_view subscriber, std::string_view purpose, bool granted,
                     std::vector<proto::TableChange>* out);
    bool granted(std::string_view subscriber, std::string_view purpose) const;
    // Binds `binding` to `subscriber`, taking it from any other holder.
    void bind(const Prefix& binding, std::string_view subscriber, std::vector<proto::TableChange>* out);
    // No-op when not bound.
    void unbind(const Prefix& binding, std::vector<proto::TableChange>* out);
    // The subscriber holding `binding`, or null.
    const std::string* holder(const Prefix& binding) const;

    // A batch that may fail (LedgerService): between begin_undo() and
    // end_undo() every change above is remembered, so that undo() puts the
    // state back exactly as it was at begin_undo() (the table changes it
    // causes are not reported: nobody heard of the batch's). Without it a
    // failed commit would need the state read again from the ledger, which
    // may be out of reach just then (PostgreSQL restarting).
    void begin_undo();
    void end_undo();
    void undo();  // and ends

    // Installs a policy: recomputes every mask and which bindings are active.
    // Returns whether table_version() changed: data planes need a full resync.
    bool set_policy(std::shared_ptr<const Policy> policy);

    // ---- the consent table ----
    // fn(const SubscriberKey&, PurposeMask) for every entry, in no order.
    template <class Fn>
    void for_each_entry(Fn&& fn) const;
    std::optional<PurposeMask> lookup(const SubscriberKey& key) const;
    size_t table_size() const noexcept { return active_bindings_; }

    size_t subscriber_count() const noexcept { return subscribers_.size(); }
    // Room for this many more subscribers and bindings without rehashing
    // (an import, before its records: a million of them grew each map 20
    // times over).
    void reserve(size_t more_subscribers, size_t more_bindings);
    size_t binding_count() const noexcept { return bindings_.size(); }
    // A subscriber's current mask (0 when unknown).
    PurposeMask mask_of(std::string_view subscriber) const;

private:
    struct Subscriber {
        const std::string* id = nullptr;  // the map's key
        std::vector<uint16_t> granted;    // interned purpose ids
        PurposeMask mask = 0;
        std::vector<Prefix> bindings;
    };
    struct Binding {
        Subscriber* holder = nullptr;
        bool active = false;
    };
    struct StringHash {
        using is_transparent = void;
        size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
    };

    uint16_t intern(std::string_view purpose);
    std::optional<uint16_t> find_purpose(std::string_view purpose) const;
    Subscriber& subscriber(std::string_view id);
    PurposeMask compute_mask(const Subscriber& s) const noexcept;
    void emit_upserts(const Subscriber& s, std::vector<proto::TableChange>* out) const;

    std::shared_ptr<const Policy> policy_;
    std::string table_version_;
    std::vector<std::string> purpose_names_;  // interned: every name seen in a policy or a grant
    std::unordered_map<std::string, uint16_t, StringHash, std::equal_to<>> purpose_ids_;
    std::vector<int> bit_of_;  // interned id -> bit in the current policy, -1 when not defined
    std::unordered_map<std::string, Subscriber, StringHash, std::equal_to<>> subscribers_;
    std::unordered_map<Prefix, Binding, PrefixHash> bindings_;
    size_t active_bindings_ = 0;

    // What undo() needs of each change, newest last.
    struct Undo {
        bool consent = false;               // set_consent; otherwise bind or unbind
        std::string subscriber;             // consent: whose
        std::string purpose;                // consent: which
        bool was_granted = false;           // consent: before
        Prefix binding{};                   // bind/unbind: which
        std::optional<std::string> holder;  // bind/unbind: before (nullopt: unbound)
    };
    void remember_subscriber(std::string_view id);  // one undo() erases again if it ends empty
    bool journaling_ = false;
    std::vector<Undo> journal_;
    std::vector<std::string> created_;  // subscribers the batch created
};

template <class Fn>
void ConsentState::for_each_entry(Fn&& fn) const {
    for (const auto& [prefix, b] : bindings_)
        if (b.active) fn(SubscriberKey{prefix.addr}, b.holder->mask);
}

}  // namespace optgate::consentd
