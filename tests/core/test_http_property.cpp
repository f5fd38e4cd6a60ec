// Property test: random HTTP/1.x request streams, cut into random TCP
// segments, reordered and retransmitted (with new boundaries), through the
// real pipeline; the receiver reassembles what optgate forwards.
//   (a) strip: every identifier value byte arrives as the filler;
//   (b) pass: the stream arrives byte-identical;
//   (c) every other byte arrives unchanged;
//   (d) with Sec-GPC: 1 in a consented request, identifier values after it
//       arrive as filler (a), and each one before it wholly as filler or
//       wholly unchanged;
// and any byte received twice is the same both times (retransmissions get
// the same rewrite); every forwarded frame has right checksums. Among the
// segments go inconsistent retransmissions: bytes the receiver already has,
// changed (an identifier field line written over them, or one byte flipped):
// each is dropped or forwarded as the bytes first forwarded, so whichever
// copy a receiver keeps, no identifier byte gets out on a strip verdict.
//
// OPTGATE_SEED=<n> starts at case seed n, OPTGATE_CASES=<k> runs k cases:
// a failure prints the line that reruns just that case.
#include <doctest/doctest.h>

#include <cstdlib>
#include <deque>
#include <map>
#include <random>

#include "test_http_fixture.hpp"

using namespace optgate;
using namespace optgate::httptest;

namespace {

enum class Scenario { strip, pass, by_host };

// What a byte of the generated stream is. id_either: a consented identifier
// value before a Sec-GPC: 1 in its request, which the signal strips when it
// comes in the segment in which the line's name ended, else not: each such
// line arrives either wholly as filler or wholly as sent.
enum class Mark : uint8_t { other, id_strip, id_pass, id_either };

struct Stream {
    std::string bytes;
    std::vector<Mark> marks;
    std::vector<uint32_t> lines;  // id_either: the identifier line the byte belongs to
    std::vector<char> body;       // message body bytes: read by no one as fields
    size_t identifier_lines = 0;

    void add(std::string_view s, Mark m = Mark::other, bool in_body = false) {
        bytes += s;
        marks.insert(marks.end(), s.size(), m);
        lines.insert(lines.end(), s.size(), uint32_t(identifier_lines));
        body.insert(body.end(), s.size(), in_body);
    }
};

class Generator {
public:
    Generator(uint64_t seed, Scenario sc) : rng_(seed), sc_(sc) {}

    Stream make() {
        Stream s;
        const int requests = 1 + int(below(5));
        for (int r = 0; r < requests; ++r) request(s);
        return s;
    }

private:
    uint64_t below(uint64_t n) { return rng_() % n; }
    bool chance(int percent) { return below(100) < uint64_t(percent); }
    template <class T>
    const T& pick(const std::vector<T>& v) {
        return v[below(v.size())];
    }

    std::string word(size_t min, size_t max, std::string_view alphabet) {
        std::string w;
        const size_t n = min + below(max - min + 1);
        for (size_t i = 0; i < n; ++i) w += alphabet[below(alphabet.size())];
        return w;
    }
    std::string random_case(std::string_view s) {
        std::string out(s);
        for (auto& c : out)
            if (chance(50)) c = char(std::toupper(uint8_t(c)));
        return out;
    }
    std::string ows() { return pick<std::string>({"", " ", " ", "  ", "\t", " \t"}); }

    // A field value: starts with a visible byte, may hold spaces, may end with one.
    std::string value(std::string_view alphabet = kValueChars) {
        std::string v = word(1, 1, alphabet);
        v += word(0, 40, alphabet);
        if (chance(20)) v += " " + word(1, 10, alphabet);
        if (chance(10)) v += " ";
        return v;
    }

    Mark id_mark() const {
        const bool pass = sc_ == Scenario::pass || (sc_ == Scenario::by_host && !strip_host_);
        if (!pass) return Mark::id_strip;
        if (gpc_ == Gpc::before) return Mark::id_either;  // every purpose of the sample policy honours it
        return gpc_ == Gpc::after ? Mark::id_strip : Mark::id_pass;
    }

