// consentd's publisher: streams the consent table to data planes
// (docs/protocol.md). Sockets are elsewhere (dataplane_session.hpp,
// dataplane_server.hpp); this is the hub they report to, and it keeps the
// orchestration: who gets a snapshot, who gets which commits, when.
//
// Inputs:
//  - the ledger's feed (TableListener: on_commit once a commit is durable,
//    on_resync, on_policy; never blocks: each commit is encoded once, there,
//    and posted);
//  - the table source (a consistent table as of a sequence, read under the
//    ledger's state lock: at start, and on the snapshot thread after a
//    policy that changes the table's meaning);
//  - data plane sessions (io thread): attach, hello, ack, stats, detach.
//
// Threads, and what each owns:
//  - the ledger's writer and sync threads (calling the TableListener functions):
//    only encodes and posts; reads docs_ under docs_mu_;
//  - the API (add_policy_document, any thread): docs_, under docs_mu_;
//  - the snapshot thread (snapshot_thread_): encodes snapshots from a copy
//    of the mirror and reads the table from the ledger; owns nothing, posts
//    its result back to the io thread;
//  - the io thread owns everything else, unlocked:
//    - the commit history, for resuming with deltas (commit_history.hpp);
//    - a mirror of the table (a ConsentTable kept in step with the commits),
//      so that snapshots are copied from it here and encoded on the snapshot
//      thread: the ledger's lock is taken only at start and after a policy
//      that changes the table's meaning, never per snapshot;
//    - the latest snapshot (frames shared by every data plane that needs it,
//      reused while the history covers what came after it);
//    - each data plane's state; its queue bound is the session's, and past
//      it the publisher resynchronises it with a snapshot;
//    - heartbeats and idle checks;
//    - ?wait=enforced waiters (enforcement_waiters.hpp);
//    - each data plane's last stats report, and those of data planes that
//      disconnected within stats_retention (dataplane_stats.hpp), shown in
//      GET /v1/dataplanes;
//    - the counters of GET /metrics (rendered in metrics.cpp).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>

#include "consentd/commit_history.hpp"
#include "consentd/consent_state.hpp"
#include "consentd/dataplane_config.hpp"
#include "consentd/dataplane_stats.hpp"
#include "consentd/disclosure_sink.hpp"
#include "consentd/enforcement_waiters.hpp"
#include "consentd/ledger_service.hpp"
#include "consentd/metrics.hpp"
#include "consentd/peer_link.hpp"
#include "consentd/pseudonym_keys.hpp"
#include "core/rcu.hpp"
#include "proto/codec.hpp"
#include "proto/wire.hpp"

namespace optgate::consentd {

// The publisher's view of a connection (a session implements it).
class DataPlaneLink {
public:
    virtual ~DataPlaneLink() = default;
    enum class SendResult : uint8_t { queued, overflow, closed };
    // Queues frames. `bounded`: counts toward the per-connection bound;
    // past it the session drops every frame not yet being written and
    // returns overflow (the publisher then sends a snapshot, unbounded).
    virtual SendResult send(Frames frames, bool bounded) = 0;
    // Sends goodbye (best effort) and closes; the session detaches later.
    virtual void close(proto::Goodbye::Code code, std::string reason) = 0;
};

// A consistent table, for snapshots.
class SnapshotSink {
public:
    virtual ~SnapshotSink() = default;
    // `head`: the ledger's chain hash at `seq`, when the source has one
    // (data planes then get resume tokens).
    virtual void begin(uint64_t seq, const std::optional<Digest>& head, const std::shared_ptr<const Policy>& policy,
                       const std::string& table_version) = 0;
    virtual void add(const SubscriberKey& key, PurposeMask purposes) = 0;
};
class TableSource {
public:
    virtual ~TableSource() = default;
    // Calls sink.begin() once, then add() per entry, all as of one sequence.
    virtual void snapshot(SnapshotSink& sink) = 0;
    // False while the table may lack changes another consentd recorded
    // (LedgerService::in_step): data planes are closed and refused.
    virtual bool in_step() const { return true; }
};

// The table source of a running consentd.
class LedgerTableSource : public TableSource {
public:
    explicit LedgerTableSource(LedgerService& service) : service_(service) {}
    void snapshot(SnapshotSink& sink) override;
    bool in_step() const override { return service_.in_step(); }

private:
    LedgerService& service_;
};

class Publisher : public TableListener {
public:
    // `disclosures`: where sessions hand data planes' disclosure reports
    // (it must outlive the publisher, and call every `done` before the
    // io_context is destroyed); null: consentd takes none (a data plane
    // that sends one is told goodbye "unsupported" and keeps its reports).
    Publisher(boost::asio::io_context& ioc, TableSource& source, DataPlaneConfig config,
              DisclosureSink* disclosures = nullptr);
    ~Publisher() override;
    Publisher(const Publisher&) = delete;
    Publisher& operator=(const Publisher&) = delete;

