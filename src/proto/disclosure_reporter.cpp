#include "proto/disclosure_reporter.hpp"

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <random>
#include <vector>

#include "proto/codec.hpp"

namespace optgate::proto {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

uint64_t random_reporter() {
    std::random_device rd;
    uint64_t r = 0;
    while (r == 0) r = uint64_t(rd()) << 32 | rd();
    return r;
}

}  // namespace

DisclosureReporter::DisclosureReporter(asio::io_context& io, size_t queue_bytes, std::chrono::milliseconds resend_after,
                                       std::function<void(const std::string&)> log)
    : queue_bytes_(queue_bytes), resend_after_(resend_after), log_(std::move(log)), reporter_(random_reporter()),
      drain_timer_(io), timer_(io) {}

void DisclosureReporter::set_source(Source fn, std::chrono::milliseconds interval) {
    source_ = std::move(fn);
    interval_ = std::max(interval, std::chrono::milliseconds(0));
    drain_timer_.cancel();  // the new interval starts now
}

asio::awaitable<void> DisclosureReporter::drain_loop() {
    while (!draining_stopped_) {
        const bool periodic = source_ && interval_.count() > 0;
        if (periodic)
            drain_timer_.expires_after(interval_);
        else
            drain_timer_.expires_at(Clock::time_point::max());
        boost::system::error_code ec;
        co_await drain_timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        if (ec || draining_stopped_) continue;  // cancelled: a new source or interval, or the end
        drain();
    }
}

void DisclosureReporter::stop_draining() {
    draining_stopped_ = true;
    drain_timer_.cancel();
}

void DisclosureReporter::drain() {
    if (!source_) return;
    DisclosureBatch batch;
    try {
        source_(batch);
    } catch (const std::exception& e) {
        log_(std::string("disclosures: the source failed: ") + e.what());
        return;
    }
    std::vector<std::string> frames;
    const size_t left_out = encode_disclosure_batch(frames, reporter_, next_seq_, batch);
    if (left_out) {
        const std::string line = "disclosures: " + std::to_string(left_out) +
                                 " entries left out (a name empty, over 255 bytes or with control characters); their "
                                 "counts go to the report's overflow";
        if (line != left_out_logged_) log_(line);
        left_out_logged_ = line;
    }
    for (auto& f : frames) {
        queued_bytes_ += f.size();
        queue_.push_back({next_seq_++, std::make_shared<const std::string>(std::move(f)), 0, {}});
    }
    // Bounded: the oldest go first. One report always stays (it fits one frame).
    uint64_t dropped = 0;
    while (queued_bytes_ > queue_bytes_ && queue_.size() > 1) {
        queued_bytes_ -= queue_.front().frame->size();
        queue_.pop_front();
        ++dropped;
    }
    if (dropped) {
        if (!dropping_)
            log_("disclosures: the queue of unacknowledged reports is full (" + std::to_string(queue_bytes_) +
                 " bytes): dropping the oldest");
        dropping_ = true;
        std::lock_guard lk(mu_);
        counts_.dropped += dropped;
    }
    publish();
    timer_.cancel();  // run() sends what came
}

bool DisclosureReporter::may_send() const {
    return synced_ && !stop_ && !(refused_stream_ && *refused_stream_ == stream_);
}

void DisclosureReporter::connection_started() {
    ++connection_;
    stop_ = false;
    synced_ = false;
    unconfirmed_ = false;
}

void DisclosureReporter::synced(const std::string& stream_id) {
    if (synced_ && stream_id == stream_) return;
    synced_ = true;
    stream_ = stream_id;
    publish();
    timer_.cancel();
}

void DisclosureReporter::stop() {
    stop_ = true;
    timer_.cancel();
}

asio::awaitable<void> DisclosureReporter::run(SendFrame send) {
    while (!stop_) {
        auto wake = Clock::time_point::max();
        if (may_send()) {
            const auto now = Clock::now();
            size_t in_flight = 0;
            Report* next = nullptr;
            for (auto& r : queue_) {
                if (r.sent_on == connection_ && now - r.sent_at < resend_after_) {
                    ++in_flight;
                    wake = std::min(wake, r.sent_at + resend_after_);
                } else if (!next) {
                    next = &r;
                }
            }
            if (next && in_flight < kMaxDisclosuresInFlight) {
                const auto frame = next->frame;  // the queue may drop it while it is written
                next->sent_on = connection_;
                next->sent_at = now;
                unconfirmed_ = true;
                {
                    // Counted before the write: consentd may store it (and
                    // a test read the count) before the write returns here.
                    std::lock_guard lk(mu_);
                    ++counts_.sent;
                }
                co_await send(*frame);
                continue;
            }
        }
        timer_.expires_at(wake);
        boost::system::error_code ec;
        co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
}

void DisclosureReporter::on_ack(const DisclosureAck& a) {
    if (a.reporter != reporter_) return;  // a previous process's report
    unconfirmed_ = false;                 // consentd takes the frame
    const auto it = std::lower_bound(queue_.begin(), queue_.end(), a.seq,
                                     [](const Report& r, uint64_t s) { return r.seq < s; });
    if (it == queue_.end() || it->seq != a.seq) return;  // acknowledged twice, or dropped meanwhile
    queued_bytes_ -= it->frame->size();
    queue_.erase(it);
    dropping_ = false;
    {
        std::lock_guard lk(mu_);
        ++counts_.acked;
    }
    publish();
    timer_.cancel();  // room in the window
}

bool DisclosureReporter::refused_by_peer() {
    if (!unconfirmed_) return false;
    refused_stream_ = stream_;
    log_(
        "consentd does not take disclosure reports (an older version, or no disclosure store): keeping them (at "
        "most " +
        std::to_string(queue_bytes_) + " bytes) and sending none while its stream id is " + stream_ +
        " (a consentd restart or a new policy changes it)");
    publish();
    return true;
}

uint64_t DisclosureReporter::flush_requested() {
    std::lock_guard lk(mu_);
    return ++flush_gen_;
}

void DisclosureReporter::flush(uint64_t generation) {
    drain();
    std::lock_guard lk(mu_);
    drained_gen_ = std::max(drained_gen_, generation);
    drain_target_ = next_seq_ - 1;
    dropped_at_drain_ = counts_.dropped;
    cv_.notify_all();
}

bool DisclosureReporter::wait_flushed(uint64_t generation, std::chrono::milliseconds timeout) {
    std::unique_lock lk(mu_);
    const bool done = cv_.wait_for(
        lk, timeout, [&] { return drained_gen_ >= generation && (oldest_pending_ > drain_target_ || blocked_); });
    return done && oldest_pending_ > drain_target_ && counts_.dropped == dropped_at_drain_;
}

void DisclosureReporter::publish() {
    std::lock_guard lk(mu_);
    counts_.pending = queue_.size();
    counts_.pending_bytes = queued_bytes_;
    oldest_pending_ = queue_.empty() ? UINT64_MAX : queue_.front().seq;
    blocked_ = refused_stream_ && *refused_stream_ == stream_;
    cv_.notify_all();
}

DisclosureReporter::Counts DisclosureReporter::counts() const {
    std::lock_guard lk(mu_);
    return counts_;
}

}  // namespace optgate::proto
