// The wire codec: round trips of every frame, strict rejection of every
// truncation and corruption, random bytes, limits (src/proto/codec.hpp).
#include <doctest/doctest.h>

#include <random>

#include "proto/codec.hpp"
#include "proto_fixture.hpp"

using namespace optgate;
using namespace optgate::proto;
using optgate::test_proto::bytes_of;
using optgate::test_proto::key;

namespace {

DecodeResult decode_str(const std::string& s, Direction dir) { return decode(bytes_of(s), dir); }

template <class T>
T decode_as(const std::string& s, Direction dir) {
    const auto r = decode_str(s, dir);
    REQUIRE(r.status == DecodeStatus::frame);
    CHECK(r.consumed == s.size());
    REQUIRE(std::holds_alternative<T>(r.frame));
    return std::get<T>(r.frame);
}

std::vector<TableChange> collect(const EntryList& l) {
    std::vector<TableChange> out;
    for_each_change(l, [&](const TableChange& c) { out.push_back(c); });
    return out;
}

const std::string kPolicy = "version: 1\npurposes: {}\n";
const std::string kCheckpointLine = "optgate-checkpoint-v1 seq=10 head=" + std::string(64, 'a') +
                                    " time=2026-12-05T06:00:00.000Z key=0123456789abcdef sig=" + std::string(128, 'b');

// One valid frame of every type, with the direction it travels.
std::vector<std::pair<std::string, Direction>> sample_frames() {
    std::vector<std::pair<std::string, Direction>> v;
    auto add = [&](auto frame, Direction d) {
        std::string s;
        REQUIRE(encode(s, frame));
        v.emplace_back(std::move(s), d);
    };
    add(Hello{"edge-1", 77, "abc@123"}, Direction::to_server);
    add(Ack{99}, Direction::to_server);
    add(Welcome{12, 1000, Welcome::Mode::resume}, Direction::to_client);
    add(SnapshotBegin{5, 2, 1, "s1", "tv", "policy.yaml", kPolicy}, Direction::to_client);
    add(SnapshotEnd{5, 3}, Direction::to_client);
    add(PolicyUpdate{6, "s2", "tv", "policy.yaml", kPolicy}, Direction::to_client);
    add(Heartbeat{6, 1700000000000}, Direction::to_client);
    add(Goodbye{Goodbye::Code::too_slow, "bye"}, Direction::to_client);
    add(Features{Features::kCheckpoints}, Direction::to_server);
    add(FeaturesAck{Features::kCheckpoints}, Direction::to_client);
    add(Checkpoint{10, kCheckpointLine}, Direction::to_client);
    std::string chunk;
    const std::vector<TableChange> entries = {{TableChange::Op::upsert, key("100.64.0.1"), 3},
                                              {TableChange::Op::upsert, key("2001:db8:1000:1::"), 1}};
    REQUIRE(encode_snapshot_chunk(chunk, entries));
    v.emplace_back(chunk, Direction::to_client);
    std::string delta;
    const std::vector<TableChange> changes = {{TableChange::Op::upsert, key("100.64.0.1"), 1},
                                              {TableChange::Op::erase, key("100.64.0.2"), 0},
                                              {TableChange::Op::erase, key("2001:db8:1000:2::"), 0}};
    REQUIRE(encode_delta(delta, 8, true, changes));
    v.emplace_back(delta, Direction::to_client);
    std::string stats;
    const std::vector<StatEntry> counters = {{"packets", 12, StatKind::counter, "", ""},
                                             {"rx_packets", 7, StatKind::counter, "port", "0"},
                                             {"table_entries", 3, StatKind::gauge, "", ""}};
    REQUIRE(encode_stats(stats, counters));
    v.emplace_back(stats, Direction::to_server);
    return v;
}

}  // namespace

