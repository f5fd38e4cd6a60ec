// systemd notifications (common/systemd.hpp), received on a socket standing
// in for systemd's; the watchdog's interval from the environment systemd
// sets; and the data plane's progress condition for pinging it.
#include <doctest/doctest.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "common/systemd.hpp"
#include "fixture.hpp"

using namespace optgate;
using namespace optgate::consentd;  // test::TempDir

TEST_CASE("READY=1 reaches $NOTIFY_SOCKET") {
    test::TempDir dir;
    const std::string path = dir.file("notify");
    const int fd = ::socket(AF_UNIX, SOCK_DGRAM, 0);
    REQUIRE(fd >= 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);

    ::setenv("NOTIFY_SOCKET", path.c_str(), 1);
    CHECK(systemd::notify("READY=1"));
    char buf[64] = {};
    const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    CHECK(std::string(buf, n > 0 ? size_t(n) : 0) == "READY=1");

    ::unsetenv("NOTIFY_SOCKET");
    CHECK_FALSE(systemd::notify("READY=1"));
    ::close(fd);
}

TEST_CASE("the watchdog interval is half of WatchdogSec=, for this process only") {
    ::unsetenv("WATCHDOG_PID");
    ::setenv("WATCHDOG_USEC", "3000000", 1);
    CHECK(systemd::watchdog_interval() == std::chrono::milliseconds(1500));
    // Meant for another process of the unit (WATCHDOG_PID names it): not ours.
    ::setenv("WATCHDOG_PID", std::to_string(::getpid() + 1).c_str(), 1);
    CHECK(systemd::watchdog_interval().count() == 0);
    ::setenv("WATCHDOG_PID", std::to_string(::getpid()).c_str(), 1);
    CHECK(systemd::watchdog_interval() == std::chrono::milliseconds(1500));
    ::unsetenv("WATCHDOG_PID");
    ::unsetenv("WATCHDOG_USEC");
    CHECK(systemd::watchdog_interval().count() == 0);
}

TEST_CASE("ProgressCheck: every count must move between two looks") {
    systemd::ProgressCheck check;
    size_t stalled = 99;
    std::vector<uint64_t> counts{5, 7, 1};
    CHECK(check.advanced(counts, stalled));
    counts = {6, 8, 2};
    CHECK(check.advanced(counts, stalled));
    counts = {7, 8, 3};  // worker 1 did not move
    CHECK_FALSE(check.advanced(counts, stalled));
    CHECK(stalled == 1);
    counts = {8, 9, 4};  // it moves again: pinging resumes
    CHECK(check.advanced(counts, stalled));
    counts = {8, 9, 4};  // none moved: the first is named
    CHECK_FALSE(check.advanced(counts, stalled));
    CHECK(stalled == 0);
    // A worker that never ran (count 0) has not advanced.
    systemd::ProgressCheck fresh;
    counts = {3, 0};
    CHECK_FALSE(fresh.advanced(counts, stalled));
    CHECK(stalled == 1);
}
