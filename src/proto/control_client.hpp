// The data-plane client library: keeps an Enforcement in step with consentd.
//
//   Enforcement enforcement(Enforcement::Mode::controlled);
//   proto::ControlClient client(enforcement, {.name = "edge-1", .endpoints = *proto::Endpoint::parse_list(...)});
//   client.start();                  // its own control thread
//   client.wait_synced(10s);         // optional: the first snapshot is installed
//   ... workers run; client.status() for operators ...
//   client.stop();
//
// The client's thread is the consent table's one writer. It connects (Unix
// socket, plain TCP to a loopback address, or TCP with mutual TLS), says
// hello with its name and the last sequence it applied, applies the snapshot
// or deltas consentd answers with (TableSync), acknowledges, and answers
// heartbeats. When the connection drops or goes silent (three heartbeat
// intervals), it reconnects with capped, jittered exponential backoff; the
// installed table stays in force until the policy's staleness_limit after
// the last frame heard, then the verdict rule strips everything.
//
// Several consentd endpoints make a ring (docs/protocol.md, "Several
// consentd"): after a connection ends, the client tries the next endpoint at
// once, and backs off only after every endpoint failed in a row. The table
// and the staleness rule do not change with the endpoint; the new consentd
// resumes the stream when it has the same stream id and the commits since
// the last one applied, and sends a snapshot otherwise.
//
// While connected it also reports statistics (the stats frame): its own
// (control_*, table_*; proto/stats.cpp) and whatever the stats source adds,
// right after consentd's welcome and then every interval; and, with a
// disclosure source, what the data plane passed and stripped per subscriber
// (disclosure reports, acknowledged by consentd, kept and sent again until
// they are). docs/protocol.md.
//
// It asks for the ledger's signed checkpoints (the features frame) and
// keeps the latest (proto/checkpoint_record.hpp, CheckpointWitness).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/disclosure_report.hpp"
#include "core/enforcement.hpp"
#include "proto/endpoint.hpp"
#include "proto/tls.hpp"
#include "proto/wire.hpp"

namespace optgate::proto {

class ControlClient {
public:
    struct Options {
        std::string name;                 // 1..64 of [A-Za-z0-9._:@-]; how consentd lists this data plane
        std::vector<Endpoint> endpoints;  // 1..Endpoint::kMaxList, tried in turn (a ring)
        std::optional<TlsFiles> tls;      // required for TCP to a non-loopback host
        std::chrono::milliseconds backoff_initial{100};
        std::chrono::milliseconds backoff_max{5000};
        // Connect, TLS handshake and consentd's welcome must fit in this.
        std::chrono::milliseconds connect_timeout{5000};
        // Disclosure reports not acknowledged yet are kept up to this many
        // bytes (encoded); past it the oldest is dropped and counted.
        size_t disclosure_queue_bytes = 64u << 20;
        // A report not acknowledged this long after it was sent goes again
        // on the same connection (consentd could not store it).
        std::chrono::milliseconds disclosure_resend_after{30000};
        // consentd's public checkpoint key (PEM; docs/protocol.md,
        // "Checkpoints"): checkpoints it does not verify are refused. Empty:
        // checkpoints are kept unverified.
        std::string checkpoint_public_key;
        // Connection events and errors, one line each. Default: stderr.
        std::function<void(std::string_view)> log;
    };

