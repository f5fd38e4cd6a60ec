#include "proto/codec.hpp"

#include <algorithm>

namespace optgate::proto {

namespace {

constexpr size_t kStr8 = 1, kStr16 = 2, kStr32 = 4;

constexpr size_t entry_bytes(uint8_t family) noexcept { return family == 4 ? kV4EntryBytes : kV6EntryBytes; }

// ---- reading: every access checked against the payload's end ----
class Reader {
public:
    explicit Reader(std::span<const uint8_t> p) : p_(p.data()), end_(p.data() + p.size()) {}

    bool failed() const noexcept { return error_ != DecodeError::none; }
    DecodeError error() const noexcept { return error_; }
    void fail(DecodeError e) noexcept {
        if (error_ == DecodeError::none) error_ = e;
    }
    size_t left() const noexcept { return size_t(end_ - p_); }
    const uint8_t* pos() const noexcept { return p_; }
    void skip(size_t n) noexcept { p_ += n; }

    uint8_t u8() noexcept { return uint8_t(uint_n(1)); }
    uint16_t u16() noexcept { return uint16_t(uint_n(2)); }
    uint32_t u32() noexcept { return uint32_t(uint_n(4)); }
    uint64_t u64() noexcept { return uint_n(8); }

    // A string with a `width`-byte length, at most `max` bytes long.
    std::string_view str(size_t width, size_t min, size_t max) noexcept {
        const uint64_t n = uint_n(width);
        if (failed()) return {};
        if (n > left()) {
            fail(DecodeError::truncated);
            return {};
        }
        if (n < min || n > max) {
            fail(DecodeError::bad_string);
            return {};
        }
        std::string_view s(reinterpret_cast<const char*>(p_), size_t(n));
        p_ += n;
        return s;
    }

    // The payload must end exactly here.
    void finish() noexcept {
        if (!failed() && p_ != end_) fail(DecodeError::trailing_bytes);
    }

private:
    uint64_t uint_n(size_t n) noexcept {
        if (failed()) return 0;
        if (left() < n) {
            fail(DecodeError::truncated);
            return 0;
        }
        uint64_t v = 0;
        for (size_t i = 0; i < n; ++i) v = v << 8 | p_[i];
        p_ += n;
        return v;
    }