TEST_CASE("every frame type round-trips with its fields") {
    std::string hello;
    encode(hello, Hello{"edge-1.pop:a@b_c", 1234567890123ull, "0123abcd@ff"});
    const auto h = decode_as<Hello>(hello, Direction::to_server);
    CHECK(h.name == "edge-1.pop:a@b_c");
    CHECK(h.last_seq == 1234567890123ull);
    CHECK(h.stream_id == "0123abcd@ff");

    std::string s;
    encode(s, Ack{~uint64_t(0)});
    CHECK(decode_as<Ack>(s, Direction::to_server).applied_seq == ~uint64_t(0));

    s.clear();
    encode(s, Welcome{42, 250, Welcome::Mode::snapshot});
    const auto w = decode_as<Welcome>(s, Direction::to_client);
    CHECK(w.head_seq == 42);
    CHECK(w.heartbeat_interval_ms == 250);
    CHECK(w.mode == Welcome::Mode::snapshot);

    s.clear();
    encode(s, SnapshotBegin{7, 10, 20, "stream", "version", "/etc/optgate/policy.yaml", kPolicy});
    const auto b = decode_as<SnapshotBegin>(s, Direction::to_client);
    CHECK(b.seq == 7);
    CHECK(b.v4_entries == 10);
    CHECK(b.v6_entries == 20);
    CHECK(b.stream_id == "stream");
    CHECK(b.table_version == "version");
    CHECK(b.policy_name == "/etc/optgate/policy.yaml");
    CHECK(b.policy_text == kPolicy);

    s.clear();
    encode(s, SnapshotEnd{7, 30});
    const auto e = decode_as<SnapshotEnd>(s, Direction::to_client);
    CHECK(e.seq == 7);
    CHECK(e.entries == 30);

    s.clear();
    encode(s, PolicyUpdate{9, "s9", "tv", "p.yaml", kPolicy});
    const auto p = decode_as<PolicyUpdate>(s, Direction::to_client);
    CHECK(p.seq == 9);
    CHECK(p.stream_id == "s9");
    CHECK(p.policy_text == kPolicy);

    s.clear();
    encode(s, Heartbeat{11, 1700000000123});
    const auto hb = decode_as<Heartbeat>(s, Direction::to_client);
    CHECK(hb.head_seq == 11);
    CHECK(hb.unix_time_ms == 1700000000123);

    s.clear();
    encode(s, Goodbye{Goodbye::Code::replaced, "another edge-1 connected"});
    const auto g = decode_as<Goodbye>(s, Direction::to_server);
    CHECK(g.code == Goodbye::Code::replaced);
    CHECK(g.message == "another edge-1 connected");
}

