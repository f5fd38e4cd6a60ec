// The disclosure frames' codec: round trips, every truncation, one byte too
// long, bad fields, random bytes, limits, and batches split into reports.
#include <doctest/doctest.h>

#include <random>

#include "proto/codec.hpp"
#include "proto_fixture.hpp"

using namespace optgate;
using namespace optgate::proto;
using optgate::test_proto::bytes_of;

namespace {

DisclosureEntry entry(const char* addr, std::string destination, std::string identifier, uint64_t passed,
                      uint64_t stripped) {
    const IpAddr a = *IpAddr::parse(addr);
    DisclosureEntry e;
    e.family = a.family;
    std::copy(a.bytes.begin(), a.bytes.begin() + (a.family == Family::v4 ? 4 : 16), e.key.begin());
    e.destination = std::move(destination);
    e.identifier = std::move(identifier);
    e.passed = passed;
    e.stripped = stripped;
    return e;
}

std::vector<DisclosureEntry> collect(const Disclosure& d) {
    std::vector<DisclosureEntry> out;
    for_each_disclosure(d, [&](const DisclosureView& v) { out.push_back(v.entry()); });
    return out;
}

const std::vector<DisclosureEntry> kEntries = {
    entry("100.64.0.10", "example-adnet", "X-UIDH", 3, 0),
    entry("2001:db8:1000:1::", "(none)", "EDNS client subnet", 0, 7),
    entry("100.64.0.11", "web-analytics", "X-MSISDN \xc3\xa9", ~uint64_t(0), 1),
};

Disclosure head(uint64_t seq) {
    Disclosure h;
    h.reporter = 0x0123456789abcdefull;
    h.seq = seq;
    h.start_unix_ms = 1700000000000;
    h.end_unix_ms = 1700000060000;
    h.overflowed = 5;
    return h;
}

std::vector<std::pair<std::string, Direction>> samples() {
    std::vector<std::pair<std::string, Direction>> v;
    std::string d;
    REQUIRE(encode_disclosure(d, head(9), kEntries));
    v.emplace_back(d, Direction::to_server);
    std::string empty;
    REQUIRE(encode_disclosure(empty, head(10), {}));
    v.emplace_back(empty, Direction::to_server);
    std::string ack;
    REQUIRE(encode(ack, DisclosureAck{0x0123456789abcdefull, 9}));
    v.emplace_back(ack, Direction::to_client);
    return v;
}

void set_len(std::string& f, uint32_t len) {
    for (int i = 0; i < 4; ++i) f[4 + size_t(i)] = char(len >> (24 - 8 * i));
}

}  // namespace

TEST_CASE("disclosure and disclosure-ack round-trip with their fields") {
    std::string s;
    REQUIRE(encode_disclosure(s, head(9), kEntries));
    const auto r = decode(bytes_of(s), Direction::to_server);
    REQUIRE(r.status == DecodeStatus::frame);
    CHECK(r.consumed == s.size());
    CHECK(r.type == FrameType::disclosure);
    const auto& d = std::get<Disclosure>(r.frame);
    CHECK(d.reporter == 0x0123456789abcdefull);
    CHECK(d.seq == 9);
    CHECK(d.start_unix_ms == 1700000000000);
    CHECK(d.end_unix_ms == 1700000060000);
    CHECK(d.overflowed == 5);
    CHECK(d.count == 3);
    CHECK(collect(d) == kEntries);

    std::string a;
    REQUIRE(encode(a, DisclosureAck{~uint64_t(0), 77}));
    const auto ra = decode(bytes_of(a), Direction::to_client);
    REQUIRE(ra.status == DecodeStatus::frame);
    CHECK(std::get<DisclosureAck>(ra.frame).reporter == ~uint64_t(0));
    CHECK(std::get<DisclosureAck>(ra.frame).seq == 77);
    // Each goes one way only.
    CHECK(decode(bytes_of(s), Direction::to_client).error == DecodeError::wrong_direction);
    CHECK(decode(bytes_of(a), Direction::to_server).error == DecodeError::wrong_direction);
}