    void identifier_field(Stream& s) {
        ++s.identifier_lines;
        s.add(random_case(pick<std::string>({"x-uidh", "x-msisdn"})) + ":" + ows());
        if (chance(8)) {
            s.add(eol_);  // empty value
            return;
        }
        s.add(value(), id_mark());
        s.add(eol_);
        while (chance(15)) {  // obs-fold continuation lines belong to the value
            s.add(pick<std::string>({" ", "\t", "  ", " \t "}));
            s.add(value(), id_mark());
            s.add(eol_);
        }
    }

    void other_field(Stream& s) {
        static const std::vector<std::string> names = {
            "User-Agent",       "Accept", "Cookie",     "Referer",         "X-Forwarded-For",
            "X-UIDH-Extra",     "X-UID",  "X-MSISDN2",  "Accept-Encoding", "Cache-Control",
            "X-Requested-With", "Origin", "Connection", "Pragma",          "X-Acr"};
        std::string name = chance(70) ? pick(names) : word(1, 20, kTchars);
        s.add(random_case(name) + ":" + ows());
        std::string v = value();
        if (chance(10)) v += " X-UIDH: looks-like-a-field";
        s.add(v + eol_);
        while (chance(8)) s.add(pick<std::string>({" ", "\t"}) + value() + eol_);
    }

    void host_field(Stream& s) {
        const bool ads = chance(60);
        std::string h = ads ? "ads.example.net" : "www.example.com";
        h = random_case(h);
        if (chance(20)) h += ".";
        if (chance(20)) h += ":80";
        s.add(random_case("host") + ":" + ows() + h + ows() + eol_);
        strip_host_ = ads;
    }

    void request(Stream& s) {
        eol_ = chance(20) ? "\n" : "\r\n";
        strip_host_ = false;
        if (chance(10)) s.add(eol_);  // an empty line before a request is allowed
        const bool http10 = chance(10);
        const int body = int(below(3));  // 0 none, 1 Content-Length, 2 chunked
        const bool chunked = body == 2 && !http10;
        s.add(std::string(body ? pick<std::string>({"POST", "PUT"}) : pick<std::string>({"GET", "HEAD", "DELETE"})) +
              " /" + word(0, 30, kPathChars) + (http10 ? " HTTP/1.0" : " HTTP/1.1") + eol_);
        // Fields in random order: identifiers, others, at most one Host, framing.
        std::vector<int> fields;
        for (int i = int(below(6)); i > 0; --i) fields.push_back(0);
        for (int i = int(below(4)); i > 0; --i) fields.push_back(1);
        if (chance(70)) fields.push_back(2);
        if (body) fields.push_back(3);
        gpc_ = Gpc::none;
        if (chance(25)) {
            fields.push_back(4);
            gpc_ = Gpc::before;
        }
        std::shuffle(fields.begin(), fields.end(), rng_);
        std::string payload;
        if (body) payload = body_bytes();
        for (int f : fields) {
            switch (f) {
            case 0: identifier_field(s); break;
            case 1: other_field(s); break;
            case 2: host_field(s); break;
            case 4:
                s.add(random_case("sec-gpc") + ":" + ows() + "1" + ows() + eol_);
                gpc_ = Gpc::after;
                break;
            case 3:
                if (chunked)
                    s.add(random_case("transfer-encoding") + ":" + ows() + (chance(20) ? "gzip, " : "") + "chunked" +
                          ows() + eol_);
                else
                    s.add(random_case("content-length") + ":" + ows() + std::to_string(payload.size()) + eol_);
                break;
            }
        }
        s.add(eol_);
        if (!body) return;
        if (!chunked) {
            s.add(payload, Mark::other, true);
            return;
        }
        for (size_t pos = 0; pos < payload.size();) {
            const size_t n = std::min(payload.size() - pos, size_t(1 + below(120)));
            char hex[32];
            std::snprintf(hex, sizeof hex, chance(50) ? "%zx" : "%zX", n);
            s.add(std::string(hex) + (chance(20) ? ";ext=\"a b\"" : "") + eol_);
            s.add(payload.substr(pos, n), Mark::other, true);
            s.add(eol_);
            pos += n;
        }
        s.add("0" + eol_);
        while (chance(25)) {  // trailer fields: identifiers scrubbed like header fields
            if (chance(60))
                identifier_field(s);
            else
                other_field(s);
        }
        s.add(eol_);
    }

