// Property test: random datagrams (DNS queries with identifier options,
// HTTP requests with identifier headers; IPv4 and IPv6; strip and pass
// verdicts) cut into random fragments of 8..1480 bytes, shuffled,
// duplicated and sometimes overlapped, through the real pipeline in random
// bursts. What leaves is reassembled by the test support's own code:
//   (a) strip: no identifier byte in any frame, and the datagram arrives as
//       the pipeline makes the unfragmented datagram;
//   (b) pass: the datagram arrives byte for byte as it was sent;
//   (c) overlapping fragments, or a first fragment too short for the TCP
//       header: nothing of the datagram arrives unless it was already whole;
// and every frame that leaves has right checksums.
//
// OPTGATE_SEED=<n> starts at case seed n, OPTGATE_CASES=<k> runs k cases:
// a failure prints the line that reruns just that case.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <random>
#include <string>

#include "dns_builder.hpp"
#include "inet_checksum.hpp"
#include "pipeline_fixture.hpp"

using namespace optgate;
using namespace optgate::test;

namespace {

uint64_t env_or(const char* name, uint64_t fallback) {
    const char* v = std::getenv(name);
    return v && *v ? std::strtoull(v, nullptr, 10) : fallback;
}

struct Piece {
    size_t offset, len;
    friend bool operator==(const Piece&, const Piece&) = default;
};

// One fragment of `whole` (Ethernet, IPv4 without options or IPv6 without
// extension headers): the data [offset, offset + len) after the IP header.
Bytes fragment_of(const Bytes& whole, bool v6, const Piece& p, size_t total, uint32_t id) {
    const size_t l3 = 14, hl = v6 ? 40 : 20;
    const bool more = p.offset + p.len < total;
    Bytes f(whole.begin(), whole.begin() + long(l3 + hl));
    if (v6) {
        const uint8_t next = f[l3 + 6];
        f[l3 + 6] = 44;
        put16(f, l3 + 4, uint16_t(8 + p.len));
        f.push_back(next);
        f.push_back(0);
        f.push_back(uint8_t(p.offset >> 8));
        f.push_back(uint8_t((p.offset & 0xf8) | (more ? 1 : 0)));
        for (int s = 24; s >= 0; s -= 8) f.push_back(uint8_t(id >> s));
    } else {
        put16(f, l3 + 2, uint16_t(hl + p.len));
        put16(f, l3 + 6, uint16_t((more ? 0x2000 : 0) | p.offset / 8));
        put16(f, l3 + 10, 0);
        put16(f, l3 + 10, detail::inet_checksum(&f[l3], hl));
    }
    f.insert(f.end(), whole.begin() + long(l3 + hl + p.offset), whole.begin() + long(l3 + hl + p.offset + p.len));
    return f;
}

bool contains(const Bytes& frame, const Bytes& what) {
    return std::search(frame.begin(), frame.end(), what.begin(), what.end()) != frame.end();
}

struct Case {
    bool v6 = false, http = false, strip = false;
    Bytes whole;
    Bytes identifier;  // bytes that must never leave on strip
};

Case make_case(std::mt19937_64& rng, uint64_t n) {
    Case c;
    c.v6 = rng() % 2;
    c.http = rng() % 2;
    c.strip = rng() % 2;
    auto word = [&](size_t len) {
        std::string s;
        for (size_t i = 0; i < len; ++i) s += "abcdefghijklmnopqrstuvwxyz0123456789"[rng() % 36];
        return s;
    };
    const std::string src = c.v6 ? (c.strip ? "2001:db8:1000:9::" : "2001:db8:1000:1::") + std::to_string(1 + n % 9000)
                                 : (c.strip ? "100.64.0.12" : "100.64.0.10");
    PacketBuilder b;
    if (c.v6)
        b.ipv6(src, c.http ? "2001:db8:ad::80" : "2001:db8:ad::53");
    else
        b.ipv4(src, c.http ? "203.0.113.5" : "198.18.0.53", {.id = uint16_t(n)});
    const uint16_t sport = uint16_t(1024 + n % 60000);
    if (c.http) {
        const std::string uidh = word(24);
        c.identifier.assign(uidh.begin(), uidh.end());
        b.tcp(sport, 80, {.seq = uint32_t(rng()), .ack = 1, .flags = ACK | PSH})
            .payload("GET /" + word(1 + rng() % 40) + " HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: " +
                     word(rng() % 1500) + "\r\nX-UIDH: " + uidh + "\r\nCookie: " + word(rng() % 1500) + "\r\n\r\n");
    } else {
        Bytes mac(8);
        for (auto& x : mac) x = uint8_t(rng());
        c.identifier = mac;
        std::string qname;
        for (size_t labels = 1 + rng() % 4; labels > 0; --labels) qname += word(1 + rng() % 60) + ".";
        qname += "example";
        b.udp(sport, 53).payload(dns_query(
            {.qname = qname, .edns_udp_size = 1232, .options = {{65001, mac}, {8, ecs_option_data("100.64.0.0/24")}}}));
    }
    c.whole = b.build();
    return c;
}

}  // namespace

