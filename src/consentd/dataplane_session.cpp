#include "consentd/dataplane_session.hpp"

#include <sys/socket.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

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
#include "consentd/sha256.hpp"
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

// A Unix peer's identity: its uid (the process may change, the user not).
std::string identity_of(asio::local::stream_protocol::socket& s) {
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(s.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
        return "uid=" + std::to_string(cred.uid);
    return "uid=?";
}

std::string peer_of(tcp::socket& s) {
    boost::system::error_code ec;
    const auto ep = s.remote_endpoint(ec);
    if (ec) return "tcp";
    const auto a = ep.address();
    return (a.is_v6() ? "[" + a.to_string() + "]" : a.to_string()) + ":" + std::to_string(ep.port());
}

// Who the client certificate says the data plane is: the names it may take
// in hello (the subject's common name and every DNS name among the subject
// alternative names) and its identity (SHA-256 of the certificate, hex).
struct CertificateIdentity {
    std::string cn, fingerprint;
    std::vector<std::string> names;
};

CertificateIdentity certificate_identity(SSL* ssl) {
    CertificateIdentity id;
    X509* cert = SSL_get1_peer_certificate(ssl);
    if (!cert) return id;
    char cn[256] = {};
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn) > 0) {
        id.cn = cn;
        id.names.emplace_back(cn);
    }
    if (auto* sans = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr))) {
        for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
            const GENERAL_NAME* g = sk_GENERAL_NAME_value(sans, i);
            if (g->type != GEN_DNS) continue;
            // NOLINTNEXTLINE(cppcoreguidelines-pro-type-union-access): OpenSSL's API, the type checked above
            const auto* s = g->d.dNSName;
            id.names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                                  size_t(ASN1_STRING_length(s)));
        }
        GENERAL_NAMES_free(sans);
    }
    unsigned char* der = nullptr;
    const int n = i2d_X509(cert, &der);
    if (n > 0) id.fingerprint = to_hex(sha256(std::string_view(reinterpret_cast<const char*>(der), size_t(n))));
    OPENSSL_free(der);
    X509_free(cert);
    return id;
}

// The largest frame a connection may send before its hello: a hello.
constexpr size_t kHelloFrameBytes = proto::kHeaderSize + 1 + proto::kMaxNameBytes + 8 + 1 + proto::kMaxTokenBytes;

template <class Stream>
class Session : public DataPlaneLink, public std::enable_shared_from_this<Session<Stream>> {
public:
    // `ticket`: the pending place of a TCP connection (null on the Unix socket).
    Session(Stream stream, Publisher& publisher, std::string address, std::string identity,
            std::shared_ptr<DataPlaneAdmission> admission, std::unique_ptr<DataPlaneAdmission::Ticket> ticket)
        : stream_(std::move(stream)), publisher_(publisher), address_(std::move(address)),
          identity_(std::move(identity)), limits_(publisher.config()), admission_(std::move(admission)),
          ticket_(std::move(ticket)), hello_timer_(stream_.get_executor()), handshake_timer_(stream_.get_executor()),
          write_timer_(stream_.get_executor()), close_timer_(stream_.get_executor()) {}

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