    std::string body_bytes() {
        std::string b;
        const size_t n = below(400);
        while (b.size() < n) {
            switch (below(4)) {
            case 0: b += "\r\nX-UIDH: in-the-body\r\n\r\nGET / HTTP/1.1\r\n"; break;
            case 1: b += char(below(256)); break;
            default: b += word(1, 30, kValueChars);
            }
        }
        return b;
    }

    static constexpr std::string_view kValueChars =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/=-_.,;:()@";
    static constexpr std::string_view kTchars =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!#$%&'*+^`|~";
    static constexpr std::string_view kPathChars = "abcdefghijklmnopqrstuvwxyz0123456789/?=&.-_%";

    std::mt19937_64 rng_;
    Scenario sc_;
    std::string eol_ = "\r\n";
    bool strip_host_ = false;
    // Where the request's fields are relative to its Sec-GPC: 1, if any.
    enum class Gpc { none, before, after } gpc_ = Gpc::none;
};

struct Piece {
    uint32_t off, len;
};

uint64_t env_or(const char* name, uint64_t dflt) {
    const char* v = std::getenv(name);
    return v && *v ? std::strtoull(v, nullptr, 10) : dflt;
}

// One TCP connection of a case: its stream, what is left to send, and what
// the receiver has got.
struct Sim {
    Stream st;
    Conn conn;
    std::deque<Piece> queue;
    std::string got;
    // vector<char>, not vector<bool>, here and for Stream::body: the bit
    // proxies were a tenth of this test's time under the sanitizers (-O0).
    std::vector<char> have;
    std::vector<Piece> forwarded;  // pieces optgate forwarded
    size_t delivered = 0;

    Sim(uint64_t seed, uint16_t sport) {
        std::mt19937_64 rng(seed * 0x9e3779b97f4a7c15ull);
        auto below = [&](uint64_t n) { return rng() % n; };
        const Scenario sc = Scenario(below(3));
        st = Generator(seed, sc).make();
        Conn& c = conn;
        c.v6 = below(4) == 0;
        if (sc == Scenario::strip) {
            c.src = c.v6 ? "2001:db8:1000:2::7" : "100.64.0.12";
            c.dst = c.v6 ? "2001:db8:ad::80" : "203.0.113.80";
        } else if (sc == Scenario::pass) {
            c.src = c.v6 ? "2001:db8:1000:1::7" : "100.64.0.10";
            c.dst = c.v6 ? "2001:db8:ad::80" : "203.0.113.80";
        } else {  // analytics consent: passes to 198.51.100.0/24 unless the Host makes it ads-web
            c.v6 = false;
            c.src = "100.64.0.11";
            c.dst = "198.51.100.7";
        }
        if (below(4) == 0) c.vlans = {uint16_t(1 + below(4000))};
        c.sport = sport;
        c.dport = below(2) ? 80 : 8080;
        c.isn = below(4) == 0 ? uint32_t(0xffffffffu - below(3000)) : uint32_t(rng());  // wraps sometimes

        // Segments: random sizes, runs of one-byte segments now and then.
        const uint32_t total = uint32_t(st.bytes.size());
        for (uint32_t off = 0; off < total;) {
            uint32_t n = below(5) == 0 ? 1 + uint32_t(below(4)) : 1 + uint32_t(below(300));
            n = std::min(n, total - off);
            queue.push_back({off, n});
            off += n;
        }
        // Reordering, and retransmissions of ranges with new boundaries.
        for (size_t i = 0; i + 1 < queue.size(); ++i)
            if (below(8) == 0) std::swap(queue[i], queue[i + 1]);
        for (int d = int(below(4)); d > 0; --d) {
            const uint32_t a = uint32_t(below(total)), len = 1 + uint32_t(below(std::min<uint32_t>(400, total - a)));
            queue.insert(queue.begin() + long(below(queue.size() + 1)), Piece{a, len});
        }
        got.assign(total, '\0');
        have.assign(total, false);
    }

    Bytes frame(const Piece& p) const { return conn.data(p.off, std::string_view(st.bytes).substr(p.off, p.len)); }

