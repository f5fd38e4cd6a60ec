// Longest-prefix match over IPv4 or IPv6 addresses: a multibit trie with an
// 8-bit stride (prefix expansion inside a level). A lookup reads at most one
// node per address byte (4 for IPv4, 16 for IPv6) and stops at the first
// byte with no child, so its cost is O(prefix length), independent of how
// many prefixes there are.
//
// Built once (cold) from a policy, then read-only and shared by every
// worker. Values are small non-zero integers chosen by the caller; 0 means
// "no prefix matched".
#pragma once

#include <cstdint>
#include <vector>

#include "core/addr.hpp"

namespace optgate {

class PrefixTrie {
public:
    explicit PrefixTrie(Family family);

    // Later inserts of the same or a longer prefix override earlier ones
    // where they overlap; insert in order of increasing prefix length to get
    // longest-prefix-match semantics with the caller's value policy.
    // `value_for(old)` receives the value currently found for each expanded
    // slot (0 if none) and returns the new one.
    template <class Fn>
    void insert(const Prefix& p, Fn&& value_for);

    uint32_t lookup(const uint8_t* addr_bytes) const noexcept {
        const Node* node = &nodes_[0];
        uint32_t best = 0;
        for (unsigned depth = 0; depth < max_depth_; ++depth) {
            const Slot& s = node->slot[addr_bytes[depth]];
            if (s.value) best = s.value;
            if (!s.child) break;
            node = &nodes_[s.child];
        }
        return best;
    }

    size_t node_count() const noexcept { return nodes_.size(); }

private:
    struct Slot {
        uint32_t child = 0;  // index into nodes_ (0: none; the root is never a child)
        uint32_t value = 0;
        uint8_t value_len = 0;  // prefix length that set `value` (for expansion)
    };
    struct Node {
        Slot slot[256];
    };

    unsigned max_depth_;
    std::vector<Node> nodes_;
};

template <class Fn>
void PrefixTrie::insert(const Prefix& p, Fn&& value_for) {
    // Walk full bytes, creating nodes; the last (partial) byte expands into
    // a run of slots. A prefix whose length is a multiple of 8 sets exactly
    // one slot in the node of its last full byte.
    uint32_t node = 0;
    unsigned depth = 0;
    unsigned bits = p.len;
    uint32_t inherited = 0;
    while (bits > 8) {
        Slot& s = nodes_[node].slot[p.addr.bytes[depth]];
        if (s.value) inherited = s.value;
        if (!s.child) {
            nodes_.push_back(Node{});
            nodes_[node].slot[p.addr.bytes[depth]].child = uint32_t(nodes_.size() - 1);
        }
        node = nodes_[node].slot[p.addr.bytes[depth]].child;
        bits -= 8;
        ++depth;
    }
    if (p.len == 0) {
        // The default route: every slot of the root.
        for (auto& s : nodes_[0].slot) {
            if (s.value_len > 0) continue;
            s.value = value_for(s.value);
            s.value_len = 0;
        }
        return;
    }
    const unsigned span = 1u << (8 - bits);
    const unsigned first = p.addr.bytes[depth] & (0xff00u >> bits) & 0xff;
    for (unsigned i = first; i < first + span; ++i) {
        Slot& s = nodes_[node].slot[i];
        if (s.value_len > p.len) continue;  // a longer prefix already owns it
        s.value = value_for(s.value ? s.value : inherited);
        s.value_len = p.len;
    }
}

}  // namespace optgate