    // The YAML text a policy was loaded from: data planes load that text.
    // Call before the policy reaches the ledger service (start, reload).
    void add_policy_document(const std::shared_ptr<const Policy>& policy, std::string name, std::string text);

    // Before start(): where the keys of collectors with `deliver: pseudonym`
    // come from (it must outlive the publisher). Without: data planes get
    // an empty key set, and strip those collectors' identifiers.
    void set_pseudonym_keys(PseudonymKeyStore* keys) { keys_ = keys; }
    // The other consentd of a PostgreSQL ledger (peer_link.hpp): this one's
    // data planes' acknowledgements are told to it, and ?wait=enforced also
    // waits for the data planes it reports (peer_report()). May be null; it
    // must outlive the publisher's io thread.
    void set_peer_link(PeerLink* link) { peers_ = link; }
    // On the io thread: what another consentd said of one of its data planes.
    void peer_report(const PeerLink::Report& r);

    // On the io thread, after the feed is connected (add_listener): reads
    // the current table once (the first snapshot) and starts heartbeats.
    void start();
    // Closes every data plane (goodbye: shutdown) and stops the timers.
    void stop();

    // ---- the ledger's feed (any thread; TableListener) ----
    void on_commit(uint64_t seq, const std::vector<proto::TableChange>& changes, const ChainHashes& chain) override;
    void on_resync(uint64_t seq, const Digest& head, const std::shared_ptr<const Policy>& policy,
                   const std::string& table_version) override;
    void on_policy(uint64_t seq, const std::shared_ptr<const Policy>& policy,
                   const std::string& table_version) override;
    // Every policy change; `table_changed`: its table version differs, or
    // the table was read again (full resync, the stream going on from
    // `seq`, whose chain hash is `head`), else data planes get the new
    // policy for the table they have.
    void publish_policy(uint64_t seq, const std::shared_ptr<const Policy>& policy, const std::string& table_version,
                        bool table_changed, std::optional<Digest> head = std::nullopt);

    // ---- sessions (io thread) ----
    // Whether a data plane may take a slot with this name (docs/protocol.md,
    // "Limits before hello"): a name connected already is replaced only by
    // the same identity (`identity`: the client certificate's SHA-256, or
    // the Unix peer's uid; "" for plain loopback TCP), and a new name needs
    // a free slot (a replacement does not).
    // out_of_step: fenced (TableSource::in_step false): the session closes
    // it without a frame, which a data plane would count as contact.
    enum class Admission : uint8_t { ok, full, identity_conflict, out_of_step };
    Admission admissible(std::string_view name, std::string_view identity) const;
    // After hello, and admissible(): the data plane takes a slot.
    uint64_t attach(DataPlaneLink* link, std::string address, std::string identity);
    void hello(uint64_t id, const proto::Hello& h);
    void ack(uint64_t id, uint64_t seq);
    // Replaces the data plane's last stats report.
    void stats(uint64_t id, const proto::Stats& s);
    void detach(uint64_t id, const std::string& why);
    // The optional frames a data plane asked for (proto::Features,
    // docs/protocol.md "Features"): the answer (FeaturesAck) says which it
    // will get; before it come the latest checkpoint and the current
    // pseudonym keys, each if asked for, and both keep coming as they change.
    void features(uint64_t id, const proto::Features& f);
    // Closes a data plane's connection (it reconnects and resumes); returns
    // whether one by that name was connected.
    bool disconnect(const std::string& name, const std::string& reason);
    void count_protocol_error() { ++counters_.protocol_errors; }
    void count_tls_failure() { ++counters_.tls_failures; }
    // Before hello (dataplane_admission.hpp).
    void count_refusal(DataPlaneRefusal r) { ++counters_.refusals[size_t(r)]; }
    void count_accept_pause() { ++counters_.accept_pauses; }
    void set_pending(size_t n) { counters_.pending = n; }
    DisclosureSink* disclosure_sink() const noexcept { return disclosures_; }
    // What became of a disclosure report a session received.
    enum class DisclosureOutcome : uint8_t { stored, failed, busy, refused };
    void count_disclosure(DisclosureOutcome o) { ++counters_.disclosure_reports[size_t(o)]; }
    const DataPlaneConfig& config() const noexcept { return config_; }
    boost::asio::io_context& io_context() const noexcept { return ioc_; }