    const uint8_t* p_;
    const uint8_t* end_;
    DecodeError error_ = DecodeError::none;
};

bool is_name_char(char c) noexcept {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == ':' || c == '@' || c == '-';
}

bool is_name(std::string_view s) noexcept {
    return !s.empty() && s.size() <= kMaxNameBytes && std::all_of(s.begin(), s.end(), is_name_char);
}

// Opaque tokens (stream id, table version): printable ASCII, no spaces.
bool is_token(std::string_view s, size_t min) noexcept {
    return s.size() >= min && s.size() <= kMaxTokenBytes && std::all_of(s.begin(), s.end(), ascii::is_visible);
}

// A file name for messages: no control characters.
bool is_printable(std::string_view s) noexcept { return std::none_of(s.begin(), s.end(), ascii::is_control); }

// Stats: metric and label names are lower-case words, so that consentd can
// export them to Prometheus as they are (optgate_dp_<name>{<label>="..."}).
bool is_stat_char(char c) noexcept { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; }

bool is_stat_name(std::string_view s) noexcept {
    return !s.empty() && s.size() <= kMaxStatNameBytes && std::all_of(s.begin(), s.end(), is_stat_char);
}

// A letter first: Prometheus label names may not start with a digit, and
// "__" is reserved. "dataplane" is the label consentd adds.
bool is_stat_label_name(std::string_view s) noexcept {
    return !s.empty() && s.size() <= kMaxStatLabelNameBytes && s[0] >= 'a' && s[0] <= 'z' &&
           std::all_of(s.begin(), s.end(), is_stat_char) && s != "dataplane";
}

// Printable ASCII without quotes and backslashes: needs no escaping in the exposition.
bool is_stat_label_value(std::string_view s) noexcept {
    return !s.empty() && s.size() <= kMaxStatLabelValueBytes &&
           std::all_of(s.begin(), s.end(), is_stat_label_value_char);
}

bool stat_fields_ok(uint8_t kind, std::string_view name, std::string_view label_name,
                    std::string_view label_value) noexcept {
    if (kind != uint8_t(StatKind::counter) && kind != uint8_t(StatKind::gauge)) return false;
    if (!is_stat_name(name)) return false;
    if (label_name.empty()) return label_value.empty();
    return is_stat_label_name(label_name) && is_stat_label_value(label_value);
}

int compare3(std::string_view a0, std::string_view a1, std::string_view a2, std::string_view b0, std::string_view b1,
             std::string_view b2) noexcept {
    if (const int c = a0.compare(b0)) return c;
    if (const int c = a1.compare(b1)) return c;
    return a2.compare(b2);
}

void check(Reader& r, bool ok, DecodeError e) noexcept {
    if (!r.failed() && !ok) r.fail(e);
}

// Validates `count` entries at the reader's position and consumes them.
EntryList entry_list(Reader& r, uint32_t count, bool with_op) noexcept {
    EntryList list;
    list.count = count;
    list.with_op = with_op;
    const uint8_t* start = r.pos();
    for (uint32_t i = 0; i < count && !r.failed(); ++i) {
        TableChange::Op op = TableChange::Op::upsert;
        if (with_op) {
            const uint8_t o = r.u8();
            if (r.failed()) break;
            if (o != uint8_t(TableChange::Op::upsert) && o != uint8_t(TableChange::Op::erase)) {
                r.fail(DecodeError::bad_entry);
                break;
            }
            op = TableChange::Op(o);
        }
        const uint8_t family = r.u8();
        if (r.failed()) break;
        if (family != 4 && family != 6) {
            r.fail(DecodeError::bad_entry);
            break;
        }
        const size_t body = entry_bytes(family) - 1 - (op == TableChange::Op::erase ? 4 : 0);
        if (r.left() < body) {
            r.fail(DecodeError::truncated);
            break;
        }
        r.skip(body);
    }
    if (!r.failed()) list.bytes = std::span<const uint8_t>(start, size_t(r.pos() - start));
    return list;
}

// Validates `count` stats entries at the reader's position and consumes
// them: each well-formed, strictly after the one before, one kind per name.
Stats stats_list(Reader& r, uint32_t count) noexcept {
    Stats f;
    f.count = count;
    const uint8_t* start = r.pos();
    std::string_view prev_name, prev_label, prev_value;
    uint8_t prev_kind = 0;
    for (uint32_t i = 0; i < count && !r.failed(); ++i) {
        const uint8_t kind = r.u8();
        const std::string_view name = r.str(kStr8, 0, 255);
        r.u64();
        const std::string_view label = r.str(kStr8, 0, 255);
        const std::string_view value = r.str(kStr8, 0, 255);
        if (r.failed()) break;
        if (!stat_fields_ok(kind, name, label, value)) {
            r.fail(DecodeError::bad_stat);
            break;
        }
        if (i > 0) {
            if (compare3(prev_name, prev_label, prev_value, name, label, value) >= 0) {
                r.fail(DecodeError::stats_order);
                break;
            }
            if (name == prev_name && kind != prev_kind) {
                r.fail(DecodeError::stats_kind);
                break;
            }
        }
        prev_name = name;
        prev_label = label;
        prev_value = value;
        prev_kind = kind;
    }
    if (!r.failed()) f.bytes = std::span<const uint8_t>(start, size_t(r.pos() - start));
    return f;
}

// Destination and identifier names in disclosure reports: what a policy
// may name them, bounded, without control characters (consentd logs and
// stores them).
bool is_disclosure_name(std::string_view s) noexcept {
    return !s.empty() && s.size() <= kMaxDisclosureNameBytes && is_printable(s);
}

// Validates `count` disclosure entries at the reader's position and
// consumes them.
Disclosure disclosure_list(Reader& r, Disclosure f) noexcept {
    const uint8_t* start = r.pos();
    for (uint32_t i = 0; i < f.count && !r.failed(); ++i) {
        const uint8_t family = r.u8();
        if (r.failed()) break;
        if (family != 4 && family != 6) {
            r.fail(DecodeError::bad_entry);
            break;
        }
        const size_t key = family == 4 ? 4 : 16;
        if (r.left() < key) {
            r.fail(DecodeError::truncated);
            break;
        }
        r.skip(key);
        const std::string_view destination = r.str(kStr8, 1, kMaxDisclosureNameBytes);
        check(r, is_disclosure_name(destination), DecodeError::bad_string);
        const std::string_view identifier = r.str(kStr8, 1, kMaxDisclosureNameBytes);
        check(r, is_disclosure_name(identifier), DecodeError::bad_string);
        r.u64();
        r.u64();
    }
    if (!r.failed()) f.bytes = std::span<const uint8_t>(start, size_t(r.pos() - start));
    return f;
}

// Validates `count` pseudonym keys at the reader's position and consumes them.
PseudonymKeys key_list(Reader& r, uint32_t count) noexcept {
    PseudonymKeys f;
    f.count = count;
    const uint8_t* start = r.pos();
    for (uint32_t i = 0; i < count && !r.failed(); ++i) {
        const std::string_view collector = r.str(kStr8, 1, kMaxKeyCollectorBytes);
        check(r, is_printable(collector), DecodeError::bad_string);
        const uint64_t not_before = r.u64();
        const uint64_t not_after = r.u64();
        check(r, not_before < not_after, DecodeError::bad_value);
        if (r.failed()) break;
        if (r.left() < kPseudonymKeyBytes) {
            r.fail(DecodeError::truncated);
            break;
        }
        r.skip(kPseudonymKeyBytes);
    }
    if (!r.failed()) f.bytes = std::span<const uint8_t>(start, size_t(r.pos() - start));
    return f;
}

Frame decode_payload(FrameType type, Reader& r) noexcept {
    switch (type) {
    case FrameType::hello: {
        Hello f;
        f.name = r.str(kStr8, 1, kMaxNameBytes);
        check(r, is_name(f.name), DecodeError::bad_string);
        f.last_seq = r.u64();
        f.stream_id = r.str(kStr8, 0, kMaxTokenBytes);
        check(r, is_token(f.stream_id, 0), DecodeError::bad_string);
        return f;
    }
    case FrameType::ack: return Ack{r.u64()};
    case FrameType::stats: {
        const uint32_t n = r.u32();
        check(r, n <= kMaxStatsEntries, DecodeError::bad_count);
        if (r.failed()) return Stats{};
        return stats_list(r, n);
    }
    case FrameType::disclosure: {
        Disclosure f;
        f.reporter = r.u64();
        f.seq = r.u64();
        check(r, f.seq >= 1, DecodeError::bad_value);
        f.start_unix_ms = r.u64();
        f.end_unix_ms = r.u64();
        check(r, f.start_unix_ms <= f.end_unix_ms, DecodeError::bad_value);
        f.overflowed = r.u64();
        f.count = r.u32();
        check(r, f.count <= kMaxDisclosureEntries, DecodeError::bad_count);
        if (r.failed()) return Disclosure{};
        return disclosure_list(r, f);
    }
    case FrameType::features: return Features{r.u32()};
    case FrameType::pseudonym_keys: {
        const uint32_t n = r.u8();
        check(r, n <= kMaxPseudonymKeys, DecodeError::bad_count);
        if (r.failed()) return PseudonymKeys{};
        return key_list(r, n);
    }
    case FrameType::disclosure_ack: {
        DisclosureAck f;
        f.reporter = r.u64();
        f.seq = r.u64();
        check(r, f.seq >= 1, DecodeError::bad_value);
        return f;
    }
    case FrameType::features_ack: return FeaturesAck{r.u32()};
    case FrameType::checkpoint: {
        Checkpoint f;
        f.seq = r.u64();
        f.line = r.str(kStr16, 1, kMaxCheckpointLineBytes);
        check(r, is_printable(f.line), DecodeError::bad_string);
        return f;
    }
    case FrameType::resume_token: {
        ResumeToken f;
        f.seq = r.u64();
        f.token = r.str(kStr8, 1, kMaxTokenBytes);
        check(r, is_token(f.token, 1), DecodeError::bad_string);
        return f;
    }
    case FrameType::welcome: {
        Welcome f;
        f.head_seq = r.u64();
        f.heartbeat_interval_ms = r.u32();
        check(r, f.heartbeat_interval_ms >= 1 && f.heartbeat_interval_ms <= 3'600'000, DecodeError::bad_value);
        const uint8_t mode = r.u8();
        check(r, mode <= 1, DecodeError::bad_value);
        f.mode = Welcome::Mode(mode);
        return f;
    }
    case FrameType::snapshot_begin: {
        SnapshotBegin f;
        f.seq = r.u64();
        f.v4_entries = r.u32();
        f.v6_entries = r.u32();
        check(r, uint64_t(f.v4_entries) + f.v6_entries <= UINT32_MAX, DecodeError::bad_count);
        f.stream_id = r.str(kStr8, 1, kMaxTokenBytes);
        check(r, is_token(f.stream_id, 1), DecodeError::bad_string);
        f.table_version = r.str(kStr8, 0, kMaxTokenBytes);
        check(r, is_token(f.table_version, 0), DecodeError::bad_string);
        f.policy_name = r.str(kStr16, 0, kMaxPolicyNameBytes);
        check(r, is_printable(f.policy_name), DecodeError::bad_string);
        f.policy_text = r.str(kStr32, 1, kMaxPolicyBytes);
        return f;
    }
    case FrameType::snapshot_chunk: {
        SnapshotChunk f;
        const uint32_t n = r.u32();
        check(r, n >= 1 && n <= kMaxEntriesPerFrame, DecodeError::bad_count);
        if (!r.failed()) f.entries = entry_list(r, n, false);
        return f;
    }
    case FrameType::snapshot_end: {
        SnapshotEnd f;
        f.seq = r.u64();
        f.entries = r.u32();
        return f;
    }
    case FrameType::delta: {
        Delta f;
        f.seq = r.u64();
        const uint8_t flags = r.u8();
        check(r, (flags & ~Delta::kFinal) == 0, DecodeError::bad_value);
        f.final = flags & Delta::kFinal;
        const uint32_t n = r.u32();
        // A part that is not the last one must carry something.
        check(r, n <= kMaxEntriesPerFrame && (n > 0 || f.final), DecodeError::bad_count);
        if (!r.failed()) f.changes = entry_list(r, n, true);
        return f;
    }
    case FrameType::policy: {
        PolicyUpdate f;
        f.seq = r.u64();
        f.stream_id = r.str(kStr8, 1, kMaxTokenBytes);
        check(r, is_token(f.stream_id, 1), DecodeError::bad_string);
        f.table_version = r.str(kStr8, 0, kMaxTokenBytes);
        check(r, is_token(f.table_version, 0), DecodeError::bad_string);
        f.policy_name = r.str(kStr16, 0, kMaxPolicyNameBytes);
        check(r, is_printable(f.policy_name), DecodeError::bad_string);
        f.policy_text = r.str(kStr32, 1, kMaxPolicyBytes);
        return f;
    }
    case FrameType::heartbeat: {
        Heartbeat f;
        f.head_seq = r.u64();
        f.unix_time_ms = r.u64();
        return f;
    }
    case FrameType::goodbye: {
        Goodbye f;
        f.code = Goodbye::Code(r.u16());
        f.message = r.str(kStr16, 0, kMaxMessageBytes);
        return f;
    }
    }
    r.fail(DecodeError::unknown_type);
    return Ack{};
}

bool known_type(uint8_t t) noexcept { return max_payload(FrameType(t)) != 0; }

bool allowed(FrameType t, Direction dir) noexcept {
    switch (t) {
    case FrameType::hello:
    case FrameType::ack:
    case FrameType::stats:
    case FrameType::disclosure:
    case FrameType::features: return dir == Direction::to_server;
    case FrameType::goodbye: return true;
    default: return dir == Direction::to_client;
    }
}

// ---- writing ----
void put_u8(std::string& o, uint8_t v) { o.push_back(char(v)); }
void put_u16(std::string& o, uint16_t v) {
    o.push_back(char(v >> 8));
    o.push_back(char(v));
}
void put_u32(std::string& o, uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) o.push_back(char(v >> s));
}
void put_u64(std::string& o, uint64_t v) {
    for (int s = 56; s >= 0; s -= 8) o.push_back(char(v >> s));
}
void put_str(std::string& o, size_t width, std::string_view s) {
    if (width == kStr8) put_u8(o, uint8_t(s.size()));
    if (width == kStr16) put_u16(o, uint16_t(s.size()));
    if (width == kStr32) put_u32(o, uint32_t(s.size()));
    o.append(s);
}

// Writes a header with a placeholder length; returns where the frame starts.
size_t begin_frame(std::string& o, FrameType t) {
    const size_t start = o.size();
    o.push_back(char(kMagic0));
    o.push_back(char(kMagic1));
    o.push_back(char(kVersion));
    o.push_back(char(t));
    put_u32(o, 0);
    return start;
}

void end_frame(std::string& o, size_t start) {
    const uint32_t len = uint32_t(o.size() - start - kHeaderSize);
    for (int i = 0; i < 4; ++i) o[start + 4 + size_t(i)] = char(len >> (24 - 8 * i));
}

void put_key(std::string& o, const SubscriberKey& k) {
    if (k.addr.family == Family::v4) {
        put_u8(o, 4);
        o.append(reinterpret_cast<const char*>(k.addr.bytes.data()), 4);
    } else {
        put_u8(o, 6);
        o.append(reinterpret_cast<const char*>(k.addr.bytes.data()), 16);
    }
}

bool policy_fields_ok(std::string_view stream_id, std::string_view table_version, std::string_view name,
                      std::string_view text) {
    return is_token(stream_id, 1) && is_token(table_version, 0) && name.size() <= kMaxPolicyNameBytes &&
           is_printable(name) && !text.empty() && text.size() <= kMaxPolicyBytes;
}

}  // namespace

