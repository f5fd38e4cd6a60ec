// The connection slots of consentd's HTTP listeners (the API and the privacy
// page): one accept loop and one rule for who gets a slot (issue 17: 1,024
// idle or slowloris connections kept a legitimate client from being served
// at all, on the API and, with its own loop, on the privacy page).
//
// Every connection is listed oldest first; it is `trusted` once a request on
// it presented a valid token (the API; the page has none).
//  - Connections without a token hold at most max - reserved slots. A new
//    one beyond that reclaims the oldest untrusted connection still waiting
//    for a request header: a client that is served sends its header within
//    a round trip, so only connections that dawdle lose.
//  - With all max slots taken, the oldest connection waiting idle for its
//    next request (keep-alive, trusted or not) is reclaimed; if none is
//    idle, the new connection is answered 503 with Retry-After and closed.
// The API thread only: no locks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

namespace optgate::consentd {

// What a listener's connection tells the slots about itself.
class SlottedConnection {
public:
    virtual ~SlottedConnection() = default;
    virtual bool trusted() const = 0;
    // Waiting for a request header (slowloris included)...
    virtual bool waiting_header() const = 0;
    // ...with nothing of it yet (an idle keep-alive connection).
    virtual bool idle() const = 0;
    // Gives the slot up now and closes; the handlers in flight end it.
    virtual void reclaim() = 0;
};

class ConnectionSlots {
public:
    ConnectionSlots(size_t max, size_t reserved) : max_(max), reserved_(reserved) {}

    // A connection's place in the list, held for its lifetime: release()
    // (or the destructor) gives it back, trust() moves it to the reserved
    // share.
    class Slot {
    public:
        Slot(std::shared_ptr<ConnectionSlots> slots, SlottedConnection* c);
        ~Slot() { release(); }
        Slot(const Slot&) = delete;
        Slot& operator=(const Slot&) = delete;
        void trust();
        void release();
        bool trusted() const noexcept { return trusted_; }

    private:
        std::shared_ptr<ConnectionSlots> slots_;
        std::list<SlottedConnection*>::iterator at_;
        bool trusted_ = false, released_ = false;
    };

    // Frees a slot for a new connection if the rules allow (reclaiming one);
    // false: refuse it.
    bool make_room();
    size_t total() const noexcept { return order_.size(); }
    size_t untrusted() const noexcept { return untrusted_; }
    uint64_t reclaimed = 0, refused = 0;
    // The two counters in /metrics' text format, as `<family>_reclaimed_total`
    // and `<family>_refused_total` (consentd_http_connections for the API,
    // consentd_portal_connections for the privacy page).
    void render_metrics(std::string& out, const std::string& family) const;

private:
    size_t max_, reserved_;
    std::list<SlottedConnection*> order_;
    size_t untrusted_ = 0;
};

// The accept loop of a listener with slots: binds, accepts, gives each new
// connection a slot (make_room) and hands it to `serve`, or answers 503
// (Retry-After) and closes; backs off when accept fails (out of
// descriptors).
class SlottedListener {
public:
    using Serve = std::function<void(boost::asio::ip::tcp::socket)>;
    // Binds and listens; throws boost::system::system_error when it cannot.
    // `name` prefixes log lines ("portal").
    SlottedListener(boost::asio::io_context& ioc, const boost::asio::ip::tcp::endpoint& at, std::string name,
                    size_t max, size_t reserved, Serve serve);
    ~SlottedListener() = default;
    SlottedListener(const SlottedListener&) = delete;
    SlottedListener& operator=(const SlottedListener&) = delete;

    uint16_t port() const { return acceptor_.local_endpoint().port(); }
    void start() { accept(); }
    void stop();
    // For the connections it serves (ConnectionSlots::Slot) and metrics.
    const std::shared_ptr<ConnectionSlots>& slots() const noexcept { return slots_; }

private:
    void accept();

    boost::asio::io_context& ioc_;
    boost::asio::ip::tcp::acceptor acceptor_;
    boost::asio::steady_timer retry_;
    std::string name_;
    std::shared_ptr<ConnectionSlots> slots_;
    Serve serve_;
};

}  // namespace optgate::consentd