TEST_CASE("features and checkpoints: round trips, directions, unknown flags kept, lines checked") {
    std::string s;
    encode(s, Features{0xffffffffu});
    CHECK(decode_as<Features>(s, Direction::to_server).flags == 0xffffffffu);  // a newer peer's bits decode
    CHECK(decode_str(s, Direction::to_client).error == DecodeError::wrong_direction);
    s.clear();
    encode(s, FeaturesAck{Features::kCheckpoints});
    CHECK(decode_as<FeaturesAck>(s, Direction::to_client).flags == Features::kCheckpoints);
    CHECK(decode_str(s, Direction::to_server).error == DecodeError::wrong_direction);
    s.clear();
    encode(s, Checkpoint{10, kCheckpointLine});
    const auto c = decode_as<Checkpoint>(s, Direction::to_client);
    CHECK(c.seq == 10);
    CHECK(c.line == kCheckpointLine);
    CHECK(decode_str(s, Direction::to_server).error == DecodeError::wrong_direction);
    // Lines: 1..512 bytes without control characters; the encoder refuses
    // what the decoder would.
    s.clear();
    CHECK_FALSE(encode(s, Checkpoint{10, ""}));
    CHECK_FALSE(encode(s, Checkpoint{10, std::string(513, 'a')}));
    CHECK_FALSE(encode(s, Checkpoint{10, "line\nwith a newline"}));
    CHECK(s.empty());
    CHECK(encode(s, Checkpoint{10, std::string(512, 'a')}));
    CHECK(decode_as<Checkpoint>(s, Direction::to_client).line.size() == 512);
    s.clear();
    encode(s, Checkpoint{10, "x"});
    s.back() = '\x07';
    CHECK(decode_str(s, Direction::to_client).error == DecodeError::bad_string);
    // Resume tokens: consentd to data plane only, 1..64 visible bytes like
    // a stream id; the encoder refuses what the decoder would.
    s.clear();
    const std::string token = "r1:0123456789abcdef:0123456789abcdef0123456789abcdef";
    REQUIRE(encode(s, ResumeToken{42, token}));
    const auto t = decode_as<ResumeToken>(s, Direction::to_client);
    CHECK(t.seq == 42);
    CHECK(t.token == token);
    CHECK(decode_str(s, Direction::to_server).error == DecodeError::wrong_direction);
    s.clear();
    CHECK_FALSE(encode(s, ResumeToken{1, ""}));
    CHECK_FALSE(encode(s, ResumeToken{1, std::string(65, 'a')}));
    CHECK_FALSE(encode(s, ResumeToken{1, "with space"}));
    CHECK(s.empty());
    REQUIRE(encode(s, ResumeToken{1, "x"}));
    s.back() = ' ';
    CHECK(decode_str(s, Direction::to_client).error == DecodeError::bad_string);
    s.clear();
    REQUIRE(encode(s, ResumeToken{1, "xy"}));
    s.pop_back();
    s[7] = char(s[7] - 1);  // the payload length, one shorter: the token runs past it
    CHECK(decode_str(s, Direction::to_client).error == DecodeError::truncated);
}

TEST_CASE("entries and changes round-trip, IPv4 and IPv6, upserts and erases") {
    const std::vector<TableChange> changes = {
        {TableChange::Op::upsert, key("100.64.0.10"), 0x80000001u},
        {TableChange::Op::erase, key("100.127.255.254"), 0},
        {TableChange::Op::upsert, key("2001:db8:1000:1::"), 0},
        {TableChange::Op::erase, key("2001:db8:1fff:ffff::"), 0},
    };
    std::string s;
    REQUIRE(encode_delta(s, 1000, false, changes));
    const auto d = decode_as<Delta>(s, Direction::to_client);
    CHECK(d.seq == 1000);
    CHECK_FALSE(d.final);
    const auto got = collect(d.changes);
    REQUIRE(got.size() == changes.size());
    for (size_t i = 0; i < got.size(); ++i) {
        CHECK(got[i].op == changes[i].op);
        CHECK(got[i].key == changes[i].key);
        CHECK(got[i].purposes == changes[i].purposes);
    }

    std::string c;
    const std::vector<TableChange> entries = {{TableChange::Op::upsert, key("100.64.0.10"), 5},
                                              {TableChange::Op::upsert, key("2001:db8:1000:9::"), 6}};
    REQUIRE(encode_snapshot_chunk(c, entries));
    const auto chunk = decode_as<SnapshotChunk>(c, Direction::to_client);
    const auto e = collect(chunk.entries);
    REQUIRE(e.size() == 2);
    CHECK(e[0].key == entries[0].key);
    CHECK(e[0].purposes == 5);
    CHECK(e[1].key == entries[1].key);
    CHECK(e[1].purposes == 6);
}

TEST_CASE("a stream of frames decodes one at a time") {
    std::string stream;
    for (const auto& [f, d] : sample_frames())
        if (d == Direction::to_client) stream += f;
    size_t off = 0, frames = 0;
    while (off < stream.size()) {
        const auto r = decode(bytes_of(stream).subspan(off), Direction::to_client);
        REQUIRE(r.status == DecodeStatus::frame);
        off += r.consumed;
        ++frames;
    }
    CHECK(frames == 10);
}

