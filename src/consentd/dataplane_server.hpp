// consentd's listeners for data planes (docs/protocol.md, "Security"):
//  - a Unix socket (dataplanes.socket), created with dataplanes.socket_mode:
//    who may connect is who may open that file. A stale socket file from a
//    previous run is replaced; one another process still listens on is not.
//  - optionally TCP: plain on a loopback address only; elsewhere mutual TLS
//    (the config refuses anything else, and so does start()). Connections
//    without a hello yet are capped, in all and per address
//    (dataplane_admission.hpp): at max_pending the listener stops accepting
//    and the excess waits in the kernel's backlog.
// Descriptors (issue 17: the data-plane port must never starve the API): at
// start the soft RLIMIT_NOFILE is raised to the hard limit, and max_pending
// is lowered if the limit cannot hold, beside the descriptors open now and
// the `reserved` ones (the API's and the portal's connections), 64 spare,
// max_dataplanes data planes and max_pending pending connections; a warning
// says so. The data-plane port then holds at most max_pending +
// max_dataplanes descriptors (and those closing, a second at most).
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

#include "consentd/dataplane_admission.hpp"
#include "consentd/publisher.hpp"

namespace optgate::consentd {

class DataPlaneServer {
public:
    DataPlaneServer(boost::asio::io_context& ioc, Publisher& publisher);
    ~DataPlaneServer();
    DataPlaneServer(const DataPlaneServer&) = delete;
    DataPlaneServer& operator=(const DataPlaneServer&) = delete;

    // Binds and listens on what the publisher's config names; throws
    // std::runtime_error saying what and why when it cannot. `reserved`:
    // descriptors the other listeners may hold at most.
    void start(size_t reserved = 0);
    // Stops accepting and removes the socket file.
    void stop();

    std::optional<uint16_t> tcp_port() const;
    // The pending cap in force (after RLIMIT_NOFILE), once started.
    size_t max_pending() const { return admission_ ? admission_->max_pending() : 0; }
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
    std::shared_ptr<DataPlaneAdmission> admission_;
    bool paused_ = false;  // TCP accepts wait for a pending place (admission_->full())
};

}  // namespace optgate::consentd