TEST_CASE("property: random fragmentation, shuffled, duplicated, overlapping; IPv4 and IPv6") {
    const uint64_t first_seed = env_or("OPTGATE_SEED", 20261204);
    const uint64_t cases = env_or("OPTGATE_CASES", 3000);
    PipelineFixture fx;   // the fragments
    PipelineFixture ref;  // the same datagrams whole
    size_t strips = 0, passes = 0, discarded = 0, fragments = 0;

    for (uint64_t seed = first_seed; seed < first_seed + cases; ++seed) {
        INFO("rerun: OPTGATE_SEED=" << seed << " OPTGATE_CASES=1 test-core -tc='property*'");
        std::mt19937_64 rng(seed);
        const uint64_t n = seed - first_seed + 1;
        const Case c = make_case(rng, n);
        const uint64_t ts = n * 100 * kSecond;  // past every timeout of the case before
        const Bytes expected = ref.run(c.whole, ts);
        REQUIRE(!expected.empty());
        if (c.strip) REQUIRE(!contains(expected, c.identifier));  // the whole datagram is stripped
        if (!c.strip) REQUIRE(expected == c.whole);

        // Random pieces of 8..1480 bytes (multiples of 8 but the last).
        const size_t hl = c.v6 ? 40 : 20;
        const size_t total = c.whole.size() - 14 - hl;
        std::vector<Piece> pieces;
        for (size_t off = 0; off < total;) {
            // Half of them small (8..128), so that datagrams come in many pieces.
            const size_t len = std::min(total - off, 8 * (1 + (rng() % 2 ? rng() % 16 : rng() % 185)));
            pieces.push_back({off, len});
            off += len;
        }
        if (pieces.size() == 1) {  // always fragmented: cut the one piece in two
            const size_t half = std::max<size_t>(8, total / 16 * 8);
            pieces = {{0, half}, {half, total - half}};
        }
        // A first fragment that cannot hold the TCP header (RFC 1858).
        const bool tiny = c.http && pieces.front().len < 20;
        std::vector<Piece> sent = pieces;
        for (const Piece& p : pieces)
            if (rng() % 8 == 0) sent.push_back(p);  // duplicates
        bool overlap = false;
        if (rng() % 5 == 0) {
            // An overlapping piece: shifted by a multiple of 8, not an exact copy.
            const Piece& p = pieces[rng() % pieces.size()];
            const size_t off = p.offset >= 8 && rng() % 2 ? p.offset - 8 : p.offset;
            size_t len = std::min(total - off, p.len + 8);
            if (off + len < total) len &= ~size_t(7);
            const Piece o{off, len};
            // (Offset 0 up to the end would be a whole datagram, not a fragment.)
            const bool whole = off == 0 && len == total;
            if (len > 0 && !whole && std::find(pieces.begin(), pieces.end(), o) == pieces.end()) {
                sent.push_back(o);
                overlap = true;
            }
        }
        std::shuffle(sent.begin(), sent.end(), rng);
        const uint32_t id = uint32_t(seed * 2654435761u);

        std::vector<Bytes> out;
        for (size_t i = 0; i < sent.size();) {
            const size_t k = std::min(sent.size() - i, size_t(1 + rng() % 40));
            std::vector<Bytes> burst;
            for (size_t j = i; j < i + k; ++j) burst.push_back(fragment_of(c.whole, c.v6, sent[j], total, id));
            for (auto& f : fx.run_stream(std::move(burst), ts)) out.push_back(std::move(f));
            i += k;
        }
        fragments += sent.size();

        for (const auto& f : out) {
            const ChecksumReport r = verify_checksums(f);
            CHECK_MESSAGE(r.ok(), r.detail);
            if (c.strip) CHECK_MESSAGE(!contains(f, c.identifier), "identifier bytes left:\n" << hexdump(f));
            if (c.strip)
                for (size_t w = 0; w + 6 <= c.identifier.size(); ++w)
                    CHECK(!contains(f, Bytes(c.identifier.begin() + long(w), c.identifier.begin() + long(w + 6))));
        }
        if (out.empty()) {
            // Only a datagram that had to be discarded leaves nothing.
            CHECK((overlap || tiny));
            ++discarded;
            continue;
        }
        // (With an overlapping piece, that piece may be a whole first
        // fragment that completes the datagram before the tiny one comes.)
        if (!overlap) CHECK(!tiny);
        if (std::getenv("OPTGATE_DEBUG")) {
            for (const auto& pc : sent) MESSAGE("sent " << pc.offset << "+" << pc.len);
            for (const auto& f : out) MESSAGE("out\n" << hexdump(f));
        }
        // Duplicates of every fragment after the datagram went out make it
        // again (as the network would deliver a duplicated datagram): each
        // copy, whole or in fragments, is the expected datagram.
        std::vector<Bytes> pieces_out;
        for (const auto& f : out) {
            if (reassemble({f}) == std::optional<Bytes>(f)) {  // a whole datagram comes back as it is
                CHECK(f == expected);
            } else {
                pieces_out.push_back(f);
            }
        }
        if (!pieces_out.empty()) {
            const auto re = reassemble(pieces_out);
            REQUIRE(re);
            CHECK(*re == expected);
        }
        (c.strip ? strips : passes)++;
    }
    MESSAGE(cases << " cases, " << fragments << " fragments: " << strips << " stripped, " << passes << " passed, "
                  << discarded << " discarded");
    CHECK(strips > cases / 5);
    CHECK(passes > cases / 5);
    CHECK(fx.count(Counter::fragment_overlap) > 0);
    CHECK(fx.count(Counter::fragment_duplicate) > 0);
}