    void close(Goodbye::Code code, std::string reason) override { close(code, std::move(reason), true); }

private:
    void close(Goodbye::Code code, std::string reason, bool log) {
        if (closing_ || finished_) return;
        closing_ = true;
        close_reason_ = reason;
        if (log && code != Goodbye::Code::shutdown) log_warning("data plane " + who() + ": closing: " + reason);
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

    // A connection that did not become a data plane: counted and logged by
    // the admission (rate-limited); a goodbye tells a data plane why.
    void refuse(DataPlaneRefusal why, Goodbye::Code code, const std::string& reason) {
        admission_->refused(why, address_, reason);
        close(code, reason, false);
    }

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
                self->admission_->refused(DataPlaneRefusal::hello_timeout, self->address_,
                                          "no hello within dataplanes.hello_timeout; closed");
                self->finish("no hello");
            });
            if constexpr (is_tls<Stream>::value) {
                handshake_timer_.expires_after(limits_.handshake_timeout);
                handshake_timer_.async_wait([self](boost::system::error_code ec) {
                    if (ec || self->handshaken_ || self->finished_) return;
                    self->admission_->refused(DataPlaneRefusal::handshake_timeout, self->address_,
                                              "no TLS handshake within dataplanes.handshake_timeout; closed");
                    self->finish("no TLS handshake");
                });
                try {
                    co_await stream_.async_handshake(ssl::stream_base::server, use_awaitable);
                } catch (const boost::system::system_error& e) {
                    if (finished_) co_return;  // a timeout, counted there
                    admission_->tls_failed(address_, e.code().message());
                    finish("TLS handshake failed");
                    co_return;
                }
                handshaken_ = true;
                handshake_timer_.cancel();
                auto cert = certificate_identity(stream_.native_handle());
                address_ += cert.cn.empty() ? " tls" : " tls CN=" + printable(cert.cn);
                identity_ = "sha256:" + cert.fingerprint;
                certificate_names_ = std::move(cert.names);
            }
            if (finished_) co_return;
            // No data-plane slot until a valid hello (on_hello), and no frame
            // before it larger than a hello: rbuf_ is that small until then.
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
                        if (!greeted_ && wanted > kHelloFrameBytes)
                            refuse(DataPlaneRefusal::before_hello, Goodbye::Code::protocol_error,
                                   "a " + std::string(proto::to_string(proto::FrameType(rbuf_[off + 3]))) +
                                       " frame of " + std::to_string(wanted) + " bytes before hello");
                        break;
                    }
                    if (r.status == proto::DecodeStatus::error) {
                        publisher_.count_protocol_error();
                        close(Goodbye::Code::protocol_error,
                              "malformed frame: " + std::string(proto::to_string(r.error)));
                        break;
                    }
                    off += r.consumed;
                    if (!greeted_ && !std::holds_alternative<proto::Hello>(r.frame) &&
                        !std::holds_alternative<Goodbye>(r.frame)) {
                        refuse(DataPlaneRefusal::before_hello, Goodbye::Code::protocol_error,
                               std::string(proto::to_string(proto::FrameType(rbuf_[off - r.consumed + 3]))) +
                                   " before hello");
                        break;
                    }
                    handle(r.frame);
                    if (closing_ || finished_) break;
                }
                if (closing_ || finished_) break;
                std::memmove(rbuf_.data(), rbuf_.data() + off, have - off);
                have -= off;
                // Room for a large stats report; the usual size again after it.
                if (greeted_ && rbuf_.size() < kReadBuffer) rbuf_.resize(kReadBuffer);
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
            on_hello(*h);
        } else if (const auto* a = std::get_if<proto::Ack>(&f)) {
            publisher_.ack(id_, a->applied_seq);
        } else if (const auto* st = std::get_if<proto::Stats>(&f)) {
            publisher_.stats(id_, *st);
        } else if (const auto* ft = std::get_if<proto::Features>(&f)) {
            publisher_.features(id_, *ft);
        } else if (const auto* d = std::get_if<proto::Disclosure>(&f)) {
            on_disclosure(*d);
        } else if (const auto* fe = std::get_if<proto::Features>(&f)) {
            publisher_.features(id_, *fe);
        } else if (const auto* g = std::get_if<Goodbye>(&f)) {
            const std::string why = "it said goodbye (" + std::string(proto::to_string(g->code)) + ": " +
                                    printable(g->message) + ")";
            if (g->code != Goodbye::Code::shutdown) log_warning("data plane " + who() + ": " + why);
            finish(why);
        }
        // The decoder admits nothing else towards consentd.
    }

    // The data plane takes a slot if its name is its certificate's and no
    // other identity holds that name (docs/protocol.md, "Limits before hello").
    void on_hello(const proto::Hello& h) {
        if (greeted_) return publisher_.hello(id_, h);  // hello twice: the publisher refuses it
        const std::string name(h.name);
        if constexpr (is_tls<Stream>::value) {
            if (std::find(certificate_names_.begin(), certificate_names_.end(), name) == certificate_names_.end())
                return refuse(DataPlaneRefusal::name_not_in_certificate, Goodbye::Code::protocol_error,
                              "the name " + name + " is neither the certificate's CN nor one of its DNS names");
        }
        switch (publisher_.admissible(name, identity_)) {
        case Publisher::Admission::full:
            return refuse(DataPlaneRefusal::too_many_dataplanes, Goodbye::Code::shutdown,
                          "already " + std::to_string(limits_.max_dataplanes) + " data planes connected");
        case Publisher::Admission::identity_conflict:
            return refuse(DataPlaneRefusal::identity_conflict, Goodbye::Code::protocol_error,
                          "data plane " + name + " is connected with another " +
                              (is_tls<Stream>::value ? "certificate" : "identity") + "; not replacing it");
        case Publisher::Admission::out_of_step:
            // No goodbye: any frame keeps a data plane's table fresh, and
            // this consentd's table may lack changes (docs/scale-out.md,
            // "Fencing"). It tries its next consentd.
            admission_->refused(DataPlaneRefusal::out_of_step, address_,
                                "consentd is not in step with its ledger; closed without a frame");
            return finish("out of step with the ledger");
        case Publisher::Admission::ok: break;
        }
        greeted_ = true;
        name_ = name;
        hello_timer_.cancel();
        if (ticket_) ticket_->release();  // no longer pending: the listener may accept another
        id_ = publisher_.attach(this, address_, identity_);
        attached_ = true;
        publisher_.hello(id_, h);
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
        handshake_timer_.cancel();
        write_timer_.cancel();
        close_timer_.cancel();
        boost::system::error_code ec;
        lowest().close(ec);
        if (ticket_) ticket_->release();
    }

    Stream stream_;
    Publisher& publisher_;
    std::string address_, name_;
    std::string identity_;                        // Publisher::admissible()
    std::vector<std::string> certificate_names_;  // TLS: the names hello may give
    const DataPlaneConfig& limits_;
    std::shared_ptr<DataPlaneAdmission> admission_;
    std::unique_ptr<DataPlaneAdmission::Ticket> ticket_;
    std::string close_reason_;
    uint64_t id_ = 0;
    bool attached_ = false, greeted_ = false, closing_ = false, finished_ = false, handshaken_ = false;
    // Hello, ack and goodbye fit the usual size; a stats report may not.
    // Before hello the buffer holds a hello and no more.
    static constexpr size_t kReadBuffer = 16u << 10, kKeepReadBuffer = 64u << 10;
    std::vector<uint8_t> rbuf_ = std::vector<uint8_t>(kHelloFrameBytes);
    std::deque<Item> queue_;
    std::vector<std::pair<uint64_t, uint64_t>> storing_;  // disclosure reports with the sink: (reporter, seq)
    size_t inflight_ = 0;                                 // queue_ items being written
    size_t bounded_bytes_ = 0;
    bool writing_ = false;
    uint64_t write_gen_ = 0;
    std::vector<asio::const_buffer> buffers_;
    asio::steady_timer hello_timer_, handshake_timer_, write_timer_, close_timer_;
};