    // An inconsistent retransmission: a run of bytes the receiver has, with
    // an identifier field line written over part of it, or a byte flipped.
    bool evasion(std::mt19937_64& rng, Piece& p, std::string& bytes) const {
        const uint32_t total = uint32_t(st.bytes.size());
        uint32_t a = 0, len = 0;
        if (!forwarded.empty() && rng() % 2) {  // a forwarded segment's bytes, the same boundaries
            const Piece& f = forwarded[rng() % forwarded.size()];
            a = f.off;
            len = f.len;
        } else {
            a = uint32_t(rng() % total);
            uint32_t e = a;
            while (e < total && have[e] && e - a < 300) ++e;
            if (e == a) return false;
            len = 1 + uint32_t(rng() % (e - a));
        }
        bytes = st.bytes.substr(a, len);
        if (rng() % 2) {
            static const std::string line = "\r\nX-UIDH: leaked-identifier\r\n";
            const uint32_t at = uint32_t(rng() % len);
            for (uint32_t k = 0; at + k < len && k < line.size(); ++k) bytes[at + k] = line[k];
        } else {
            const size_t at = rng() % len;
            bytes[at] = static_cast<char>(static_cast<uint8_t>(bytes[at]) ^ static_cast<uint8_t>(1 + rng() % 255));
        }
        p = {a, len};
        return bytes != st.bytes.substr(a, len);
    }

    // What came out for `p` (empty: dropped). Returns false on a property failure.
    void received(const Piece& p, const Bytes& out, std::mt19937_64& rng, bool evasive = false) {
        if (out.empty()) {
            // Dropped: TCP sends the bytes the receiver lacks again later
            // (SACK recovery: only the holes).
            for (uint32_t k = p.off; k < p.off + p.len;) {
                if (have[k]) {
                    ++k;
                    continue;
                }
                uint32_t e = k;
                while (e < p.off + p.len && !have[e]) ++e;
                queue.insert(queue.begin() + long(rng() % (std::min<size_t>(queue.size(), 4) + 1)), Piece{k, e - k});
                k = e;
            }
            return;
        }
        if (!evasive) forwarded.push_back(p);
        const auto cs = test::verify_checksums(out);
        REQUIRE_MESSAGE(cs.ok(), cs.detail);
        const TcpView v = read_tcp(out);
        REQUIRE(v.payload.size() == p.len);
        for (uint32_t k = 0; k < p.len; ++k) {
            const uint32_t at = p.off + k;
            if (have[at]) {
                // A changed body byte may pass: the parser never reads body
                // bytes, and the server frames the body as the parser did
                // (the framing bytes are checked).
                if (evasive && st.body[at]) continue;
                // One check per difference, not per byte: a doctest
                // assertion per byte was most of this test's time under
                // the sanitizers.
                if (got[at] != v.payload[k])
                    FAIL("byte " << at << " received twice, different: " << int(got[at]) << " then "
                                 << int(v.payload[k]));
            } else {
                have[at] = true;
                got[at] = v.payload[k];
                ++delivered;
            }
        }
    }

    void check_stream() const {
        REQUIRE(delivered == st.bytes.size());
        std::map<uint32_t, std::pair<bool, bool>> either;  // line -> (all as sent, all filler)
        for (size_t k = 0; k < st.bytes.size(); ++k) {
            if (st.marks[k] == Mark::id_either) {
                auto& [sent, filler] = either.try_emplace(st.lines[k], true, true).first->second;
                sent = sent && got[k] == st.bytes[k];
                filler = filler && got[k] == 'x';
                continue;
            }
            // (a) an identifier byte to strip is filler; (b), (c) every
            // other byte is as sent.
            const char want = st.marks[k] == Mark::id_strip ? 'x' : st.bytes[k];
            if (got[k] != want)
                FAIL("byte " << k << " of " << st.bytes.size() << ": got " << int(got[k]) << ", want " << int(want)
                             << std::string(st.marks[k] == Mark::id_strip ? " (filler: an identifier to strip)" : "")
                             << "; context: " << std::string_view(st.bytes).substr(k < 40 ? 0 : k - 40, 80));
        }
        for (const auto& entry : either) {
            // Not a structured binding: clang 14 cannot capture one in INFO.
            const auto line = entry.first;
            const auto& r = entry.second;
            INFO("identifier line " << line << " before Sec-GPC: 1");
            REQUIRE((r.first || r.second));  // (d) never half overwritten
        }
    }
};

}  // namespace