TEST_CASE("every truncation of a disclosure frame waits or fails; one byte too long fails") {
    for (const auto& sample : samples()) {
        const std::string& f = sample.first;
        const Direction d = sample.second;
        CAPTURE(f.size());
        for (size_t n = 0; n < f.size(); ++n) {
            const auto r = decode(bytes_of(f).first(n), d);
            CHECK(r.status == DecodeStatus::need_more);
            CHECK(r.needed > n);
        }
        const size_t payload = f.size() - kHeaderSize;
        for (size_t len = 0; len < payload; ++len) {
            std::string cut = f.substr(0, kHeaderSize + len);
            set_len(cut, uint32_t(len));
            CHECK(decode(bytes_of(cut), d).status == DecodeStatus::error);
        }
        std::string longer = f + "x";
        set_len(longer, uint32_t(payload + 1));
        const auto r = decode(bytes_of(longer), d);
        CHECK(r.status == DecodeStatus::error);
        CHECK((r.error == DecodeError::trailing_bytes || r.error == DecodeError::oversized));
    }
}

TEST_CASE("disclosure fields are checked; the encoder refuses what the decoder would") {
    std::string good;
    REQUIRE(encode_disclosure(good, head(1), std::vector<DisclosureEntry>{kEntries[0]}));
    const auto error_of = [](const std::string& f) { return decode(bytes_of(f), Direction::to_server).error; };
    // seq 0; start after end.
    std::string bad = good;
    for (size_t i = 0; i < 8; ++i) bad[kHeaderSize + 8 + i] = 0;
    CHECK(error_of(bad) == DecodeError::bad_value);
    bad = good;
    bad[kHeaderSize + 16] = char(0xff);
    CHECK(error_of(bad) == DecodeError::bad_value);
    // Family 5; a count over the limit; a count promising more than there is.
    const size_t count_at = kHeaderSize + kDisclosureHeadBytes - 4;
    bad = good;
    bad[count_at + 4] = 5;
    CHECK(error_of(bad) == DecodeError::bad_entry);
    bad = good;
    bad[count_at + 1] = char(0x40);  // 16384 + 1
    bad[count_at + 3] = 1;
    CHECK(error_of(bad) == DecodeError::bad_count);
    bad = good;
    bad[count_at + 3] = 2;
    CHECK(error_of(bad) == DecodeError::truncated);
    // An empty destination; a control character in the identifier.
    const size_t dest_len_at = count_at + 4 + 1 + 4;
    bad = good;
    bad[dest_len_at] = 0;
    CHECK(decode(bytes_of(bad), Direction::to_server).status == DecodeStatus::error);
    bad = good;
    bad[dest_len_at + 1 + kEntries[0].destination.size() + 1] = '\n';
    CHECK(error_of(bad) == DecodeError::bad_string);
    // The ack's seq 0.
    std::string a;
    REQUIRE(encode(a, DisclosureAck{1, 1}));
    a.back() = 0;
    CHECK(decode(bytes_of(a), Direction::to_client).error == DecodeError::bad_value);

    std::string none;
    CHECK_FALSE(encode_disclosure(none, head(0), kEntries));
    Disclosure reversed = head(1);
    reversed.end_unix_ms = reversed.start_unix_ms - 1;
    CHECK_FALSE(encode_disclosure(none, reversed, kEntries));
    CHECK_FALSE(encode_disclosure(none, head(1), std::vector<DisclosureEntry>{entry("100.64.0.1", "", "x", 1, 1)}));
    CHECK_FALSE(encode_disclosure(none, head(1),
                                  std::vector<DisclosureEntry>{entry("100.64.0.1", std::string(256, 'a'), "x", 1, 1)}));
    CHECK_FALSE(encode_disclosure(none, head(1), std::vector<DisclosureEntry>{entry("100.64.0.1", "a", "x\ty", 1, 1)}));
    CHECK_FALSE(encode(none, DisclosureAck{1, 0}));
    CHECK(none.empty());
}

TEST_CASE("disclosure limits: 1 MiB and 16384 entries per report, from the header") {
    CHECK(max_payload(FrameType::disclosure) == 1048576);
    CHECK(max_payload(FrameType::disclosure_ack) == 16);
    CHECK(max_payload(FrameType::disclosure) <= kMaxPayload);
    for (uint8_t t : {uint8_t(0x04), uint8_t(0x17)}) {
        std::string h = {char(kMagic0), char(kMagic1), char(kVersion), char(t), 0, 0, 0, 0};
        set_len(h, uint32_t(max_payload(FrameType(t)) + 1));
        const auto r = decode(bytes_of(h), t == 0x04 ? Direction::to_server : Direction::to_client);
        CHECK(r.error == DecodeError::oversized);
    }
    CHECK(to_string(FrameType::disclosure) == "disclosure");
    CHECK(to_string(FrameType::disclosure_ack) == "disclosure-ack");
    CHECK(to_string(Goodbye::Code::unsupported) == "unsupported");
}

