#include "core/http_matcher.hpp"

#include <algorithm>

namespace optgate {

HeaderMatcher::HeaderMatcher(const std::vector<std::pair<std::string, int>>& identifiers,
                             const std::vector<std::pair<std::string, int>>& prefixes) {
    const std::pair<std::string_view, FieldRole> framing[] = {
        {"host", FieldRole::host},
        {"content-length", FieldRole::content_length},
        {"transfer-encoding", FieldRole::transfer_encoding},
        {"upgrade", FieldRole::upgrade},
        {"sec-gpc", FieldRole::gpc},
    };
    for (const auto& [name, role] : framing) names_.push_back({std::string(name), role, -1, false});
    auto add = [&](const std::string& raw, int index, bool prefix) {
        std::string name;
        for (char c : raw) name.push_back(char(http_chars::lower(uint8_t(c))));
        if (name.empty() || name.size() > kMaxNameLength) return;  // the loader never lets these through
        auto it = std::find_if(names_.begin(), names_.end(), [&](const HeaderName& h) { return h.name == name; });
        if (it == names_.end()) {
            names_.push_back({name, FieldRole::other, int16_t(index), false, prefix});
        } else if (it->identifier < 0) {
            it->identifier = int16_t(index);
            // Sec-GPC as an identifier (a policy built without the loader,
            // which rejects it): stripped like any identifier, not a signal.
            if (it->role == FieldRole::gpc) it->role = FieldRole::other;
            it->conflict = it->role != FieldRole::other;
            it->prefix = prefix;
        }
    };
    for (const auto& [raw, index] : identifiers) add(raw, index, false);
    for (const auto& [raw, index] : prefixes) add(raw, index, true);
    std::sort(names_.begin(), names_.end(), [](const HeaderName& a, const HeaderName& b) { return a.name < b.name; });
    lcp_.assign(names_.size(), 0);
    for (size_t i = 1; i < names_.size(); ++i) {
        const std::string& a = names_[i - 1].name;
        const std::string& b = names_[i].name;
        size_t n = 0;
        while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
        lcp_[i] = uint16_t(std::min<size_t>(n, 0xfffe));
    }
    prefixes_of_.assign(names_.size(), {});
    for (size_t i = 0; i < names_.size(); ++i)
        for (size_t j = 0; j < names_.size(); ++j)  // sorted: one name's prefixes come shortest first
            if (names_[j].prefix && names_[i].name.starts_with(names_[j].name)) prefixes_of_[i].push_back(uint16_t(j));
    first_.fill(HeaderMatch::kDead);
    for (size_t i = names_.size(); i-- > 0;) first_[uint8_t(names_[i].name[0])] = uint16_t(i);
}

void HeaderMatcher::no_name_goes_on(HeaderMatch& m) const noexcept {
    // The bytes read are names[lo]'s first `len`: the longest prefix name
    // among those still holds.
    m.len = uint16_t(longest_prefix(m.lo, m.len) + 1);  // kDead + 1 == 0: none
    m.lo = HeaderMatch::kDead;
}

const HeaderName* HeaderMatcher::find(std::string_view name) const noexcept {
    if (name.empty()) return nullptr;
    HeaderMatch m = start(uint8_t(name[0]));
    for (size_t i = 1; i < name.size(); ++i) step(m, uint8_t(name[i]));
    return complete(m);
}

}  // namespace optgate