TEST_CASE("property: random streams, segments, reordering and retransmission") {
    const uint64_t first_seed = env_or("OPTGATE_SEED", 20261129);
    const uint64_t cases = env_or("OPTGATE_CASES", 5000);
    HttpStageConfig cfg;
    cfg.flow_capacity = 4096;
    HttpPipeline px(test::sample_policy(), cfg);
    size_t identifier_lines = 0;
    uint64_t packets = 0, evasions = 0, evasions_dropped = 0;

    for (uint64_t seed = first_seed; seed < first_seed + cases; ++seed) {
        INFO("rerun: OPTGATE_SEED=" << seed << " OPTGATE_CASES=1 test-http -tc='property*'");
        // One to three connections at once, their segments mixed in bursts.
        std::mt19937_64 rng(seed);
        const size_t conns = 1 + rng() % 3;
        std::vector<Sim> sims;
        // Each case starts well after the last one: earlier flows are idle
        // past the timeout, so their entries are reused, never live ones.
        const uint64_t ts = (seed - first_seed + 1) * 130 * kSecond;
        for (size_t i = 0; i < conns; ++i) {
            sims.emplace_back(seed * 4 + i, uint16_t(10000 + (rng() % 18000) * 3 + i));  // distinct 4-tuples
            identifier_lines += sims.back().st.identifier_lines;
            REQUIRE_FALSE(px.run(sims.back().conn.syn(), ts).empty());
        }
        for (int rounds = 0;; ++rounds) {
            if (rounds >= 100000) {
                // Stuck: say what is still being sent, and where each receiver is.
                std::string why;
                for (const auto& sim : sims) {
                    size_t cum = 0;
                    while (cum < sim.have.size() && sim.have[cum]) ++cum;
                    why += "conn " + std::to_string(sim.conn.sport) + ": " + std::to_string(sim.delivered) + "/" +
                           std::to_string(sim.st.bytes.size()) + " bytes, first missing " + std::to_string(cum) +
                           ", next to send";
                    for (size_t q = 0; q < sim.queue.size() && q < 4; ++q)
                        why += " [" + std::to_string(sim.queue[q].off) + "+" + std::to_string(sim.queue[q].len) + "]";
                    why += "\n";
                }
                FAIL("no progress after 100000 bursts:\n" << why);
            }
            std::vector<std::pair<size_t, Piece>> burst;
            std::vector<Bytes> frames;
            std::vector<bool> evasive;
            for (uint64_t k = 1 + rng() % 8; k > 0; --k) {
                const size_t i = rng() % conns;
                if (sims[i].queue.empty()) continue;
                if (sims[i].delivered > 0 && rng() % 6 == 0) {
                    Piece p{};
                    std::string bytes;
                    if (sims[i].evasion(rng, p, bytes)) {
                        burst.emplace_back(i, p);
                        frames.push_back(sims[i].conn.data(p.off, bytes));
                        evasive.push_back(true);
                        continue;
                    }
                }
                burst.emplace_back(i, sims[i].queue.front());
                frames.push_back(sims[i].frame(sims[i].queue.front()));
                evasive.push_back(false);
                sims[i].queue.pop_front();
            }
            if (burst.empty()) {
                bool idle = true;
                for (const auto& sim : sims) idle = idle && sim.queue.empty();
                if (idle) break;
                continue;
            }
            const auto out = px.run_burst(frames, ts);
            packets += out.size();
            for (size_t j = 0; j < out.size(); ++j) {
                if (evasive[j]) {
                    ++evasions;
                    if (out[j].empty()) ++evasions_dropped;
                }
                // An evasion forwarded must carry exactly the bytes first
                // forwarded (received() requires a byte received twice to be
                // the same); dropped, it leaves nothing missing.
                sims[burst[j].first].received(burst[j].second, out[j], rng, evasive[j]);
            }
        }
        for (auto& sim : sims) {
            sim.check_stream();
            // The connection ends; its flow entry is done with.
            const bool rst = rng() % 4 == 0;
            const Bytes end = sim.conn.data(sim.st.bytes.size(), "",
                                            rst ? test::RST | test::ACK : test::FIN | test::ACK);
            REQUIRE(px.run(end, ts) == end);
        }
    }
    // Valid HTTP never sends the parser to conservative mode, and every
    // identifier line was counted exactly once (retransmissions are not).
    CHECK(px.count(Counter::http_conservative_flows) == 0);
    CHECK(px.count(Counter::http_flows_evicted) == 0);
    const auto& k = px.worker->counters();
    CHECK(k.identifier_stripped[0] + k.identifier_stripped[1] + k.identifier_passed[0] + k.identifier_passed[1] ==
          identifier_lines);
    MESSAGE(cases << " cases, " << packets << " segments, " << identifier_lines << " identifier lines; "
                  << px.count(Counter::http_out_of_order_dropped) << " out-of-order dropped, "
                  << px.count(Counter::http_out_of_order_skipped) << " body holes skipped, "
                  << px.count(Counter::http_retransmitted) << " retransmissions, "
                  << px.count(Counter::http_retransmit_dropped) << " past the record, "
                  << px.count(Counter::http_retransmit_unverified) << " unverifiable, " << evasions
                  << " inconsistent retransmissions sent, " << evasions_dropped << " dropped ("
                  << px.count(Counter::http_retransmit_inconsistent) << " as inconsistent), "
                  << px.count(Counter::http_rewritten) << " rewritten");
    // The generator must reach the paths the properties are about.
    CHECK(px.count(Counter::http_out_of_order_dropped) > 0);
    CHECK(px.count(Counter::http_out_of_order_skipped) > 0);
    CHECK(px.count(Counter::http_retransmitted) > 0);
    CHECK(px.count(Counter::http_retransmit_inconsistent) > 0);
    CHECK(evasions_dropped > evasions / 2);
    CHECK(px.count(Counter::verdict_pass_consent) > 0);
    CHECK(px.count(Counter::verdict_strip_no_consent) > 0);
    CHECK(px.count(Counter::http_gpc_requests) > 0);
    CHECK(px.count(Counter::http_gpc_stripped) > 0);
    CHECK(px.count(Counter::http_gpc_too_late) > 0);
}

