#include "consentd/enforcement_waiters.hpp"

#include <boost/asio/post.hpp>
#include <boost/json/array.hpp>

#include <algorithm>

namespace optgate::consentd {

namespace asio = boost::asio;

namespace {

double ms_between(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
}

}  // namespace

boost::json::object EnforcementReport::to_json() const {
    boost::json::object o;
    o["status"] = status == Status::enforced ? "enforced" : status == Status::timeout ? "timeout" : "no_dataplanes";
    o["seq"] = seq;
    o["latency_ms"] = latency_ms;
    if (since_commit_ms) o["since_commit_ms"] = *since_commit_ms;
    boost::json::array rows;
    for (const auto& r : dataplanes) {
        boost::json::object j;
        j["name"] = r.name;
        j["address"] = r.address;
        if (!r.instance.empty()) j["instance"] = r.instance;
        j["acknowledged"] = r.acknowledged;
        j["disconnected"] = r.disconnected;
        if (r.acknowledged) j["latency_ms"] = r.latency_ms;
        j["applied_seq"] = r.applied_seq;
        rows.emplace_back(std::move(j));
    }
    o["dataplanes"] = std::move(rows);
    return o;
}

void EnforcementWaiters::wait(uint64_t seq, const std::vector<DataPlane>& dataplanes, std::chrono::milliseconds timeout,
                              std::function<void(EnforcementReport)> done) {
    Waiter w;
    w.id = next_waiter_++;
    w.seq = seq;
    w.start = Clock::now();
    w.done = std::move(done);
    for (const auto& dp : dataplanes) {
        Waiter::Row row{dp.id, dp.applied_seq < seq, dp.acked_at, dp.applied_seq, {}};
        row.report.name = dp.name;
        row.report.address = dp.address;
        row.report.instance = dp.instance;
        row.report.applied_seq = dp.applied_seq;
        row.report.acknowledged = !row.pending;
        w.pending += row.pending;
        w.rows.push_back(std::move(row));
    }
    const uint64_t wid = w.id;
    const bool none = w.rows.empty();
    const bool all = w.pending == 0;
    if (!all) {
        w.timer = std::make_unique<asio::steady_timer>(ioc_, timeout);
        w.timer->async_wait([this, wid](boost::system::error_code ec) {
            if (!ec) finish(wid, EnforcementReport::Status::timeout);
        });
    }
    waiters_.emplace(wid, std::move(w));
    if (all) {
        // Answer from the io loop, not from inside the caller.
        asio::post(ioc_, [this, wid, none] {
            finish(wid, none ? EnforcementReport::Status::no_dataplanes : EnforcementReport::Status::enforced);
        });
    }
}

void EnforcementWaiters::acknowledged(uint64_t id, uint64_t applied_seq) { settle(id, applied_seq); }

void EnforcementWaiters::disconnected(uint64_t id) { settle(id, std::nullopt); }

void EnforcementWaiters::stop() {
    std::vector<uint64_t> ids;
    for (const auto& [id, w] : waiters_) ids.push_back(id);
    for (auto id : ids) finish(id, EnforcementReport::Status::timeout);
}

void EnforcementWaiters::settle(uint64_t dp_id, std::optional<uint64_t> applied_seq) {
    if (waiters_.empty()) return;
    const auto now = Clock::now();
    std::vector<uint64_t> finished;
    for (auto& [wid, w] : waiters_) {
        for (auto& row : w.rows) {
            if (row.dp_id != dp_id || !row.pending) continue;
            if (!applied_seq) {
                row.report.disconnected = true;
            } else if (*applied_seq >= w.seq) {
                row.report.acknowledged = true;
                row.report.latency_ms = ms_between(w.start, now);
                row.acked_at = now;
                row.report.applied_seq = *applied_seq;
            } else {
                row.latest_applied = std::max(row.latest_applied, *applied_seq);
                continue;
            }
            row.pending = false;
            --w.pending;
        }
        if (w.pending == 0) finished.push_back(wid);
    }
    for (auto wid : finished) finish(wid, EnforcementReport::Status::enforced);
}

void EnforcementWaiters::finish(uint64_t waiter_id, EnforcementReport::Status status) {
    const auto it = waiters_.find(waiter_id);
    if (it == waiters_.end()) return;
    Waiter w = std::move(it->second);
    waiters_.erase(it);
    if (w.timer) w.timer->cancel();
    EnforcementReport r;
    r.status = status;
    r.seq = w.seq;
    if (status == EnforcementReport::Status::enforced && !w.rows.empty()) {
        if (const Commit* c = history_.find(w.seq)) {
            Clock::time_point last = c->committed;
            for (const auto& row : w.rows)
                if (!row.report.disconnected) last = std::max(last, row.acked_at);
            r.since_commit_ms = ms_between(c->committed, last);
        }
    }
    for (auto& row : w.rows) {
        // Still waited for: what it has applied by now.
        if (row.pending) row.report.applied_seq = std::max(row.report.applied_seq, row.latest_applied);
        r.dataplanes.push_back(std::move(row.report));
    }
    if (status == EnforcementReport::Status::enforced) {
        for (const auto& row : r.dataplanes) r.latency_ms = std::max(r.latency_ms, row.latency_ms);
    } else if (status == EnforcementReport::Status::timeout) {
        r.latency_ms = ms_between(w.start, Clock::now());
    }
    ++answered_[size_t(status)];
    w.done(std::move(r));
}

}  // namespace optgate::consentd