std::string_view to_string(DecodeError e) noexcept {
    switch (e) {
    case DecodeError::none: return "no error";
    case DecodeError::bad_magic: return "not an optgate frame (bad magic)";
    case DecodeError::bad_version: return "unsupported protocol version";
    case DecodeError::unknown_type: return "unknown frame type";
    case DecodeError::wrong_direction: return "frame type not allowed in this direction";
    case DecodeError::oversized: return "frame larger than its type allows";
    case DecodeError::truncated: return "payload ends inside a field";
    case DecodeError::trailing_bytes: return "payload longer than its fields";
    case DecodeError::bad_string: return "string field out of range or with invalid characters";
    case DecodeError::bad_entry: return "entry with an unknown family or operation";
    case DecodeError::bad_count: return "entry count out of range";
    case DecodeError::bad_value: return "field value out of range";
    case DecodeError::bad_stat:
        return "stats entry with an unknown kind, a name not of [a-z0-9_] (1..64), a label name not of "
               "[a-z][a-z0-9_] (1..32, not 'dataplane') or a label value not printable (1..64, no quotes or "
               "backslashes)";
    case DecodeError::stats_order:
        return "stats entries not strictly sorted by name, label name and label value (repeated or out of order)";
    case DecodeError::stats_kind: return "stats name reported both as a counter and as a gauge";
    }
    return "unknown error";
}

