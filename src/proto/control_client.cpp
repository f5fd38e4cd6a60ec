#include "proto/control_client.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "proto/codec.hpp"
#include "proto/stats.hpp"
#include "proto/table_sync.hpp"

namespace optgate::proto {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using asio::awaitable;
using asio::use_awaitable;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

// How long the control thread waits for the workers to pass a quiescent
// point before acknowledging; a deferred ack is retried on the next frame
// (heartbeats come every second).
constexpr uint64_t kAckBarrierTimeoutNs = 1000000000ull;

struct ControlClient::Impl {
    Impl(Enforcement& e, Options o) : enforcement(e), opts(std::move(o)), sync(e) {}

    Enforcement& enforcement;
    Options opts;
    TableSync sync;
    std::optional<ssl::context> tls;

    asio::io_context io{1};
    std::thread thread;
    bool stopping = false;                // io thread only
    std::function<void()> close_current;  // io thread only: ends the current attempt
    asio::steady_timer backoff_timer{io};
    asio::steady_timer watchdog{io};
    Clock::time_point deadline;
    uint64_t attempt = 0;     // the watchdog's generation
    bool progressed = false;  // the current attempt installed or resumed a table
    bool welcomed = false;    // the current attempt got as far as consentd's welcome
    bool replaced = false;    // consentd said another connection has our name
    std::mt19937_64 rng{std::random_device{}()};
    std::vector<uint8_t> buf;
    std::string last_logged;

    // ---- writes: the reader (acks, goodbyes) and the stats loop share the stream ----
    bool writing = false;
    asio::steady_timer write_free{io, Clock::time_point::max()};  // cancelled: the stream is free

    // ---- stats reports (io thread) ----
    std::function<void(std::vector<StatEntry>&)> stats_source;
    std::chrono::milliseconds stats_interval{1000};  // 0: no reports
    asio::steady_timer stats_timer{io};
    asio::steady_timer stats_ended{io, Clock::time_point::max()};  // cancelled: the stats loop is done
    bool stats_running = false;                                    // this connection's stats loop has not ended yet
    bool stats_stop = false;                                       // this connection is over
    bool stats_sent = false;                                       // a report went out on this connection
    bool stats_refused = false;  // consentd does not know the frame (older than stats)
    std::vector<StatEntry> stats_entries;
    std::string stats_frame, stats_problem;
    // flush_stats(): requests and written reports, by generation (under mu).
    uint64_t stats_flush_gen = 0, stats_written_gen = 0;

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
        st.table_entries = enforcement.table() ? enforcement.table()->size() : 0;  // writer thread: exact
        cv.notify_all();
        // The first stats report goes right after welcome: report_stats waits for it.
        if (connected && stats_running && !stats_sent) stats_timer.cancel();
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
            co_await converse_reporting(s);
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
            co_await converse_reporting(sock);
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
        co_await converse_reporting(s);
    }

    // Whole frames, one writer at a time: the reader and the stats loop
    // both write to the stream.
    template <class Stream>
    awaitable<void> send(Stream& s, const std::string& bytes) {
        while (writing) {
            boost::system::error_code ec;
            co_await write_free.async_wait(asio::redirect_error(use_awaitable, ec));
        }
        writing = true;
        // Frees the writer slot however the write ends (error, cancellation).
        struct Release {
            Impl* impl;
            explicit Release(Impl* i) : impl(i) {}
            Release(const Release&) = delete;
            Release& operator=(const Release&) = delete;
            ~Release() {
                impl->writing = false;
                // Wakes the next writer. timer::cancel() throws only if the
                // reactor itself fails, and a destructor must not throw; the
                // waiters then end with the io_context anyway.
                try {
                    impl->write_free.cancel();
                } catch (...) {  // see above
                }
            }
        } release{this};
        co_await asio::async_write(s, asio::buffer(bytes), use_awaitable);
    }

