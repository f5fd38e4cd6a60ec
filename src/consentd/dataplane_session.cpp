#include "consentd/dataplane_session.hpp"

#include <sys/socket.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <deque>
#include <vector>

#include "consentd/log.hpp"
#include "core/chars.hpp"
#include "proto/codec.hpp"

namespace optgate::consentd {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using asio::awaitable;
using asio::use_awaitable;
using tcp = asio::ip::tcp;
using proto::Goodbye;

namespace {

template <class T>
struct is_tls : std::false_type {};
template <class T>
struct is_tls<ssl::stream<T>> : std::true_type {};

// Printable for logs: what a peer wrote is not trusted to be.
std::string printable(std::string_view s) {
    std::string out;
    for (char c : s.substr(0, 200)) out.push_back(ascii::is_printable(c) ? c : '?');
    return out;
}

std::string peer_of(asio::local::stream_protocol::socket& s) {
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(s.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
        return "unix pid=" + std::to_string(cred.pid) + " uid=" + std::to_string(cred.uid);
    return "unix";
}

std::string peer_of(tcp::socket& s) {
    boost::system::error_code ec;
    const auto ep = s.remote_endpoint(ec);
    if (ec) return "tcp";
    const auto a = ep.address();
    return (a.is_v6() ? "[" + a.to_string() + "]" : a.to_string()) + ":" + std::to_string(ep.port());
}

// The client certificate's subject common name.
std::string certificate_name(SSL* ssl) {
    X509* cert = SSL_get1_peer_certificate(ssl);
    if (!cert) return {};
    char cn[256] = {};
    X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn);
    X509_free(cert);
    return printable(cn);
}

template <class Stream>
class Session : public DataPlaneLink, public std::enable_shared_from_this<Session<Stream>> {
public:
    Session(Stream stream, Publisher& publisher, std::string address)
        : stream_(std::move(stream)), publisher_(publisher), address_(std::move(address)), limits_(publisher.config()),
          hello_timer_(stream_.get_executor()), write_timer_(stream_.get_executor()),
          close_timer_(stream_.get_executor()) {}

    void start() {
        auto self = this->shared_from_this();
        asio::co_spawn(stream_.get_executor(), run(self), asio::detached);
    }

    SendResult send(Frames f, bool bounded) override {
        if (closing_ || finished_) return SendResult::closed;
        if (bounded) {
            if (bounded_bytes_ + f->size() > limits_.max_queue_bytes) {
                drop_unsent();
                return SendResult::overflow;
            }
            bounded_bytes_ += f->size();
        }
        queue_.push_back({std::move(f), bounded});
        if (!writing_) write_next();
        return SendResult::queued;
    }

    void close(Goodbye::Code code, std::string reason) override {
        if (closing_ || finished_) return;
        closing_ = true;
        close_reason_ = reason;
        if (code != Goodbye::Code::shutdown) log_warning("data plane " + who() + ": closing: " + reason);
        drop_unsent();
        std::string out;
        proto::encode(out, Goodbye{code, reason});
        queue_.push_back({std::make_shared<const std::string>(std::move(out)), false});
        if (!writing_) write_next();
        // The publisher forgets it now (from the io loop: it may be iterating);
        // the socket closes once the goodbye is out, or in a second at most.
        auto self = this->shared_from_this();
        asio::post(stream_.get_executor(), [self, reason] { self->detach(reason); });
        close_timer_.expires_after(std::chrono::seconds(1));
        close_timer_.async_wait([self, reason](boost::system::error_code ec) {
            if (!ec) self->finish(reason);
        });
    }

private:
    struct Item {
        Frames frames;
        bool bounded = false;
    };

    std::string who() const { return name_.empty() ? address_ : name_ + " (" + address_ + ")"; }

    auto& lowest() { return stream_.lowest_layer(); }