std::string_view to_string(FrameType t) noexcept {
    switch (t) {
    case FrameType::hello: return "hello";
    case FrameType::ack: return "ack";
    case FrameType::stats: return "stats";
    case FrameType::disclosure: return "disclosure";
    case FrameType::features: return "features";
    case FrameType::features_ack: return "features-ack";
    case FrameType::checkpoint: return "checkpoint";
    case FrameType::resume_token: return "resume-token";
    case FrameType::welcome: return "welcome";
    case FrameType::snapshot_begin: return "snapshot-begin";
    case FrameType::snapshot_chunk: return "snapshot-chunk";
    case FrameType::snapshot_end: return "snapshot-end";
    case FrameType::delta: return "delta";
    case FrameType::policy: return "policy";
    case FrameType::heartbeat: return "heartbeat";
    case FrameType::disclosure_ack: return "disclosure-ack";
    case FrameType::pseudonym_keys: return "pseudonym-keys";
    case FrameType::goodbye: return "goodbye";
    }
    return "unknown";
}

std::string_view to_string(Goodbye::Code c) noexcept {
    switch (c) {
    case Goodbye::Code::shutdown: return "shutdown";
    case Goodbye::Code::protocol_error: return "protocol error";
    case Goodbye::Code::policy_rejected: return "policy rejected";
    case Goodbye::Code::too_slow: return "too slow";
    case Goodbye::Code::replaced: return "replaced";
    case Goodbye::Code::timeout: return "timeout";
    case Goodbye::Code::unsupported: return "unsupported";
    }
    return "unknown";
}

