// The data plane's half of the protocol without the I/O: applies what
// consentd sends (decoded frames) to the Enforcement that workers read, and
// says when to acknowledge. Runs on the data plane's control thread, which is
// the consent table's one writer. docs/protocol.md, "Data plane".
//
//  - snapshot: the policy's YAML text is loaded with the same loader the
//    files use (policy::load_policy_text) and compiled; the entries go into a
//    new table, pre-sized, built off to the side while workers keep reading
//    the old one; at the end both are installed together (one RCU publish).
//    A policy that does not load, or counts that do not add up, is an error
//    and the installed state is kept.
//  - deltas go straight into the installed table (each change is visible to
//    the next lookup; a multi-part commit is acknowledged on its last part).
//  - policy: a new policy with the same table meaning; the table is copied
//    into a new one and installed with it.
//  - pseudonym keys: the set consentd sent last, each used only within its
//    period by this machine's wall clock; every policy compiled here gets,
//    per collector that receives pseudonyms, the key of the current period
//    (none: that collector's identifiers are stripped). tick() drops keys
//    whose period ended and installs the next ones, connected or not.
//  - every frame is contact with the control plane (heard_from_control), but
//    only once a table from consentd is installed: before the first
//    snapshot, the data plane strips everything (or drops, with no policy).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/enforcement.hpp"
#include "proto/wire.hpp"

namespace optgate::proto {

class TableSync {
public:
    // `unix_now`: the wall clock in seconds, for the keys' periods (tests
    // inject one); default: time().
    using UnixClock = std::function<uint64_t()>;
    explicit TableSync(Enforcement& enforcement, UnixClock unix_now = {});
    ~TableSync();
    TableSync(const TableSync&) = delete;
    TableSync& operator=(const TableSync&) = delete;

    struct Step {
        bool ok = true;
        bool ack = false;                                    // send Ack{applied_seq()} after this batch of frames
        bool installed = false;                              // a snapshot or policy was installed
        bool closed = false;                                 // the peer said goodbye (ok stays true)
        Goodbye::Code code = Goodbye::Code::protocol_error;  // when !ok
        std::string error;                                   // when !ok, or the goodbye's reason
    };

    // Installs a local policy with an empty table before consentd is heard
    // (controlled mode, never fresh): identifiers are stripped under it
    // (strip_table_not_received) instead of packets being dropped for want
    // of a policy. Returns false and sets `error` if it does not load.
    bool bootstrap(std::string_view yaml, const std::string& name, std::string& error);

    // A new connection begins: partial snapshots and deltas are dropped.
    void connection_started() noexcept;
    // What to say in hello: the sequence applied and, in the stream id's
    // field, the resume token consentd gave for that sequence when there is
    // one (docs/protocol.md, "Resuming at another consentd"), else the
    // stream id.
    uint64_t applied_seq() const noexcept { return applied_seq_; }
    const std::string& hello_stream_id() const noexcept {
        return !resume_token_.empty() && resume_token_seq_ == applied_seq_ ? resume_token_ : stream_id_;
    }
    // The stream the table came from (a snapshot's or policy's stream id).
    const std::string& stream_id() const noexcept { return stream_id_; }

    Step on_frame(const Frame& frame, uint64_t now_mono_ns);

    // Drops the pseudonym keys whose period ended and, when the key of some
    // collector changes (a period began or ended), installs the policy
    // again with the keys of now (the table is kept). Cold: once a second.
    void tick();
    // Pseudonym keys held (current and next periods), and how many times
    // keys changed the installed policy.
    size_t keys_held() const noexcept { return keys_.size(); }
    uint64_t key_installs() const noexcept { return key_installs_; }

    // Status.
    bool has_table() const noexcept { return has_table_; }  // a consentd table is installed
    bool streaming() const noexcept { return state_ == State::streaming; }
    uint64_t head_seq() const noexcept { return head_seq_; }  // consentd's, from welcome/heartbeats
    const std::string& table_version() const noexcept { return table_version_; }
    uint32_t heartbeat_interval_ms() const noexcept { return heartbeat_interval_ms_; }
    uint64_t snapshots_applied() const noexcept { return snapshots_; }
    uint64_t deltas_applied() const noexcept { return deltas_; }
    // Entries refused by the table (the two reserved IPv4 keys).
    uint64_t entries_refused() const noexcept { return refused_; }

private:
    enum class State : uint8_t { awaiting_welcome, awaiting_snapshot, in_snapshot, streaming };

    Step on_snapshot_begin(const SnapshotBegin& f);
    Step on_snapshot_chunk(const SnapshotChunk& f);
    Step on_snapshot_end(const SnapshotEnd& f);
    Step on_delta(const Delta& f);
    Step on_policy(const PolicyUpdate& f);
    Step on_keys(const PseudonymKeys& f);
    Step on_resume_token(const ResumeToken& f);
    // Sets, on every collector that receives pseudonyms, the held key whose
    // period holds `now` (or none).
    void set_keys(Policy& policy, uint64_t now) const;
    // Installs a policy for the installed table (copied next to it).
    void install_keeping_table(std::shared_ptr<const Runtime> runtime);
    // Loads and compiles a policy's text; nullptr and `error` when it fails.
    std::shared_ptr<const Runtime> compile(std::string_view text, std::string_view name, std::string& error) const;

    Enforcement& enforcement_;
    State state_ = State::awaiting_welcome;
    bool has_table_ = false;
    uint64_t applied_seq_ = 0;
    std::string stream_id_;
    std::string table_version_;
    // The last resume token and the sequence it is for (valid while the
    // table is at it); empty: none since the last snapshot or policy.
    std::string resume_token_;
    uint64_t resume_token_seq_ = 0;
    uint64_t head_seq_ = 0;
    uint32_t heartbeat_interval_ms_ = 0;

    // The snapshot being received.
    struct Pending {
        uint64_t seq = 0;
        uint64_t expected = 0;
        uint64_t received = 0;
        std::string stream_id, table_version;
        std::shared_ptr<const Runtime> runtime;
        std::unique_ptr<ConsentTable> table;
    };
    std::unique_ptr<Pending> pending_;
    // A multi-part delta in progress: its seq (0: none).
    uint64_t partial_seq_ = 0;

    uint64_t snapshots_ = 0, deltas_ = 0, refused_ = 0;

    struct HeldKey {
        std::string collector;
        uint64_t not_before = 0, not_after = 0;  // unix seconds, [not_before, not_after)
        PseudonymKey key{};
    };
    std::vector<HeldKey> keys_;
    UnixClock unix_now_;
    uint64_t key_installs_ = 0;
};

}  // namespace optgate::proto
