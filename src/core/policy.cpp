#include "core/policy.hpp"

namespace optgate {

std::string ascii_lower(std::string_view s) {
    std::string out(s);
    for (auto& c : out)
        if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
    return out;
}

bool HostPattern::matches(std::string_view host) const noexcept {
    if (!wildcard) return host == name;
    // "*.example.com" matches "a.example.com" and "a.b.example.com".
    return host.size() > name.size() + 1 && host.ends_with(name) && host[host.size() - name.size() - 1] == '.';
}

}  // namespace optgate
