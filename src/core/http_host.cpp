#include "core/http_host.hpp"

#include "core/http_matcher.hpp"

namespace optgate {

HostBuffers::HostBuffers(size_t count) {
    if (count > 0xfffe) count = 0xfffe;
    bytes_.resize((count + 1) * kBytes);
    len_.resize(count + 1);
    free_.reserve(count);
    for (size_t s = count; s >= 1; --s) free_.push_back(uint16_t(s));
}

std::string_view normalize_host(std::string_view raw, char* out) noexcept {
    size_t b = 0, e = raw.size();
    while (b < e && (raw[b] == ' ' || raw[b] == '\t')) ++b;
    while (e > b && (raw[e - 1] == ' ' || raw[e - 1] == '\t')) --e;
    if (b == e || e - b > HostBuffers::kBytes - 1) return {};
    size_t n = 0;
    for (size_t i = b; i < e; ++i) {
        const uint8_t c = uint8_t(raw[i]);
        if (c <= ' ' || c == 0x7f || c == '@' || c == '/') return {};  // no userinfo, no path, no spaces
        out[n++] = char(http_chars::lower(c));
    }
    std::string_view h(out, n);
    size_t port_at = std::string_view::npos;
    if (h[0] == '[') {
        const size_t close = h.find(']');
        if (close == std::string_view::npos) return {};
        if (close + 1 < h.size()) {
            if (h[close + 1] != ':') return {};
            port_at = close + 1;
        }
    } else {
        port_at = h.find(':');
        if (port_at != std::string_view::npos && h.find(':', port_at + 1) != std::string_view::npos) return {};
    }
    if (port_at != std::string_view::npos) {
        for (size_t i = port_at + 1; i < h.size(); ++i)
            if (h[i] < '0' || h[i] > '9') return {};
        h = h.substr(0, port_at);
    }
    if (!h.empty() && h.back() == '.') h.remove_suffix(1);
    return h;
}

}  // namespace optgate