    // converse() plus this connection's stats loop, which ends before the
    // stream does (it writes to it).
    template <class Stream>
    awaitable<void> converse_reporting(Stream& s) {
        stats_stop = false;
        stats_sent = false;
        stats_running = true;
        asio::co_spawn(io, report_stats(s), [this](const std::exception_ptr& e) {
            stats_running = false;
            stats_ended.cancel();
            // A report that could not be written: the connection is gone.
            if (e && !stats_stop && close_current) close_current();
        });
        std::exception_ptr ended;
        try {
            co_await converse(s);
        } catch (...) {
            ended = std::current_exception();
        }
        stats_stop = true;
        stats_timer.cancel();
        if (close_current) close_current();  // ends a report being written
        while (stats_running) {
            boost::system::error_code ec;
            co_await stats_ended.async_wait(asio::redirect_error(use_awaitable, ec));
        }
        if (stats_sent) note_stats_refused(ended);
        if (ended) std::rethrow_exception(ended);
    }

    // A consentd older than the stats frame answers it with a protocol
    // error; reconnecting to send it again would lose the table stream
    // every time, so this client stops reporting instead.
    void note_stats_refused(const std::exception_ptr& ended) {
        try {
            if (ended) std::rethrow_exception(ended);
        } catch (const std::exception& e) {
            const std::string_view what = e.what();
            if (what.find(to_string(Goodbye::Code::protocol_error)) != std::string_view::npos &&
                what.find(to_string(DecodeError::unknown_type)) != std::string_view::npos) {
                stats_refused = true;
                log("consentd does not know the stats frame (an older version): no more stats reports until "
                    "this data plane restarts");
            }
        } catch (...) {
        }
    }

    // One report right after welcome (publish() wakes us), then one every
    // stats_interval, until the connection ends.
    template <class Stream>
    awaitable<void> report_stats(Stream& s) {
        while (!stats_stop) {
            const bool due = welcomed && !stats_refused && stats_interval.count() > 0;
            if (due) {
                uint64_t gen = 0;
                {
                    std::lock_guard lk(mu);
                    gen = stats_flush_gen;
                }
                build_stats();
                co_await send(s, stats_frame);
                stats_sent = true;
                bool flush_waiting = false;
                {
                    std::lock_guard lk(mu);
                    stats_written_gen = std::max(stats_written_gen, gen);
                    flush_waiting = stats_flush_gen > gen;  // asked for while this one was on its way
                }
                cv.notify_all();
                if (flush_waiting) continue;
                stats_timer.expires_after(stats_interval);
            } else {
                stats_timer.expires_at(Clock::time_point::max());
            }
            boost::system::error_code ec;
            co_await stats_timer.async_wait(asio::redirect_error(use_awaitable, ec));
        }
    }

    void build_stats() {
        stats_entries.clear();
        std::string problem;
        if (stats_source) {
            try {
                stats_source(stats_entries);
            } catch (const std::exception& e) {
                problem = std::string("the stats source failed: ") + e.what();
                stats_entries.clear();
            }
        }
        // Our own, after the source's: on a clash the source's entry stays.
        const auto add = [&](const char* name, uint64_t v, StatKind k) {
            stats_entries.push_back({name, v, k, {}, {}});
        };
        uint64_t connects = 0;
        {
            std::lock_guard lk(mu);
            connects = st.connects;
        }
        // This thread is the table's writer: reading it here needs no RCU.
        const ConsentTable* table = enforcement.table();
        add("control_synced", sync.has_table(), StatKind::gauge);
        add("control_applied_seq", sync.applied_seq(), StatKind::gauge);
        add("control_head_seq", sync.head_seq(), StatKind::gauge);
        add("control_connects", connects, StatKind::counter);
        add("control_snapshots", sync.snapshots_applied(), StatKind::counter);
        add("control_deltas", sync.deltas_applied(), StatKind::counter);
        add("control_entries_refused", sync.entries_refused(), StatKind::counter);
        add("table_entries", table ? table->size() : 0, StatKind::gauge);
        add("table_stale", enforcement.view(monotonic_ns()).health == TableHealth::stale, StatKind::gauge);
        const size_t dropped = normalize_stats(stats_entries, problem);
        // Logged when the problem changes, not every second.
        if ((dropped || !problem.empty()) && problem != stats_problem)
            log("stats: " + (dropped ? std::to_string(dropped) + " entries dropped: " : std::string()) + problem);
        stats_problem = problem;
        stats_frame.clear();
        encode_stats(stats_frame, stats_entries);
    }

