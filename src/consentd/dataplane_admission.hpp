// Connections to consentd's data-plane listeners before they are data planes
// (docs/protocol.md, "Limits before hello"; issue 17: 2,100 connections that
// never began a TLS handshake took every descriptor, and the API with them).
//
//  - TCP connections without a hello yet (TLS handshake included) are
//    "pending": at most max_pending at once, like nginx's worker_connections
//    or HAProxy's maxconn: at the cap the listener stops accepting and the
//    excess waits in the kernel's listen backlog, costing consentd neither a
//    descriptor nor memory; it accepts again as soon as one pending
//    connection says hello, fails or times out (handshake_timeout,
//    hello_timeout).
//  - At most max_pending_per_address of them from one address (an IPv6 /64),
//    like HAProxy's `tcp-request connection reject if { src_conn_cur ge N }`:
//    beyond it a connection is closed as soon as it is accepted. One host
//    cannot fill the pending places, so data planes elsewhere still connect.
//  - Refusals before hello are counted by reason (the publisher's
//    consentd_dataplane_connections_refused_total) and logged at most once
//    per log interval: the first at once, the rest as one line with counts.
//  - Memory: once a burst of pending connections is gone, the allocator is
//    asked to return its free pages to the system (malloc_trim).
// The Unix socket's peers are not counted: who may connect there is who may
// open the file. All on the io thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/steady_timer.hpp>

#include "consentd/metrics.hpp"
#include "consentd/publisher.hpp"

namespace optgate::consentd {

class DataPlaneAdmission : public std::enable_shared_from_this<DataPlaneAdmission> {
public:
    // `max_pending`: the cap in force (DataPlaneServer sizes it from
    // RLIMIT_NOFILE); the per-address cap comes from the publisher's config.
    DataPlaneAdmission(Publisher& publisher, size_t max_pending,
                       std::chrono::milliseconds log_interval = std::chrono::seconds(10));
    ~DataPlaneAdmission() = default;
    DataPlaneAdmission(const DataPlaneAdmission&) = delete;
    DataPlaneAdmission& operator=(const DataPlaneAdmission&) = delete;
    DataPlaneAdmission(DataPlaneAdmission&&) = delete;
    DataPlaneAdmission& operator=(DataPlaneAdmission&&) = delete;

    // A pending place, held by a session until hello or close.
    class Ticket {
    public:
        Ticket(std::shared_ptr<DataPlaneAdmission> owner, std::string source);
        ~Ticket() { release(); }
        Ticket(const Ticket&) = delete;
        Ticket& operator=(const Ticket&) = delete;
        void release();

    private:
        std::shared_ptr<DataPlaneAdmission> owner_;
        std::string source_;
    };

    // A place for a connection from `peer`, or null when its address holds
    // max_pending_per_address already (counted and logged: close it).
    std::unique_ptr<Ticket> admit(const boost::asio::ip::address& peer);
    // The listener stops accepting while this holds.
    bool full() const noexcept { return pending_ >= max_pending_; }
    size_t max_pending() const noexcept { return max_pending_; }
    // Called (on the io thread) each time a place frees while full() was
    // true at the last accept; the listener resumes accepting.
    void on_room(std::function<void()> f) { on_room_ = std::move(f); }
    // A connection closed before it became a data plane: counted; logged now
    // if it is the first in this interval, else summed up at its end.
    void refused(DataPlaneRefusal why, const std::string& peer, const std::string& detail);
    // A TLS handshake that failed (bad or no certificate): the same, counted
    // in consentd_dataplane_tls_failures_total.
    void tls_failed(const std::string& peer, const std::string& detail);
    // Logs what is left to sum up and stops the timer.
    void stop();

private:
    void release(const std::string& source);
    void note(size_t kind, const std::string& line);
    void flush();

    Publisher& publisher_;
    size_t max_pending_, per_address_;
    size_t pending_ = 0;
    std::unordered_map<std::string, size_t> by_source_;
    std::function<void()> on_room_;
    // Rate-limited log: refusals (by reason, then TLS failures) since the
    // interval's first line, which was logged in full.
    static constexpr size_t kKinds = kDataPlaneRefusals + 1;
    std::chrono::milliseconds log_interval_;
    boost::asio::steady_timer log_timer_;
    bool logging_window_ = false;
    size_t suppressed_[kKinds] = {};
    // Closed since the allocator was last trimmed.
    size_t closed_since_trim_ = 0;
};

}  // namespace optgate::consentd
