// Streaming, case-insensitive recognition of the HTTP header names the HTTP
// stage acts on: the policy's identifier headers (exact names and name
// prefixes, for vendor families such as X-Nokia-...), the framing headers
// (Host, Content-Length, Transfer-Encoding, Upgrade) and Sec-GPC (Global
// Privacy Control).
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
// Prefixes are names like any other, flagged. The bytes read so far are
// always the first `len` bytes of names[lo], so the prefixes they start with
// are known from that name alone: when no name goes on (or at the field's
// ':'), the longest such prefix is looked up once (kept in HeaderMatch::len)
// and decides. A longer exact name or prefix still wins, and stepping through a
// name costs what it did without prefixes (docs/benchmarks.md, "Header
// families").
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
enum class FieldRole : uint8_t { other, host, content_length, transfer_encoding, upgrade, gpc };

struct HeaderName {
    std::string name;  // lowercase
    FieldRole role = FieldRole::other;
    int16_t identifier = -1;  // index into policy.identifiers, or -1
    // An identifier that is also a framing header (a policy built without the
    // loader, which rejects these): the parser scrubs it and stops trusting
    // its own framing (conservative mode).
    bool conflict = false;
    // A prefix: every longer name starting with it is this identifier too,
    // unless a longer name or prefix matches it.
    bool prefix = false;
};

// 4 bytes, so that it stays in a register while a name is stepped through.
struct HeaderMatch {
    static constexpr uint16_t kDead = 0xffff;
    uint16_t lo = kDead;  // first name of the run matching the bytes read, or kDead
    // While lo is a name: the bytes read. Once no name goes on (lo == kDead):
    // 1 + the index of the longest prefix name the bytes read start with, or
    // 0 if none.
    uint16_t len = 0;
    // Nothing read so far can still be (or already is) a name.
    bool dead() const noexcept { return lo == kDead && len == 0; }
};

class HeaderMatcher {
public:
    static constexpr size_t kMaxNameLength = 1024;

    // The framing headers only.
    HeaderMatcher() : HeaderMatcher(std::vector<std::pair<std::string, int>>{}) {}
    // `identifiers`: (lowercase header name, identifier index), as
    // Runtime::compile builds them from the policy; `prefixes` the same for
    // header-name prefixes. A name listed twice keeps its first index.
    explicit HeaderMatcher(const std::vector<std::pair<std::string, int>>& identifiers,
                           const std::vector<std::pair<std::string, int>>& prefixes = {});

    HeaderMatch start(uint8_t c) const noexcept {
        const uint16_t lo = first_[http_chars::lower(c)];
        return lo == HeaderMatch::kDead ? HeaderMatch{} : HeaderMatch{lo, 1};
    }

    void step(HeaderMatch& m, uint8_t c) const noexcept {
        if (m.lo == HeaderMatch::kDead) return;
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
        no_name_goes_on(m);
    }

    // The name read so far, if it is exactly one of the names, else the
    // longest prefix name it starts with, else null.
    const HeaderName* complete(const HeaderMatch& m) const noexcept {
        uint16_t i = uint16_t(m.len - 1);  // once dead: the prefix that holds, or kDead
        if (m.lo != HeaderMatch::kDead) {
            // The shortest name of a run sorts first, so an exact match is names[lo].
            if (names_[m.lo].name.size() == m.len) return &names_[m.lo];
            i = longest_prefix(m.lo, m.len);
        }
        return i == HeaderMatch::kDead ? nullptr : &names_[i];
    }

    // Convenience for whole names (tests, cold paths).
    const HeaderName* find(std::string_view name) const noexcept;

    const std::vector<HeaderName>& names() const noexcept { return names_; }

private:
    // Out of line, once per name at most: keeps step() small enough that the
    // match stays in registers.
    void no_name_goes_on(HeaderMatch& m) const noexcept;
    // The longest prefix name that names[lo]'s first `len` bytes start with.
    uint16_t longest_prefix(uint16_t lo, uint16_t len) const noexcept {
        const std::vector<uint16_t>& c = prefixes_of_[lo];
        for (size_t k = c.size(); k-- > 0;)
            if (names_[c[k]].name.size() <= len) return c[k];
        return HeaderMatch::kDead;
    }

    std::vector<HeaderName> names_;  // sorted by name
    // prefixes_of_[i]: the prefix names that names[i] starts with (itself
    // included), shortest first. Empty for every name when the policy has
    // no prefixes, so exact names pay nothing while they match.
    std::vector<std::vector<uint16_t>> prefixes_of_;
    std::vector<uint16_t> lcp_;          // lcp_[i]: common prefix length of names[i-1] and names[i]
    std::array<uint16_t, 256> first_{};  // first name starting with a byte, or kDead
};

}  // namespace optgate
