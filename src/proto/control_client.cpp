#include "proto/control_client.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/asio/ip/address.hpp>

#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "proto/codec.hpp"
#include "proto/table_sync.hpp"

namespace optgate::proto {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using asio::awaitable;
using asio::use_awaitable;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

struct ControlClient::Impl {
    Impl(Enforcement& e, Options o) : enforcement(e), opts(std::move(o)), sync(e) {}

    Enforcement& enforcement;
    Options opts;
    TableSync sync;
    std::optional<ssl::context> tls;

    asio::io_context io{1};
    std::thread thread;
    bool stopping = false;                 // io thread only
    std::function<void()> close_current;   // io thread only: ends the current attempt
    asio::steady_timer backoff_timer{io};
    asio::steady_timer watchdog{io};
    Clock::time_point deadline;
    uint64_t attempt = 0;  // the watchdog's generation
    bool progressed = false;  // the current attempt installed or resumed a table
    bool welcomed = false;    // the current attempt got as far as consentd's welcome
    bool replaced = false;    // consentd said another connection has our name
    std::mt19937_64 rng{std::random_device{}()};
    std::vector<uint8_t> buf;
    std::string last_logged;

    mutable std::mutex mu;
    mutable std::condition_variable cv;
    Status st;

    void log(const std::string& line) {
        if (opts.log)
            opts.log(line);
        else
            std::fprintf(stderr, "optgate control %s: %s\n", opts.name.c_str(), line.c_str());
    }

    void set_error(const std::string& e) {
        {
            std::lock_guard lk(mu);
            st.last_error = e;
        }
        // A consentd that stays down would otherwise log every retry.
        if (e != last_logged) log(e);
        last_logged = e;
    }

    void publish(bool connected) {
        std::lock_guard lk(mu);
        st.connected = connected;
        st.synced = sync.has_table();
        st.applied_seq = sync.applied_seq();
        st.head_seq = sync.head_seq();
        st.stream_id = sync.stream_id();
        st.table_version = sync.table_version();
        st.snapshots = sync.snapshots_applied();
        st.deltas = sync.deltas_applied();
        st.entries_refused = sync.entries_refused();
        cv.notify_all();
    }

    // The watchdog closes the current attempt once `deadline` passes; moving
    // the deadline needs no timer cancel.
    void arm_watchdog() {
        watchdog.expires_at(deadline);
        watchdog.async_wait([this, gen = attempt](boost::system::error_code ec) {
            if (ec || gen != attempt) return;
            if (Clock::now() >= deadline) {
                if (close_current) close_current();
                return;
            }
            arm_watchdog();
        });
    }

    Clock::duration idle_limit() const {
        // Three heartbeats missed: consentd or the path to it is gone.
        const auto hb = std::chrono::milliseconds(sync.heartbeat_interval_ms());
        return std::max<Clock::duration>(3 * hb, std::chrono::seconds(1));
    }

    awaitable<void> run() {
        auto backoff = opts.backoff_initial;
        while (!stopping) {
            progressed = false;
            welcomed = false;
            const std::string where = opts.endpoint.to_string();
            try {
                co_await attempt_once();
            } catch (const boost::system::system_error& e) {
                if (!stopping)
                    set_error(welcomed ? "connection to " + where + " lost: " + e.code().message()
                                       : "cannot connect to " + where + ": " + e.code().message());
            } catch (const std::exception& e) {
                if (!stopping) set_error("connection to " + where + " ended: " + e.what());
            }
            ++attempt;
            close_current = nullptr;
            publish(false);
            if (stopping) break;
            if (progressed) backoff = opts.backoff_initial;
            if (replaced) {
                backoff = opts.backoff_max;
                replaced = false;
            }
            // Full jitter over the upper half: data planes that lost consentd
            // together do not come back in lockstep.
            const auto ms = backoff.count();
            std::uniform_int_distribution<long long> d(ms / 2, std::max<long long>(ms, 1));
            backoff_timer.expires_after(std::chrono::milliseconds(d(rng)));
            boost::system::error_code ec;
            co_await backoff_timer.async_wait(asio::redirect_error(use_awaitable, ec));
            backoff = std::min(backoff * 2, opts.backoff_max);
        }
    }

    awaitable<void> attempt_once() {
        deadline = Clock::now() + opts.connect_timeout;
        arm_watchdog();
        const Endpoint& ep = opts.endpoint;
        if (ep.kind == Endpoint::Kind::unix_socket) {
            asio::local::stream_protocol::socket s(io);
            close_current = [&s] {
                boost::system::error_code ec;
                s.close(ec);
            };
            co_await s.async_connect(asio::local::stream_protocol::endpoint(ep.path), use_awaitable);
            co_await converse(s);
            co_return;
        }
        tcp::resolver resolver(io);
        close_current = [&resolver] { resolver.cancel(); };
        const auto results = co_await resolver.async_resolve(ep.host, std::to_string(ep.port), use_awaitable);
        tcp::socket sock(io);
        close_current = [&sock] {
            boost::system::error_code ec;
            sock.close(ec);
        };
        co_await asio::async_connect(sock, results, use_awaitable);
        sock.set_option(tcp::no_delay(true));
        if (!tls) {
            co_await converse(sock);
            co_return;
        }
        ssl::stream<tcp::socket> s(std::move(sock), *tls);
        close_current = [&s] {
            boost::system::error_code ec;
            s.lowest_layer().close(ec);
        };
        boost::system::error_code ec;
        asio::ip::make_address(ep.host, ec);
        if (ec) SSL_set_tlsext_host_name(s.native_handle(), ep.host.c_str());  // SNI for names only
        s.set_verify_callback(ssl::host_name_verification(ep.host));
        co_await s.async_handshake(ssl::stream_base::client, use_awaitable);
        co_await converse(s);
    }

