#include "dataplane/metrics_server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string_view>

namespace optgate::dataplane {

namespace {

// A request's whole header must arrive within this much time and size.
constexpr auto kDeadline = std::chrono::seconds(5);
constexpr size_t kMaxRequestBytes = 8192;

using Clock = std::chrono::steady_clock;

int remaining_ms(Clock::time_point deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    return left > 0 ? int(left) : 0;
}

// Waits until `fd` is ready for `events`, the deadline passes or the
// server stops; true only in the first case.
bool wait_for(int fd, short events, int stop_fd, Clock::time_point deadline) {
    for (;;) {
        pollfd p[2] = {{fd, events, 0}, {stop_fd, POLLIN, 0}};
        const int ms = remaining_ms(deadline);
        if (ms == 0) return false;
        const int n = ::poll(p, 2, ms);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0 || p[1].revents) return false;
        return true;
    }
}

std::string response(std::string_view status, std::string_view extra_headers, std::string_view content_type,
                     const std::string& body, bool head) {
    std::string out;
    out.append("HTTP/1.1 ").append(status).append("\r\n");
    out.append("Content-Type: ").append(content_type).append("\r\n");
    out.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n");
    out.append(extra_headers);
    out.append("Connection: close\r\n\r\n");
    if (!head) out.append(body);
    return out;
}

std::string error(std::string_view status, std::string_view extra_headers = {}) {
    return response(status, extra_headers, "text/plain; charset=utf-8", std::string(status) + "\n", false);
}

bool is_token(std::string_view s) {
    if (s.empty()) return false;
    for (char c : s)
        if (c < 'A' || c > 'Z') return false;
    return true;
}

}  // namespace

MetricsServer::MetricsServer(const std::string& address, uint16_t port, Render render) : render_(std::move(render)) {
    sockaddr_storage ss{};
    socklen_t len = 0;
    auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
    if (::inet_pton(AF_INET, address.c_str(), &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        len = sizeof *v4;
    } else if (::inet_pton(AF_INET6, address.c_str(), &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        len = sizeof *v6;
    } else {
        throw std::runtime_error("metrics address '" + address + "' is not an IPv4 or IPv6 address");
    }
    const std::string where = (ss.ss_family == AF_INET6 ? "[" + address + "]" : address) + ":" + std::to_string(port);
    listen_fd_ = ::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (listen_fd_ < 0) throw std::runtime_error("metrics: socket: " + std::string(std::strerror(errno)));
    const int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&ss), len) != 0 || ::listen(listen_fd_, 16) != 0) {
        const std::string why = std::strerror(errno);
        ::close(listen_fd_);
        throw std::runtime_error("metrics: cannot listen on " + where + ": " + why);
    }
    sockaddr_storage bound{};
    socklen_t bound_len = sizeof bound;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&bound), &bound_len);
    port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                              : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
    stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (stop_fd_ < 0) {
        ::close(listen_fd_);
        throw std::runtime_error("metrics: eventfd: " + std::string(std::strerror(errno)));
    }
    thread_ = std::thread([this] { serve(); });
}

MetricsServer::~MetricsServer() {
    const uint64_t one = 1;
    [[maybe_unused]] const auto n = ::write(stop_fd_, &one, sizeof one);
    thread_.join();
    ::close(stop_fd_);
    ::close(listen_fd_);
}

void MetricsServer::serve() noexcept {
    for (;;) {
        pollfd p[2] = {{listen_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
        if (::poll(p, 2, -1) < 0 && errno != EINTR) return;
        if (p[1].revents) return;
        if (!(p[0].revents & POLLIN)) continue;
        const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) continue;  // the client gave up, or out of descriptors: the next poll retries
        try {
            answer(fd);
        } catch (const std::exception&) {
            // Out of memory rendering: this scrape fails, the next may not.
        }
        ::close(fd);
    }
}

void MetricsServer::answer(int fd) {
    const auto deadline = Clock::now() + kDeadline;
    std::string request;
    size_t header_end = std::string::npos;
    char buf[2048];
    while (header_end == std::string::npos) {
        if (request.size() >= kMaxRequestBytes) break;
        if (!wait_for(fd, POLLIN, stop_fd_, deadline)) return;  // too slow: closed without an answer
        const ssize_t n = ::recv(fd, buf, std::min(sizeof buf, kMaxRequestBytes - request.size()), 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (n <= 0) return;
        request.append(buf, size_t(n));
        header_end = request.find("\r\n\r\n");
    }
    std::string out;
    if (header_end == std::string::npos) {
        out = error("431 Request Header Fields Too Large");
    } else {
        // "METHOD SP TARGET SP HTTP/1.x" (RFC 9112 section 3).
        const std::string_view line = std::string_view(request).substr(0, request.find("\r\n"));
        const size_t sp1 = line.find(' ');
        const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
        const std::string_view method = line.substr(0, sp1);
        const std::string_view target = sp2 == std::string_view::npos ? "" : line.substr(sp1 + 1, sp2 - sp1 - 1);
        const std::string_view version = sp2 == std::string_view::npos ? "" : line.substr(sp2 + 1);
        if (!is_token(method) || !target.starts_with('/') || target.find(' ') != std::string_view::npos ||
            (version != "HTTP/1.1" && version != "HTTP/1.0"))
            out = error("400 Bad Request");
        else if (method != "GET" && method != "HEAD")
            out = error("405 Method Not Allowed", "Allow: GET, HEAD\r\n");
        else if (target.substr(0, target.find('?')) != "/metrics")
            out = error("404 Not Found");
        else
            out = response("200 OK", {}, "text/plain; version=0.0.4; charset=utf-8", render_(), method == "HEAD");
    }
    for (size_t sent = 0; sent < out.size();) {
        if (!wait_for(fd, POLLOUT, stop_fd_, deadline)) return;
        const ssize_t n = ::send(fd, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (n <= 0) return;
        sent += size_t(n);
    }
    // Closing with unread request bytes (a refused oversized header) would
    // reset the connection and may lose the answer: read them first, a
    // bounded amount within the deadline.
    ::shutdown(fd, SHUT_WR);
    for (size_t drained = 0; drained < 4 * kMaxRequestBytes;) {
        if (!wait_for(fd, POLLIN, stop_fd_, deadline)) return;
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (n <= 0) return;
        drained += size_t(n);
    }
}

}  // namespace optgate::dataplane
