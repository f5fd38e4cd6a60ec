// The control client's disclosure reports (the disclosure frame,
// docs/protocol.md "Disclosures"), apart from its connection loop:
//
//  - every interval the source fills a DisclosureBatch (the core's drain),
//    which becomes one or more reports, each with this client's `reporter`
//    (random per start) and the next `seq` (from 1);
//  - reports wait in a bounded queue (queue_bytes of encoded frames): past
//    it the oldest report is dropped and counted, never a wait, never more
//    memory;
//  - while a connection has consentd's table, reports go out in order, at
//    most kMaxDisclosuresInFlight unacknowledged at a time; one not
//    acknowledged within resend_after goes again on the same connection
//    (consentd could not store it), and after a reconnect every
//    unacknowledged report goes again, in order;
//  - a report is forgotten only on its disclosure-ack (or dropped when the
//    queue is full);
//  - a consentd that refuses the frame (an older version, or one without a
//    disclosure store) gets none while its stream id stays the one it had.
//
// Everything but flush_requested()/wait_flushed()/counts() runs on the
// client's thread (its io_context).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "core/disclosure_report.hpp"
#include "proto/stats_reporter.hpp"
#include "proto/wire.hpp"

namespace optgate::proto {

class DisclosureReporter {
public:
    using Source = std::function<void(DisclosureBatch&)>;

    struct Counts {
        uint64_t sent = 0;     // report frames handed to the connection (resends included)
        uint64_t acked = 0;    // reports consentd acknowledged
        uint64_t pending = 0;  // reports kept, not acknowledged yet
        uint64_t dropped = 0;  // reports dropped unacknowledged from the full queue
        uint64_t pending_bytes = 0;
    };

    DisclosureReporter(boost::asio::io_context& io, size_t queue_bytes, std::chrono::milliseconds resend_after,
                       std::function<void(const std::string&)> log);

    uint64_t reporter() const noexcept { return reporter_; }
    // The program's source and how often it runs (0: only flush()).
    void set_source(Source fn, std::chrono::milliseconds interval);
    bool configured() const noexcept { return bool(source_); }
    // Runs the source every interval, for the client's life; stop_draining() ends it.
    boost::asio::awaitable<void> drain_loop();
    void stop_draining();

    // ---- one connection ----
    void connection_started();  // before run() is spawned
    // Sends reports until stop(); throws when a write fails.
    boost::asio::awaitable<void> run(SendFrame send);
    // consentd's table is in place on this connection (`stream_id` is its
    // stream): reports may go.
    void synced(const std::string& stream_id);
    void on_ack(const DisclosureAck& a);
    void stop();
    // The connection ended with consentd refusing a frame. If a report was
    // sent on it and none acknowledged, the report was what it refused:
    // returns true and sends none while consentd's stream id stays this one.
    bool refused_by_peer();

    // ---- flush_disclosures (any thread but flush()) ----
    uint64_t flush_requested();
    // Client thread: drains the source once more and notes what the flush waits for.
    void flush(uint64_t generation);
    // True once every report up to the flush's drain is acknowledged (none dropped).
    bool wait_flushed(uint64_t generation, std::chrono::milliseconds timeout);

    Counts counts() const;

private:
    struct Report {
        uint64_t seq = 0;
        std::shared_ptr<const std::string> frame;
        uint64_t sent_on = 0;  // the connection it was last sent on (0: never)
        std::chrono::steady_clock::time_point sent_at;
    };

    void drain();
    bool may_send() const;
    void publish();  // counts and flush state, under mu_

    size_t queue_bytes_;
    std::chrono::milliseconds resend_after_;
    std::function<void(const std::string&)> log_;
    uint64_t reporter_;
    uint64_t next_seq_ = 1;

    Source source_;
    std::chrono::milliseconds interval_{60000};
    boost::asio::steady_timer drain_timer_;
    bool draining_stopped_ = false;

    std::deque<Report> queue_;
    size_t queued_bytes_ = 0;
    bool dropping_ = false;  // logged the current run of drops
    std::string left_out_logged_;

    // The current connection.
    boost::asio::steady_timer timer_;
    uint64_t connection_ = 0;
    bool stop_ = false, synced_ = false;
    bool unconfirmed_ = false;  // a report went out on it and no acknowledgement came yet
    std::string stream_;
    std::optional<std::string> refused_stream_;

    mutable std::mutex mu_;
    std::condition_variable cv_;
    Counts counts_;
    uint64_t oldest_pending_ = UINT64_MAX;  // seq of the oldest kept report
    bool blocked_ = false;                  // consentd refused reports: a flush cannot succeed
    uint64_t flush_gen_ = 0, drained_gen_ = 0, drain_target_ = 0, dropped_at_drain_ = 0;
};

}  // namespace optgate::proto
