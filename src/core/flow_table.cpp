#include "core/flow_table.hpp"

#include <sys/mman.h>

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

namespace {
// Large tables come straight from mmap, populated up front: the packet path
// must not take a page fault (~1 us each) the first time a bucket is used.
constexpr size_t kPopulateFrom = 1 << 20;
struct Header {
    size_t bytes;
    size_t pad;
};
}  // namespace

void* flow_table_alloc(size_t bytes) {
    const size_t total = bytes + sizeof(Header);
    void* p = nullptr;
    if (total >= kPopulateFrom) {
        p = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        if (p == MAP_FAILED) throw std::bad_alloc();
    } else {
        p = std::calloc(1, total);  // NOLINT(cppcoreguidelines-no-malloc): raw table memory, owned by FlowTable
        if (!p) throw std::bad_alloc();
    }
    static_cast<Header*>(p)->bytes = total;
    return static_cast<Header*>(p) + 1;
}

void flow_table_free(void* p) noexcept {
    if (!p) return;
    Header* h = static_cast<Header*>(p) - 1;
    if (h->bytes >= kPopulateFrom)
        munmap(h, h->bytes);
    else
        std::free(h);  // NOLINT(cppcoreguidelines-no-malloc): from flow_table_alloc's calloc
}

}  // namespace optgate
