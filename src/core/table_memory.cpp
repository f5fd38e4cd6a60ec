#include "core/table_memory.hpp"

#include <sys/mman.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

namespace optgate {
namespace {

// Before the table, in the same allocation; 64 bytes keep the table aligned.
struct alignas(64) Header {
    void* base;    // what to free or unmap
    size_t bytes;  // the mapping's length; 0: from the heap
};

// Writes one byte of each 4 KiB page: the fallback where the kernel has no
// MADV_POPULATE_WRITE (before Linux 5.14).
void touch(char* p, size_t bytes) noexcept {
    for (size_t i = 0; i < bytes; i += 4096) *static_cast<volatile char*>(p + i) = 0;
}

void* mapped(size_t total) {
    // Map 2 MiB more than needed and cut the ends off, leaving a mapping
    // that starts on a huge-page boundary.
    const size_t length = (total + 4095) & ~size_t(4095);
    void* raw = mmap(nullptr, length + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) throw std::bad_alloc();
    const size_t misaligned = reinterpret_cast<uintptr_t>(raw) & (kHugePage - 1);
    const size_t head = misaligned ? kHugePage - misaligned : 0;
    char* p = static_cast<char*>(raw) + head;
    if (head) munmap(raw, head);
    munmap(p + length, kHugePage - head);  // the rest of the slack (all of it when head is 0)
    // Advice before the first touch: pages faulted in before it stay 4 KiB.
    // EINVAL (a kernel without THP) leaves ordinary pages, which work.
    madvise(p, length, MADV_HUGEPAGE);
#ifdef MADV_POPULATE_WRITE
    if (madvise(p, length, MADV_POPULATE_WRITE) != 0) touch(p, length);
#else
    touch(p, length);
#endif
    static_cast<Header*>(static_cast<void*>(p))->base = p;
    static_cast<Header*>(static_cast<void*>(p))->bytes = length;
    return p;
}

}  // namespace

void* table_alloc(size_t bytes) {
    const size_t total = bytes + sizeof(Header);
    Header* h = nullptr;
    if (total >= kMappedFrom) {
        h = static_cast<Header*>(mapped(total));
    } else {
        // NOLINTNEXTLINE(cppcoreguidelines-no-malloc): raw table memory, freed by table_free
        void* p = std::aligned_alloc(alignof(Header), (total + alignof(Header) - 1) & ~(alignof(Header) - 1));
        if (!p) throw std::bad_alloc();
        std::memset(p, 0, total);
        h = static_cast<Header*>(p);
        h->base = p;
        h->bytes = 0;
    }
    return h + 1;
}

void table_free(void* p) noexcept {
    if (!p) return;
    const Header* h = static_cast<Header*>(p) - 1;
    if (h->bytes)
        munmap(h->base, h->bytes);
    else
        std::free(h->base);  // NOLINT(cppcoreguidelines-no-malloc): from table_alloc's aligned_alloc
}

}  // namespace optgate