    template <class Stream>
    awaitable<void> converse(Stream& s) {
        sync.connection_started();
        std::string out;
        encode(out, Hello{opts.name, sync.applied_seq(), sync.stream_id()});
        co_await send(s, out);
        if (buf.size() < (64u << 10)) buf.resize(64u << 10);
        size_t have = 0;
        bool ack_owed = false;  // applied, not yet acknowledged
        for (;;) {
            have += co_await s.async_read_some(asio::buffer(buf.data() + have, buf.size() - have), use_awaitable);
            const uint64_t now = monotonic_ns();
            size_t off = 0;
            bool ack = ack_owed;
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
                    throw std::runtime_error("consentd closed the connection (" + std::string(to_string(step.code)) +
                                             "): " + step.error);
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
                if (is_snapshot_begin && sync.has_table() && !is_welcome) log("consentd is resending the whole table");
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
            // Ack only once every worker has finished the bursts that
            // might have read the table before the change: consentd's
            // enforcement latency then measures real enforcement.
            if (ack && !enforcement.rcu().barrier(kAckBarrierTimeoutNs)) {
                log("a worker did not pass a quiescent point within 1 s; ack deferred");
                ack = false;
                ack_owed = true;
            }
            if (ack) {
                ack_owed = false;
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
        throw std::invalid_argument("data plane name '" + o.name + "' must be 1..64 characters of [A-Za-z0-9._:@-]");
    if (o.endpoint.kind == Endpoint::Kind::tcp && !o.tls && !o.endpoint.is_loopback())
        throw std::invalid_argument("TCP to " + o.endpoint.to_string() +
                                    " needs mutual TLS (certificate, key, CA); only loopback may go without");
    if (o.tls) {
        if (o.endpoint.kind != Endpoint::Kind::tcp)
            throw std::invalid_argument("TLS is for TCP endpoints; a Unix socket is protected by its permissions");
        impl_->tls.emplace(make_client_tls(*o.tls));
    }
}

ControlClient::~ControlClient() {
    // stop() throws only if posting or joining fails (out of memory, a
    // broken thread library); a destructor reports it instead of throwing.
    try {
        stop();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "control client: stop failed: %s\n", e.what());
    }
}

bool ControlClient::bootstrap(std::string_view policy_yaml, const std::string& name, std::string& error) {
    return impl_->sync.bootstrap(policy_yaml, name, error);
}

void ControlClient::set_stats_source(std::function<void(std::vector<StatEntry>&)> fn,
                                     std::chrono::milliseconds interval) {
    Impl* impl = impl_.get();
    // Applied on the client's thread, which owns the stats state.
    asio::post(impl->io, [impl, fn = std::move(fn), interval]() mutable {
        impl->stats_source = std::move(fn);
        impl->stats_interval = std::max(interval, std::chrono::milliseconds(0));
        impl->stats_timer.cancel();  // report with the new source now
    });
}

bool ControlClient::flush_stats(std::chrono::milliseconds timeout) {
    Impl* impl = impl_.get();
    uint64_t gen = 0;
    {
        std::lock_guard lk(impl->mu);
        if (!impl->st.connected || !impl->thread.joinable()) return false;
        gen = ++impl->stats_flush_gen;
    }
    asio::post(impl->io, [impl] { impl->stats_timer.cancel(); });
    std::unique_lock lk(impl->mu);
    return impl->cv.wait_for(lk, timeout, [&] { return impl->stats_written_gen >= gen; });
}

void ControlClient::start() {
    if (impl_->thread.joinable()) return;
    Impl* impl = impl_.get();
    impl->thread = std::thread([impl] {
        asio::co_spawn(impl->io, impl->run(), [impl](const std::exception_ptr& e) {
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