TEST_CASE("every truncation of a valid frame is never a frame") {
    for (const auto& sample : sample_frames()) {
        // Named, not a structured binding: clang 14 (clang-tidy) cannot
        // capture a binding in CAPTURE's lambda.
        const std::string& f = sample.first;
        const Direction d = sample.second;
        CAPTURE(to_string(FrameType(uint8_t(f[3]))));
        // As a stream prefix: the decoder waits for the rest.
        for (size_t n = 0; n < f.size(); ++n) {
            const auto r = decode(bytes_of(f).first(n), d);
            CHECK(r.status == DecodeStatus::need_more);
            CHECK(r.needed > n);
        }
        // With the length field shortened to match: the payload ends inside
        // a field (or a list count promises more), so it is an error.
        const size_t payload = f.size() - kHeaderSize;
        for (size_t len = 0; len < payload; ++len) {
            std::string cut = f.substr(0, kHeaderSize + len);
            for (int i = 0; i < 4; ++i) cut[4 + size_t(i)] = char(uint32_t(len) >> (24 - 8 * i));
            const auto r = decode_str(cut, d);
            CHECK(r.status == DecodeStatus::error);
        }
        // A byte more than its fields: trailing bytes (strings at the end
        // absorb nothing, their length is in their prefix), or oversized for
        // fixed-size frames.
        std::string longer = f + "x";
        const uint32_t len = uint32_t(payload + 1);
        for (int i = 0; i < 4; ++i) longer[4 + size_t(i)] = char(len >> (24 - 8 * i));
        const auto r = decode_str(longer, d);
        CHECK(r.status == DecodeStatus::error);
        CHECK((r.error == DecodeError::trailing_bytes || r.error == DecodeError::oversized));
    }
}

TEST_CASE("headers: magic, version, type, direction and size are checked first") {
    std::string f;
    encode(f, Ack{1});
    auto with = [&](size_t at, uint8_t v) {
        std::string c = f;
        c[at] = char(v);
        return c;
    };
    CHECK(decode_str(with(0, 'X'), Direction::to_server).error == DecodeError::bad_magic);
    CHECK(decode_str(with(1, 'X'), Direction::to_server).error == DecodeError::bad_magic);
    CHECK(decode_str(with(2, 2), Direction::to_server).error == DecodeError::bad_version);
    CHECK(decode_str(with(3, 0x7f), Direction::to_server).error == DecodeError::unknown_type);
    CHECK(decode_str(f, Direction::to_client).error == DecodeError::wrong_direction);
    // Garbage is refused on its first byte, without waiting for a header.
    CHECK(decode_str("G", Direction::to_server).error == DecodeError::bad_magic);
    CHECK(decode_str("GET / HTTP/1.1\r\n", Direction::to_server).error == DecodeError::bad_magic);
}

TEST_CASE("oversized frames are refused from the header alone") {
    for (uint8_t t : {0x01, 0x02, 0x03, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x20}) {
        const FrameType type = FrameType(t);
        const size_t limit = max_payload(type);
        REQUIRE(limit > 0);
        CHECK(limit <= kMaxPayload);
        std::string h = {char(kMagic0), char(kMagic1), char(kVersion), char(t)};
        const uint32_t over = uint32_t(limit + 1);
        for (int i = 0; i < 4; ++i) h.push_back(char(over >> (24 - 8 * i)));
        const Direction d = t < 0x10 ? Direction::to_server : Direction::to_client;
        const auto r = decode_str(h, d);
        CHECK(r.status == DecodeStatus::error);
        CHECK(r.error == DecodeError::oversized);
    }
    std::string h = {char(kMagic0), char(kMagic1), char(kVersion), char(0x12),
                     char(0xff),    char(0xff),    char(0xff),     char(0xff)};
    CHECK(decode_str(h, Direction::to_client).error == DecodeError::oversized);
}

