#include "core/http_matcher.hpp"

#include <algorithm>

namespace optgate {

HeaderMatcher::HeaderMatcher(const std::vector<std::pair<std::string, int>>& identifiers) {
    const std::pair<std::string_view, FieldRole> framing[] = {
        {"host", FieldRole::host},
        {"content-length", FieldRole::content_length},
        {"transfer-encoding", FieldRole::transfer_encoding},
        {"upgrade", FieldRole::upgrade},
    };
    for (const auto& [name, role] : framing) names_.push_back({std::string(name), role, -1, false});
    for (const auto& [raw, index] : identifiers) {
        std::string name;
        for (char c : raw) name.push_back(char(http_chars::lower(uint8_t(c))));
        if (name.empty() || name.size() > kMaxNameLength) continue;  // the loader never lets these through
        auto it = std::find_if(names_.begin(), names_.end(), [&](const HeaderName& h) { return h.name == name; });
        if (it == names_.end()) {
            names_.push_back({name, FieldRole::other, int16_t(index), false});
        } else if (it->identifier < 0) {
            it->identifier = int16_t(index);
            it->conflict = it->role != FieldRole::other;
        }
    }
    std::sort(names_.begin(), names_.end(), [](const HeaderName& a, const HeaderName& b) { return a.name < b.name; });
    lcp_.assign(names_.size(), 0);
    for (size_t i = 1; i < names_.size(); ++i) {
        const std::string& a = names_[i - 1].name;
        const std::string& b = names_[i].name;
        size_t n = 0;
        while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
        lcp_[i] = uint16_t(std::min<size_t>(n, 0xfffe));
    }
    first_.fill(HeaderMatch::kDead);
    for (size_t i = names_.size(); i-- > 0;) first_[uint8_t(names_[i].name[0])] = uint16_t(i);
}

const HeaderName* HeaderMatcher::find(std::string_view name) const noexcept {
    if (name.empty()) return nullptr;
    HeaderMatch m = start(uint8_t(name[0]));
    for (size_t i = 1; i < name.size(); ++i) step(m, uint8_t(name[i]));
    return complete(m);
}

}  // namespace optgate