std::string_view to_string(StatKind k) noexcept {
    switch (k) {
    case StatKind::counter: return "counter";
    case StatKind::gauge: return "gauge";
    }
    return "unknown";
}

bool stat_valid(const StatEntry& e) noexcept {
    return stat_fields_ok(uint8_t(e.kind), e.name, e.label_name, e.label_value);
}

int stat_compare(const StatEntry& a, const StatEntry& b) noexcept {
    return compare3(a.name, a.label_name, a.label_value, b.name, b.label_name, b.label_value);
}

size_t max_payload(FrameType t) noexcept {
    constexpr size_t kPolicyFields = 1 + kMaxTokenBytes + 1 + kMaxTokenBytes + 2 + kMaxPolicyNameBytes + 4 +
                                     kMaxPolicyBytes;
    switch (t) {
    case FrameType::hello: return 1 + kMaxNameBytes + 8 + 1 + kMaxTokenBytes;
    case FrameType::ack: return 8;
    case FrameType::stats: return 4 + size_t(kMaxStatsEntries) * kMaxStatEntryBytes;
    case FrameType::disclosure: return kMaxDisclosurePayload;
    case FrameType::disclosure_ack: return 8 + 8;
    case FrameType::features:
    case FrameType::features_ack: return 4;
    case FrameType::checkpoint: return 8 + 2 + kMaxCheckpointLineBytes;
    case FrameType::resume_token: return 8 + 1 + kMaxTokenBytes;
    case FrameType::pseudonym_keys: return 1 + size_t(kMaxPseudonymKeys) * kMaxKeyEntryBytes;
    case FrameType::welcome: return 8 + 4 + 1;
    case FrameType::snapshot_begin: return 8 + 4 + 4 + kPolicyFields;
    case FrameType::snapshot_chunk: return 4 + size_t(kMaxEntriesPerFrame) * kV6EntryBytes;
    case FrameType::snapshot_end: return 8 + 4;
    case FrameType::delta: return 8 + 1 + 4 + size_t(kMaxEntriesPerFrame) * (1 + kV6EntryBytes);
    case FrameType::policy: return 8 + kPolicyFields;
    case FrameType::heartbeat: return 8 + 8;
    case FrameType::goodbye: return 2 + 2 + kMaxMessageBytes;
    }
    return 0;
}