TEST_CASE("limits are the ones docs/protocol.md states") {
    CHECK(max_payload(FrameType::hello) == 138);
    CHECK(max_payload(FrameType::ack) == 8);
    CHECK(max_payload(FrameType::stats) == 704516);
    CHECK(max_payload(FrameType::welcome) == 13);
    CHECK(max_payload(FrameType::snapshot_begin) == 4195480);
    CHECK(max_payload(FrameType::snapshot_chunk) == 688132);
    CHECK(max_payload(FrameType::snapshot_end) == 12);
    CHECK(max_payload(FrameType::delta) == 720909);
    CHECK(max_payload(FrameType::policy) == 4195472);
    CHECK(max_payload(FrameType::heartbeat) == 16);
    CHECK(max_payload(FrameType::goodbye) == 1028);
    CHECK(max_payload(FrameType::features) == 4);
    CHECK(max_payload(FrameType::features_ack) == 4);
    CHECK(max_payload(FrameType::checkpoint) == 522);
    CHECK(max_payload(FrameType::resume_token) == 73);
    CHECK(max_payload(FrameType(0x7f)) == 0);
}

TEST_CASE("field checks: names, entries, counts, flags, modes") {
    // A hello whose name has a space.
    std::string f;
    REQUIRE(encode(f, Hello{"edge-1", 0, ""}));
    f[kHeaderSize + 1 + 4] = ' ';  // "edge 1"
    CHECK(decode_str(f, Direction::to_server).error == DecodeError::bad_string);
    // The encoder refuses what the decoder would.
    std::string none;
    CHECK_FALSE(encode(none, Hello{"", 0, ""}));
    CHECK_FALSE(encode(none, Hello{"edge 1", 0, ""}));
    CHECK_FALSE(encode(none, Hello{std::string(65, 'a'), 0, ""}));
    CHECK_FALSE(encode(none, Welcome{0, 0, Welcome::Mode::resume}));
    CHECK_FALSE(encode(none, SnapshotBegin{1, 0, 0, "", "", "p", kPolicy}));  // no stream id
    CHECK_FALSE(encode(none, SnapshotBegin{1, 0, 0, "s", "", "p", ""}));      // no policy
    CHECK(none.empty());

    // A chunk entry with family 5.
    std::string c;
    const std::vector<TableChange> one = {{TableChange::Op::upsert, key("100.64.0.1"), 1}};
    REQUIRE(encode_snapshot_chunk(c, one));
    std::string bad = c;
    bad[kHeaderSize + 4] = 5;
    CHECK(decode_str(bad, Direction::to_client).error == DecodeError::bad_entry);
    // A chunk announcing 0 entries, or 2 with one present.
    bad = c;
    bad[kHeaderSize + 3] = 0;
    CHECK(decode_str(bad, Direction::to_client).error == DecodeError::bad_count);
    bad = c;
    bad[kHeaderSize + 3] = 2;
    CHECK(decode_str(bad, Direction::to_client).error == DecodeError::truncated);

    // A delta change with op 3, and one with unknown flags.
    std::string d;
    REQUIRE(encode_delta(d, 5, true, one));
    bad = d;
    bad[kHeaderSize + 8 + 1 + 4] = 3;
    CHECK(decode_str(bad, Direction::to_client).error == DecodeError::bad_entry);
    bad = d;
    bad[kHeaderSize + 8] = 0x03;
    CHECK(decode_str(bad, Direction::to_client).error == DecodeError::bad_value);
    // An empty part that is not final carries nothing: refused.
    std::string e;
    CHECK_FALSE(encode_delta(e, 5, false, {}));
    REQUIRE(encode_delta(e, 5, true, {}));
    e[kHeaderSize + 8] = 0;
    CHECK(decode_str(e, Direction::to_client).error == DecodeError::bad_count);

    // A welcome with mode 2 and one with a zero heartbeat interval.
    std::string w;
    REQUIRE(encode(w, Welcome{1, 1000, Welcome::Mode::resume}));
    bad = w;
    bad.back() = 2;
    CHECK(decode_str(bad, Direction::to_client).error == DecodeError::bad_value);
    bad = w;
    for (size_t i = 0; i < 4; ++i) bad[kHeaderSize + 8 + i] = 0;
    CHECK(decode_str(bad, Direction::to_client).error == DecodeError::bad_value);
}

