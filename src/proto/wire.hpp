// The consentd <-> data plane wire format, version 1 (docs/protocol.md).
//
// A connection carries frames in both directions. Every frame is an 8-byte
// header and a payload:
//
//   magic 'O' 'G' | version u8 | type u8 | payload length u32
//
// Integers are big-endian. Strings are a length (u8, u16 or u32 as each
// field says) and that many bytes, no terminator. Each frame type has a hard
// payload limit that the decoder checks from the header, before any payload
// is buffered, so an oversized frame costs the reader nothing.
//
// The frame structs below are views: their strings and entry lists point into
// the buffer the frame was decoded from, valid while that buffer is.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>

#include "core/chars.hpp"
#include "core/consent_table.hpp"
#include "core/disclosure_report.hpp"

namespace optgate::proto {

inline constexpr uint8_t kMagic0 = 'O';
inline constexpr uint8_t kMagic1 = 'G';
inline constexpr uint8_t kVersion = 1;
inline constexpr size_t kHeaderSize = 8;

// ---- limits ----
inline constexpr size_t kMaxNameBytes = 64;          // data plane name
inline constexpr size_t kMaxTokenBytes = 64;         // stream id, table version
inline constexpr size_t kMaxPolicyNameBytes = 1024;  // the policy file's name
inline constexpr size_t kMaxPolicyBytes = 4u << 20;  // the policy's YAML text
inline constexpr size_t kMaxMessageBytes = 1024;     // goodbye reason
// Entries per snapshot chunk or delta part: a 1M-entry snapshot is ~31
// chunks of at most 32768 * 21 bytes.
inline constexpr uint32_t kMaxEntriesPerFrame = 32768;
inline constexpr size_t kV4EntryBytes = 1 + 4 + 4;  // family, key, mask
inline constexpr size_t kV6EntryBytes = 1 + 16 + 4;
// Stats reports (data plane -> consentd): entries per frame, and the longest
// metric name, label name and label value.
inline constexpr uint32_t kMaxStatsEntries = 4096;
inline constexpr size_t kMaxStatNameBytes = 64;
inline constexpr size_t kMaxStatLabelNameBytes = 32;
inline constexpr size_t kMaxStatLabelValueBytes = 64;
inline constexpr size_t kMaxStatEntryBytes = 1 + 1 + kMaxStatNameBytes + 8 + 1 + kMaxStatLabelNameBytes + 1 +
                                             kMaxStatLabelValueBytes;
// Disclosure reports (data plane -> consentd): entries per report and the
// report's payload; a batch larger than either goes as several reports.
// Destination and identifier names: 1..255 bytes without control characters.
inline constexpr uint32_t kMaxDisclosureEntries = 16384;
inline constexpr size_t kMaxDisclosurePayload = 1u << 20;
inline constexpr size_t kDisclosureHeadBytes = 8 + 8 + 8 + 8 + 8 + 4;  // reporter, seq, start, end, overflowed, count
inline constexpr size_t kMaxDisclosureNameBytes = 255;
// Reports a data plane has sent on a connection and consentd has not
// acknowledged yet: the client sends no more; consentd takes no more
// (it drops the extra ones unacknowledged, to be sent again).
inline constexpr size_t kMaxDisclosuresInFlight = 4;
// Pseudonym keys (consentd -> data plane): at most two per collector that
// receives pseudonyms (the current period's and the next), collector names
// of 1..255 printable bytes.
inline constexpr uint32_t kMaxPseudonymKeys = 32;
inline constexpr size_t kMaxKeyCollectorBytes = 255;
inline constexpr size_t kPseudonymKeyBytes = 16;
inline constexpr size_t kMaxKeyEntryBytes = 1 + kMaxKeyCollectorBytes + 8 + 8 + kPseudonymKeyBytes;
// A ledger checkpoint's record line (consentd's checkpoint file), about 300
// bytes today.
inline constexpr size_t kMaxCheckpointLineBytes = 512;
// The largest payload of any frame type (a snapshot begin with the largest
// policy). Readers size buffers by this, never more.
inline constexpr size_t kMaxPayload = 8 + 4 + 4 + 1 + kMaxTokenBytes + 1 + kMaxTokenBytes + 2 + kMaxPolicyNameBytes +
                                      4 + kMaxPolicyBytes;

enum class FrameType : uint8_t {
    // data plane -> consentd
    hello = 0x01,
    ack = 0x02,
    stats = 0x03,
    disclosure = 0x04,
    features = 0x05,
    // consentd -> data plane
    welcome = 0x10,
    snapshot_begin = 0x11,
    snapshot_chunk = 0x12,
    snapshot_end = 0x13,
    delta = 0x14,
    policy = 0x15,
    heartbeat = 0x16,
    disclosure_ack = 0x17,
    features_ack = 0x18,
    checkpoint = 0x19,
    pseudonym_keys = 0x1a,
    resume_token = 0x1b,
    // either way, just before closing
    goodbye = 0x20,
};

// Which side may send a frame type; decoding checks it.
enum class Direction : uint8_t { to_server, to_client };

// ---- frames ----

// First frame of a data plane. `stream_id` and `last_seq` are what it
// applied last (empty and 0 on a fresh start): consentd resumes with deltas
// when it can, else sends a snapshot.
struct Hello {
    std::string_view name;  // 1..64 of [A-Za-z0-9._:@-]
    uint64_t last_seq = 0;
    std::string_view stream_id;  // 0..64 bytes, opaque
};

// The data plane has applied everything up to `applied_seq`. Also the answer
// to a heartbeat (liveness).
struct Ack {
    uint64_t applied_seq = 0;
};

// What a data plane counts (docs/protocol.md, "stats"): the latest values,
// replacing the previous report. Entries are validated on decode and sorted
// strictly by (name, label name, label value), one kind per name; walk them
// with for_each_stat (codec.hpp).
enum class StatKind : uint8_t { counter = 1, gauge = 2 };

struct Stats {
    uint32_t count = 0;              // 0..kMaxStatsEntries
    std::span<const uint8_t> bytes;  // exactly `count` entries
};

// One entry of a decoded Stats frame (views into its buffer).
struct StatView {
    StatKind kind = StatKind::counter;
    std::string_view name;  // 1..64 of [a-z0-9_]
    uint64_t value = 0;
    std::string_view label_name;   // "" (no label) or 1..32 of [a-z0-9_], starting with a letter,
                                   // not "dataplane" (consentd adds that label)
    std::string_view label_value;  // "" without a label, else 1..64 is_stat_label_value_char
};

// A byte of a stat label value: printable ASCII without quotes or
// backslashes, which needs no escaping in consentd's Prometheus exposition.
constexpr bool is_stat_label_value_char(char c) noexcept { return ascii::is_printable(c) && c != '"' && c != '\\'; }

// What a data plane passed and stripped in one interval (docs/protocol.md,
// "Disclosures"). `reporter` is random per data-plane process start, `seq`
// counts its reports from 1: (hello name, reporter, seq) is a report's
// identity, and a report sent again after a lost acknowledgement carries
// the same. Entries are validated on decode; walk them with
// for_each_disclosure (codec.hpp).
struct Disclosure {
    uint64_t reporter = 0;
    uint64_t seq = 0;                // >= 1
    uint64_t start_unix_ms = 0;      // the interval [start, end), wall clock
    uint64_t end_unix_ms = 0;        // >= start
    uint64_t overflowed = 0;         // instances counted but in no entry
    uint32_t count = 0;              // 0..kMaxDisclosureEntries
    std::span<const uint8_t> bytes;  // exactly `count` entries
};

// One entry of a decoded Disclosure (views into its buffer).
struct DisclosureView {
    Family family = Family::v4;
    std::span<const uint8_t> key;  // 4 bytes (IPv4) or 16 (IPv6 prefix, masked)
    std::string_view destination;  // collector or exemption name, "(none)"
    std::string_view identifier;   // the policy's identifier name
    uint64_t passed = 0, stripped = 0;

