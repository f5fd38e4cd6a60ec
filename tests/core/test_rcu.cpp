// QSBR: the barrier a data plane waits on before acknowledging a change.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "core/rcu.hpp"

using namespace optgate;

namespace {
constexpr uint64_t kMs = 1000000ull;
}

TEST_CASE("barrier waits for every online reader to pass a quiescent point") {
    QsbrDomain rcu;
    const auto reader = rcu.register_reader();  // online, inside a "burst"
    CHECK_FALSE(rcu.barrier(20 * kMs));         // never quiescent: times out

    std::atomic<bool> go{false};
    std::thread t([&] {
        while (!go.load()) std::this_thread::yield();
        rcu.quiescent(reader);
    });
    go = true;
    CHECK(rcu.barrier(5000 * kMs));
    t.join();

    rcu.offline(reader);  // an idle worker holds nothing
    CHECK(rcu.barrier(0));
    rcu.unregister_reader(reader);
}

TEST_CASE("barrier with no readers returns at once") {
    QsbrDomain rcu;
    CHECK(rcu.barrier(0));
}

TEST_CASE("a quiescent point before the barrier does not count") {
    QsbrDomain rcu;
    const auto reader = rcu.register_reader();
    rcu.quiescent(reader);              // before the write: does not count
    CHECK_FALSE(rcu.barrier(5 * kMs));  // the barrier starts a new epoch
    std::thread t([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        rcu.quiescent(reader);  // during the barrier: counts
    });
    CHECK(rcu.barrier(5000 * kMs));
    t.join();
    rcu.unregister_reader(reader);
}
