// The readiness datagram, received on a socket standing in for systemd's.
#include <doctest/doctest.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "consentd/sd_notify.hpp"
#include "fixture.hpp"

using namespace optgate::consentd;

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
    CHECK(sd_notify_state("READY=1"));
    char buf[64] = {};
    const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    CHECK(std::string(buf, n > 0 ? size_t(n) : 0) == "READY=1");

    ::unsetenv("NOTIFY_SOCKET");
    CHECK_FALSE(sd_notify_state("READY=1"));
    ::close(fd);
}
