// Memory for the packet path's large tables (table_memory.hpp): zeroed,
// aligned, populated, and from kMappedFrom up a 2 MiB-aligned mapping the
// kernel was asked to back with huge pages. Read back from /proc/self/smaps,
// which shows each mapping's advice (VmFlags "hg"), resident size and huge
// pages.
#include <doctest/doctest.h>

#include <cstdint>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "core/consent_table.hpp"
#include "core/flow_table.hpp"
#include "core/http_stage.hpp"
#include "core/rcu.hpp"
#include "core/table_memory.hpp"

using namespace optgate;

namespace {

struct Mapping {
    uintptr_t start = 0, end = 0;
    size_t rss_kib = 0, anon_huge_kib = 0;
    bool huge_advised = false;  // VmFlags holds "hg": MADV_HUGEPAGE
};

// Every mapping of this process, from /proc/self/smaps.
std::vector<Mapping> mappings() {
    std::vector<Mapping> out;
    std::ifstream in("/proc/self/smaps");
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream s(line);
        std::string first;
        s >> first;
        if (const auto dash = first.find('-'); dash != std::string::npos && first.back() != ':') {
            Mapping m;
            m.start = std::stoull(first.substr(0, dash), nullptr, 16);
            m.end = std::stoull(first.substr(dash + 1), nullptr, 16);
            out.push_back(m);
        } else if (out.empty()) {
            continue;
        } else if (first == "Rss:") {
            s >> out.back().rss_kib;
        } else if (first == "AnonHugePages:") {
            s >> out.back().anon_huge_kib;
        } else if (first == "VmFlags:") {
            std::string flag;
            while (s >> flag) out.back().huge_advised |= flag == "hg";
        }
    }
    return out;
}

Mapping mapping_of(const void* p) {
    const auto a = reinterpret_cast<uintptr_t>(p);
    for (const auto& m : mappings())
        if (m.start <= a && a < m.end) return m;
    FAIL("no mapping holds ", p);
    return {};
}

// Bytes in mappings advised huge pages.
size_t huge_advised_bytes() {
    size_t n = 0;
    for (const auto& m : mappings())
        if (m.huge_advised) n += m.end - m.start;
    return n;
}

// The kernel's THP mode: "always", "madvise" or "never" (the bracketed word).
std::string thp_mode() {
    std::ifstream in("/sys/kernel/mm/transparent_hugepage/enabled");
    std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto open = all.find('['), close = all.find(']');
    return open == std::string::npos || close == std::string::npos ? "never" : all.substr(open + 1, close - open - 1);
}

bool all_zero(const void* p, size_t bytes) {
    const auto* c = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < bytes; ++i)
        if (c[i]) return false;
    return true;
}

}  // namespace

TEST_CASE("a large table is zeroed, populated, and a mapping from a 2 MiB boundary advised huge pages") {
    const size_t bytes = size_t(16) << 20;  // a 1M-subscriber consent table
    void* p = table_alloc(bytes);
    CHECK(reinterpret_cast<uintptr_t>(p) % 64 == 0);
    CHECK(all_zero(p, bytes));
    const Mapping m = mapping_of(p);
    CHECK(m.start % kHugePage == 0);
    CHECK(m.end - m.start >= bytes);
    CHECK(m.end - m.start < bytes + kHugePage);  // the alignment's slack was given back
    CHECK(m.huge_advised);
    // Populated before the first lookup: resident already, not on first touch.
    CHECK(m.rss_kib * 1024 >= bytes);
    const std::string mode = thp_mode();
    MESSAGE("THP mode: ", mode, ", huge pages in the table: ", m.anon_huge_kib, " KiB");
    if (mode == "always" || mode == "madvise") CHECK(m.anon_huge_kib >= kHugePage / 1024);
    static_cast<unsigned char*>(p)[bytes - 1] = 1;  // the whole length is usable
    table_free(p);
}

TEST_CASE("a small table comes from the heap, zeroed and 64-byte aligned") {
    for (const size_t bytes : {size_t(1), size_t(100), size_t(4096), kMappedFrom - 65}) {
        CAPTURE(bytes);
        void* p = table_alloc(bytes);
        CHECK(reinterpret_cast<uintptr_t>(p) % 64 == 0);
        CHECK(all_zero(p, bytes));
        static_cast<unsigned char*>(p)[bytes - 1] = 1;
        table_free(p);
    }
    table_free(nullptr);  // like free(nullptr): nothing
}

TEST_CASE("the consent table's slots and a flow table are on memory advised huge pages") {
    QsbrDomain rcu;
    const size_t before = huge_advised_bytes();
    {
        ConsentTable table(rcu, 1'000'000);
        CHECK(table.memory_bytes() >= size_t(16) << 20);
        CHECK(huge_advised_bytes() >= before + (size_t(16) << 20));
        // Grown past its size, the new array is on such memory too.
        table.reserve(3'000'000);
        CHECK(huge_advised_bytes() >= before + table.memory_bytes());
        CHECK(table.upsert(SubscriberKey{IpAddr::from_v4_host(0x64400001)}, 1));
        CHECK(table.lookup_v4(0x64400001).found);
    }
    {
        FlowTable<HttpFlow> flows(100'000, 1'000'000'000);
        CHECK(huge_advised_bytes() >= before + 100'000 * sizeof(FlowTable<HttpFlow>::Entry));
    }
}
