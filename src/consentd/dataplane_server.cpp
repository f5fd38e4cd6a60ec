#include "consentd/dataplane_server.hpp"

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

}  // namespace

void DataPlaneServer::start() {
    const DataPlaneConfig& c = publisher_.config();
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
        start_session(std::move(s), publisher_);
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
        if (tls_)
            start_session(std::move(s), *tls_, publisher_);
        else
            start_session(std::move(s), publisher_);
        accept_tcp();
    });
}

}  // namespace optgate::consentd
