#include "consentd/peer_link.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>

#include "consentd/log.hpp"
#include "consentd/pg_connection.hpp"

namespace optgate::consentd {

namespace {

constexpr std::string_view kMagic = "optgate-dataplanes 1 ";

std::string random_id() {
    std::random_device rd;
    char buf[17];
    std::snprintf(buf, sizeof buf, "%08x%08x", unsigned(rd()), unsigned(rd()));
    return buf;
}

// One line: newlines would split it.
std::string one_line(std::string s) {
    for (char& c : s)
        if (c == '\n' || c == '\r') c = ' ';
    return s;
}

// The next space-separated field of `s` (advancing it), or nullopt.
std::optional<std::string_view> field(std::string_view& s) {
    const size_t sp = s.find(' ');
    if (sp == std::string_view::npos || sp == 0) return std::nullopt;
    const auto f = s.substr(0, sp);
    s.remove_prefix(sp + 1);
    return f;
}

}  // namespace

PeerLink::PeerLink(std::string conninfo, std::string instance, OnReport on_report)
    : conninfo_(std::move(conninfo)), instance_(one_line(std::move(instance))), id_(random_id()),
      on_report_(std::move(on_report)), wake_fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
    if (wake_fd_ < 0) throw std::runtime_error("eventfd for the peer link failed");
}

PeerLink::~PeerLink() {
    stop();
    ::close(wake_fd_);
}

void PeerLink::start() {
    thread_ = std::thread([this] { run(); });
}

void PeerLink::stop() {
    stopping_ = true;
    wake();
    if (thread_.joinable()) thread_.join();
}

void PeerLink::wake() noexcept {
    const uint64_t one = 1;
    [[maybe_unused]] const auto n = ::write(wake_fd_, &one, sizeof one);
}

void PeerLink::applied(const std::string& name, const std::string& address, uint64_t applied_seq) {
    {
        std::lock_guard lk(mu_);
        Local& l = locals_[name];
        l.address = address;
        l.applied_seq = applied_seq;
        l.dirty = true;
    }
    wake();
}

void PeerLink::gone(const std::string& name) {
    {
        std::lock_guard lk(mu_);
        if (locals_.erase(name) == 0) return;  // never reported: nobody knows it
        gone_.push_back(name);
    }
    wake();
}

std::vector<std::string> PeerLink::take_lines(bool all) {
    std::vector<std::string> lines;
    std::lock_guard lk(mu_);
    for (auto& [name, l] : locals_) {
        if (!all && !l.dirty) continue;
        l.dirty = false;
        lines.push_back("+ " + std::to_string(l.applied_seq) + " " + name + " " + one_line(l.address));
    }
    for (const auto& name : gone_) lines.push_back("- 0 " + name);
    gone_.clear();
    return lines;
}

std::vector<std::string> PeerLink::payloads(const std::string& header, const std::vector<std::string>& lines) {
    std::vector<std::string> out;
    std::string p;
    for (const auto& line : lines) {
        if (header.size() + line.size() + 2 > kMaxPayload) continue;  // cannot fit any payload: left out
        if (!p.empty() && p.size() + line.size() + 1 > kMaxPayload) {
            out.push_back(std::move(p));
            p.clear();
        }
        if (p.empty()) p = header + "\n";
        p += line;
        p += '\n';
    }
    if (!p.empty()) out.push_back(std::move(p));
    return out;
}

bool PeerLink::parse(std::string_view payload, std::vector<Report>& out) {
    if (!payload.starts_with(kMagic)) return false;
    payload.remove_prefix(kMagic.size());
    const size_t eol = payload.find('\n');
    if (eol == std::string_view::npos) return false;
    std::string_view head = payload.substr(0, eol);
    payload.remove_prefix(eol + 1);
    const auto id = field(head);
    if (!id || head.empty()) return false;
    Report base;
    base.instance_id = std::string(*id);
    base.instance = std::string(head);
    while (!payload.empty()) {
        const size_t end = payload.find('\n');
        if (end == std::string_view::npos) return false;
        std::string_view line = payload.substr(0, end);
        payload.remove_prefix(end + 1);
        const auto op = field(line);
        const auto seq = field(line);
        if (!op || !seq || (*op != "+" && *op != "-")) return false;
        Report r = base;
        r.gone = *op == "-";
        const auto [ptr, ec] = std::from_chars(seq->data(), seq->data() + seq->size(), r.applied_seq);
        if (ec != std::errc() || ptr != seq->data() + seq->size()) return false;
        if (r.gone) {
            if (line.empty() || line.find(' ') != std::string_view::npos) return false;
            r.name = std::string(line);
        } else {
            const auto name = field(line);
            if (!name) return false;
            r.name = std::string(*name);
            r.address = std::string(line);
        }
        out.push_back(std::move(r));
    }
    return true;
}

void PeerLink::run() {
    const std::string header = std::string(kMagic) + id_ + " " + instance_;
    std::unique_ptr<PgConnection> pg;
    auto next_refresh = std::chrono::steady_clock::now();
    auto last_sent = std::chrono::steady_clock::time_point{};
    bool failing = false;
    while (!stopping_) {
        try {
            if (!pg || !pg->ok()) {
                pg.reset();
                pg = std::make_unique<PgConnection>(conninfo_);
                pg->listen(kChannel);
                next_refresh = std::chrono::steady_clock::now();  // everything, on the new session
                if (failing) log_info("data planes of the other consentd: heard again");
                failing = false;
            }
            auto now = std::chrono::steady_clock::now();
            if (now - last_sent < kMinInterval) {
                // Too soon after the last round: let more gather first.
                std::this_thread::sleep_for(kMinInterval - (now - last_sent));
                now = std::chrono::steady_clock::now();
            }
            const bool all = now >= next_refresh;
            if (all) next_refresh = now + kRefresh;
            // Drained before the lines are taken: a change told after this
            // wakes the wait below at once.
            uint64_t drained = 0;
            [[maybe_unused]] const auto got = ::read(wake_fd_, &drained, sizeof drained);
            const auto out = payloads(header, take_lines(all));
            for (const auto& p : out) pg->query("SELECT pg_notify(?1, ?2)", {std::string(kChannel), p});
            if (!out.empty()) last_sent = now;
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(next_refresh -
                                                                                    std::chrono::steady_clock::now());
            auto n = pg->wait_notification(std::max(left, std::chrono::milliseconds(0)), wake_fd_);
            while (n) {
                std::vector<Report> reports;
                if (n->channel == kChannel && parse(n->payload, reports))
                    for (auto& r : reports)
                        if (r.instance_id != id_) on_report_(std::move(r));
                n = pg->wait_notification(std::chrono::milliseconds(0));
            }
        } catch (const std::exception& e) {
            if (!failing)
                log_warning(std::string("data planes of the other consentd (?wait=enforced waits for them): ") +
                            e.what() + "; trying again every second");
            failing = true;
            pg.reset();
            // Everything again once connected; a second between attempts,
            // cut short by stop().
            {
                std::lock_guard lk(mu_);
                for (auto& [name, l] : locals_) l.dirty = true;
            }
            const auto until = std::chrono::steady_clock::now() + kRefresh;
            while (!stopping_ && std::chrono::steady_clock::now() < until) {
                uint64_t drained = 0;
                std::this_thread::sleep_for(std::chrono::milliseconds(50));
                [[maybe_unused]] const auto got = ::read(wake_fd_, &drained, sizeof drained);
            }
        }
    }
}

}  // namespace optgate::consentd
