// The API's HTTP/1.1 server (Boost.Beast) on the daemon's io_context:
// keep-alive, one request at a time per connection, and the limits that keep
// a client from holding the daemon:
//  - header: at most limits.max_header_bytes, complete within
//    header_timeout (which also bounds an idle keep-alive connection);
//  - body: read only after authentication, at most the endpoint's limit,
//    complete within its timeout;
//  - a response the client does not read is dropped after write_timeout;
//  - at most max_connections at once, some reserved for clients with a
//    token; a new connection reclaims the oldest one that dawdles without a
//    token, or an idle keep-alive one; with none to reclaim it is answered
//    503 with Retry-After (connection_slots.hpp, shared with the privacy
//    page; issue 17).
// A request cut off by a timeout after it began gets 408 and the connection
// closes; an idle connection just closes.
#pragma once

#include <cstdint>
#include <memory>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "consentd/api.hpp"
#include "consentd/config.hpp"
#include "consentd/connection_slots.hpp"
#include "consentd/metrics.hpp"

namespace optgate::consentd {

class HttpServer {
public:
    // Binds and listens; throws boost::system::system_error when it cannot.
    HttpServer(boost::asio::io_context& ioc, const boost::asio::ip::tcp::endpoint& at, Api& api, const Limits& limits,
               Metrics& metrics);
    ~HttpServer();
    HttpServer(const HttpServer&) = delete;
    HttpServer& operator=(const HttpServer&) = delete;

    uint16_t port() const { return listener_.port(); }
    void start() { listener_.start(); }
    void stop() { listener_.stop(); }

private:
    Api& api_;
    const Limits& limits_;
    Metrics& metrics_;
    SlottedListener listener_;
};

}  // namespace optgate::consentd
