#include "consentd/dataplane_admission.hpp"

#include <malloc.h>

#include <array>

#include "consentd/log.hpp"

namespace optgate::consentd {

namespace asio = boost::asio;

namespace {

// An IPv6 host usually has a /64 to itself: counting addresses within it one
// by one would be no cap at all.
std::string source_of(const asio::ip::address& a) {
    if (a.is_v4()) return a.to_string();
    if (a.to_v6().is_v4_mapped()) return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()).to_string();
    auto bytes = a.to_v6().to_bytes();
    std::fill(bytes.begin() + 8, bytes.end(), 0);
    return asio::ip::address_v6(bytes).to_string() + "/64";
}

constexpr size_t kTlsFailure = kDataPlaneRefusals;  // the last kind of the rate-limited log

std::string_view kind_label(size_t kind) {
    return kind == kTlsFailure ? std::string_view("TLS handshake refused") : to_string(DataPlaneRefusal(kind));
}

}  // namespace

DataPlaneAdmission::DataPlaneAdmission(Publisher& publisher, size_t max_pending, std::chrono::milliseconds log_interval)
    : publisher_(publisher), max_pending_(std::max<size_t>(max_pending, 1)),
      per_address_(std::max<size_t>(publisher.config().max_pending_per_address, 1)), log_interval_(log_interval),
      log_timer_(publisher.io_context()) {}

DataPlaneAdmission::Ticket::Ticket(std::shared_ptr<DataPlaneAdmission> owner, std::string source)
    : owner_(std::move(owner)), source_(std::move(source)) {}

void DataPlaneAdmission::Ticket::release() {
    if (!owner_) return;
    auto owner = std::move(owner_);
    owner->release(source_);
}

std::unique_ptr<DataPlaneAdmission::Ticket> DataPlaneAdmission::admit(const asio::ip::address& peer) {
    std::string source = source_of(peer);
    size_t& n = by_source_[source];
    if (n >= per_address_) {
        refused(DataPlaneRefusal::address_cap, peer.to_string(),
                "closed at accept: " + std::to_string(per_address_) + " connections from " + source +
                    " are already without a hello (dataplanes.max_pending_per_address)");
        return nullptr;
    }
    ++n;
    ++pending_;
    publisher_.set_pending(pending_);
    if (pending_ >= max_pending_) publisher_.count_accept_pause();
    return std::make_unique<Ticket>(shared_from_this(), std::move(source));
}

void DataPlaneAdmission::release(const std::string& source) {
    const bool was_full = full();
    if (const auto it = by_source_.find(source); it != by_source_.end() && --it->second == 0) by_source_.erase(it);
    --pending_;
    publisher_.set_pending(pending_);
    // A burst of connections leaves the heap fragmented: freed, but kept by
    // the allocator (issue 17: 516 MiB stayed after 5,000 had closed).
    if (++closed_since_trim_ >= max_pending_ && pending_ == 0) {
        closed_since_trim_ = 0;
        ::malloc_trim(0);
    }
    if (was_full && on_room_) on_room_();
}

void DataPlaneAdmission::refused(DataPlaneRefusal why, const std::string& peer, const std::string& detail) {
    publisher_.count_refusal(why);
    note(size_t(why), "data planes: " + peer + ": " + detail);
}

void DataPlaneAdmission::tls_failed(const std::string& peer, const std::string& detail) {
    publisher_.count_tls_failure();
    note(kTlsFailure, "data planes: " + peer + ": TLS handshake refused: " + detail);
}

void DataPlaneAdmission::note(size_t kind, const std::string& line) {
    if (!logging_window_) {
        logging_window_ = true;
        log_warning(line + " (more refusals before hello in the next " +
                    std::to_string(std::chrono::duration_cast<std::chrono::seconds>(log_interval_).count()) +
                    " s are logged as one line)");
        log_timer_.expires_after(log_interval_);
        log_timer_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
            if (auto self = weak.lock(); self && !ec) self->flush();
        });
        return;
    }
    ++suppressed_[kind];
}

void DataPlaneAdmission::flush() {
    logging_window_ = false;
    std::string counts;
    for (size_t k = 0; k < kKinds; ++k) {
        if (!suppressed_[k]) continue;
        counts += (counts.empty() ? "" : ", ") + std::to_string(suppressed_[k]) + " " + std::string(kind_label(k));
        suppressed_[k] = 0;
    }
    if (counts.empty()) return;
    log_warning("data planes: in the last " +
                std::to_string(std::chrono::duration_cast<std::chrono::seconds>(log_interval_).count()) +
                " s, connections closed before hello: " + counts + " (" + std::to_string(pending_) + " pending of " +
                std::to_string(max_pending_) + ")");
    // Another window, so that a steady attack shows every interval.
    logging_window_ = true;
    log_timer_.expires_after(log_interval_);
    log_timer_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
        if (auto self = weak.lock(); self && !ec) self->flush();
    });
}

void DataPlaneAdmission::stop() {
    on_room_ = nullptr;
    log_timer_.cancel();
    flush();
    log_timer_.cancel();
    logging_window_ = false;
}

}  // namespace optgate::consentd
