#include "core/enforcement.hpp"

#include <time.h>

namespace optgate {

uint64_t monotonic_ns() noexcept {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

Enforcement::~Enforcement() {
    // Workers are gone by now; free pending retirements, then the current pair.
    rcu_.synchronize();
    delete current_.load();
}

void Enforcement::install(std::shared_ptr<const Runtime> runtime, std::unique_ptr<ConsentTable> table) {
    encapsulations_.store(runtime ? runtime->policy().encapsulations : 0, std::memory_order_relaxed);
    auto* fresh = new Generation{std::move(runtime), std::move(table)};
    Generation* old = current_.exchange(fresh, std::memory_order_acq_rel);
    if (old) rcu_.retire([old] { delete old; });
}

ConsentTable* Enforcement::table() noexcept {
    Generation* g = current_.load(std::memory_order_acquire);
    return g ? g->table.get() : nullptr;
}

std::shared_ptr<const Runtime> Enforcement::runtime() const {
    const Generation* g = current_.load(std::memory_order_acquire);
    return g ? g->runtime : nullptr;
}

}  // namespace optgate