    struct Status {
        bool connected = false;  // consentd welcomed us on the current connection
        bool synced = false;     // a table from consentd is installed (and its pseudonym keys, if asked)
        uint64_t applied_seq = 0;
        uint64_t head_seq = 0;              // consentd's, as last heard
        uint64_t last_contact_mono_ns = 0;  // monotonic_ns() of the last frame; 0: never
        uint64_t connects = 0, snapshots = 0, deltas = 0, entries_refused = 0;
        // The endpoint of the current connection or the last attempt, and
        // the welcomes from another endpoint than the previous welcome's.
        std::string endpoint;
        uint64_t failovers = 0;
        uint64_t table_entries = 0;   // keys in the installed table
        uint64_t pseudonym_keys = 0;  // pseudonym keys held (current and next periods; never which)
        std::string stream_id, table_version, last_error;
        // The resume token the next hello says (docs/protocol.md, "Resuming
        // at another consentd"); empty: none for the table's sequence.
        std::string resume_token;
        // Disclosure reports: frames written (resends included), acknowledged,
        // kept unacknowledged, dropped from the full queue.
        uint64_t disclosures_sent = 0, disclosures_acked = 0, disclosures_pending = 0, disclosures_dropped = 0;
        // The ledger's latest signed checkpoint as consentd sent it (seq 0,
        // line empty: none yet), when it came (wall clock), whether its
        // signature was checked (checkpoint_public_key), and how many were
        // kept and refused (malformed, bad signature, seq going back).
        uint64_t checkpoint_seq = 0, checkpoint_received_unix_ms = 0;
        std::string checkpoint_line;
        bool checkpoint_verified = false;
        uint64_t checkpoints_kept = 0, checkpoints_refused = 0;
    };

    // Throws std::invalid_argument for a bad name, no endpoint, or TCP to a
    // non-loopback host without TLS; std::runtime_error if the TLS files or the
    // checkpoint key do not load.
    ControlClient(Enforcement& enforcement, Options options);
    ~ControlClient();
    ControlClient(const ControlClient&) = delete;
    ControlClient& operator=(const ControlClient&) = delete;

    // Before start(): installs a local policy with an empty table, so that
    // until consentd's first snapshot identifiers are stripped
    // (strip_table_not_received) rather than packets dropped for want of a
    // policy. False and `error` if it does not load.
    bool bootstrap(std::string_view policy_yaml, const std::string& name, std::string& error);

    // What this data plane reports to consentd besides the client's own
    // entries, every `interval` (default 1 s; 0 turns reporting off), and
    // once right after each welcome. `fn` runs on the client's thread,
    // concurrently with the workers: it must only read what they write
    // (relaxed atomics, or plain loads of per-worker monotonic u64 counters,
    // which may be a burst behind), must not block for long (it delays acks)
    // and must not throw. Entries that break the frame's rules are dropped,
    // and the first problem logged (proto::normalize_stats). Any time, any
    // thread; takes effect at the next report.
    void set_stats_source(std::function<void(std::vector<StatEntry>&)> fn,
                          std::chrono::milliseconds interval = std::chrono::seconds(1));
    // Sends a report now and waits until it is written, e.g. before stop()
    // so that consentd keeps the final counts. False if not connected, or
    // not written within `timeout`.
    bool flush_stats(std::chrono::milliseconds timeout);

    // What the data plane passed and stripped (the core's disclosure
    // accounting): `fn` fills the batch every `interval` (default 60 s; 0:
    // only flush_disclosures() drains) on the client's thread, connected or
    // not. Each batch becomes one or more reports (ids: a random reporter
    // per client, seq from 1), kept in a bounded queue
    // (Options::disclosure_queue_bytes) and sent in order while connected
    // until consentd acknowledges each; after a reconnect, every report not
    // acknowledged goes again. `fn` must not block for long or throw (a
    // throw is logged, that batch is lost). Any time, any thread.
    void set_disclosure_source(std::function<void(DisclosureBatch&)> fn,
                               std::chrono::milliseconds interval = std::chrono::seconds(60));
    // Drains the source once more and waits until every report so far is
    // acknowledged, e.g. before stop(). False on timeout, when consentd
    // does not take reports, or when one was dropped meanwhile.
    bool flush_disclosures(std::chrono::milliseconds timeout);

    void start();
    // Closes the connection and joins the thread. Idempotent.
    void stop();

    Status status() const;
    // Waits until a table from consentd is installed; false on timeout.
    bool wait_synced(std::chrono::milliseconds timeout) const;
    // Waits until consentd answered the features frame on the current
    // connection (the latest checkpoint, if it has one, came before the
    // answer) or is known not to take it; false on timeout.
    bool wait_features(std::chrono::milliseconds timeout) const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace optgate::proto