// Hello, ack and goodbye never need the read buffer to grow; a disclosure
// report may (1 MiB at most), as a stats report may.
static_assert(proto::kHeaderSize + 2 + 2 + proto::kMaxMessageBytes <= 16u << 10);
static_assert(kHelloFrameBytes <= 16u << 10);

}  // namespace

void start_session(asio::local::stream_protocol::socket socket, Publisher& publisher,
                   std::shared_ptr<DataPlaneAdmission> admission) {
    std::string peer = peer_of(socket);
    std::string identity = identity_of(socket);
    std::make_shared<Session<asio::local::stream_protocol::socket>>(std::move(socket), publisher, std::move(peer),
                                                                    std::move(identity), std::move(admission), nullptr)
        ->start();
}

void start_session(tcp::socket socket, Publisher& publisher, std::shared_ptr<DataPlaneAdmission> admission,
                   std::unique_ptr<DataPlaneAdmission::Ticket> ticket) {
    boost::system::error_code ec;
    socket.set_option(tcp::no_delay(true), ec);
    std::string peer = peer_of(socket);
    std::make_shared<Session<tcp::socket>>(std::move(socket), publisher, std::move(peer), std::string(),
                                           std::move(admission), std::move(ticket))
        ->start();
}

void start_session(tcp::socket socket, ssl::context& tls, Publisher& publisher,
                   std::shared_ptr<DataPlaneAdmission> admission, std::unique_ptr<DataPlaneAdmission::Ticket> ticket) {
    boost::system::error_code ec;
    socket.set_option(tcp::no_delay(true), ec);
    std::string peer = peer_of(socket);
    std::make_shared<Session<ssl::stream<tcp::socket>>>(ssl::stream<tcp::socket>(std::move(socket), tls), publisher,
                                                        std::move(peer), std::string(), std::move(admission),
                                                        std::move(ticket))
        ->start();
}

}  // namespace optgate::consentd