    // The entry as the core's seam type (copies the names).
    DisclosureEntry entry() const {
        DisclosureEntry e;
        e.family = family;
        std::copy(key.begin(), key.end(), e.key.begin());
        e.destination = std::string(destination);
        e.identifier = std::string(identifier);
        e.passed = passed;
        e.stripped = stripped;
        return e;
    }
};

// consentd stored the report (reporter, seq): the data plane forgets it.
struct DisclosureAck {
    uint64_t reporter = 0;
    uint64_t seq = 0;  // >= 1
};

// Optional frames a peer takes (docs/protocol.md, "Features"): the data
// plane sends its set right after hello; consentd answers with the part it
// will send (FeaturesAck). An older consentd refuses the frame (goodbye,
// unknown frame type), and the client sends it no more; consentd sends an
// optional frame only to a data plane that asked for it, so an older data
// plane never sees one. Unknown bits are ignored (a newer peer's).
struct Features {
    static constexpr uint32_t kCheckpoints = 0x1;    // Checkpoint frames
    static constexpr uint32_t kPseudonymKeys = 0x2;  // PseudonymKeys frames
    static constexpr uint32_t kResumeTokens = 0x4;   // ResumeToken frames
    uint32_t flags = 0;
};

// consentd's answer to Features: the flags it will act on.
struct FeaturesAck {
    uint32_t flags = 0;
};

// The ledger's latest signed checkpoint (docs/consentd.md, "Signed
// checkpoints"), sent after FeaturesAck and whenever consentd signs one.
// `line` is the record exactly as in consentd's checkpoint file, so that an
// operator can check it with `optgatectl verify-ledger --checkpoints`.
struct Checkpoint {
    uint64_t seq = 0;       // as in the line
    std::string_view line;  // 1..512 printable ASCII
};

// The pseudonym keys a data plane may use (docs/protocol.md, "Pseudonym
// keys"): the whole set, replacing the previous one; each key only within
// [not_before, not_after) of the data plane's wall clock. Entries are
// validated on decode; walk them with for_each_pseudonym_key (codec.hpp).
// The frame holds secrets: never log or copy it beyond its use.
struct PseudonymKeys {
    uint32_t count = 0;              // 0..kMaxPseudonymKeys
    std::span<const uint8_t> bytes;  // exactly `count` entries
};

// One entry of a PseudonymKeys frame (a view into its buffer, or the
// encoder's input).
struct PseudonymKeyView {
    std::string_view collector;  // the policy's collector name
    uint64_t not_before_unix_s = 0;
    uint64_t not_after_unix_s = 0;  // > not_before
    std::span<const uint8_t, kPseudonymKeyBytes> key;
};

// What lets a data plane resume at another consentd of the same ledger
// (docs/protocol.md, "Resuming at another consentd"): sent after the frames
// that bring the table to `seq` (a commit's final delta, a snapshot's end,
// a policy, the features answer). Valid while the table stays at `seq`: the
// data plane then says `token` in its hello instead of the stream id. To
// the data plane the token is opaque; consentd's names the policy text and
// the ledger's chain hash at `seq`.
struct ResumeToken {
    uint64_t seq = 0;
    std::string_view token;  // 1..64 visible ASCII, like a stream id
};

// consentd's answer to hello.
struct Welcome {
    enum class Mode : uint8_t { snapshot = 0, resume = 1 };
    uint64_t head_seq = 0;
    uint32_t heartbeat_interval_ms = 0;  // > 0
    Mode mode = Mode::snapshot;          // resume: deltas after hello.last_seq follow
};

// Starts a full table: the policy the table belongs to (its YAML text, to be
// loaded and compiled by the data plane) and the entry counts (for
// pre-sizing). Replaces everything the data plane had once it ends.
struct SnapshotBegin {
    uint64_t seq = 0;
    uint32_t v4_entries = 0;
    uint32_t v6_entries = 0;
    std::string_view stream_id;      // 1..64: echo it in the next hello
    std::string_view table_version;  // 0..64: what the table's keys and bits mean
    std::string_view policy_name;    // 0..1024: for messages
    std::string_view policy_text;    // 1..4 MiB of YAML
};

// A list of table entries or changes, validated on decode.
struct EntryList {
    uint32_t count = 0;
    bool with_op = false;            // delta: each entry starts with an op byte
    std::span<const uint8_t> bytes;  // exactly `count` entries
};

struct SnapshotChunk {
    EntryList entries;  // 1..kMaxEntriesPerFrame upserts
};

struct SnapshotEnd {
    uint64_t seq = 0;      // as in the begin
    uint32_t entries = 0;  // v4 + v6 of the begin, and what the chunks held
};

// What one committed ledger transaction did to the table. A commit with more
// changes than fit one frame comes in parts with the same seq; only the part
// flagged final completes it (the data plane acknowledges then).
struct Delta {
    static constexpr uint8_t kFinal = 0x01;
    uint64_t seq = 0;
    bool final = true;
    EntryList changes;  // 0..kMaxEntriesPerFrame
};

// A new policy whose table means the same (same table version): the data
// plane keeps its table and swaps the policy.
struct PolicyUpdate {
    uint64_t seq = 0;  // consentd's head when the policy changed
    std::string_view stream_id;
    std::string_view table_version;
    std::string_view policy_name;
    std::string_view policy_text;
};

struct Heartbeat {
    uint64_t head_seq = 0;      // consentd's last committed sequence
    uint64_t unix_time_ms = 0;  // consentd's wall clock, for logs
};

struct Goodbye {
    enum class Code : uint16_t {
        shutdown = 0,         // orderly stop
        protocol_error = 1,   // the peer sent something invalid
        policy_rejected = 2,  // the data plane cannot load the policy
        too_slow = 3,         // the data plane did not keep up
        replaced = 4,         // another connection with the same name
        timeout = 5,
        unsupported = 6,  // the peer knows the frame but does not take it (consentd without a disclosure store)
    };
    Code code = Code::shutdown;  // unknown codes decode as they are
    std::string_view message;    // 0..1024
};

using Frame = std::variant<Hello, Ack, Welcome, SnapshotBegin, SnapshotChunk, SnapshotEnd, Delta, PolicyUpdate,
                           Heartbeat, Goodbye, Stats, Disclosure, DisclosureAck, Features, FeaturesAck, Checkpoint,
                           PseudonymKeys, ResumeToken>;

// One change to the consent table, the one type for it on both sides:
// what consentd's state emits per commit (consentd/consent_state.hpp), what
// snapshots (always upsert) and deltas carry, what table_sync applies. Op's
// values are the wire's.
struct TableChange {
    enum class Op : uint8_t { upsert = 1, erase = 2 };
    Op op = Op::upsert;
    SubscriberKey key;
    PurposeMask purposes = 0;  // upsert only
    friend bool operator==(const TableChange&, const TableChange&) = default;
};

// One statistic as a data plane reports it (encode_stats, ControlClient):
//   {"packets", n, StatKind::counter}
//   {"rx_packets", n, StatKind::counter, "port", "0"}
struct StatEntry {
    std::string name;
    uint64_t value = 0;
    StatKind kind = StatKind::counter;
    std::string label_name, label_value;  // both empty: no label
};

std::string_view to_string(FrameType t) noexcept;
std::string_view to_string(Goodbye::Code c) noexcept;
std::string_view to_string(StatKind k) noexcept;  // "counter", "gauge"

}  // namespace optgate::proto
