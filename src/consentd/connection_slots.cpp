#include "consentd/connection_slots.hpp"

#include <algorithm>

#include "consentd/log.hpp"

namespace optgate::consentd {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

ConnectionSlots::Slot::Slot(std::shared_ptr<ConnectionSlots> slots, SlottedConnection* c)
    : slots_(std::move(slots)), at_(slots_->order_.insert(slots_->order_.end(), c)) {
    ++slots_->untrusted_;
}

void ConnectionSlots::Slot::trust() {
    if (trusted_) return;
    trusted_ = true;
    if (!released_) --slots_->untrusted_;
}

void ConnectionSlots::Slot::release() {
    if (released_) return;
    released_ = true;
    if (!trusted_) --slots_->untrusted_;
    slots_->order_.erase(at_);
}

void ConnectionSlots::render_metrics(std::string& out, const std::string& family) const {
    out += "# HELP " + family + "_reclaimed_total Connections closed to make room for a new one.\n";
    out += "# TYPE " + family + "_reclaimed_total counter\n";
    out += family + "_reclaimed_total " + std::to_string(reclaimed) + "\n";
    out += "# HELP " + family + "_refused_total Connections answered 503: every slot busy.\n";
    out += "# TYPE " + family + "_refused_total counter\n";
    out += family + "_refused_total " + std::to_string(refused) + "\n";
}

bool ConnectionSlots::make_room() {
    const size_t untrusted_cap = max_ - std::min(reserved_, max_);
    const auto oldest = [&](auto pick) -> SlottedConnection* {
        for (SlottedConnection* c : order_)
            if (pick(*c)) return c;
        return nullptr;
    };
    SlottedConnection* victim = nullptr;
    if (untrusted_ >= untrusted_cap)
        victim = oldest([](const SlottedConnection& c) { return !c.trusted() && c.waiting_header(); });
    if (!victim && order_.size() >= max_) victim = oldest([](const SlottedConnection& c) { return c.idle(); });
    if (victim) {
        ++reclaimed;
        victim->reclaim();
    }
    return order_.size() < max_ && untrusted_ < std::max<size_t>(untrusted_cap, 1);
}

namespace {

// A full house: a short answer written without waiting, then close.
void refuse(tcp::socket& socket) {
    static const std::string kBusy = [] {
        const std::string body =
            "{\"error\":{\"code\":\"busy\",\"message\":\"every connection slot is taken; retry in a second\"}}\n";
        return "HTTP/1.1 503 Service Unavailable\r\nServer: consentd\r\nRetry-After: 1\r\n"
               "Content-Type: application/json\r\nConnection: close\r\nContent-Length: " +
               std::to_string(body.size()) + "\r\n\r\n" + body;
    }();
    boost::system::error_code ignored;
    socket.non_blocking(true, ignored);
    socket.write_some(asio::buffer(kBusy), ignored);
    socket.shutdown(tcp::socket::shutdown_send, ignored);
    socket.close(ignored);
}

}  // namespace

SlottedListener::SlottedListener(asio::io_context& ioc, const tcp::endpoint& at, std::string name, size_t max,
                                 size_t reserved, Serve serve)
    : ioc_(ioc), acceptor_(ioc), retry_(ioc), name_(std::move(name)),
      slots_(std::make_shared<ConnectionSlots>(max, reserved)), serve_(std::move(serve)) {
    acceptor_.open(at.protocol());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind(at);
    acceptor_.listen(asio::socket_base::max_listen_connections);
}

void SlottedListener::stop() {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    retry_.cancel();
}

void SlottedListener::accept() {
    acceptor_.async_accept(ioc_, [this](boost::system::error_code ec, tcp::socket socket) {
        if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
        if (ec) {
            // Out of descriptors, most likely: back off instead of spinning.
            log_warning(name_ + " accept: " + ec.message());
            retry_.expires_after(std::chrono::milliseconds(100));
            retry_.async_wait([this](boost::system::error_code e) {
                if (!e) accept();
            });
            return;
        }
        if (slots_->make_room()) {
            boost::system::error_code ignored;
            socket.set_option(tcp::no_delay(true), ignored);  // keep-alive answers must not wait for Nagle
            serve_(std::move(socket));
        } else {
            ++slots_->refused;
            refuse(socket);
        }
        accept();
    });
}

}  // namespace optgate::consentd
