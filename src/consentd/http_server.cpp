#include "consentd/http_server.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/rfc7230.hpp>
#include <boost/beast/http/write.hpp>

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "consentd/connection_slots.hpp"
#include "consentd/log.hpp"

namespace optgate::consentd {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

// RFC 9112 §6: the only transfer coding consentd reads is chunked, and only
// on HTTP/1.1. Anything else cannot be framed reliably: the body would be
// read as the next request (issue 17). Returns the answer, or nothing.
std::optional<Response> check_transfer_encoding(const http::request_parser<http::empty_body>& parser) {
    const auto& h = parser.get();
    auto [first, last] = h.equal_range(http::field::transfer_encoding);
    if (first == last) return std::nullopt;
    if (h.version() < 11)
        return error_response(400, "bad_request", "Transfer-Encoding is not allowed in an HTTP/1.0 request");
    std::vector<std::string> codings;
    for (auto it = first; it != last; ++it)
        for (const auto& c : http::token_list(it->value())) codings.emplace_back(c);
    const bool chunked_last = !codings.empty() && beast::iequals(codings.back(), "chunked");
    if (!chunked_last || !parser.chunked())
        return error_response(400, "bad_request", "the request's final transfer coding is not chunked");
    if (codings.size() != 1)
        return error_response(501, "not_implemented", "consentd reads only Transfer-Encoding: chunked");
    return std::nullopt;
}

std::string_view method_label(http::verb v) {
    switch (v) {
    case http::verb::get: return "GET";
    case http::verb::put: return "PUT";
    case http::verb::post: return "POST";
    case http::verb::delete_: return "DELETE";
    case http::verb::head: return "HEAD";
    default: return "other";
    }
}

}  // namespace

namespace {

class ApiSession : public std::enable_shared_from_this<ApiSession>, public SlottedConnection {
public:
    ApiSession(tcp::socket socket, Api& api, const Limits& limits, Metrics& metrics,
               std::shared_ptr<ConnectionSlots> slots)
        : socket_(std::move(socket)), timer_(socket_.get_executor()), api_(api), limits_(limits), metrics_(metrics),
          slot_(std::move(slots), this) {
        ++metrics_.connections();
    }
    ~ApiSession() override { --metrics_.connections(); }
    ApiSession(const ApiSession&) = delete;
    ApiSession& operator=(const ApiSession&) = delete;

    void start() { read_header(); }

    bool trusted() const override { return slot_.trusted(); }
    bool waiting_header() const override { return phase_ == Phase::header && !reclaimed_; }
    bool idle() const override { return waiting_header() && !header_->got_some() && buffer_.size() == 0; }
    void reclaim() override {
        reclaimed_ = true;
        slot_.release();
        disarm();
        beast::error_code ignored;
        socket_.close(ignored);
    }

private:
    enum class Phase { header, body, handling, writing };

    // Every wait gets a generation: a deadline that fired just as its
    // operation completed must not cut off the next one.
    void arm(std::chrono::milliseconds t) {
        const uint64_t gen = ++deadline_gen_;
        timer_.expires_after(t);
        timer_.async_wait([self = weak_from_this(), gen](beast::error_code ec) {
            auto s = self.lock();
            if (!ec && s && s->deadline_gen_ == gen) s->on_deadline();
        });
    }
    void disarm() {
        ++deadline_gen_;
        timer_.cancel();
    }
    void on_deadline() {
        timed_out_ = true;
        beast::error_code ignored;
        socket_.cancel(ignored);
        if (phase_ == Phase::writing) socket_.close(ignored);
    }

    void read_header() {
        phase_ = Phase::header;
        timed_out_ = false;
        header_.emplace();
        header_->header_limit(std::uint32_t(limits_.max_header_bytes));
        // The endpoint's own limit applies once the header says which it is.
        header_->body_limit(std::max(limits_.max_body_bytes, limits_.max_import_bytes));
        arm(limits_.header_timeout);
        http::async_read_header(
            socket_, buffer_, *header_,
            [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_header(ec); });
    }

    // A request that could not be read: answer if it makes sense, then close.
    void read_failed(beast::error_code ec, bool got_some) {
        if (timed_out_) {
            if (got_some) return finish(error_response(408, "timeout", "the request was not received in time"), true);
            return close();
        }
        if (ec == http::error::end_of_stream || ec == asio::error::eof || ec == asio::error::connection_reset ||
            ec == asio::error::operation_aborted || !got_some)
            return close();
        if (ec == http::error::header_limit)
            return finish(error_response(431, "header_too_large",
                                         "the request header is larger than " +
                                             std::to_string(limits_.max_header_bytes) + " bytes"),
                          true);
        if (ec == http::error::body_limit)
            return finish(error_response(413, "body_too_large", "the body is larger than this endpoint takes"), true);
        finish(error_response(400, "bad_request", "malformed HTTP request: " + ec.message()), true);
    }

