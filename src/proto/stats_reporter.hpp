// The control client's stats reports (the stats frame, docs/protocol.md
// "Stats"), apart from its connection loop: one report right after
// consentd's welcome, then one every interval, for as long as a connection
// lasts. The connection loop runs run() beside its reader for each
// connection and stops it before the stream goes.
//
// Everything but flush_requested()/wait_written() runs on the client's
// thread (its io_context).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "proto/wire.hpp"

namespace optgate::proto {

// Writes one whole frame on the current connection (the client serialises
// its writers); throws what the write throws.
using SendFrame = std::function<boost::asio::awaitable<void>(const std::string&)>;

class StatsReporter {
public:
    using Source = std::function<void(std::vector<StatEntry>&)>;

    // `own` adds the client's own entries (control_*, table_*), after the
    // source's; `log` takes one line.
    StatsReporter(boost::asio::io_context& io, Source own, std::function<void(const std::string&)> log);

    // The program's source and the interval (0: no reports). Takes effect
    // at once: a report with the new source goes now.
    void set_source(Source fn, std::chrono::milliseconds interval);

    // ---- one connection ----
    // Before run() is spawned (so that a stop() that comes before run()
    // starts is not forgotten).
    void connection_started();
    // Reports until stop(); throws when a write fails.
    boost::asio::awaitable<void> run(SendFrame send);
    // consentd welcomed us: the first report goes now.
    void welcomed();
    // The connection is over: run() returns at its next wait.
    void stop();
    // A report went out on this connection.
    bool sent() const noexcept { return sent_; }
    // consentd refused the frame (it predates it): no more reports until
    // this process restarts. Logged once.
    void refused();
    bool is_refused() const noexcept { return refused_; }

    // ---- flush_stats (any thread) ----
    // A report is wanted now: returns its generation; wake() it on the
    // client's thread, then wait_written().
    uint64_t flush_requested();
    void wake();
    bool wait_written(uint64_t generation, std::chrono::milliseconds timeout);

private:
    void build();

    Source own_, source_;
    std::function<void(const std::string&)> log_;
    std::chrono::milliseconds interval_{1000};
    boost::asio::steady_timer timer_;
    bool stop_ = false, welcomed_ = false, sent_ = false, refused_ = false;
    std::vector<StatEntry> entries_;
    std::string frame_, problem_;

    // Requested and written reports, by generation.
    std::mutex mu_;
    std::condition_variable cv_;
    uint64_t flush_gen_ = 0, written_gen_ = 0;
};

}  // namespace optgate::proto