TEST_CASE("random bytes never decode out of bounds and rarely into frames") {
    std::mt19937_64 rng(20240601);
    std::vector<uint8_t> buf;
    size_t frames = 0;
    for (int i = 0; i < 200000; ++i) {
        buf.resize(rng() % 64);
        for (auto& b : buf) b = uint8_t(rng());
        // Half the time, a plausible header with a random type and length.
        if (buf.size() >= kHeaderSize && (i & 1)) {
            buf[0] = kMagic0;
            buf[1] = kMagic1;
            buf[2] = kVersion;
            static const uint8_t types[] = {0x01, 0x02, 0x03, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x20};
            buf[3] = types[rng() % std::size(types)];
            const uint32_t len = uint32_t(buf.size() - kHeaderSize);
            buf[4] = 0, buf[5] = 0, buf[6] = 0, buf[7] = uint8_t(len);
        }
        for (Direction d : {Direction::to_server, Direction::to_client}) {
            const auto r = decode(buf, d);
            if (r.status == DecodeStatus::frame) {
                ++frames;
                CHECK(r.consumed <= buf.size());
                // Whatever decoded must re-encode's lists safely.
                if (auto* c = std::get_if<SnapshotChunk>(&r.frame)) (void)collect(c->entries);
                if (auto* dl = std::get_if<Delta>(&r.frame)) (void)collect(dl->changes);
                if (auto* st = std::get_if<Stats>(&r.frame))
                    for_each_stat(*st, [](const StatView& e) { CHECK(!e.name.empty()); });
            } else if (r.status == DecodeStatus::need_more) {
                CHECK(r.needed > buf.size());
            }
        }
    }
    // Fixed-size frames (ack, heartbeat, end...) can come out of random
    // payloads; most buffers must not.
    CHECK(frames < 100000);
}

TEST_CASE("commits split into parts; snapshots into chunks with counts") {
    std::vector<TableChange> changes;
    for (uint32_t i = 0; i < kMaxEntriesPerFrame * 2 + 5; ++i)
        changes.push_back({TableChange::Op::upsert, SubscriberKey{IpAddr::from_v4_host(0x64400000u + i + 1)}, i});
    std::string out;
    encode_commit(out, 77, changes);
    size_t off = 0, parts = 0, total = 0;
    bool last_final = false;
    while (off < out.size()) {
        const auto r = decode(bytes_of(out).subspan(off), Direction::to_client);
        REQUIRE(r.status == DecodeStatus::frame);
        const auto& d = std::get<Delta>(r.frame);
        CHECK(d.seq == 77);
        CHECK(d.final == (off + r.consumed == out.size()));
        last_final = d.final;
        total += d.changes.count;
        ++parts;
        off += r.consumed;
    }
    CHECK(parts == 3);
    CHECK(total == changes.size());
    CHECK(last_final);

    std::string empty;
    encode_commit(empty, 78, {});
    const auto d = decode_as<Delta>(empty, Direction::to_client);
    CHECK(d.final);
    CHECK(d.changes.count == 0);

    SnapshotEncoder enc(1000);
    for (uint32_t i = 0; i < 2500; ++i) enc.add(SubscriberKey{IpAddr::from_v4_host(0x64400000u + i + 1)}, 1);
    enc.add(key("2001:db8:1000:5::"), 2);
    std::vector<std::string> frames;
    REQUIRE(enc.finish(SnapshotBegin{9, 0, 0, "s", "tv", "p", kPolicy}, frames));
    REQUIRE(frames.size() == 1 + 3 + 1);
    const auto b = decode_as<SnapshotBegin>(frames.front(), Direction::to_client);
    CHECK(b.v4_entries == 2500);
    CHECK(b.v6_entries == 1);
    const auto e = decode_as<SnapshotEnd>(frames.back(), Direction::to_client);
    CHECK(e.entries == 2501);
    CHECK(e.seq == 9);
}
