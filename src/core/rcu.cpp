#include "core/rcu.hpp"

#include <chrono>
#include <stdexcept>
#include <thread>

namespace optgate {

QsbrDomain::~QsbrDomain() {
    for (auto& p : pending_) p.free_fn();
}

QsbrDomain::ReaderId QsbrDomain::register_reader() {
    std::lock_guard lock(registry_mutex_);
    for (unsigned i = 0; i < kMaxReaders; ++i) {
        if (readers_[i].seen.load(std::memory_order_acquire) == kUnused) {
            readers_[i].seen.store(epoch_.load(std::memory_order_acquire), std::memory_order_release);
            return i;
        }
    }
    throw std::runtime_error("too many packet-path threads registered with the RCU domain");
}

void QsbrDomain::unregister_reader(ReaderId id) {
    std::lock_guard lock(registry_mutex_);
    readers_[id].seen.store(kUnused, std::memory_order_release);
}

bool QsbrDomain::grace_period_over(uint64_t token) const noexcept {
    for (const auto& r : readers_) {
        const uint64_t seen = r.seen.load(std::memory_order_acquire);
        if (seen == kUnused || seen == kOffline) continue;
        if (seen < token) return false;
    }
    return true;
}

void QsbrDomain::retire(std::function<void()> free_fn) {
    // Readers that saw the old epoch may still hold the old pointer; any
    // reader that reports the new epoch has passed a quiescent state since.
    const uint64_t token = epoch_.fetch_add(1, std::memory_order_acq_rel) + 1;
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (grace_period_over(token)) {
        free_fn();
        return;
    }
    pending_.push_back({token, std::move(free_fn)});
    reclaim();
}

size_t QsbrDomain::reclaim() {
    size_t kept = 0;
    for (size_t i = 0; i < pending_.size(); ++i) {
        if (grace_period_over(pending_[i].token)) {
            pending_[i].free_fn();
        } else {
            pending_[kept++] = std::move(pending_[i]);
        }
    }
    pending_.resize(kept);
    return kept;
}

bool QsbrDomain::barrier(uint64_t timeout_ns) {
    const uint64_t token = epoch_.fetch_add(1, std::memory_order_acq_rel) + 1;
    std::atomic_thread_fence(std::memory_order_seq_cst);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::nanoseconds(timeout_ns);
    while (!grace_period_over(token)) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::yield();
    }
    return true;
}

void QsbrDomain::synchronize() {
    while (reclaim() != 0) std::this_thread::yield();
}

}  // namespace optgate
