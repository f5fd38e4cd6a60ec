// The codec for the wire format in wire.hpp: bytes in, bytes out, no I/O.
//
// Decoding is strict and total: any byte string either decodes into one
// frame, asks for more bytes, or is an error value naming what is wrong. It
// never reads out of bounds, never allocates and never throws, so it is safe
// on any thread, the data plane's included.
//
//   std::string out;
//   proto::encode(out, proto::Ack{42});
//   auto r = proto::decode(bytes, proto::Direction::to_server);
//   if (r.status == proto::DecodeStatus::frame) { ... std::get<proto::Ack>(r.frame) ...; consume(r.consumed); }
//
// Encoding appends to a std::string (the control side's buffers); a frame
// whose fields exceed the limits is a programming error the encoder refuses
// (returns false and appends nothing).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/big_endian.hpp"
#include "core/disclosure_report.hpp"
#include "proto/wire.hpp"

namespace optgate::proto {

enum class DecodeStatus : uint8_t { frame, need_more, error };

enum class DecodeError : uint8_t {
    none,
    bad_magic,
    bad_version,
    unknown_type,
    wrong_direction,  // e.g. a snapshot sent to consentd
    oversized,        // the header announces more than the type allows
    truncated,        // the payload ends inside a field
    trailing_bytes,   // the payload is longer than its fields
    bad_string,       // length out of range, or bad characters in a name
    bad_entry,        // unknown family or op in an entry list
    bad_count,        // entry count 0 where 1+ is required, or over the limit
    bad_value,        // a field outside its range (flags, mode, interval)
    bad_stat,         // a stats entry with an unknown kind, or a bad name or label
    stats_order,      // stats entries not strictly sorted by (name, label), e.g. repeated
    stats_kind,       // one stats name reported both as a counter and as a gauge
};

std::string_view to_string(DecodeError e) noexcept;

struct DecodeResult {
    DecodeStatus status = DecodeStatus::need_more;
    size_t consumed = 0;          // frame: header + payload bytes to drop
    size_t needed = kHeaderSize;  // need_more: total bytes the frame needs so far
    DecodeError error = DecodeError::none;
    FrameType type{};  // frame, and errors after the header was read
    Frame frame{};
};

// Decodes the first frame of `bytes`, which must come from the side that
// may send it (`dir`: to_server for what consentd reads).
DecodeResult decode(std::span<const uint8_t> bytes, Direction dir) noexcept;

// The largest payload a frame type may have (0 for an unknown type).
size_t max_payload(FrameType t) noexcept;

// Calls fn(const TableChange&) for every entry of a decoded list. IPv6 keys
// come as sent; callers mask them to their key length.
template <class Fn>
void for_each_change(const EntryList& list, Fn&& fn);

// Calls fn(const StatView&) for every entry of a decoded stats frame, in
// their (sorted) order.
template <class Fn>
void for_each_stat(const Stats& stats, Fn&& fn);

// Calls fn(const PseudonymKeyView&) for every key of a decoded frame.
template <class Fn>
void for_each_pseudonym_key(const PseudonymKeys& keys, Fn&& fn);

// Calls fn(const DisclosureView&) for every entry of a decoded disclosure
// report, in their order.
template <class Fn>
void for_each_disclosure(const Disclosure& report, Fn&& fn);

// The rules the decoder applies to each stats entry and between neighbours;
// ControlClient uses them to clean what a stats source produced.
bool stat_valid(const StatEntry& e) noexcept;
// <0, 0, >0: the order of (name, label name, label value).
int stat_compare(const StatEntry& a, const StatEntry& b) noexcept;

// ---- encoding ----
bool encode(std::string& out, const Hello& f);
bool encode(std::string& out, const Ack& f);
bool encode(std::string& out, const Welcome& f);
bool encode(std::string& out, const SnapshotBegin& f);
bool encode(std::string& out, const SnapshotEnd& f);
bool encode(std::string& out, const PolicyUpdate& f);
bool encode(std::string& out, const Heartbeat& f);
bool encode(std::string& out, const Goodbye& f);
bool encode(std::string& out, const DisclosureAck& f);
bool encode(std::string& out, const Features& f);
bool encode(std::string& out, const FeaturesAck& f);
bool encode(std::string& out, const Checkpoint& f);
bool encode(std::string& out, const ResumeToken& f);
// False (and nothing appended) unless there are at most kMaxPseudonymKeys,
// each with a 1..255-byte printable collector name and not_before <
// not_after. `out` then holds key bytes: clear it after sending.
bool encode_pseudonym_keys(std::string& out, std::span<const PseudonymKeyView> keys);
// False (and nothing appended) unless every entry is valid, they are
// strictly sorted (stat_compare) with one kind per name, and there are at
// most kMaxStatsEntries.
bool encode_stats(std::string& out, std::span<const StatEntry> entries);
// A disclosure report: `head`'s ids, interval and overflow (its count and
// bytes are ignored) and `entries`. False (and nothing appended) unless
// seq >= 1, start <= end, every entry is valid (disclosure_entry_valid),
// and they fit one frame (kMaxDisclosureEntries, kMaxDisclosurePayload).
bool encode_disclosure(std::string& out, const Disclosure& head, std::span<const DisclosureEntry> entries);
// What a disclosure entry must be to travel: destination and identifier
// 1..255 bytes without control characters, an IPv4 or IPv6 key.
bool disclosure_entry_valid(const DisclosureEntry& e) noexcept;
// Its size in a report.
size_t disclosure_entry_bytes(const DisclosureEntry& e) noexcept;

// A batch as reports of one frame each, seq `first_seq`, `first_seq + 1`...
// (as many as needed: kMaxDisclosureEntries and kMaxDisclosurePayload per
// report; the batch's overflow in the first). Entries that cannot travel
// are left out and their instances added to the overflow of the report
// being built (each instance counted once); returns how many. A batch with
// no entries and no overflow makes no report.
size_t encode_disclosure_batch(std::vector<std::string>& frames, uint64_t reporter, uint64_t first_seq,
                               const DisclosureBatch& batch);

// Chunks and deltas are built from changes (entry lists are decode views).
bool encode_snapshot_chunk(std::string& out, std::span<const TableChange> entries);
bool encode_delta(std::string& out, uint64_t seq, bool final, std::span<const TableChange> changes);

// Splits a commit's changes into delta parts of at most kMaxEntriesPerFrame
// (one empty final part when there are none) and appends them to `out`.
void encode_commit(std::string& out, uint64_t seq, std::span<const TableChange> changes);

// Builds a snapshot's frames from entries added one at a time: chunks are
// flushed every `chunk_entries`, the begin frame is written last (it carries
// the per-family counts) and placed first.
class SnapshotEncoder {
public:
    explicit SnapshotEncoder(uint32_t chunk_entries = kMaxEntriesPerFrame);
    void add(const SubscriberKey& key, PurposeMask purposes);
    // The frames: begin, chunks..., end. `begin.seq` and the counts are
    // filled in here. Returns false (and nothing) if `begin` exceeds limits.
    bool finish(SnapshotBegin begin, std::vector<std::string>& frames);
    uint32_t entries() const noexcept { return v4_ + v6_; }

private:
    void flush();