static_assert(kMaxPayload >=
              8 + 4 + 4 + 1 + kMaxTokenBytes + 1 + kMaxTokenBytes + 2 + kMaxPolicyNameBytes + 4 + kMaxPolicyBytes);

DecodeResult decode(std::span<const uint8_t> bytes, Direction dir) noexcept {
    DecodeResult res;
    auto error = [&](DecodeError e) {
        res.status = DecodeStatus::error;
        res.error = e;
        return res;
    };
    // Check what we have of the header as early as possible: garbage is
    // refused on its first bytes, not after waiting for eight.
    if (bytes.size() >= 1 && bytes[0] != kMagic0) return error(DecodeError::bad_magic);
    if (bytes.size() >= 2 && bytes[1] != kMagic1) return error(DecodeError::bad_magic);
    if (bytes.size() >= 3 && bytes[2] != kVersion) return error(DecodeError::bad_version);
    if (bytes.size() >= 4) {
        if (!known_type(bytes[3])) return error(DecodeError::unknown_type);
        res.type = FrameType(bytes[3]);
        if (!allowed(res.type, dir)) return error(DecodeError::wrong_direction);
    }
    if (bytes.size() < kHeaderSize) {
        res.needed = kHeaderSize;
        return res;
    }
    const uint32_t len = big_endian::load32(bytes.data() + 4);
    if (len > max_payload(res.type)) return error(DecodeError::oversized);
    if (bytes.size() < kHeaderSize + len) {
        res.needed = kHeaderSize + len;
        return res;
    }
    Reader r(bytes.subspan(kHeaderSize, len));
    Frame f = decode_payload(res.type, r);
    r.finish();
    if (r.failed()) return error(r.error());
    res.status = DecodeStatus::frame;
    res.consumed = kHeaderSize + len;
    res.needed = res.consumed;
    res.frame = f;
    return res;
}

// ---- encoding ----

bool encode(std::string& out, const Hello& f) {
    if (!is_name(f.name) || !is_token(f.stream_id, 0)) return false;
    const size_t s = begin_frame(out, FrameType::hello);
    put_str(out, kStr8, f.name);
    put_u64(out, f.last_seq);
    put_str(out, kStr8, f.stream_id);
    end_frame(out, s);
    return true;
}

bool encode(std::string& out, const Ack& f) {
    const size_t s = begin_frame(out, FrameType::ack);
    put_u64(out, f.applied_seq);
    end_frame(out, s);
    return true;
}

bool encode(std::string& out, const Welcome& f) {
    if (f.heartbeat_interval_ms < 1 || f.heartbeat_interval_ms > 3'600'000) return false;
    const size_t s = begin_frame(out, FrameType::welcome);
    put_u64(out, f.head_seq);
    put_u32(out, f.heartbeat_interval_ms);
    put_u8(out, uint8_t(f.mode));
    end_frame(out, s);
    return true;
}

bool encode(std::string& out, const SnapshotBegin& f) {
    if (!policy_fields_ok(f.stream_id, f.table_version, f.policy_name, f.policy_text)) return false;
    const size_t s = begin_frame(out, FrameType::snapshot_begin);
    put_u64(out, f.seq);
    put_u32(out, f.v4_entries);
    put_u32(out, f.v6_entries);
    put_str(out, kStr8, f.stream_id);
    put_str(out, kStr8, f.table_version);
    put_str(out, kStr16, f.policy_name);
    put_str(out, kStr32, f.policy_text);
    end_frame(out, s);
    return true;
}

bool encode(std::string& out, const SnapshotEnd& f) {
    const size_t s = begin_frame(out, FrameType::snapshot_end);
    put_u64(out, f.seq);
    put_u32(out, f.entries);
    end_frame(out, s);
    return true;
}

bool encode(std::string& out, const PolicyUpdate& f) {
    if (!policy_fields_ok(f.stream_id, f.table_version, f.policy_name, f.policy_text)) return false;
    const size_t s = begin_frame(out, FrameType::policy);
    put_u64(out, f.seq);
    put_str(out, kStr8, f.stream_id);
    put_str(out, kStr8, f.table_version);
    put_str(out, kStr16, f.policy_name);
    put_str(out, kStr32, f.policy_text);
    end_frame(out, s);
    return true;
}

bool encode(std::string& out, const Heartbeat& f) {
    const size_t s = begin_frame(out, FrameType::heartbeat);
    put_u64(out, f.head_seq);
    put_u64(out, f.unix_time_ms);
    end_frame(out, s);
    return true;
}