    awaitable<void> run(std::shared_ptr<Session> self) {
        std::string why = "connection closed";
        try {
            // `self` keeps the session alive as long as the coroutine runs.
            hello_timer_.expires_after(limits_.hello_timeout);
            hello_timer_.async_wait([self](boost::system::error_code ec) {
                if (ec || self->greeted_ || self->finished_) return;
                log_warning("data plane " + self->who() + ": no hello within the hello timeout; closing");
                self->finish("no hello");
            });
            if constexpr (is_tls<Stream>::value) {
                try {
                    co_await stream_.async_handshake(ssl::stream_base::server, use_awaitable);
                } catch (const boost::system::system_error& e) {
                    if (finished_) co_return;  // the hello timeout, logged there
                    publisher_.count_tls_failure();
                    log_warning("data plane " + address_ + ": TLS handshake refused: " + e.code().message());
                    finish("TLS handshake failed");
                    co_return;
                }
                const std::string cn = certificate_name(stream_.native_handle());
                address_ += cn.empty() ? " tls" : " tls CN=" + cn;
            }
            if (finished_) co_return;
            if (publisher_.full()) {
                log_warning("data plane " + address_ + ": refused, already " + std::to_string(limits_.max_dataplanes) +
                            " data planes connected");
                finish("too many data planes");
                co_return;
            }
            id_ = publisher_.attach(this, address_);
            attached_ = true;
            size_t have = 0;
            for (;;) {
                have += co_await stream_.async_read_some(asio::buffer(rbuf_.data() + have, rbuf_.size() - have),
                                                         use_awaitable);
                size_t off = 0;
                size_t wanted = 0;  // what the frame left at `off` needs, whole
                for (;;) {
                    const auto r = proto::decode(std::span<const uint8_t>(rbuf_.data() + off, have - off),
                                                 proto::Direction::to_server);
                    if (r.status == proto::DecodeStatus::need_more) {
                        wanted = r.needed;  // within the type's limit: the decoder checked the header
                        break;
                    }
                    if (r.status == proto::DecodeStatus::error) {
                        publisher_.count_protocol_error();
                        close(Goodbye::Code::protocol_error,
                              "malformed frame: " + std::string(proto::to_string(r.error)));
                        break;
                    }
                    off += r.consumed;
                    handle(r.frame);
                    if (closing_ || finished_) break;
                }
                if (closing_ || finished_) break;
                std::memmove(rbuf_.data(), rbuf_.data() + off, have - off);
                have -= off;
                // Room for a large stats report; the usual size again after it.
                if (wanted > rbuf_.size()) {
                    rbuf_.resize(wanted);
                } else if (rbuf_.size() > kKeepReadBuffer && wanted <= kReadBuffer) {
                    rbuf_.resize(kReadBuffer);
                    rbuf_.shrink_to_fit();
                }
            }
            // Closing: the goodbye goes out, then our side shuts down; read
            // (and drop) until the peer closes too, so that it reads the
            // goodbye instead of a reset. The close timer bounds this.
            for (;;) co_await stream_.async_read_some(asio::buffer(rbuf_), use_awaitable);
        } catch (const boost::system::system_error& e) {
            why = e.code() == asio::error::eof || e.code() == ssl::error::stream_truncated ? "connection closed"
                                                                                           : e.code().message();
        } catch (const std::exception& e) {
            why = e.what();
        }
        finish(closing_ ? close_reason_ : why);
    }

    void handle(const proto::Frame& f) {
        if (const auto* h = std::get_if<proto::Hello>(&f)) {
            greeted_ = true;
            name_ = std::string(h->name);
            publisher_.hello(id_, *h);
        } else if (const auto* a = std::get_if<proto::Ack>(&f)) {
            publisher_.ack(id_, a->applied_seq);
        } else if (const auto* st = std::get_if<proto::Stats>(&f)) {
            publisher_.stats(id_, *st);
        } else if (const auto* d = std::get_if<proto::Disclosure>(&f)) {
            on_disclosure(*d);
        } else if (const auto* g = std::get_if<Goodbye>(&f)) {
            const std::string why = "it said goodbye (" + std::string(proto::to_string(g->code)) + ": " +
                                    printable(g->message) + ")";
            if (g->code != Goodbye::Code::shutdown) log_warning("data plane " + who() + ": " + why);
            finish(why);
        }
        // The decoder admits nothing else towards consentd.
    }

    void on_disclosure(const proto::Disclosure& d) {
        using Outcome = Publisher::DisclosureOutcome;
        if (!greeted_) {
            publisher_.count_protocol_error();
            close(Goodbye::Code::protocol_error, "disclosure before hello");
            return;
        }
        DisclosureSink* sink = publisher_.disclosure_sink();
        if (!sink) {
            publisher_.count_disclosure(Outcome::refused);
            close(Goodbye::Code::unsupported, "this consentd stores no disclosure reports");
            return;
        }
        const std::pair<uint64_t, uint64_t> id{d.reporter, d.seq};
        // A repeat of one being stored: its acknowledgement will do.
        if (std::find(storing_.begin(), storing_.end(), id) != storing_.end()) return;
        if (storing_.size() >= proto::kMaxDisclosuresInFlight) {
            publisher_.count_disclosure(Outcome::busy);
            return;
        }
        DisclosureReport r;
        r.dataplane = name_;
        r.reporter = d.reporter;
        r.seq = d.seq;
        r.batch.start_unix_ms = d.start_unix_ms;
        r.batch.end_unix_ms = d.end_unix_ms;
        r.batch.overflowed = d.overflowed;
        r.batch.entries.reserve(d.count);
        proto::for_each_disclosure(d, [&](const proto::DisclosureView& v) { r.batch.entries.push_back(v.entry()); });
        storing_.push_back(id);
        std::weak_ptr<Session> weak = this->shared_from_this();
        auto ex = stream_.get_executor();
        sink->submit(std::move(r), [weak, ex, id](bool stored) {
            asio::post(ex, [weak, id, stored] {
                if (auto self = weak.lock()) self->on_stored(id, stored);
            });
        });
    }

