// ?wait=enforced (docs/consentd.md, "Waiting for enforcement"): API writes
// answered once every data plane connected when the wait began has
// acknowledged the write's seq (or has disconnected), or at the timeout,
// with who applied what and when (EnforcementReport).
//
// Owned by the Publisher and used on the io thread only (not thread-safe):
// the publisher starts waits with the data planes it has, and tells it of
// every acknowledgement and disconnection; the timeouts are timers on the
// same io_context, and every `done` is called there. Reads the commit
// history for the time from the durable commit to the last acknowledgement.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/object.hpp>

#include "consentd/commit_history.hpp"

namespace optgate::consentd {

struct EnforcementReport {
    enum class Status : uint8_t { enforced, timeout, no_dataplanes };
    Status status = Status::no_dataplanes;
    uint64_t seq = 0;
    // From the API's durable acknowledgement (when the wait began) to the
    // last data plane's acknowledgement, or to the timeout; 0 when every
    // data plane had acknowledged before the API answered.
    double latency_ms = 0;
    // From the durable commit (handed to the publisher) to the last
    // acknowledgement; absent if the commit left the history.
    std::optional<double> since_commit_ms;
    struct PerDataPlane {
        std::string name, address;
        std::string instance;  // another consentd's (its name), or empty: this one's
        bool acknowledged = false;
        bool disconnected = false;
        double latency_ms = 0;  // acknowledged: when
        uint64_t applied_seq = 0;
    };
    std::vector<PerDataPlane> dataplanes;
    boost::json::object to_json() const;
};

class EnforcementWaiters {
public:
    using Clock = std::chrono::steady_clock;

    // A data plane connected (hello received) when a wait begins.
    struct DataPlane {
        uint64_t id = 0;
        std::string name, address;
        std::string instance;  // connected to another consentd of the ledger (its name); empty: to this one
        uint64_t applied_seq = 0;
        Clock::time_point acked_at;  // when applied_seq last advanced
    };

    EnforcementWaiters(boost::asio::io_context& ioc, const CommitHistory& history) : ioc_(ioc), history_(history) {}

    // Calls done once every one of `dataplanes` has acknowledged `seq` (or
    // has disconnected), or at the timeout; never from inside this call.
    void wait(uint64_t seq, const std::vector<DataPlane>& dataplanes, std::chrono::milliseconds timeout,
              std::function<void(EnforcementReport)> done);
    // Data plane `id` has acknowledged up to `applied_seq` (it only grows).
    void acknowledged(uint64_t id, uint64_t applied_seq);
    // Data plane `id` is gone: no wait waits for it any longer.
    void disconnected(uint64_t id);
    // Answers every wait "timeout" (consentd is stopping).
    void stop();

    // Waits answered, by status (for GET /metrics).
    uint64_t answered(EnforcementReport::Status s) const noexcept { return answered_[size_t(s)]; }

private:
    struct Waiter {
        uint64_t id = 0;
        uint64_t seq = 0;
        Clock::time_point start;
        struct Row {
            uint64_t dp_id = 0;
            bool pending = false;
            Clock::time_point acked_at;
            uint64_t latest_applied = 0;  // while pending: what it has acknowledged so far
            EnforcementReport::PerDataPlane report;
        };
        std::vector<Row> rows;
        size_t pending = 0;
        std::function<void(EnforcementReport)> done;
        std::unique_ptr<boost::asio::steady_timer> timer;
    };

    // `applied_seq`: set for an acknowledgement, unset for a disconnection.
    void settle(uint64_t dp_id, std::optional<uint64_t> applied_seq);
    void finish(uint64_t waiter_id, EnforcementReport::Status status);

    boost::asio::io_context& ioc_;
    const CommitHistory& history_;
    std::map<uint64_t, Waiter> waiters_;
    uint64_t next_waiter_ = 1;
    uint64_t answered_[3] = {};  // by Status
};

}  // namespace optgate::consentd