bool encode(std::string& out, const Goodbye& f) {
    const std::string_view m = f.message.substr(0, kMaxMessageBytes);
    const size_t s = begin_frame(out, FrameType::goodbye);
    put_u16(out, uint16_t(f.code));
    put_str(out, kStr16, m);
    end_frame(out, s);
    return true;
}

bool encode(std::string& out, const DisclosureAck& f) {
    if (f.seq < 1) return false;
    const size_t s = begin_frame(out, FrameType::disclosure_ack);
    put_u64(out, f.reporter);
    put_u64(out, f.seq);
    end_frame(out, s);
    return true;
}

bool encode(std::string& out, const Features& f) {
    const size_t s = begin_frame(out, FrameType::features);
    put_u32(out, f.flags);
    end_frame(out, s);
    return true;
}

bool encode_pseudonym_keys(std::string& out, std::span<const PseudonymKeyView> keys) {
    if (keys.size() > kMaxPseudonymKeys) return false;
    for (const auto& k : keys)
        if (k.collector.empty() || k.collector.size() > kMaxKeyCollectorBytes || !is_printable(k.collector) ||
            k.not_before_unix_s >= k.not_after_unix_s)
            return false;
    const size_t s = begin_frame(out, FrameType::pseudonym_keys);
    put_u8(out, uint8_t(keys.size()));
    for (const auto& k : keys) {
        put_str(out, kStr8, k.collector);
        put_u64(out, k.not_before_unix_s);
        put_u64(out, k.not_after_unix_s);
        out.append(reinterpret_cast<const char*>(k.key.data()), k.key.size());
    }
    end_frame(out, s);
    return true;
}

bool encode(std::string& out, const FeaturesAck& f) {
    const size_t s = begin_frame(out, FrameType::features_ack);
    put_u32(out, f.flags);
    end_frame(out, s);
    return true;
}

bool encode(std::string& out, const Checkpoint& f) {
    if (f.line.empty() || f.line.size() > kMaxCheckpointLineBytes || !is_printable(f.line)) return false;
    const size_t s = begin_frame(out, FrameType::checkpoint);
    put_u64(out, f.seq);
    put_str(out, kStr16, f.line);
    end_frame(out, s);
    return true;
}

bool encode(std::string& out, const ResumeToken& f) {
    if (!is_token(f.token, 1)) return false;
    const size_t s = begin_frame(out, FrameType::resume_token);
    put_u64(out, f.seq);
    put_str(out, kStr8, f.token);
    end_frame(out, s);
    return true;
}

bool disclosure_entry_valid(const DisclosureEntry& e) noexcept {
    return (e.family == Family::v4 || e.family == Family::v6) && is_disclosure_name(e.destination) &&
           is_disclosure_name(e.identifier);
}

size_t disclosure_entry_bytes(const DisclosureEntry& e) noexcept {
    return 1 + (e.family == Family::v4 ? 4 : 16) + 1 + e.destination.size() + 1 + e.identifier.size() + 8 + 8;
}

bool encode_disclosure(std::string& out, const Disclosure& head, std::span<const DisclosureEntry> entries) {
    if (head.seq < 1 || head.start_unix_ms > head.end_unix_ms || entries.size() > kMaxDisclosureEntries) return false;
    size_t payload = kDisclosureHeadBytes;
    for (const auto& e : entries) {
        if (!disclosure_entry_valid(e)) return false;
        payload += disclosure_entry_bytes(e);
    }
    if (payload > kMaxDisclosurePayload) return false;
    out.reserve(out.size() + kHeaderSize + payload);
    const size_t s = begin_frame(out, FrameType::disclosure);
    put_u64(out, head.reporter);
    put_u64(out, head.seq);
    put_u64(out, head.start_unix_ms);
    put_u64(out, head.end_unix_ms);
    put_u64(out, head.overflowed);
    put_u32(out, uint32_t(entries.size()));
    for (const auto& e : entries) {
        put_u8(out, uint8_t(e.family));
        out.append(reinterpret_cast<const char*>(e.key.data()), e.family == Family::v4 ? 4 : 16);
        put_str(out, kStr8, e.destination);
        put_str(out, kStr8, e.identifier);
        put_u64(out, e.passed);
        put_u64(out, e.stripped);
    }
    end_frame(out, s);
    return true;
}

