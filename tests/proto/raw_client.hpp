// A bare Unix-socket peer for the protocol tests: writes whatever bytes it
// is given (malformed frames included) and reads what consentd answers, or
// never reads at all (a stalled data plane).
#pragma once

#include <doctest/doctest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>

namespace optgate::test_proto {

class RawClient {
public:
    // `rcvbuf`: a small receive buffer makes a non-reading peer stall sooner.
    explicit RawClient(const std::string& path, int rcvbuf = 0)
        : fd_(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
        REQUIRE(fd_ >= 0);
        if (rcvbuf) ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
        REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    }
    ~RawClient() {
        if (fd_ >= 0) ::close(fd_);
    }
    RawClient(const RawClient&) = delete;
    RawClient& operator=(const RawClient&) = delete;

    // False if the peer has closed.
    bool write(const std::string& bytes) {
        size_t done = 0;
        while (done < bytes.size()) {
            const ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
            if (n <= 0) return false;
            done += size_t(n);
        }
        return true;
    }

    // Reads until the peer closes or `timeout` passes; `closed` says which.
    std::string read_all(std::chrono::milliseconds timeout, bool& closed) {
        std::string got;
        closed = false;
        const auto end = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end -
                                                                                    std::chrono::steady_clock::now());
            if (left.count() <= 0) return got;
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, int(left.count())) <= 0) return got;
            char buf[65536];
            const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
            if (n <= 0) {
                closed = true;
                return got;
            }
            got.append(buf, size_t(n));
        }
    }

    // Reads until at least `n` bytes have come (or timeout / close).
    std::string read_at_least(size_t n, std::chrono::milliseconds timeout) {
        std::string got;
        const auto end = std::chrono::steady_clock::now() + timeout;
        while (got.size() < n) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end -
                                                                                    std::chrono::steady_clock::now());
            if (left.count() <= 0) break;
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, int(left.count())) <= 0) break;
            char buf[65536];
            const ssize_t n2 = ::recv(fd_, buf, sizeof buf, 0);
            if (n2 <= 0) break;
            got.append(buf, size_t(n2));
        }
        return got;
    }

private:
    int fd_ = -1;
};

}  // namespace optgate::test_proto
