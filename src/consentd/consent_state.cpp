#include "consentd/consent_state.hpp"

#include <algorithm>

#include "consentd/binding_address.hpp"
#include "consentd/sha256.hpp"

namespace optgate::consentd {

std::vector<proto::TableChange> coalesce(std::vector<proto::TableChange> changes) {
    if (changes.size() < 2) return changes;
    std::unordered_map<SubscriberKey, size_t, SubscriberKeyHash> at;
    at.reserve(changes.size());
    std::vector<proto::TableChange> out;
    out.reserve(changes.size());
    for (const auto& d : changes) {
        auto [it, fresh] = at.try_emplace(d.key, out.size());
        if (fresh)
            out.push_back(d);
        else
            out[it->second] = d;
    }
    return out;
}

std::string table_version(const Policy& policy) {
    std::string text = "purposes";
    for (const auto& p : policy.purposes) text += " " + p.name;
    text += "\nipv6_key_length " + std::to_string(policy.ipv6_key_length) + "\nsubscribers";
    for (const auto& p : policy.subscriber_prefixes) text += " " + p.to_string();
    return to_hex(sha256(text));
}

ConsentState::ConsentState(std::shared_ptr<const Policy> policy) { set_policy(std::move(policy)); }

uint16_t ConsentState::intern(std::string_view purpose) {
    if (auto it = purpose_ids_.find(purpose); it != purpose_ids_.end()) return it->second;
    const auto id = uint16_t(purpose_names_.size());
    purpose_names_.emplace_back(purpose);
    purpose_ids_.emplace(std::string(purpose), id);
    const auto bit = policy_->purpose_index(purpose);
    bit_of_.push_back(bit ? int(*bit) : -1);
    return id;
}

std::optional<uint16_t> ConsentState::find_purpose(std::string_view purpose) const {
    if (auto it = purpose_ids_.find(purpose); it != purpose_ids_.end()) return it->second;
    return std::nullopt;
}

ConsentState::Subscriber& ConsentState::subscriber(std::string_view id) {
    auto it = subscribers_.find(id);
    if (it == subscribers_.end()) {
        it = subscribers_.emplace(std::string(id), Subscriber{}).first;
        it->second.id = &it->first;
    }
    return it->second;
}

void ConsentState::reserve(size_t more_subscribers, size_t more_bindings) {
    subscribers_.reserve(subscribers_.size() + more_subscribers);
    bindings_.reserve(bindings_.size() + more_bindings);
}

PurposeMask ConsentState::compute_mask(const Subscriber& s) const noexcept {
    PurposeMask m = 0;
    for (uint16_t id : s.granted)
        if (bit_of_[id] >= 0) m |= PurposeMask(1) << bit_of_[id];
    return m;
}

void ConsentState::emit_upserts(const Subscriber& s, std::vector<proto::TableChange>* out) const {
    if (!out) return;
    for (const auto& p : s.bindings)
        if (bindings_.at(p).active) out->push_back({proto::TableChange::Op::upsert, binding_key(p), s.mask});
}

void ConsentState::begin_undo() {
    journal_.clear();
    created_.clear();
    journaling_ = true;
}

void ConsentState::end_undo() {
    journaling_ = false;
    journal_.clear();
    created_.clear();
}

void ConsentState::remember_subscriber(std::string_view id) {
    if (journaling_ && !subscribers_.contains(id)) created_.emplace_back(id);
}

void ConsentState::undo() {
    journaling_ = false;
    for (auto it = journal_.rbegin(); it != journal_.rend(); ++it) {
        if (it->consent)
            set_consent(it->subscriber, it->purpose, it->was_granted, nullptr);
        else if (it->holder)
            bind(it->binding, *it->holder, nullptr);
        else
            unbind(it->binding, nullptr);
    }
    for (const auto& id : created_) {
        const auto s = subscribers_.find(id);
        if (s != subscribers_.end() && s->second.granted.empty() && s->second.bindings.empty()) subscribers_.erase(s);
    }
    journal_.clear();
    created_.clear();
}

bool ConsentState::set_consent(std::string_view id, std::string_view purpose, bool granted,
                               std::vector<proto::TableChange>* out) {
    if (journaling_) {
        remember_subscriber(id);
        journal_.push_back(Undo{true, std::string(id), std::string(purpose), this->granted(id, purpose), {}, {}});
    }
    Subscriber& s = subscriber(id);
    const uint16_t pid = intern(purpose);
    const auto it = std::find(s.granted.begin(), s.granted.end(), pid);
    const bool had = it != s.granted.end();
    if (had == granted) return false;
    if (granted)
        s.granted.push_back(pid);
    else
        s.granted.erase(it);
    const PurposeMask before = s.mask;
    s.mask = compute_mask(s);
    if (s.mask != before) emit_upserts(s, out);
    return true;
}

bool ConsentState::granted(std::string_view id, std::string_view purpose) const {
    const auto s = subscribers_.find(id);
    const auto pid = find_purpose(purpose);
    if (s == subscribers_.end() || !pid) return false;
    return std::find(s->second.granted.begin(), s->second.granted.end(), *pid) != s->second.granted.end();
}

PurposeMask ConsentState::mask_of(std::string_view id) const {
    const auto s = subscribers_.find(id);
    return s == subscribers_.end() ? 0 : s->second.mask;
}

const std::string* ConsentState::holder(const Prefix& binding) const {
    const auto it = bindings_.find(binding);
    return it == bindings_.end() ? nullptr : it->second.holder->id;
}

void ConsentState::unbind(const Prefix& binding, std::vector<proto::TableChange>* out) {
    const auto it = bindings_.find(binding);
    if (it == bindings_.end()) return;
    if (journaling_) journal_.push_back(Undo{false, {}, {}, false, binding, *it->second.holder->id});
    auto& list = it->second.holder->bindings;
    list.erase(std::find(list.begin(), list.end(), binding));
    if (it->second.active) {
        --active_bindings_;
        if (out) out->push_back({proto::TableChange::Op::erase, binding_key(binding), 0});
    }
    bindings_.erase(it);
}

void ConsentState::bind(const Prefix& binding, std::string_view id, std::vector<proto::TableChange>* out) {
    if (journaling_) {
        remember_subscriber(id);
        const std::string* before = holder(binding);
        journal_.push_back(
            Undo{false, {}, {}, false, binding, before ? std::optional<std::string>(*before) : std::nullopt});
    }
    Subscriber& s = subscriber(id);
    auto [it, fresh] = bindings_.try_emplace(binding);
    Binding& b = it->second;
    if (!fresh) {
        if (b.holder == &s) return;
        auto& list = b.holder->bindings;
        list.erase(std::find(list.begin(), list.end(), binding));
    } else {
        b.active = binding_active(binding, *policy_);
        if (b.active) ++active_bindings_;
    }
    b.holder = &s;
    s.bindings.push_back(binding);
    // One upsert covers a move too: the new holder's mask replaces the old.
    if (b.active && out) out->push_back({proto::TableChange::Op::upsert, binding_key(binding), s.mask});
}

bool ConsentState::set_policy(std::shared_ptr<const Policy> policy) {
    policy_ = std::move(policy);
    std::string version = consentd::table_version(*policy_);
    const bool changed = version != table_version_;
    table_version_ = std::move(version);
    for (const auto& p : policy_->purposes) intern(p.name);
    for (size_t id = 0; id < purpose_names_.size(); ++id) {
        const auto bit = policy_->purpose_index(purpose_names_[id]);
        bit_of_[id] = bit ? int(*bit) : -1;
    }
    for (auto& [id, s] : subscribers_) s.mask = compute_mask(s);
    active_bindings_ = 0;
    for (auto& [prefix, b] : bindings_) {
        b.active = binding_active(prefix, *policy_);
        active_bindings_ += b.active;
    }
    return changed;
}

std::optional<PurposeMask> ConsentState::lookup(const SubscriberKey& key) const {
    const Prefix p{key.addr, uint8_t(key.addr.family == Family::v4 ? 32 : policy_->ipv6_key_length)};
    const auto it = bindings_.find(p);
    if (it == bindings_.end() || !it->second.active) return std::nullopt;
    return it->second.holder->mask;
}

}  // namespace optgate::consentd
