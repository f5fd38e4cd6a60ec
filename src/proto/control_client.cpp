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

#include "core/disclosure.hpp"
#include "proto/checkpoint_record.hpp"
#include "proto/codec.hpp"
#include "proto/connection_end.hpp"
#include "proto/disclosure_reporter.hpp"
#include "proto/stats_reporter.hpp"
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

bool refuses_frame(const Goodbye& g) noexcept {
    if (g.code == Goodbye::Code::unsupported) return true;
    return g.code == Goodbye::Code::protocol_error &&
           g.message.find(to_string(DecodeError::unknown_type)) != std::string_view::npos;
}

struct ControlClient::Impl {
    Impl(Enforcement& e, Options o)
        : enforcement(e), opts(std::move(o)), sync(e),
          stats(
              io, [this](std::vector<StatEntry>& out) { own_stats(out); }, [this](const std::string& l) { log(l); }),
          disclosures(io, opts.disclosure_queue_bytes, opts.disclosure_resend_after,
                      [this](const std::string& l) { log(l); }),
          checkpoints(opts.checkpoint_public_key.empty()
                          ? std::nullopt
                          : std::optional(CheckpointKey::load_public(opts.checkpoint_public_key))) {
        st.checkpoint_verified = checkpoints.verifying();
    }

    Enforcement& enforcement;
    Options opts;
    TableSync sync;
    std::optional<ssl::context> tls;

    asio::io_context io{1};
    std::thread thread;
    bool stopping = false;  // io thread only
    asio::steady_timer backoff_timer{io};
    asio::steady_timer watchdog{io};
    asio::steady_timer key_clock{io};
    // The stream id when consentd refused the features frame (an older
    // consentd): not asked again until it changes (an upgrade restarts it).
    // Refused before any table: the first stream installed after it.
    std::optional<std::string> features_refused_stream;
    std::mt19937_64 rng{std::random_device{}()};
    // ---- the endpoint ring (io thread) ----
    size_t current = 0;                  // opts.endpoints[current]: the one tried now
    size_t failed_in_row = 0;            // attempts that ended before consentd's welcome, in a row
    std::optional<size_t> last_welcome;  // the endpoint of the last welcome
    const Endpoint& endpoint() const { return opts.endpoints[current]; }
    std::vector<uint8_t> buf;
    std::vector<std::string> last_logged = std::vector<std::string>(
        opts.endpoints.size());  // per endpoint: the last error logged

    // ---- the current connection attempt (io thread) ----
    struct Attempt {
        uint64_t number = 0;             // the watchdog's generation
        std::function<void()> close;     // ends it: closes the socket, or cancels the resolve
        Clock::time_point deadline;      // the watchdog ends it then (connect_timeout, then the idle limit)
        bool welcomed = false;           // it got as far as consentd's welcome
        bool progressed = false;         // it installed or resumed a table
        bool conversing = false;         // its reader runs
        bool keys_answered = false;      // consentd sent pseudonym keys on it
        bool features_sent = false;      // it asked for optional frames (proto::Features), keys among them...
        bool features_answered = false;  // ...and consentd answered
        // A write failed: consentd closed its end. The reader goes on to the
        // end of what consentd sent before that (a goodbye saying why), to a
        // deadline that reads no longer move.
        std::optional<std::string> write_failed;
        std::optional<ConnectionEnd> end;  // the first reason recorded is the one
    } at;

    // ---- writes: the reader (acks, goodbyes) and the side loops share the stream ----
    bool writing = false;
    asio::steady_timer write_free{io, Clock::time_point::max()};  // cancelled: the stream is free

    // ---- side loops (the reporters) write to the stream: each connection waits for them to end ----
    size_t side_loops = 0;
    asio::steady_timer side_loops_ended{io, Clock::time_point::max()};  // cancelled: one ended

