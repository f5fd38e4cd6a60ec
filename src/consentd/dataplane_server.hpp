// consentd's listeners for data planes (docs/protocol.md, "Security"):
//  - a Unix socket (dataplanes.socket), created with dataplanes.socket_mode:
//    who may connect is who may open that file. A stale socket file from a
//    previous run is replaced; one another process still listens on is not.
//  - optionally TCP: plain on a loopback address only; elsewhere mutual TLS
//    (the config refuses anything else, and so does start()).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "consentd/publisher.hpp"

namespace optgate::consentd {

class DataPlaneServer {
public:
    DataPlaneServer(boost::asio::io_context& ioc, Publisher& publisher);
    ~DataPlaneServer();
    DataPlaneServer(const DataPlaneServer&) = delete;
    DataPlaneServer& operator=(const DataPlaneServer&) = delete;

    // Binds and listens on what the publisher's config names; throws
    // std::runtime_error saying what and why when it cannot.
    void start();
    // Stops accepting and removes the socket file.
    void stop();

    std::optional<uint16_t> tcp_port() const;
    // "unix PATH, tcp ADDR:PORT (mutual TLS)" for the log.
    std::string describe() const;

private:
    void accept_unix();
    void accept_tcp();

    boost::asio::io_context& ioc_;
    Publisher& publisher_;
    std::optional<boost::asio::local::stream_protocol::acceptor> unix_;
    std::optional<boost::asio::ip::tcp::acceptor> tcp_;
    std::optional<boost::asio::ssl::context> tls_;
    boost::asio::steady_timer retry_;  // after an accept error (out of descriptors)
    std::string socket_path_;          // set while we own the file
};

}  // namespace optgate::consentd