    void on_header(beast::error_code ec) {
        if (ec) return read_failed(ec, header_->got_some() || buffer_.size() > 0);
        const auto& h = header_->get();
        method_ = method_label(h.method());
        version_ = h.version();
        keep_alive_ = h.keep_alive();
        if (auto bad = check_transfer_encoding(*header_)) return finish(std::move(*bad), true);
        try {
            admission_ = api_.admit(h);
        } catch (const std::exception& e) {
            log_error(std::string("admitting a request: ") + e.what());
            return finish(error_response(500, "internal", "the request could not be handled"), true);
        }
        route_ = route_info(admission_.match.route).pattern;
        if (admission_.token) slot_.trust();
        if (admission_.reject) {
            // The unread body would be taken for the next request: close
            // unless there is none.
            const bool has_body = header_->chunked() || header_->content_length().value_or(0) > 0;
            return finish(std::move(*admission_.reject), has_body || !keep_alive_);
        }
        body_.emplace(std::move(*header_));
        body_->body_limit(admission_.body_limit);
        const auto expect = body_->get().find(http::field::expect);
        if (expect != body_->get().end() && beast::iequals(expect->value(), "100-continue")) {
            // curl waits a second for this before sending a large body.
            continue_.emplace(http::status::continue_, body_->get().version());
            phase_ = Phase::writing;
            arm(limits_.write_timeout);
            return http::async_write(socket_, *continue_,
                                     [self = shared_from_this()](beast::error_code e, std::size_t) {
                                         if (e) return self->close();
                                         self->read_body();
                                     });
        }
        read_body();
    }

    void read_body() {
        phase_ = Phase::body;
        arm(admission_.body_timeout);
        http::async_read(socket_, buffer_, *body_,
                         [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_body(ec); });
    }

    void on_body(beast::error_code ec) {
        if (ec) return read_failed(ec, true);
        disarm();
        phase_ = Phase::handling;
        // Nothing a request carries may take the daemon down: a handler that
        // throws answers 500 and the connection closes.
        try {
            api_.handle(admission_, body_->release(),
                        [self = shared_from_this()](Response r) { self->finish(std::move(r), !self->keep_alive_); });
        } catch (const std::exception& e) {
            log_error(std::string("handling a request: ") + e.what());
            finish(error_response(500, "internal", "the request could not be handled"), true);
        }
    }

    void finish(Response r, bool close_after) {
        metrics_.count_request(method_.empty() ? "other" : method_, route_.empty() ? "unmatched" : route_,
                               unsigned(r.result_int()));
        method_ = {};
        route_ = {};
        res_ = std::make_shared<Response>(std::move(r));
        res_->version(version_);
        res_->keep_alive(!close_after);
        res_->set(http::field::server, "consentd");
        res_->prepare_payload();
        phase_ = Phase::writing;
        arm(limits_.write_timeout);
        http::async_write(socket_, *res_, [self = shared_from_this(), close_after](beast::error_code ec, std::size_t) {
            self->res_.reset();
            if (ec || close_after) return self->close();
            self->read_header();
        });
    }

    void close() {
        disarm();
        beast::error_code ignored;
        socket_.shutdown(tcp::socket::shutdown_send, ignored);
        socket_.close(ignored);
    }

    tcp::socket socket_;
    asio::steady_timer timer_;
    uint64_t deadline_gen_ = 0;
    bool timed_out_ = false;
    Phase phase_ = Phase::header;
    Api& api_;
    const Limits& limits_;
    Metrics& metrics_;
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::empty_body>> header_;
    std::optional<http::request_parser<http::string_body>> body_;
    std::optional<http::response<http::empty_body>> continue_;
    std::shared_ptr<Response> res_;
    Api::Admission admission_;
    std::string_view method_, route_;
    bool keep_alive_ = true;
    unsigned version_ = 11;
    ConnectionSlots::Slot slot_;
    bool reclaimed_ = false;
};

}  // namespace

HttpServer::HttpServer(asio::io_context& ioc, const tcp::endpoint& at, Api& api, const Limits& limits, Metrics& metrics)
    : api_(api), limits_(limits), metrics_(metrics),
      listener_(ioc, at, "API", limits.max_connections, limits.reserved(), [this](tcp::socket socket) {
          std::make_shared<ApiSession>(std::move(socket), api_, limits_, metrics_, listener_.slots())->start();
      }) {
    metrics_.add_renderer(this, [slots = listener_.slots()](std::string& out) {
        // Read on the API thread's metrics request; the counts are the API
        // thread's too.
        slots->render_metrics(out, "consentd_http_connections");
    });
}

HttpServer::~HttpServer() { metrics_.remove_renderer(this); }

}  // namespace optgate::consentd