    template <class Stream>
    awaitable<void> send(Stream& s, const std::string& bytes) {
        co_await asio::async_write(s, asio::buffer(bytes), use_awaitable);
    }

    template <class Stream>
    awaitable<void> converse(Stream& s) {
        sync.connection_started();
        std::string out;
        encode(out, Hello{opts.name, sync.applied_seq(), sync.stream_id()});
        co_await send(s, out);
        if (buf.size() < (64u << 10)) buf.resize(64u << 10);
        size_t have = 0;
        for (;;) {
            have += co_await s.async_read_some(asio::buffer(buf.data() + have, buf.size() - have), use_awaitable);
            const uint64_t now = monotonic_ns();
            size_t off = 0;
            bool ack = false;
            for (;;) {
                const auto r = decode(std::span<const uint8_t>(buf.data() + off, have - off), Direction::to_client);
                if (r.status == DecodeStatus::need_more) {
                    // Room for the whole frame once the consumed bytes are gone.
                    if (r.needed > buf.size()) buf.resize(r.needed);
                    break;
                }
                if (r.status == DecodeStatus::error) {
                    const std::string why = "malformed frame from consentd (" + std::string(to_string(r.error)) + ")";
                    out.clear();
                    encode(out, Goodbye{Goodbye::Code::protocol_error, why});
                    co_await send(s, out);
                    throw std::runtime_error(why);
                }
                off += r.consumed;
                const bool is_welcome = std::holds_alternative<Welcome>(r.frame);
                const bool is_snapshot_begin = std::holds_alternative<SnapshotBegin>(r.frame);
                TableSync::Step step = sync.on_frame(r.frame, now);
                if (!step.ok) {
                    out.clear();
                    encode(out, Goodbye{step.code, step.error});
                    co_await send(s, out);
                    throw std::runtime_error(step.error);
                }
                if (step.closed) {
                    // Another data plane with our name took over: two would
                    // take turns forever, so wait long between turns.
                    if (step.code == Goodbye::Code::replaced) replaced = true;
                    throw std::runtime_error("consentd closed the connection (" +
                                             std::string(to_string(step.code)) + "): " + step.error);
                }
                if (is_welcome) {
                    welcomed = true;
                    {
                        std::lock_guard lk(mu);
                        ++st.connects;
                    }
                    log(std::string("connected to ") + opts.endpoint.to_string() +
                        (sync.streaming() ? ", resuming after " + std::to_string(sync.applied_seq())
                                          : ", receiving a snapshot"));
                    last_logged.clear();
                    if (sync.streaming()) progressed = true;
                }
                if (is_snapshot_begin && sync.has_table() && !is_welcome)
                    log("consentd is resending the whole table");
                if (step.installed) progressed = true;
                ack = ack || step.ack;
            }
            if (off) {
                std::memmove(buf.data(), buf.data() + off, have - off);
                have -= off;
            }
            if (welcomed) deadline = Clock::now() + idle_limit();
            {
                std::lock_guard lk(mu);
                st.last_contact_mono_ns = now;
            }
            publish(welcomed);
            enforcement.rcu().reclaim();
            if (ack) {
                out.clear();
                encode(out, Ack{sync.applied_seq()});
                co_await send(s, out);
            }
        }
    }
};

ControlClient::ControlClient(Enforcement& enforcement, Options options)
    : impl_(std::make_unique<Impl>(enforcement, std::move(options))) {
    const Options& o = impl_->opts;
    std::string probe;
    if (!encode(probe, Hello{o.name, 0, {}}))
        throw std::invalid_argument("data plane name '" + o.name +
                                    "' must be 1..64 characters of [A-Za-z0-9._:@-]");
    if (o.endpoint.kind == Endpoint::Kind::tcp && !o.tls && !o.endpoint.is_loopback())
        throw std::invalid_argument("TCP to " + o.endpoint.to_string() +
                                    " needs mutual TLS (certificate, key, CA); only loopback may go without");
    if (o.tls) {
        if (o.endpoint.kind != Endpoint::Kind::tcp)
            throw std::invalid_argument("TLS is for TCP endpoints; a Unix socket is protected by its permissions");
        impl_->tls.emplace(make_client_tls(*o.tls));
    }
}

ControlClient::~ControlClient() { stop(); }

bool ControlClient::bootstrap(std::string_view policy_yaml, const std::string& name, std::string& error) {
    return impl_->sync.bootstrap(policy_yaml, name, error);
}

void ControlClient::start() {
    if (impl_->thread.joinable()) return;
    Impl* impl = impl_.get();
    impl->thread = std::thread([impl] {
        asio::co_spawn(impl->io, impl->run(), [impl](std::exception_ptr e) {
            if (!e) return;
            try {
                std::rethrow_exception(e);
            } catch (const std::exception& ex) {
                impl->log(std::string("control client stopped: ") + ex.what());
            }
        });
        impl->io.run();
    });
}

void ControlClient::stop() {
    Impl* impl = impl_.get();
    if (!impl->thread.joinable()) return;
    asio::post(impl->io, [impl] {
        impl->stopping = true;
        if (impl->close_current) impl->close_current();
        impl->backoff_timer.cancel();
        impl->watchdog.cancel();
    });
    impl->thread.join();
}

ControlClient::Status ControlClient::status() const {
    std::lock_guard lk(impl_->mu);
    return impl_->st;
}

bool ControlClient::wait_synced(std::chrono::milliseconds timeout) const {
    std::unique_lock lk(impl_->mu);
    return impl_->cv.wait_for(lk, timeout, [&] { return impl_->st.synced; });
}

}  // namespace optgate::proto