TEST_CASE("random disclosure payloads never decode out of bounds") {
    std::mt19937_64 rng(20261204);
    std::vector<uint8_t> buf;
    for (int i = 0; i < 100000; ++i) {
        buf.resize(kHeaderSize + rng() % 120);
        for (auto& b : buf) b = uint8_t(rng());
        buf[0] = kMagic0;
        buf[1] = kMagic1;
        buf[2] = kVersion;
        buf[3] = (i & 1) ? 0x04 : 0x17;
        const uint32_t len = uint32_t(buf.size() - kHeaderSize);
        buf[4] = 0, buf[5] = 0, buf[6] = 0, buf[7] = uint8_t(len);
        // Sometimes a plausible head: small count, seq 1, start <= end.
        if (i % 4 == 1 && buf.size() >= kHeaderSize + kDisclosureHeadBytes) {
            for (size_t k = 8; k < kDisclosureHeadBytes; ++k) buf[kHeaderSize + k] = 0;
            buf[kHeaderSize + 15] = 1;
            buf[kHeaderSize + kDisclosureHeadBytes - 1] = uint8_t(rng() % 3);
        }
        const auto r = decode(buf, (i & 1) ? Direction::to_server : Direction::to_client);
        if (r.status == DecodeStatus::frame) {
            CHECK(r.consumed <= buf.size());
            if (const auto* d = std::get_if<Disclosure>(&r.frame)) {
                size_t n = 0;
                for_each_disclosure(*d, [&](const DisclosureView& v) {
                    CHECK(!v.destination.empty());
                    CHECK(!v.identifier.empty());
                    ++n;
                });
                CHECK(n == d->count);
            }
        } else if (r.status == DecodeStatus::need_more) {
            CHECK(r.needed > buf.size());
        }
    }
}

TEST_CASE(
    "a batch larger than one report is split: consecutive seqs, overflow once, entries that cannot travel "
    "go to the overflow") {
    DisclosureBatch b;
    b.start_unix_ms = 1000;
    b.end_unix_ms = 61000;
    b.overflowed = 4;
    for (uint32_t i = 0; i < kMaxDisclosureEntries + 10; ++i) {
        DisclosureEntry e = entry("100.64.0.1", "example-adnet", "X-UIDH", i, 1);
        e.key[3] = uint8_t(i);
        e.key[2] = uint8_t(i >> 8);
        b.entries.push_back(e);
    }
    b.entries.push_back(entry("100.64.0.2", "bad\x01name", "X-UIDH", 10, 20));  // left out
    std::vector<std::string> frames;
    CHECK(encode_disclosure_batch(frames, 42, 7, b) == 1);
    REQUIRE(frames.size() == 2);
    uint64_t entries = 0, overflow = 0;
    for (size_t i = 0; i < frames.size(); ++i) {
        const auto r = decode(bytes_of(frames[i]), Direction::to_server);
        REQUIRE(r.status == DecodeStatus::frame);
        const auto& d = std::get<Disclosure>(r.frame);
        CHECK(d.reporter == 42);
        CHECK(d.seq == 7 + i);
        CHECK(d.start_unix_ms == 1000);
        CHECK(d.end_unix_ms == 61000);
        entries += d.count;
        overflow += d.overflowed;
    }
    CHECK(entries == kMaxDisclosureEntries + 10);
    CHECK(overflow == 4 + 30);

    // By size too: long names fill 1 MiB before the entry limit.
    DisclosureBatch big;
    for (uint32_t i = 0; i < 5000; ++i)
        big.entries.push_back(entry("100.64.0.1", std::string(255, 'd'), "X-UIDH", 1, 0));
    frames.clear();
    CHECK(encode_disclosure_batch(frames, 1, 1, big) == 0);
    CHECK(frames.size() == 2);
    for (const auto& f : frames) CHECK(f.size() <= kHeaderSize + kMaxDisclosurePayload);

    // Nothing to say: no report.
    frames.clear();
    CHECK(encode_disclosure_batch(frames, 1, 1, DisclosureBatch{}) == 0);
    CHECK(frames.empty());
}
