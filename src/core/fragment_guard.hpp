// Remembers fragmented datagrams whose first fragment was dropped on a strip
// verdict, so that their later fragments are dropped too. Direct-mapped,
// fixed size, entries expire after the reassembly timeout; no allocation.
//
// A later fragment that arrives before its first fragment is forwarded: the
// receiver can never reassemble it without the (dropped) first fragment, so
// its bytes never reach an application. docs/pipeline.md#fragments.
#pragma once

#include <array>
#include <cstdint>

#include "core/packet.hpp"

namespace optgate {

class FragmentGuard {
public:
    static constexpr size_t kSlots = 4096;
    static constexpr uint64_t kLifetimeNs = 60ull * 1000000000ull;  // RFC 8200 reassembly timeout

    void remember(const ParsedPacket& p, uint64_t now_ns) noexcept {
        const uint64_t k = key(p);
        entries_[k & (kSlots - 1)] = {k, now_ns + kLifetimeNs};
    }
    bool dropped_earlier(const ParsedPacket& p, uint64_t now_ns) const noexcept {
        const uint64_t k = key(p);
        const Entry& e = entries_[k & (kSlots - 1)];
        return e.key == k && e.expires_ns > now_ns;
    }

private:
    struct Entry {
        uint64_t key = 0;
        uint64_t expires_ns = 0;
    };
    static uint64_t key(const ParsedPacket& p) noexcept {
        // FNV-1a over what identifies a datagram: addresses, protocol, id.
        const unsigned alen = p.family == Family::v4 ? 4 : 16;
        uint64_t h = 0xcbf29ce484222325ull;
        auto mix = [&h](uint8_t b) { h = (h ^ b) * 0x100000001b3ull; };
        for (unsigned i = 0; i < alen; ++i) mix(p.src[i]);
        for (unsigned i = 0; i < alen; ++i) mix(p.dst[i]);
        if (p.family == Family::v4) mix(p.l4_proto);  // RFC 791 reassembly key; IPv6 uses (src, dst, id)
        for (int s = 0; s < 32; s += 8) mix(uint8_t(p.fragment_id >> s));
        return h | 1;  // never 0, the empty key
    }
    std::array<Entry, kSlots> entries_{};
};

}  // namespace optgate
