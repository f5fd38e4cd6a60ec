#include "proto/stats_reporter.hpp"

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "proto/codec.hpp"
#include "proto/stats.hpp"

namespace optgate::proto {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

StatsReporter::StatsReporter(asio::io_context& io, Source own, std::function<void(const std::string&)> log)
    : own_(std::move(own)), log_(std::move(log)), timer_(io) {}

void StatsReporter::set_source(Source fn, std::chrono::milliseconds interval) {
    source_ = std::move(fn);
    interval_ = std::max(interval, std::chrono::milliseconds(0));
    timer_.cancel();  // report with the new source now
}

void StatsReporter::welcomed() {
    // The first report goes right after welcome: run() waits for it.
    if (!welcomed_ && !stop_) {
        welcomed_ = true;
        timer_.cancel();
    }
}

void StatsReporter::stop() {
    stop_ = true;
    timer_.cancel();
}

void StatsReporter::refused() {
    if (refused_) return;
    refused_ = true;
    log_(
        "consentd does not know the stats frame (an older version): no more stats reports until this data plane "
        "restarts");
}

uint64_t StatsReporter::flush_requested() {
    std::lock_guard lk(mu_);
    return ++flush_gen_;
}

void StatsReporter::wake() { timer_.cancel(); }

bool StatsReporter::wait_written(uint64_t generation, std::chrono::milliseconds timeout) {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, timeout, [&] { return written_gen_ >= generation; });
}

void StatsReporter::connection_started() {
    stop_ = false;
    welcomed_ = false;
    sent_ = false;
}

asio::awaitable<void> StatsReporter::run(SendFrame send) {
    while (!stop_) {
        const bool due = welcomed_ && !refused_ && interval_.count() > 0;
        if (due) {
            uint64_t gen = 0;
            {
                std::lock_guard lk(mu_);
                gen = flush_gen_;
            }
            build();
            co_await send(frame_);
            sent_ = true;
            bool flush_waiting = false;
            {
                std::lock_guard lk(mu_);
                written_gen_ = std::max(written_gen_, gen);
                flush_waiting = flush_gen_ > gen;  // asked for while this one was on its way
            }
            cv_.notify_all();
            if (flush_waiting) continue;
            timer_.expires_after(interval_);
        } else {
            timer_.expires_at(Clock::time_point::max());
        }
        boost::system::error_code ec;
        co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
}

void StatsReporter::build() {
    entries_.clear();
    std::string problem;
    if (source_) {
        try {
            source_(entries_);
        } catch (const std::exception& e) {
            problem = std::string("the stats source failed: ") + e.what();
            entries_.clear();
        }
    }
    // Our own, after the source's: on a clash the source's entry stays.
    own_(entries_);
    const size_t dropped = normalize_stats(entries_, problem);
    // Logged when the problem changes, not every second.
    if ((dropped || !problem.empty()) && problem != problem_)
        log_("stats: " + (dropped ? std::to_string(dropped) + " entries dropped: " : std::string()) + problem);
    problem_ = problem;
    frame_.clear();
    encode_stats(frame_, entries_);
}

}  // namespace optgate::proto