    // ---- signed ledger checkpoints (io thread; docs/protocol.md, "Checkpoints") ----
    // Checkpoints are on (ledger.checkpoints): data planes that ask get them.
    void enable_checkpoints() { checkpoints_on_ = true; }
    // A checkpoint was signed (`line`: as in the file): every data plane
    // that asked gets it.
    void publish_checkpoint(uint64_t seq, const std::string& line);

    // ---- API (io thread) ----
    std::vector<DataPlaneInfo> dataplanes() const;
    // Those that disconnected within stats_retention and have not come back.
    std::vector<DataPlaneInfo> disconnected_dataplanes() const;
    uint64_t head_seq() const noexcept { return history_.head(); }
    // Calls done once every data plane connected now has acknowledged `seq`
    // (or has disconnected), or at the timeout; with a peer link, those the
    // other consentd of the ledger report too.
    void wait_enforced(uint64_t seq, std::chrono::milliseconds timeout, std::function<void(EnforcementReport)> done);
    // Prometheus text for GET /metrics.
    void render_metrics(std::string& out) const;

private:
    using Clock = std::chrono::steady_clock;

    struct Snapshot {
        uint64_t seq = 0;
        std::string stream_id, table_version;
        std::vector<Frames> frames;
        size_t bytes = 0;
        uint32_t entries = 0;
        std::chrono::duration<double> build_time{};
    };
    using Entries = std::vector<std::pair<SubscriberKey, PurposeMask>>;
    // The table as the ledger has it, as of `seq`.
    struct TableRead {
        uint64_t seq = 0;
        std::optional<ChainMark> mark;  // the chain's at seq
        std::shared_ptr<const Policy> policy;
        std::string table_version;
        Entries entries;
    };
    struct PolicyDoc {
        std::weak_ptr<const Policy> policy;
        std::string name, text, stream_id;
    };
    struct DataPlane {
        uint64_t id = 0;
        DataPlaneLink* link = nullptr;
        std::string name, address;
        std::string identity;  // see admissible()
        std::chrono::system_clock::time_point connected_since;
        Clock::time_point last_heard;
        bool greeted = false;
        bool awaiting_snapshot = false;
        bool wants_keys = false;         // it asked for pseudonym keys (proto::Features)
        bool wants_checkpoints = false;  // it asked for checkpoints (proto::Features)
        bool wants_tokens = false;       // it asked for resume tokens (proto::Features)
        bool told_peers = false;         // its first acknowledgement went to the peer link
        uint64_t sent_seq = 0;           // the last commit queued to it (or its snapshot's)
        uint64_t applied_seq = 0;        // the last it acknowledged
        Clock::time_point acked_at;      // when applied_seq last advanced
        std::optional<std::chrono::system_clock::time_point> last_ack, last_heartbeat;
        uint64_t snapshots = 0, resyncs = 0;
        std::shared_ptr<const StatsReport> stats;
    };