size_t encode_disclosure_batch(std::vector<std::string>& frames, uint64_t reporter, uint64_t first_seq,
                               const DisclosureBatch& batch) {
    Disclosure head;
    head.reporter = reporter;
    head.seq = first_seq;
    head.start_unix_ms = batch.start_unix_ms;
    head.end_unix_ms = std::max(batch.start_unix_ms, batch.end_unix_ms);
    head.overflowed = batch.overflowed;
    std::vector<DisclosureEntry> part;
    size_t left_out = 0;
    size_t bytes = kDisclosureHeadBytes;
    const auto flush = [&] {
        frames.emplace_back();
        encode_disclosure(frames.back(), head, part);
        ++head.seq;
        head.overflowed = 0;  // counted once, in the first report
        part.clear();
        bytes = kDisclosureHeadBytes;
    };
    for (const auto& e : batch.entries) {
        if (!disclosure_entry_valid(e)) {
            ++left_out;
            head.overflowed += e.passed + e.stripped;  // counted, not attributed
            continue;
        }
        const size_t n = disclosure_entry_bytes(e);
        if (part.size() == kMaxDisclosureEntries || bytes + n > kMaxDisclosurePayload) flush();
        part.push_back(e);
        bytes += n;
    }
    if (!part.empty() || head.overflowed > 0) flush();
    return left_out;
}

bool encode_stats(std::string& out, std::span<const StatEntry> entries) {
    if (entries.size() > kMaxStatsEntries) return false;
    for (size_t i = 0; i < entries.size(); ++i) {
        if (!stat_valid(entries[i])) return false;
        if (i > 0 && (stat_compare(entries[i - 1], entries[i]) >= 0 ||
                      (entries[i - 1].name == entries[i].name && entries[i - 1].kind != entries[i].kind)))
            return false;
    }
    const size_t s = begin_frame(out, FrameType::stats);
    put_u32(out, uint32_t(entries.size()));
    for (const auto& e : entries) {
        put_u8(out, uint8_t(e.kind));
        put_str(out, kStr8, e.name);
        put_u64(out, e.value);
        put_str(out, kStr8, e.label_name);
        put_str(out, kStr8, e.label_value);
    }
    end_frame(out, s);
    return true;
}

bool encode_snapshot_chunk(std::string& out, std::span<const TableChange> entries) {
    if (entries.empty() || entries.size() > kMaxEntriesPerFrame) return false;
    out.reserve(out.size() + kHeaderSize + 4 + entries.size() * kV6EntryBytes);
    const size_t s = begin_frame(out, FrameType::snapshot_chunk);
    put_u32(out, uint32_t(entries.size()));
    for (const auto& e : entries) {
        put_key(out, e.key);
        put_u32(out, e.purposes);
    }
    end_frame(out, s);
    return true;
}

bool encode_delta(std::string& out, uint64_t seq, bool final, std::span<const TableChange> changes) {
    if (changes.size() > kMaxEntriesPerFrame || (changes.empty() && !final)) return false;
    const size_t s = begin_frame(out, FrameType::delta);
    put_u64(out, seq);
    put_u8(out, final ? Delta::kFinal : 0);
    put_u32(out, uint32_t(changes.size()));
    for (const auto& c : changes) {
        put_u8(out, uint8_t(c.op));
        put_key(out, c.key);
        if (c.op == TableChange::Op::upsert) put_u32(out, c.purposes);
    }
    end_frame(out, s);
    return true;
}

void encode_commit(std::string& out, uint64_t seq, std::span<const TableChange> changes) {
    size_t done = 0;
    do {
        const size_t n = std::min<size_t>(changes.size() - done, kMaxEntriesPerFrame);
        encode_delta(out, seq, done + n == changes.size(), changes.subspan(done, n));
        done += n;
    } while (done < changes.size());
}

SnapshotEncoder::SnapshotEncoder(uint32_t chunk_entries)
    : chunk_entries_(std::clamp<uint32_t>(chunk_entries, 1, kMaxEntriesPerFrame)) {
    pending_.reserve(chunk_entries_);
}

void SnapshotEncoder::add(const SubscriberKey& key, PurposeMask purposes) {
    pending_.push_back({TableChange::Op::upsert, key, purposes});
    ++(key.addr.family == Family::v4 ? v4_ : v6_);
    if (pending_.size() == chunk_entries_) flush();
}

void SnapshotEncoder::flush() {
    if (pending_.empty()) return;
    chunks_.emplace_back();
    encode_snapshot_chunk(chunks_.back(), pending_);
    pending_.clear();
}

bool SnapshotEncoder::finish(SnapshotBegin begin, std::vector<std::string>& frames) {
    flush();
    begin.v4_entries = v4_;
    begin.v6_entries = v6_;
    std::string head;
    if (!encode(head, begin)) return false;
    frames.reserve(frames.size() + chunks_.size() + 2);
    frames.push_back(std::move(head));
    for (auto& c : chunks_) frames.push_back(std::move(c));
    chunks_.clear();
    frames.emplace_back();
    encode(frames.back(), SnapshotEnd{begin.seq, v4_ + v6_});
    return true;
}

}  // namespace optgate::proto