    void on_stored(std::pair<uint64_t, uint64_t> id, bool stored) {
        std::erase(storing_, id);
        publisher_.count_disclosure(stored ? Publisher::DisclosureOutcome::stored
                                           : Publisher::DisclosureOutcome::failed);
        if (!stored) {
            log_warning("data plane " + who() + ": disclosure report " + std::to_string(id.second) +
                        " could not be stored; the data plane sends it again");
            return;
        }
        if (closing_ || finished_) return;
        std::string out;
        proto::encode(out, proto::DisclosureAck{id.first, id.second});
        queue_.push_back({std::make_shared<const std::string>(std::move(out)), false});
        if (!writing_) write_next();
    }

    void drop_unsent() {
        // Frames already handed to the socket stay; the rest go.
        while (queue_.size() > inflight_) {
            if (queue_.back().bounded) bounded_bytes_ -= queue_.back().frames->size();
            queue_.pop_back();
        }
    }

    void write_next() {
        if (finished_) return;
        if (queue_.empty()) {
            writing_ = false;
            if (closing_) {
                boost::system::error_code ec;
                lowest().shutdown(asio::socket_base::shutdown_send, ec);
            }
            return;
        }
        writing_ = true;
        buffers_.clear();
        size_t bytes = 0;
        inflight_ = 0;
        while (inflight_ < queue_.size() && inflight_ < 64 && bytes < (4u << 20)) {
            buffers_.emplace_back(asio::buffer(*queue_[inflight_].frames));
            bytes += queue_[inflight_].frames->size();
            ++inflight_;
        }
        const uint64_t gen = ++write_gen_;
        auto self = this->shared_from_this();
        write_timer_.expires_after(limits_.write_timeout);
        write_timer_.async_wait([self, gen](boost::system::error_code ec) {
            if (ec || gen != self->write_gen_ || !self->writing_ || self->finished_) return;
            log_warning("data plane " + self->who() + ": not reading (no write progress in " +
                        std::to_string(self->limits_.write_timeout.count()) + " ms); closing");
            self->finish("not reading");
        });
        asio::async_write(stream_, buffers_, [self](boost::system::error_code ec, size_t) {
            self->write_timer_.cancel();
            if (ec) {
                self->finish(ec.message());
                return;
            }
            for (size_t i = 0; i < self->inflight_; ++i) {
                if (self->queue_.front().bounded) self->bounded_bytes_ -= self->queue_.front().frames->size();
                self->queue_.pop_front();
            }
            self->inflight_ = 0;
            self->write_next();
        });
    }

    void detach(const std::string& why) {
        if (!attached_) return;
        attached_ = false;
        publisher_.detach(id_, why);
    }

    void finish(const std::string& why) {
        if (finished_) return;
        finished_ = true;
        detach(why);
        hello_timer_.cancel();
        write_timer_.cancel();
        close_timer_.cancel();
        boost::system::error_code ec;
        lowest().close(ec);
    }

    Stream stream_;
    Publisher& publisher_;
    std::string address_, name_;
    const DataPlaneConfig& limits_;
    std::string close_reason_;
    uint64_t id_ = 0;
    bool attached_ = false, greeted_ = false, closing_ = false, finished_ = false;
    // Hello, ack and goodbye fit the usual size; a stats report may not.
    static constexpr size_t kReadBuffer = 16u << 10, kKeepReadBuffer = 64u << 10;
    std::vector<uint8_t> rbuf_ = std::vector<uint8_t>(kReadBuffer);
    std::deque<Item> queue_;
    std::vector<std::pair<uint64_t, uint64_t>> storing_;  // disclosure reports with the sink: (reporter, seq)
    size_t inflight_ = 0;                                 // queue_ items being written
    size_t bounded_bytes_ = 0;
    bool writing_ = false;
    uint64_t write_gen_ = 0;
    std::vector<asio::const_buffer> buffers_;
    asio::steady_timer hello_timer_, write_timer_, close_timer_;
};

// Hello, ack and goodbye never need the read buffer to grow; a disclosure
// report may (1 MiB at most), as a stats report may.
static_assert(proto::kHeaderSize + 2 + 2 + proto::kMaxMessageBytes <= 16u << 10);
static_assert(proto::kHeaderSize + 1 + proto::kMaxNameBytes + 8 + 1 + proto::kMaxTokenBytes <= 16u << 10);

}  // namespace

void start_session(asio::local::stream_protocol::socket socket, Publisher& publisher) {
    std::string peer = peer_of(socket);
    std::make_shared<Session<asio::local::stream_protocol::socket>>(std::move(socket), publisher, std::move(peer))
        ->start();
}

void start_session(tcp::socket socket, Publisher& publisher) {
    boost::system::error_code ec;
    socket.set_option(tcp::no_delay(true), ec);
    std::string peer = peer_of(socket);
    std::make_shared<Session<tcp::socket>>(std::move(socket), publisher, std::move(peer))->start();
}

void start_session(tcp::socket socket, ssl::context& tls, Publisher& publisher) {
    boost::system::error_code ec;
    socket.set_option(tcp::no_delay(true), ec);
    std::string peer = peer_of(socket);
    std::make_shared<Session<ssl::stream<tcp::socket>>>(ssl::stream<tcp::socket>(std::move(socket), tls), publisher,
                                                        std::move(peer))
        ->start();
}

}  // namespace optgate::consentd
