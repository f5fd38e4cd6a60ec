// The privacy page's own listener (docs/portal.md): HTTP/1.1, or HTTPS with
// portal.tls, on the daemon's io_context. Small requests only (a form is a
// few hundred bytes): header and body within 16 KiB, received within 10 s;
// a response the browser does not read is dropped after 30 s; at most 512
// connections, with the API's rules for them (connection_slots.hpp): one
// that has not sent its request header yet, or an idle keep-alive one, is
// reclaimed for a new one; with none to reclaim the new one gets 503 with
// Retry-After.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>

#include "consentd/api.hpp"
#include "consentd/connection_slots.hpp"
#include "consentd/metrics.hpp"
#include "consentd/portal.hpp"

namespace optgate::consentd {

// A TLS server context from the portal's certificate chain and key (TLS 1.2
// or later); throws std::runtime_error naming the file that does not load.
boost::asio::ssl::context make_portal_tls(const PortalTls& files);

class PortalServer {
public:
    static constexpr int kMaxConnections = 512;

    // Binds and listens; throws boost::system::system_error when it cannot.
    // Its slots' counters go to `metrics` (consentd_portal_connections_*)
    // until it is destroyed.
    PortalServer(boost::asio::io_context& ioc, const boost::asio::ip::tcp::endpoint& at, Portal& portal,
                 std::optional<boost::asio::ssl::context> tls, Metrics& metrics);
    ~PortalServer();
    PortalServer(const PortalServer&) = delete;
    PortalServer& operator=(const PortalServer&) = delete;

    uint16_t port() const { return listener_.port(); }
    void start() { listener_.start(); }
    void stop() { listener_.stop(); }
    // Connections reclaimed for newer ones, and answered 503.
    uint64_t reclaimed() const { return listener_.slots()->reclaimed; }
    uint64_t refused() const { return listener_.slots()->refused; }

private:
    void serve(boost::asio::ip::tcp::socket socket);

    Portal& portal_;
    std::optional<boost::asio::ssl::context> tls_;
    Metrics& metrics_;
    SlottedListener listener_;
};

// The portal as consentd runs it (main.cpp): the signed-link issuer (handed
// to the API), the page and its listener, built from the config. Throws
// std::exception (policy::PolicyError for the texts file) when something
// does not load or cannot listen.
struct PortalDaemon {
    PortalDaemon(boost::asio::io_context& ioc, LedgerService& service, Publisher* publisher, const Config& config,
                 Api& api, Metrics& metrics);
    std::optional<PortalLinks> links;
    Portal portal;
    PortalServer server;
};

// Loads the portal's files (TLS, texts) as PortalDaemon would; "" when they
// load, else why not (consentd --check-config and start).
std::string check_portal_files(const PortalConfig& c);

}  // namespace optgate::consentd
