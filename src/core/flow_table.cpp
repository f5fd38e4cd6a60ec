#include "core/flow_table.hpp"

namespace optgate {

FlowKey FlowKey::from(const ParsedPacket& p) noexcept {
    FlowKey k{};  // all zero: the unused address bytes and the pad are hashed and compared
    const size_t alen = p.family == Family::v4 ? 4 : 16;
    std::memcpy(k.src, p.src, alen);
    std::memcpy(k.dst, p.dst, alen);
    k.src_port = p.src_port;
    k.dst_port = p.dst_port;
    k.family = uint8_t(p.family);
    return k;
}

uint64_t flow_hash(const FlowKey& k) noexcept {
    // Five 64-bit words through a multiply-xorshift mix (murmur3 finaliser
    // constants): cheap, and every key bit reaches the bucket bits.
    uint64_t w[5];
    std::memcpy(w, &k, sizeof w);
    uint64_t h = 0x243f6a8885a308d3ull;
    for (uint64_t x : w) {
        h ^= x;
        h *= 0xff51afd7ed558ccdull;
        h ^= h >> 33;
    }
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

}  // namespace optgate
