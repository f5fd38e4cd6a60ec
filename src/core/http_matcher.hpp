// Streaming, case-insensitive recognition of the HTTP header names the HTTP
// stage acts on: the policy's identifier headers and the framing headers
// (Host, Content-Length, Transfer-Encoding, Upgrade).
//
// A name may be split across any number of TCP segments, so the matcher
// never needs the bytes already read: names are kept sorted, and the names
// that share the prefix read so far form one contiguous run starting at
// `lo`. Each byte either continues names[lo] (one compare) or moves `lo`
// forward inside the run (using the common-prefix lengths of neighbours).
// The whole state between two bytes is HeaderMatch (4 bytes, in the flow
// entry). A first-byte table ends the match at byte one for most names
// ("User-Agent", "Accept", ...), after which the parser only looks for ':'.
//
// Built once per policy (cold: allocates), read-only afterwards.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/chars.hpp"

namespace optgate {

// What a recognised header name means to the parser.
enum class FieldRole : uint8_t { other, host, content_length, transfer_encoding, upgrade };

struct HeaderName {
    std::string name;  // lowercase
    FieldRole role = FieldRole::other;
    int16_t identifier = -1;  // index into policy.identifiers, or -1
    // An identifier that is also a framing header (a policy built without the
    // loader, which rejects these): the parser scrubs it and stops trusting
    // its own framing (conservative mode).
    bool conflict = false;
};

struct HeaderMatch {
    static constexpr uint16_t kDead = 0xffff;
    uint16_t lo = kDead;  // first name of the run matching the prefix read
    uint16_t len = 0;     // bytes read
    bool dead() const noexcept { return lo == kDead; }
};

class HeaderMatcher {
public:
    static constexpr size_t kMaxNameLength = 1024;

    // The framing headers only.
    HeaderMatcher() : HeaderMatcher(std::vector<std::pair<std::string, int>>{}) {}
    // `identifiers`: (lowercase header name, identifier index), as
    // Runtime::compile builds them from the policy. A name listed twice keeps its
    // first index.
    explicit HeaderMatcher(const std::vector<std::pair<std::string, int>>& identifiers);

    HeaderMatch start(uint8_t c) const noexcept {
        const uint16_t lo = first_[http_chars::lower(c)];
        return lo == HeaderMatch::kDead ? HeaderMatch{} : HeaderMatch{lo, 1};
    }

    void step(HeaderMatch& m, uint8_t c) const noexcept {
        if (m.dead()) return;
        c = http_chars::lower(c);
        const std::string& cur = names_[m.lo].name;
        if (m.len < cur.size() && uint8_t(cur[m.len]) == c) {
            ++m.len;
            return;
        }
        // Other names sharing the first `len` bytes follow names[lo] directly.
        for (size_t i = size_t(m.lo) + 1; i < names_.size() && lcp_[i] >= m.len; ++i) {
            const std::string& n = names_[i].name;
            if (n.size() > m.len && uint8_t(n[m.len]) == c) {
                m.lo = uint16_t(i);
                ++m.len;
                return;
            }
        }
        m = HeaderMatch{};
    }

    // The name read so far, if it is exactly one of the names.
    const HeaderName* complete(const HeaderMatch& m) const noexcept {
        // The shortest name of a run sorts first, so an exact match is names[lo].
        if (m.dead() || names_[m.lo].name.size() != m.len) return nullptr;
        return &names_[m.lo];
    }

    // Convenience for whole names (tests, cold paths).
    const HeaderName* find(std::string_view name) const noexcept;

    const std::vector<HeaderName>& names() const noexcept { return names_; }

private:
    std::vector<HeaderName> names_;      // sorted by name
    std::vector<uint16_t> lcp_;          // lcp_[i]: common prefix length of names[i-1] and names[i]
    std::array<uint16_t, 256> first_{};  // first name starting with a byte, or kDead
};

}  // namespace optgate