    // io thread
    void on_commit_io(const Commit& c, const std::shared_ptr<const std::vector<proto::TableChange>>& changes);
    void on_policy_io(uint64_t seq, PolicyDoc doc, std::string table_version, const Frames& policy_frame,
                      bool table_changed, std::optional<ChainMark> mark);
    void request_snapshot();
    void on_snapshot_built(std::shared_ptr<Snapshot> s);
    bool snapshot_usable(const Snapshot& s) const;
    // Usable, and cheaper to send with the commits after it than a new one.
    bool snapshot_worth_reusing(const Snapshot& s) const;
    void deliver_snapshot(DataPlane& dp);
    void resync(DataPlane& dp);
    void send(DataPlane& dp, const Frames& f);
    // Resume tokens (docs/protocol.md, "Resuming at another consentd"):
    // the token for the table as of `seq` under the current policy (none
    // when the chain's mark there is not known), and its frame sent to a
    // data plane that takes them, for its sent_seq.
    std::optional<std::string> resume_token(uint64_t seq) const;
    Frames token_frame(uint64_t seq) const;
    void send_token(DataPlane& dp);
    void heartbeat();
    // Each heartbeat: out of step with the ledger (TableSource::in_step),
    // closes every data plane, once per heartbeat until it is in step.
    void fence();
    // Makes and stores the keys the current policy needs now, sends them to
    // the data planes that take keys if they changed, and sets the timer
    // for the next period (docs/consentd.md, "Pseudonym keys").
    void refresh_keys();
    // Reads the whole table under the ledger's lock (start; snapshot thread).
    TableRead read_table();
    // Rebuilds the mirror from the ledger (after a table-changing policy).
    void reload_mirror();
    void on_table_read(const TableRead& r);
    void mirror_from(const Entries& entries);
    // Frames for a table (any thread: pure). Null if the policy is too large.
    static std::shared_ptr<Snapshot> encode_snapshot(uint64_t seq, const std::string& stream_id,
                                                     const std::string& table_version, const std::string& policy_name,
                                                     const std::string& policy_text, const Entries& entries);
    std::optional<PolicyDoc> document_for(const Policy* p);

    boost::asio::io_context& ioc_;
    TableSource& source_;
    DataPlaneConfig config_;
    DisclosureSink* disclosures_;
    std::string instance_;  // random per process: resume only within one consentd run

    std::mutex docs_mu_;
    std::map<const Policy*, PolicyDoc> docs_;

    // io thread state
    bool started_ = false, stopping_ = false;
    bool fenced_ = false;  // fence(): out of step at the last heartbeat
    // The other consentd's data planes (peer_report), by instance id and
    // name; their ids in waiters_ have kRemoteId set.
    struct Remote {
        uint64_t id = 0;
        std::string instance, name, address;
        uint64_t applied_seq = 0;
        Clock::time_point heard, acked_at;
    };
    static constexpr uint64_t kRemoteId = uint64_t(1) << 63;
    PeerLink* peers_ = nullptr;
    std::map<std::pair<std::string, std::string>, Remote> remotes_;
    uint64_t next_remote_ = 1;
    // Each heartbeat: forgets the data planes no peer spoke of for kSilence.
    void expire_remotes();
    CommitHistory history_;
    std::string stream_id_, table_version_;
    std::string policy_name_, policy_text_;  // the current policy document
    QsbrDomain mirror_rcu_;                  // no readers: frees at once
    std::unique_ptr<ConsentTable> mirror_;   // null while reloading from the ledger
    bool reloading_ = false, reload_again_ = false;
    std::shared_ptr<Snapshot> snapshot_;
    bool building_ = false;
    std::map<uint64_t, DataPlane> dataplanes_;
    bool checkpoints_on_ = false;
    std::optional<Frames> checkpoint_;  // the latest checkpoint frame
    DisconnectedDataPlanes disconnected_{config_.stats_retention, config_.max_dataplanes};
    uint64_t next_id_ = 1;
    EnforcementWaiters waiters_{ioc_, history_};
    boost::asio::steady_timer heartbeat_timer_;
    // Pseudonym keys (io thread): the store, the policy they are for, the
    // frame last sent (cleared when freed), the next period's timer.
    PseudonymKeyStore* keys_ = nullptr;
    std::shared_ptr<const Policy> policy_;
    Frames keys_frame_;
    boost::asio::steady_timer key_timer_;
    boost::asio::thread_pool snapshot_thread_{1};

    // metrics (io thread)
    DataPlaneCounters counters_;  // rendered by render_dataplane_metrics (metrics.hpp)
};

}  // namespace optgate::consentd
