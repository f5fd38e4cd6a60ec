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

namespace {
constexpr std::string_view kEncapsulationNames[] = {
#define OPTGATE_X(name, what) #name,
    OPTGATE_ENCAPSULATIONS(OPTGATE_X)
#undef OPTGATE_X
};
}  // namespace

std::string_view encapsulation_name(Encapsulation e) noexcept { return kEncapsulationNames[unsigned(e)]; }

std::optional<Encapsulation> encapsulation_from_name(std::string_view name) noexcept {
    for (unsigned i = 0; i < kEncapsulationCount; ++i)
        if (kEncapsulationNames[i] == name) return Encapsulation(i);
    return std::nullopt;
}

}  // namespace optgate