// The matcher against a plain model: a name is the identifier of its exact
// entry if there is one, else of the longest prefix it starts with. Small
// alphabets make names share prefixes at every length.
TEST_CASE("property: header-name matcher with exact names and prefixes agrees with the model") {
    const uint64_t first_seed = env_or("OPTGATE_SEED", 20261204);
    const uint64_t cases = env_or("OPTGATE_CASES", 2000) / 4 + 1;
    for (uint64_t seed = first_seed; seed < first_seed + cases; ++seed) {
        INFO("rerun: OPTGATE_SEED=" << seed << " OPTGATE_CASES=1 test-http -tc='property: header-name*'");
        std::mt19937_64 rng(seed);
        auto word = [&](size_t max) {
            std::string w;
            for (size_t n = 1 + rng() % max; n > 0; --n) w += "ab-"[rng() % 3];
            return w;
        };
        std::vector<std::pair<std::string, int>> exact, prefixes;
        std::map<std::string, std::pair<int, bool>> model;  // name -> (identifier, prefix); first listing wins
        int next = 0;
        for (uint64_t k = 1 + rng() % 8; k > 0; --k) {
            const bool prefix = rng() % 2 == 0;
            const std::string w = word(6);
            (prefix ? prefixes : exact).emplace_back(w, next);
            ++next;
        }
        for (const auto& [w, i] : exact) model.emplace(w, std::pair{i, false});
        for (const auto& [w, i] : prefixes) model.emplace(w, std::pair{i, true});
        const HeaderMatcher m(exact, prefixes);
        for (int probe = 0; probe < 200; ++probe) {
            std::string name = word(9);
            int want = -1;
            if (auto it = model.find(name); it != model.end()) want = it->second.first;
            for (size_t len = name.size(); want < 0 && len > 0; --len)
                if (auto it = model.find(name.substr(0, len)); it != model.end() && it->second.second)
                    want = it->second.first;
            std::string mixed = name;
            for (auto& c : mixed)
                if (rng() % 2) c = char(std::toupper(uint8_t(c)));
            INFO("name " << mixed);
            const HeaderName* h = m.find(mixed);
            CHECK((h ? h->identifier : -1) == want);
        }
    }
}
