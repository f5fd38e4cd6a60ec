// Memory for the packet path's large tables: the consent table's slot arrays
// and the flow tables. Both are probed at random, so on 4 KiB pages nearly
// every probe of a table of megabytes also misses the TLB (a 1M-subscriber
// consent table is 16 MiB: 4,096 such pages, 8 huge ones).
//
// From kMappedFrom up, a table is a private mapping aligned to 2 MiB and
// advised MADV_HUGEPAGE, so the kernel backs it with transparent huge pages
// where it has them (with THP "madvise" or "always"; with "never", or when it
// finds no free 2 MiB page, it falls back to 4 KiB pages and nothing else
// changes). It is populated up front: the packet path must not take a page
// fault (~1 us each) the first time it touches a slot. Smaller tables come
// from the heap. Either way the memory is zeroed and 64-byte aligned.
#pragma once

#include <cstddef>

namespace optgate {

inline constexpr size_t kMappedFrom = size_t(1) << 20;  // smaller: the heap
inline constexpr size_t kHugePage = size_t(2) << 20;    // x86-64's transparent huge page

// Throws std::bad_alloc when no memory is left.
void* table_alloc(size_t bytes);
// p from table_alloc (or null).
void table_free(void* p) noexcept;

}  // namespace optgate
