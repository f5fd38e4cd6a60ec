#include "consentd/sd_notify.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>

namespace optgate::consentd {

bool sd_notify_state(std::string_view state) {
    const char* path = std::getenv("NOTIFY_SOCKET");
    if (!path || !*path) return false;
    const size_t len = std::strlen(path);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if ((path[0] != '/' && path[0] != '@') || len >= sizeof addr.sun_path) return false;
    std::memcpy(addr.sun_path, path, len);
    if (path[0] == '@') addr.sun_path[0] = '\0';  // abstract namespace
    const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    const auto addr_len = socklen_t(offsetof(sockaddr_un, sun_path) + len);
    const ssize_t n = ::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&addr),
                               addr_len);
    ::close(fd);
    return n == ssize_t(state.size());
}

}  // namespace optgate::consentd
