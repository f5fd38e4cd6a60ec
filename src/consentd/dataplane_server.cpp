#include "consentd/dataplane_server.hpp"

#include <sys/resource.h>
#include <sys/stat.h>

#include <boost/asio/ip/address.hpp>

#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "consentd/dataplane_session.hpp"
#include "consentd/log.hpp"
#include "proto/endpoint.hpp"
#include "proto/tls.hpp"

namespace optgate::consentd {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using local = asio::local::stream_protocol;
using tcp = asio::ip::tcp;

DataPlaneServer::DataPlaneServer(asio::io_context& ioc, Publisher& publisher)
    : ioc_(ioc), publisher_(publisher), retry_(ioc) {}

DataPlaneServer::~DataPlaneServer() {
    try {
        stop();
    } catch (...) {
        // A destructor must not throw; the sockets close with their objects anyway.
    }
}

namespace {

// Removes a socket file left by a consentd that is gone; refuses to touch a
// live one or anything that is not a socket.
void clear_stale_socket(const std::string& path) {
    std::error_code ec;
    const auto st = fs::symlink_status(path, ec);
    if (ec || !fs::exists(st)) return;
    if (!fs::is_socket(st)) throw std::runtime_error(path + " exists and is not a socket; not replacing it");
    asio::io_context probe;
    local::socket s(probe);
    boost::system::error_code bec;
    s.connect(local::endpoint(path), bec);
    if (!bec) throw std::runtime_error("another process is listening on " + path);
    fs::remove(path, ec);
}

// Raises the soft descriptor limit to the hard one and returns it.
size_t descriptor_limit() {
    rlimit rl{};
    if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return SIZE_MAX;
    if (rl.rlim_cur < rl.rlim_max) {
        rlimit up = rl;
        up.rlim_cur = rl.rlim_max;
        if (::setrlimit(RLIMIT_NOFILE, &up) == 0) rl = up;
    }
    return rl.rlim_cur == RLIM_INFINITY ? SIZE_MAX : size_t(rl.rlim_cur);
}

size_t open_descriptors() {
    std::error_code ec;
    size_t n = 0;
    for (fs::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end; it.increment(ec)) ++n;
    return n;
}

// Database, logs, the history threads' connections, a RADIUS socket...
constexpr size_t kSpareDescriptors = 64;

// The pending cap RLIMIT_NOFILE allows (docs/protocol.md, "Limits before hello").
size_t pending_cap(const DataPlaneConfig& c, size_t reserved) {
    const size_t limit = descriptor_limit();
    const size_t taken = open_descriptors() + reserved + kSpareDescriptors + c.max_dataplanes;
    const size_t room = limit > taken ? limit - taken : 0;
    if (room >= c.max_pending) return c.max_pending;
    const size_t cap = std::max<size_t>(room, 1);
    log_warning("data planes: RLIMIT_NOFILE (" + std::to_string(limit) + ") leaves room for " + std::to_string(cap) +
                " pending connections, not dataplanes.max_pending (" + std::to_string(c.max_pending) + "), beside " +
                std::to_string(taken) + " for the API, the portal, max_dataplanes and what is open; raise LimitNOFILE");
    return cap;
}

}  // namespace

void DataPlaneServer::start(size_t reserved) {
    const DataPlaneConfig& c = publisher_.config();
    admission_ = std::make_shared<DataPlaneAdmission>(publisher_, c.tcp ? pending_cap(c, reserved) : c.max_pending);
    admission_->on_room([this] {
        if (!paused_ || !tcp_ || !tcp_->is_open()) return;
        paused_ = false;
        accept_tcp();
    });
    if (!c.socket.empty()) {
        const fs::path dir = fs::path(c.socket).parent_path();
        std::error_code ec;
        if (!dir.empty() && !fs::exists(dir, ec)) {
            fs::create_directories(dir, ec);
            if (ec)
                throw std::runtime_error("cannot create " + dir.string() + " for " + c.socket + ": " + ec.message());
            ::chmod(dir.c_str(), 0755);
        }
        clear_stale_socket(c.socket);
        try {
            unix_.emplace(ioc_);
            const local::endpoint ep(c.socket);
            unix_->open(ep.protocol());
            unix_->bind(ep);
            socket_path_ = c.socket;
            unix_->listen();
        } catch (const boost::system::system_error& e) {
            throw std::runtime_error("cannot listen on " + c.socket + ": " + e.code().message());
        }
        if (::chmod(c.socket.c_str(), c.socket_mode) != 0)
            throw std::runtime_error("cannot set the permissions of " + c.socket + ": " + std::strerror(errno));
        accept_unix();
    }
    if (c.tcp) {
        proto::Endpoint ep;
        ep.kind = proto::Endpoint::Kind::tcp;
        ep.host = c.tcp->address;
        if (!c.tcp->tls && !ep.is_loopback())
            throw std::runtime_error("a data-plane listener on " + c.tcp->address + " needs mutual TLS");
        if (c.tcp->tls) tls_.emplace(proto::make_server_tls(*c.tcp->tls));
        try {
            boost::system::error_code aec;
            const auto addr = asio::ip::make_address(c.tcp->address, aec);
            if (aec) throw std::runtime_error("'" + c.tcp->address + "' is not an IP address");
            const tcp::endpoint at(addr, c.tcp->port);
            tcp_.emplace(ioc_);
            tcp_->open(at.protocol());
            tcp_->set_option(tcp::acceptor::reuse_address(true));
            tcp_->bind(at);
            tcp_->listen();
        } catch (const boost::system::system_error& e) {
            throw std::runtime_error("cannot listen on " + c.tcp->address + ":" + std::to_string(c.tcp->port) + ": " +
                                     e.code().message());
        }
        accept_tcp();
    }
}

void DataPlaneServer::stop() {
    boost::system::error_code ec;
    retry_.cancel();
    if (admission_) admission_->stop();
    if (unix_) unix_->close(ec);
    if (tcp_) tcp_->close(ec);
    if (!socket_path_.empty()) {
        std::error_code fec;
        fs::remove(socket_path_, fec);
        socket_path_.clear();
    }
}

std::optional<uint16_t> DataPlaneServer::tcp_port() const {
    if (!tcp_ || !tcp_->is_open()) return std::nullopt;
    return tcp_->local_endpoint().port();
}

std::string DataPlaneServer::describe() const {
    std::string d;
    if (unix_) d = "unix " + publisher_.config().socket;
    if (tcp_) {
        if (!d.empty()) d += ", ";
        const auto ep = tcp_->local_endpoint();
        d += "tcp " + ep.address().to_string() + ":" + std::to_string(ep.port()) + (tls_ ? " (mutual TLS)" : "");
    }
    return d;
}

void DataPlaneServer::accept_unix() {
    unix_->async_accept([this](boost::system::error_code ec, local::socket s) {
        if (ec == asio::error::operation_aborted || !unix_->is_open()) return;
        if (ec) {
            log_warning("data planes: accept on " + publisher_.config().socket + ": " + ec.message());
            retry_.expires_after(std::chrono::milliseconds(100));
            retry_.async_wait([this](boost::system::error_code e) {
                if (!e) accept_unix();
            });
            return;
        }
        start_session(std::move(s), publisher_, admission_);
        accept_unix();
    });
}

void DataPlaneServer::accept_tcp() {
    tcp_->async_accept([this](boost::system::error_code ec, tcp::socket s) {
        if (ec == asio::error::operation_aborted || !tcp_->is_open()) return;
        if (ec) {
            log_warning("data planes: accept on TCP: " + ec.message());
            retry_.expires_after(std::chrono::milliseconds(100));
            retry_.async_wait([this](boost::system::error_code e) {
                if (!e) accept_tcp();
            });
            return;
        }
        boost::system::error_code pec;
        const auto peer = s.remote_endpoint(pec);
        if (pec) {  // gone already
            accept_tcp();
            return;
        }
        auto ticket = admission_->admit(peer.address());
        if (!ticket) {  // its address has max_pending_per_address pending: closed at once
            s.close(pec);
            accept_tcp();
            return;
        }
        if (tls_)
            start_session(std::move(s), *tls_, publisher_, admission_, std::move(ticket));
        else
            start_session(std::move(s), publisher_, admission_, std::move(ticket));
        // At the cap the rest wait in the kernel's backlog, costing nothing
        // here; a place that frees resumes accepting (on_room).
        if (admission_->full()) {
            paused_ = true;
            return;
        }
        accept_tcp();
    });
}

}  // namespace optgate::consentd