    uint32_t chunk_entries_;
    std::vector<TableChange> pending_;
    std::vector<std::string> chunks_;
    uint32_t v4_ = 0, v6_ = 0;
};

// ---- implementation of the template ----
namespace detail {
inline std::string_view str8(const uint8_t*& p) noexcept {
    const size_t n = *p++;
    std::string_view s(reinterpret_cast<const char*>(p), n);
    p += n;
    return s;
}
}  // namespace detail

template <class Fn>
void for_each_change(const EntryList& list, Fn&& fn) {
    const uint8_t* p = list.bytes.data();
    for (uint32_t i = 0; i < list.count; ++i) {
        TableChange c;
        if (list.with_op) c.op = TableChange::Op(*p++);
        const uint8_t family = *p++;
        if (family == 4) {
            c.key.addr = IpAddr::from_v4(p);
            p += 4;
        } else {
            c.key.addr = IpAddr::from_v6(p);
            p += 16;
        }
        if (c.op == TableChange::Op::upsert) {
            c.purposes = big_endian::load32(p);
            p += 4;
        }
        fn(static_cast<const TableChange&>(c));
    }
}

template <class Fn>
void for_each_disclosure(const Disclosure& report, Fn&& fn) {
    const uint8_t* p = report.bytes.data();
    for (uint32_t i = 0; i < report.count; ++i) {
        DisclosureView v;
        v.family = Family(*p++);
        const size_t n = v.family == Family::v4 ? 4 : 16;
        v.key = std::span<const uint8_t>(p, n);
        p += n;
        v.destination = detail::str8(p);
        v.identifier = detail::str8(p);
        v.passed = big_endian::load64(p);
        v.stripped = big_endian::load64(p + 8);
        p += 16;
        fn(static_cast<const DisclosureView&>(v));
    }
}

template <class Fn>
void for_each_pseudonym_key(const PseudonymKeys& keys, Fn&& fn) {
    const uint8_t* p = keys.bytes.data();
    for (uint32_t i = 0; i < keys.count; ++i) {
        const std::string_view collector = detail::str8(p);
        const uint64_t not_before = big_endian::load64(p);
        const uint64_t not_after = big_endian::load64(p + 8);
        p += 16;
        const PseudonymKeyView v{collector, not_before, not_after,
                                 std::span<const uint8_t, kPseudonymKeyBytes>(p, kPseudonymKeyBytes)};
        p += kPseudonymKeyBytes;
        fn(v);
    }
}

template <class Fn>
void for_each_stat(const Stats& stats, Fn&& fn) {
    const uint8_t* p = stats.bytes.data();
    for (uint32_t i = 0; i < stats.count; ++i) {
        StatView v;
        v.kind = StatKind(*p++);
        v.name = detail::str8(p);
        v.value = big_endian::load64(p);
        p += 8;
        v.label_name = detail::str8(p);
        v.label_value = detail::str8(p);
        fn(static_cast<const StatView&>(v));
    }
}

}  // namespace optgate::proto