    StatsReporter stats;
    DisclosureReporter disclosures;
    CheckpointWitness checkpoints;  // io thread; copied into st
    bool features_settled = false;  // under mu: see wait_features()

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
        if (e != last_logged[current]) log(e);
        last_logged[current] = e;
    }

    void publish(bool connected) {
        std::lock_guard lk(mu);
        st.connected = connected;
        // Keys asked for and not answered yet: not in sync (they come
        // right after the first snapshot; a pass before them would strip).
        st.synced = sync.has_table() && !(at.features_sent && !at.keys_answered);
        st.applied_seq = sync.applied_seq();
        st.head_seq = sync.head_seq();
        st.stream_id = sync.stream_id();
        st.resume_token = sync.hello_stream_id() == sync.stream_id() ? std::string() : sync.hello_stream_id();
        st.table_version = sync.table_version();
        st.snapshots = sync.snapshots_applied();
        st.deltas = sync.deltas_applied();
        st.entries_refused = sync.entries_refused();
        st.table_entries = enforcement.table() ? enforcement.table()->size() : 0;  // writer thread: exact
        st.pseudonym_keys = sync.keys_held();
        cv.notify_all();
    }

    // Records why the current attempt ends (unless a reason is recorded
    // already) and closes it.
    void end_attempt(ConnectionEnd end) {
        if (!at.end) at.end = std::move(end);
        if (at.close) at.close();
    }

    // The watchdog ends the current attempt once `deadline` passes; moving
    // the deadline needs no timer cancel.
    void arm_watchdog() {
        watchdog.expires_at(at.deadline);
        watchdog.async_wait([this, gen = at.number](boost::system::error_code ec) {
            if (ec || gen != at.number) return;
            if (Clock::now() >= at.deadline && at.write_failed) {
                end_attempt({ConnectionEnd::Kind::io_error, Goodbye::Code::shutdown, *at.write_failed});
                return;
            }
            if (Clock::now() >= at.deadline) {
                end_attempt(
                    {ConnectionEnd::Kind::timeout, Goodbye::Code::timeout,
                     at.welcomed
                         ? "nothing heard from consentd for " +
                               std::to_string(
                                   std::chrono::duration_cast<std::chrono::milliseconds>(idle_limit()).count()) +
                               " ms"
                         : "no welcome within " + std::to_string(opts.connect_timeout.count()) + " ms"});
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

    // The log line for how a connection ended.
    std::string describe(const ConnectionEnd& e) const {
        const std::string where = endpoint().to_string();
        switch (e.kind) {
        case ConnectionEnd::Kind::stopped: return "stopped";
        case ConnectionEnd::Kind::connect_failed: return "cannot connect to " + where + ": " + e.message;
        case ConnectionEnd::Kind::io_error: return "connection to " + where + " lost: " + e.message;
        case ConnectionEnd::Kind::timeout:
            return (at.welcomed ? "connection to " + where + " lost: " : "cannot connect to " + where + ": ") +
                   e.message;
        case ConnectionEnd::Kind::peer_goodbye:
        case ConnectionEnd::Kind::frame_refused:
            return "connection to " + where + " ended: consentd closed the connection (" +
                   std::string(to_string(e.code)) + "): " + e.message;
        case ConnectionEnd::Kind::protocol_error: return "connection to " + where + " ended: " + e.message;
        }
        return "connection to " + where + " ended";
    }

    // What the connection that just ended says about the peer.
    void learn_from(const ConnectionEnd& e) {
        // A consentd older than the stats frame answers it with a protocol
        // error; reconnecting to send it again would lose the table stream
        // every time, so this client stops reporting instead.
        // A report of ours unconfirmed on that connection was sent after the
        // stats report: the newer frame is the one refused (if it was stats
        // after all, the next connection, without reports, says so).
        if (e.kind != ConnectionEnd::Kind::frame_refused) return;
        // The features frame goes right after hello and a consentd that takes
        // it answers before reading on: a refusal before the answer is its.
        if (at.features_sent && !at.features_answered) {
            features_refused_stream = sync.stream_id();
            log("consentd does not know the features frame (it is older): no ledger checkpoints from it, and "
                "collectors with 'deliver: pseudonym' get their identifiers stripped");
            std::lock_guard lk(mu);
            features_settled = true;
            cv.notify_all();
            return;
        }
        if (!disclosures.refused_by_peer() && stats.sent()) stats.refused();
    }

    awaitable<void> run() {
        auto backoff = opts.backoff_initial;
        while (!stopping) {
            Attempt next;
            next.number = at.number + 1;
            at = std::move(next);
            const ConnectionEnd end = co_await attempt();
            ++at.number;  // the watchdog of this attempt is done
            at.close = nullptr;
            publish(false);
            if (stopping) break;
            set_error(describe(end));
            learn_from(end);
            if (at.progressed) backoff = opts.backoff_initial;
            // Another data plane with our name took over: two would take
            // turns forever, so wait long between turns.
            const bool replaced = end.kind == ConnectionEnd::Kind::peer_goodbye && end.code == Goodbye::Code::replaced;
            if (replaced) backoff = opts.backoff_max;
            // The ring: the next endpoint at once, and a pause only after
            // every one of them failed in a row (or when replaced).
            failed_in_row = at.welcomed ? 0 : failed_in_row + 1;
            if (opts.endpoints.size() > 1) {
                current = (current + 1) % opts.endpoints.size();
                if (!replaced && failed_in_row < opts.endpoints.size()) continue;
            }
            failed_in_row = 0;
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

    // One attempt, from connecting to the end of its connection: why it ended.
    awaitable<ConnectionEnd> attempt() {
        try {
            co_await attempt_once();
        } catch (const boost::system::system_error& e) {
            // After a failed write the read ends too (end of file): the
            // write says what happened.
            if (!at.end)
                at.end = ConnectionEnd{
                    at.welcomed ? ConnectionEnd::Kind::io_error : ConnectionEnd::Kind::connect_failed,
                    Goodbye::Code::shutdown, at.write_failed.value_or(e.code().message())};
        } catch (const std::exception& e) {
            if (!at.end) at.end = ConnectionEnd{ConnectionEnd::Kind::io_error, Goodbye::Code::shutdown, e.what()};
        }
        if (!at.end) at.end = ConnectionEnd{ConnectionEnd::Kind::io_error, Goodbye::Code::shutdown, "closed"};
        co_return *at.end;
    }

    awaitable<void> attempt_once() {
        at.deadline = Clock::now() + opts.connect_timeout;
        arm_watchdog();
        const Endpoint& ep = endpoint();
        {
            std::lock_guard lk(mu);
            st.endpoint = ep.to_string();
        }
        if (ep.kind == Endpoint::Kind::unix_socket) {
            asio::local::stream_protocol::socket s(io);
            at.close = [&s] {
                boost::system::error_code ec;
                s.close(ec);
            };
            co_await s.async_connect(asio::local::stream_protocol::endpoint(ep.path), use_awaitable);
            co_await converse_with_side_loops(s);
            co_return;
        }
        tcp::resolver resolver(io);
        at.close = [&resolver] { resolver.cancel(); };
        const auto results = co_await resolver.async_resolve(ep.host, std::to_string(ep.port), use_awaitable);
        tcp::socket sock(io);
        at.close = [&sock] {
            boost::system::error_code ec;
            sock.close(ec);
        };
        co_await asio::async_connect(sock, results, use_awaitable);
        sock.set_option(tcp::no_delay(true));
        if (!tls) {
            co_await converse_with_side_loops(sock);
            co_return;
        }
        ssl::stream<tcp::socket> s(std::move(sock), *tls);
        at.close = [&s] {
            boost::system::error_code ec;
            s.lowest_layer().close(ec);
        };
        boost::system::error_code ec;
        asio::ip::make_address(ep.host, ec);
        if (ec) SSL_set_tlsext_host_name(s.native_handle(), ep.host.c_str());  // SNI for names only
        s.set_verify_callback(ssl::host_name_verification(ep.host));
        co_await s.async_handshake(ssl::stream_base::client, use_awaitable);
        co_await converse_with_side_loops(s);
    }

    // Whole frames, one writer at a time: the reader and the side loops
    // all write to the stream.
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
        boost::system::error_code ec;
        co_await asio::async_write(s, asio::buffer(bytes), asio::redirect_error(use_awaitable, ec));
        if (!ec) co_return;
        // consentd closed its end, perhaps right after a goodbye that is
        // still to be read: the reader reads on (see Attempt::write_failed).
        if (at.conversing && !at.end && !at.write_failed) {
            at.write_failed = "cannot write to consentd: " + ec.message();
            at.deadline = Clock::now() + idle_limit();
        }
        throw boost::system::system_error(ec);
    }

    // The reader's writes: one that fails because consentd closed its end
    // does not end the reader, which reads on to what consentd sent last
    // (a goodbye that says why, or the end of the stream).
    template <class Stream>
    awaitable<void> send_then_read_on(Stream& s, const std::string& bytes) {
        try {
            co_await send(s, bytes);
        } catch (const boost::system::system_error&) {
            if (!at.write_failed) throw;
        }
    }

    // A loop beside the reader for this connection (a reporter). A write it
    // cannot make leaves the end to the reader (Attempt::write_failed); any
    // other failure ends the connection.
    void spawn_side_loop(awaitable<void> loop) {
        ++side_loops;
        asio::co_spawn(io, std::move(loop), [this](const std::exception_ptr& e) {
            --side_loops;
            side_loops_ended.cancel();
            if (!e || !at.conversing || at.write_failed) return;
            try {
                std::rethrow_exception(e);
            } catch (const boost::system::system_error& ex) {
                end_attempt({ConnectionEnd::Kind::io_error, Goodbye::Code::shutdown, ex.code().message()});
            } catch (const std::exception& ex) {
                end_attempt({ConnectionEnd::Kind::io_error, Goodbye::Code::shutdown, ex.what()});
            }
        });
    }

    // converse() plus this connection's side loops, which end before the
    // stream does (they write to it).
    template <class Stream>
    awaitable<void> converse_with_side_loops(Stream& s) {
        const SendFrame send_frame = [this, &s](const std::string& bytes) { return send(s, bytes); };
        at.conversing = true;
        stats.connection_started();
        spawn_side_loop(stats.run(send_frame));
        disclosures.connection_started();
        spawn_side_loop(disclosures.run(send_frame));
        std::exception_ptr ended;
        try {
            co_await converse(s);
        } catch (...) {
            ended = std::current_exception();
        }
        at.conversing = false;
        stats.stop();
        disclosures.stop();
        if (at.close) at.close();  // ends a frame being written
        while (side_loops > 0) {
            boost::system::error_code ec;
            co_await side_loops_ended.async_wait(asio::redirect_error(use_awaitable, ec));
        }
        if (ended) std::rethrow_exception(ended);
    }

    // The client's own entries in every stats report.
    void own_stats(std::vector<StatEntry>& out) {
        const auto add = [&](const char* name, uint64_t v, StatKind k) { out.push_back({name, v, k, {}, {}}); };
        uint64_t connects = 0, failovers = 0;
        {
            std::lock_guard lk(mu);
            connects = st.connects;
            failovers = st.failovers;
        }
        // This thread is the table's writer: reading it here needs no RCU.
        const ConsentTable* table = enforcement.table();
        add("control_synced", sync.has_table(), StatKind::gauge);
        add("control_applied_seq", sync.applied_seq(), StatKind::gauge);
        add("control_head_seq", sync.head_seq(), StatKind::gauge);
        add("control_connects", connects, StatKind::counter);
        add("control_failovers", failovers, StatKind::counter);
        add("control_snapshots", sync.snapshots_applied(), StatKind::counter);
        add("control_deltas", sync.deltas_applied(), StatKind::counter);
        add("control_entries_refused", sync.entries_refused(), StatKind::counter);
        add("table_entries", table ? table->size() : 0, StatKind::gauge);
        add("table_stale", enforcement.view(monotonic_ns()).health == TableHealth::stale, StatKind::gauge);
        // How many keys, never which.
        add("control_pseudonym_keys", sync.keys_held(), StatKind::gauge);
        add("control_pseudonym_key_installs", sync.key_installs(), StatKind::counter);
        add("control_checkpoints", checkpoints.kept(), StatKind::counter);
        add("control_checkpoints_refused", checkpoints.refused(), StatKind::counter);
        if (const auto& c = checkpoints.latest()) {
            add("control_checkpoint_seq", c->seq, StatKind::gauge);
            add("control_checkpoint_age_seconds", checkpoint_age_seconds(checkpoints.received_unix_ms(), unix_ms_now()),
                StatKind::gauge);
        }
        if (disclosures.configured()) {
            const auto c = disclosures.counts();
            add("disclosure_reports_sent", c.sent, StatKind::counter);
            add("disclosure_reports_acked", c.acked, StatKind::counter);
            add("disclosure_reports_pending", c.pending, StatKind::gauge);
            add("disclosure_reports_dropped", c.dropped, StatKind::counter);
        }
    }

    // Pseudonym keys change with the wall clock: a period ends, the next
    // key takes over, and a key past its period is dropped whether consentd
    // is connected or not.
    void run_key_clock() {
        key_clock.expires_after(std::chrono::seconds(1));
        key_clock.async_wait([this](boost::system::error_code ec) {
            if (ec || stopping) return;
            sync.tick();
            enforcement.rcu().reclaim();
            {
                std::lock_guard lk(mu);
                st.pseudonym_keys = sync.keys_held();
            }
            run_key_clock();
        });
    }

    // A checkpoint from consentd: kept if it verifies and moves forward
    // (CheckpointWitness); a refused one is logged and counted, and the
    // connection goes on (the table is not in question).
    void on_checkpoint(const Checkpoint& c) {
        std::string why;
        const auto r = checkpoints.offer(c.seq, c.line, unix_ms_now(), why);
        // Each one kept is logged whole: the log is then this data plane's
        // record of what the ledger was, for verify-ledger --checkpoints.
        if (r == CheckpointWitness::Result::refused) log("ledger checkpoint from consentd refused: " + why);
        if (r == CheckpointWitness::Result::kept) log("ledger checkpoint: " + checkpoints.latest_line());
        std::lock_guard lk(mu);
        st.checkpoints_kept = checkpoints.kept();
        st.checkpoints_refused = checkpoints.refused();
        if (r == CheckpointWitness::Result::kept) {
            st.checkpoint_seq = checkpoints.latest()->seq;
            st.checkpoint_line = checkpoints.latest_line();
            st.checkpoint_received_unix_ms = checkpoints.received_unix_ms();
        }
    }

    // Sends our goodbye and records why we end the connection.
    template <class Stream>
    awaitable<void> refuse(Stream& s, Goodbye::Code code, const std::string& why) {
        at.end = ConnectionEnd{ConnectionEnd::Kind::protocol_error, code, why};
        std::string out;
        encode(out, Goodbye{code, why});
        co_await send(s, out);
    }

    // The reader: returns when a goodbye ends the connection (either way),
    // throws when the stream fails.
    template <class Stream>
    awaitable<void> converse(Stream& s) {
        sync.connection_started();
        std::string out;
        encode(out, Hello{opts.name, sync.applied_seq(), sync.hello_stream_id()});
        // Right after hello, so that an older consentd refuses it before
        // anything else (learn_from). Not asked again of the stream that
        // refused it; refused before any table (""): not until a table names
        // that stream, whatever this connection's hello carries.
        const bool refused = features_refused_stream &&
                             (features_refused_stream->empty() || *features_refused_stream == sync.stream_id());
        if (!refused) {
            encode(out, Features{Features::kCheckpoints | Features::kPseudonymKeys | Features::kResumeTokens});
            at.features_sent = true;
            std::lock_guard lk(mu);
            features_settled = false;
        }
        co_await send_then_read_on(s, out);
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
                    co_await refuse(s, Goodbye::Code::protocol_error,
                                    "malformed frame from consentd (" + std::string(to_string(r.error)) + ")");
                    co_return;
                }
                off += r.consumed;
                if (const auto* a = std::get_if<DisclosureAck>(&r.frame)) {
                    disclosures.on_ack(*a);
                    continue;
                }
                if (std::holds_alternative<PseudonymKeys>(r.frame)) at.keys_answered = true;
                if (const auto* c = std::get_if<Checkpoint>(&r.frame)) {
                    on_checkpoint(*c);
                    continue;
                }
                if (std::holds_alternative<FeaturesAck>(r.frame)) {
                    at.features_answered = true;
                    std::lock_guard lk(mu);
                    features_settled = true;
                    cv.notify_all();
                    continue;
                }
                const bool is_welcome = std::holds_alternative<Welcome>(r.frame);
                const bool is_snapshot_begin = std::holds_alternative<SnapshotBegin>(r.frame);
                TableSync::Step step = sync.on_frame(r.frame, now);
                if (!step.ok) {
                    co_await refuse(s, step.code, step.error);
                    co_return;
                }
                if (step.closed) {
                    const auto& g = std::get<Goodbye>(r.frame);
                    at.end = ConnectionEnd{
                        refuses_frame(g) ? ConnectionEnd::Kind::frame_refused : ConnectionEnd::Kind::peer_goodbye,
                        step.code, step.error};
                    co_return;
                }
                if (is_welcome) {
                    at.welcomed = true;
                    const bool failover = last_welcome && *last_welcome != current;
                    last_welcome = current;
                    {
                        std::lock_guard lk(mu);
                        ++st.connects;
                        if (failover) ++st.failovers;
                    }
                    log(std::string("connected to ") + endpoint().to_string() +
                        (sync.streaming() ? ", resuming after " + std::to_string(sync.applied_seq())
                                          : ", receiving a snapshot"));
                    last_logged.assign(opts.endpoints.size(), {});
                    if (sync.streaming()) at.progressed = true;
                }
                if (is_snapshot_begin && sync.has_table() && !is_welcome) log("consentd is resending the whole table");
                if (step.installed) at.progressed = true;
                ack = ack || step.ack;
            }
            if (off) {
                std::memmove(buf.data(), buf.data() + off, have - off);
                have -= off;
            }
            if (at.welcomed && !at.write_failed) at.deadline = Clock::now() + idle_limit();
            {
                std::lock_guard lk(mu);
                st.last_contact_mono_ns = now;
            }
            publish(at.welcomed);
            if (at.welcomed) stats.welcomed();
            if (features_refused_stream && features_refused_stream->empty()) features_refused_stream = sync.stream_id();
            if (at.welcomed && sync.streaming()) disclosures.synced(sync.stream_id());
            enforcement.rcu().reclaim();
            // Ack only once every worker has finished the bursts that
            // might have read the table before the change: consentd's
            // enforcement latency then measures real enforcement.
            if (ack && !enforcement.rcu().barrier(kAckBarrierTimeoutNs)) {
                log("a worker did not pass a quiescent point within 1 s; ack deferred");
                ack = false;
                ack_owed = true;
            }
            if (ack && !at.write_failed) {
                ack_owed = false;
                out.clear();
                encode(out, Ack{sync.applied_seq()});
                co_await send_then_read_on(s, out);
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
    if (o.endpoints.empty() || o.endpoints.size() > Endpoint::kMaxList)
        throw std::invalid_argument("a data plane needs 1.." + std::to_string(Endpoint::kMaxList) +
                                    " consentd endpoints, not " + std::to_string(o.endpoints.size()));
    bool any_tcp = false;
    for (const auto& ep : o.endpoints) {
        if (ep.kind != Endpoint::Kind::tcp) continue;
        any_tcp = true;
        if (!o.tls && !ep.is_loopback())
            throw std::invalid_argument("TCP to " + ep.to_string() +
                                        " needs mutual TLS (certificate, key, CA); only loopback may go without");
    }
    if (o.tls) {
        // TLS applies to the TCP endpoints; Unix sockets in the same list are
        // protected by their permissions.
        if (!any_tcp)
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
    asio::post(impl->io,
               [impl, fn = std::move(fn), interval]() mutable { impl->stats.set_source(std::move(fn), interval); });
}

void ControlClient::set_disclosure_source(std::function<void(DisclosureBatch&)> fn,
                                          std::chrono::milliseconds interval) {
    Impl* impl = impl_.get();
    asio::post(impl->io, [impl, fn = std::move(fn), interval]() mutable {
        impl->disclosures.set_source(std::move(fn), interval);
    });
}

bool ControlClient::flush_disclosures(std::chrono::milliseconds timeout) {
    Impl* impl = impl_.get();
    if (!impl->thread.joinable()) return false;
    const uint64_t gen = impl->disclosures.flush_requested();
    asio::post(impl->io, [impl, gen] { impl->disclosures.flush(gen); });
    return impl->disclosures.wait_flushed(gen, timeout);
}

bool ControlClient::flush_stats(std::chrono::milliseconds timeout) {
    Impl* impl = impl_.get();
    {
        std::lock_guard lk(impl->mu);
        if (!impl->st.connected || !impl->thread.joinable()) return false;
    }
    const uint64_t gen = impl->stats.flush_requested();
    asio::post(impl->io, [impl] { impl->stats.wake(); });
    return impl->stats.wait_written(gen, timeout);
}

void ControlClient::start() {
    if (impl_->thread.joinable()) return;
    Impl* impl = impl_.get();
    impl->thread = std::thread([impl] {
        asio::co_spawn(impl->io, impl->disclosures.drain_loop(), asio::detached);
        impl->run_key_clock();
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
        impl->end_attempt({ConnectionEnd::Kind::stopped, Goodbye::Code::shutdown, "stopped"});
        impl->backoff_timer.cancel();
        impl->watchdog.cancel();
        impl->key_clock.cancel();
        impl->disclosures.stop_draining();
    });
    impl->thread.join();
}

ControlClient::Status ControlClient::status() const {
    const auto c = impl_->disclosures.counts();
    std::lock_guard lk(impl_->mu);
    Status s = impl_->st;
    s.disclosures_sent = c.sent;
    s.disclosures_acked = c.acked;
    s.disclosures_pending = c.pending;
    s.disclosures_dropped = c.dropped;
    return s;
}

bool ControlClient::wait_synced(std::chrono::milliseconds timeout) const {
    std::unique_lock lk(impl_->mu);
    return impl_->cv.wait_for(lk, timeout, [&] { return impl_->st.synced; });
}

bool ControlClient::wait_features(std::chrono::milliseconds timeout) const {
    std::unique_lock lk(impl_->mu);
    return impl_->cv.wait_for(lk, timeout, [&] { return impl_->features_settled; });
}

}  // namespace optgate::proto
