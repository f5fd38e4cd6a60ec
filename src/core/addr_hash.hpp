// Hashing for addresses used as keys of the control plane's hash maps (consentd,
// the consent-file loader): std::unordered_map needs a hash; the packet
// path has its own tables.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "core/addr.hpp"
#include "core/consent_table.hpp"

namespace optgate {

inline size_t hash_ip(const IpAddr& a, unsigned extra) noexcept {
    uint64_t hi = 0, lo = 0;
    std::memcpy(&hi, a.bytes.data(), 8);
    std::memcpy(&lo, a.bytes.data() + 8, 8);
    uint64_t h = hi * 0x9e3779b97f4a7c15ull ^ (lo + 0x632be59bd9b4e019ull + (uint64_t(a.family) << 8 | extra));
    h ^= h >> 31;
    h *= 0xbf58476d1ce4e5b9ull;
    return size_t(h ^ (h >> 29));
}

struct PrefixHash {
    size_t operator()(const Prefix& p) const noexcept { return hash_ip(p.addr, p.len); }
};

struct SubscriberKeyHash {
    size_t operator()(const SubscriberKey& k) const noexcept { return hash_ip(k.addr, 0); }
};

}  // namespace optgate
