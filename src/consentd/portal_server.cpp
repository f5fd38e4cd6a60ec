#include "consentd/portal_server.hpp"

#include <boost/asio/ssl/stream.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include <stdexcept>

#include "consentd/connection_slots.hpp"
#include "consentd/log.hpp"

namespace optgate::consentd {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr size_t kMaxRequestBytes = 16u << 10;
constexpr auto kReadTimeout = std::chrono::seconds(10);
constexpr auto kWriteTimeout = std::chrono::seconds(30);

beast::tcp_stream& lowest(beast::tcp_stream& s) { return s; }
beast::tcp_stream& lowest(beast::ssl_stream<beast::tcp_stream>& s) { return beast::get_lowest_layer(s); }

// A browser's connection. It holds one of the listener's slots
// (connection_slots.hpp): while it has not sent a whole request header (TLS
// handshake included) a newer connection may reclaim it, and an idle
// keep-alive one too when every slot is taken. The page has no tokens:
// nothing is trusted, nothing reserved.
template <class Stream>
class Connection : public std::enable_shared_from_this<Connection<Stream>>, public SlottedConnection {
public:
    template <class... Args>
    Connection(Portal& portal, std::shared_ptr<ConnectionSlots> slots, asio::ip::address peer, Args&&... args)
        : stream_(std::forward<Args>(args)...), portal_(portal), slot_(std::move(slots), this), peer_(std::move(peer)) {
    }
    ~Connection() override = default;
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    bool trusted() const override { return false; }
    bool waiting_header() const override {
        return !reclaimed_ && (handshaking_ || (reading_ && !parser_->is_header_done()));
    }
    bool idle() const override { return waiting_header() && !handshaking_ && !parser_->got_some() && !buffer_.size(); }
    void reclaim() override {
        reclaimed_ = true;
        slot_.release();
        beast::error_code ignored;
        lowest(stream_).socket().close(ignored);
    }

    void start() {
        if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
            read();
        } else {
            lowest(stream_).expires_after(kReadTimeout);
            handshaking_ = true;
            stream_.async_handshake(asio::ssl::stream_base::server,
                                    [self = this->shared_from_this()](beast::error_code ec) {
                                        self->handshaking_ = false;
                                        if (!ec && !self->reclaimed_) self->read();
                                    });
        }
    }

private:
    void read() {
        parser_.emplace();
        parser_->header_limit(kMaxRequestBytes);
        parser_->body_limit(kMaxRequestBytes);
        lowest(stream_).expires_after(kReadTimeout);
        reading_ = true;
        http::async_read(stream_, buffer_, *parser_,
                         [self = this->shared_from_this()](beast::error_code ec, size_t) { self->on_read(ec); });
    }

    void on_read(beast::error_code ec) {
        reading_ = false;
        if (reclaimed_) return;
        if (ec) {
            if (ec == http::error::header_limit || ec == http::error::body_limit || ec == http::error::bad_target ||
                ec == http::error::bad_method || ec == http::error::bad_field) {
                Portal::Response r{http::status::bad_request, 11};
                r.set(http::field::content_type, "text/plain; charset=utf-8");
                r.body() = "bad request\n";
                write(std::move(r), true);
            }
            return;  // timeout or the browser went away
        }
        req_ = parser_->release();
        keep_alive_ = req_.keep_alive();
        const bool head = req_.method() == http::verb::head;
        portal_.handle(req_, peer_, [self = this->shared_from_this(), head](Portal::Response r) {
            r.version(self->req_.version());
            if (head) {
                r.prepare_payload();
                const auto length = r.body().size();
                r.body().clear();
                r.content_length(length);
            }
            self->write(std::move(r), !self->keep_alive_);
        });
    }

    void write(Portal::Response r, bool close) {
        res_ = std::make_shared<Portal::Response>(std::move(r));
        res_->set(http::field::server, "consentd");
        res_->keep_alive(!close);
        if (res_->body().size() || res_->find(http::field::content_length) == res_->end()) res_->prepare_payload();
        lowest(stream_).expires_after(kWriteTimeout);
        http::async_write(stream_, *res_, [self = this->shared_from_this(), close](beast::error_code ec, size_t) {
            self->res_.reset();
            if (ec || close) return self->shutdown();
            self->read();
        });
    }

    void shutdown() {
        beast::error_code ignored;
        lowest(stream_).socket().shutdown(tcp::socket::shutdown_send, ignored);
        lowest(stream_).close();
    }

    Stream stream_;
    Portal& portal_;
    ConnectionSlots::Slot slot_;
    bool handshaking_ = false, reading_ = false, reclaimed_ = false;
    asio::ip::address peer_;
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::string_body>> parser_;
    Portal::Request req_;
    std::shared_ptr<Portal::Response> res_;
    bool keep_alive_ = true;
};

}  // namespace

asio::ssl::context make_portal_tls(const PortalTls& files) {
    asio::ssl::context ctx(asio::ssl::context::tls_server);
    ctx.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                    asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
    beast::error_code ec;
    ctx.use_certificate_chain_file(files.certificate, ec);
    if (ec) throw std::runtime_error(files.certificate + ": " + ec.message());
    ctx.use_private_key_file(files.private_key, asio::ssl::context::pem, ec);
    if (ec) throw std::runtime_error(files.private_key + ": " + ec.message());
    if (SSL_CTX_check_private_key(ctx.native_handle()) != 1)
        throw std::runtime_error(files.private_key + " does not match " + files.certificate);
    return ctx;
}

PortalServer::PortalServer(asio::io_context& ioc, const tcp::endpoint& at, Portal& portal,
                           std::optional<asio::ssl::context> tls, Metrics& metrics)
    : portal_(portal), tls_(std::move(tls)), metrics_(metrics),
      listener_(ioc, at, "portal", kMaxConnections, 0, [this](tcp::socket socket) { serve(std::move(socket)); }) {
    // Rendered on the API's metrics request, on the io_context this listener
    // shares with the API: the counts are that thread's.
    metrics_.add_renderer(this, [slots = listener_.slots()](std::string& out) {
        slots->render_metrics(out, "consentd_portal_connections");
    });
}

PortalServer::~PortalServer() { metrics_.remove_renderer(this); }

void PortalServer::serve(tcp::socket socket) {
    beast::error_code peer_ec;
    const auto peer = socket.remote_endpoint(peer_ec).address();
    if (peer_ec) return;  // gone already
    if (tls_)
        std::make_shared<Connection<beast::ssl_stream<beast::tcp_stream>>>(portal_, listener_.slots(), peer,
                                                                           std::move(socket), *tls_)
            ->start();
    else
        std::make_shared<Connection<beast::tcp_stream>>(portal_, listener_.slots(), peer, std::move(socket))->start();
}

namespace {

Catalogue load_catalogue(const PortalConfig& c) {
    return c.texts.empty() ? Catalogue() : Catalogue::with_overrides(c.texts);
}

}  // namespace

PortalDaemon::PortalDaemon(asio::io_context& ioc, LedgerService& service, Publisher* publisher, const Config& config,
                           Api& api, Metrics& metrics)
    : links(config.portal.mode == PortalConfig::Mode::signed_link
                ? std::optional<PortalLinks>(std::in_place, config.portal.link_secret, "", config.portal.link_lifetime)
                : std::nullopt),
      portal(ioc, service, publisher, config, load_catalogue(config.portal), links ? &*links : nullptr),
      server(ioc, tcp::endpoint(asio::ip::make_address(config.portal.listen_address), config.portal.port), portal,
             config.portal.tls ? std::optional<asio::ssl::context>(make_portal_tls(*config.portal.tls)) : std::nullopt,
             metrics) {
    if (links) {
        links->set_public_url(config.portal.url_for(server.port()));
        api.set_portal_links(&*links);
    }
}

std::string check_portal_files(const PortalConfig& c) {
    try {
        if (c.tls) make_portal_tls(*c.tls);
        load_catalogue(c);
    } catch (const policy::PolicyError& e) {
        std::string why;
        for (const auto& d : e.diagnostics()) why += (why.empty() ? "" : "\n") + d.to_string();
        return why;
    } catch (const std::exception& e) {
        return std::string("portal.tls: ") + e.what();
    }
    return {};
}

}  // namespace optgate::consentd
