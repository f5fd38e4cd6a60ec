// Shared by the HTTP unit tests: a recording parser sink and a harness that
// feeds one byte stream to HttpParser cut at chosen points.
#pragma once

#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "core/http_parser.hpp"

namespace optgate::httptest {

inline constexpr HttpDecision kStrip{Verdict::strip_no_consent, 1};
inline constexpr HttpDecision kPass{Verdict::pass_consent, 0};
inline constexpr HttpDecision kStripNoCollector{Verdict::strip_no_collector, 5};
inline constexpr HttpDecision kOutOfSync{Verdict::strip_out_of_sync, 5};

// Identifier indices used by the tests' matcher.
inline const std::vector<std::pair<std::string, int>> kIdentifiers = {
    {"x-uidh", 0}, {"x-acr", 1}, {"x-msisdn", 2}, {"x-up-calling-line-id", 3}, {"x-imsi", 4}};

struct Recorded {
    std::string out;                        // the stream after scrubbing
    std::vector<std::pair<int, bool>> ids;  // identifier lines: (index, passed)
    std::vector<std::string> hosts;         // hosts passed to host_decision
    std::map<Counter, int> counts;
    int requests = 0;          // request_decision() calls
    int first_of_request = 0;  // identifier lines flagged first in their request
    HttpState state = HttpState::request_start;

    int count(Counter c) const {
        auto it = counts.find(c);
        return it == counts.end() ? 0 : it->second;
    }
};

struct TestSink {
    // Decision for request k (the last one repeats).
    std::vector<HttpDecision> requests{kStrip};
    std::map<std::string, HttpDecision> by_host;  // host -> decision; others: kStripNoCollector
    HttpDecision conservative = kOutOfSync;
    char filler = 'x';
    // Global Privacy Control as the stage does it: consented lines are held
    // until the end of the piece (at most `hold_lines`, their values in at
    // most `hold_ranges` pieces) and stripped by a Sec-GPC: 1 in it.
    bool honour_gpc = true;
    size_t hold_lines = 4, hold_ranges = 8;
    std::vector<size_t> held;  // indices into rec->ids
    std::vector<std::pair<uint32_t, uint32_t>> held_ranges;
    bool range_lost = false;

    Recorded* rec = nullptr;
    uint8_t* piece = nullptr;  // the bytes being fed (scrubbed in place, as the stage does)
    size_t base = 0;           // stream offset of piece[0]

    HttpDecision request_decision() {
        release();
        const size_t k = size_t(rec->requests++);
        return requests[k < requests.size() ? k : requests.size() - 1];
    }
    HttpDecision host_decision(std::string_view h) {
        rec->hosts.emplace_back(h);
        auto it = by_host.find(std::string(h));
        return it == by_host.end() ? kStripNoCollector : it->second;
    }
    HttpDecision conservative_decision() { return conservative; }
    IdentifierHold identifier(int id, const HttpDecision& d, bool first) {
        rec->ids.emplace_back(id, passes(d.verdict));
        if (first) ++rec->first_of_request;
        if (d.verdict == Verdict::strip_gpc) rec->counts[Counter::http_gpc_stripped]++;
        if (d.verdict != Verdict::pass_consent || !honour_gpc) return IdentifierHold::counted;
        if (held.size() == hold_lines) return IdentifierHold::exposed;
        held.push_back(rec->ids.size() - 1);
        return IdentifierHold::held;
    }
    void held_value(uint32_t off, uint32_t len) {
        if (held_ranges.size() == hold_ranges)
            range_lost = true;
        else
            held_ranges.emplace_back(off, len);
    }
    HttpDecision gpc_decision(const HttpDecision& d) const { return {with_gpc(d.verdict, honour_gpc), d.dest_slot}; }
    bool gpc() {
        if (range_lost) {
            release();
            return false;
        }
        for (auto [off, len] : held_ranges) scrub(off, len);
        for (size_t k : held) {
            rec->ids[k].second = false;
            rec->counts[Counter::http_gpc_stripped]++;
        }
        release();
        return true;
    }
    void release() {
        held.clear();
        held_ranges.clear();
        range_lost = false;
    }
    void conservative_identifier(int id, const HttpDecision& d) { rec->ids.emplace_back(id, passes(d.verdict)); }
    void scrub(uint32_t off, uint32_t len) {
        for (uint32_t k = 0; k < len; ++k) {
            piece[off + k] = uint8_t(filler);
            rec->out[base + off + k] = filler;
        }
    }
    // A whole value replaced by a pseudonym: marked with 'P' here (the
    // pseudonym itself is the stage's business, tests/core/test_pseudonym.cpp).
    void pseudonym(uint32_t off, uint32_t len, const HttpDecision&) {
        for (uint32_t k = 0; k < len; ++k) {
            piece[off + k] = 'P';
            rec->out[base + off + k] = 'P';
        }
        rec->counts[Counter::http_pseudonymised]++;
    }
    void count(Counter c) { rec->counts[c]++; }
};

class Harness {
public:
    explicit Harness(const std::vector<std::pair<std::string, int>>& ids = kIdentifiers, size_t host_buffers = 8,
                     const std::vector<std::pair<std::string, int>>& prefixes = {})
        : matcher_(ids, prefixes), hosts_(host_buffers) {}

    TestSink sink;
    bool use_host = true;
    bool conservative_start = false;  // as for a flow met mid-stream

    // Feeds `input` cut before each offset in `cuts` (increasing).
    Recorded run(std::string_view input, const std::vector<size_t>& cuts = {}) {
        Recorded rec;
        rec.out = std::string(input);
        HttpParserState st;
        if (conservative_start)
            HttpParser::reset_conservative(st, hosts_, 1);
        else
            HttpParser::reset(st, hosts_, 1);
        const HttpParseContext cx{matcher_, hosts_, 1, use_host};
        TestSink s = sink;
        s.rec = &rec;
        size_t from = 0;
        std::vector<size_t> ends = cuts;
        ends.push_back(input.size());
        for (size_t to : ends) {
            if (to <= from) continue;
            std::vector<uint8_t> piece(input.begin() + long(from), input.begin() + long(to));
            s.piece = piece.data();
            s.base = from;
            HttpParser::feed(st, cx, piece.data(), uint32_t(piece.size()), s);
            s.release();  // the piece has left
            from = to;
        }
        rec.state = st.state;
        HttpParser::release(st, hosts_);
        return rec;
    }

    // Every two-piece cut, one byte per piece, and `random_cuts` random
    // multi-piece cuttings: each must give the same result as one piece.
    // Returns the one-piece result.
    template <class Check>
    Recorded run_all(std::string_view input, Check&& check, int random_cuts = 40) {
        Recorded whole = run(input);
        check(whole, "whole");
        for (size_t k = 1; k < input.size(); ++k) check(run(input, {k}), "cut at " + std::to_string(k));
        std::vector<size_t> bytes;
        for (size_t k = 1; k < input.size(); ++k) bytes.push_back(k);
        check(run(input, bytes), "one byte per piece");
        std::mt19937 rng(12345);
        for (int r = 0; r < random_cuts; ++r) {
            std::vector<size_t> cuts;
            for (size_t k = 1; k < input.size(); ++k)
                if (rng() % 7 == 0) cuts.push_back(k);
            check(run(input, cuts), "random cuts #" + std::to_string(r));
        }
        return whole;
    }

    const HeaderMatcher& matcher() const { return matcher_; }
    HostBuffers& hosts() { return hosts_; }

private:
    HeaderMatcher matcher_;
    HostBuffers hosts_;
};

// `text` with each listed substring (at its first occurrence at or after the
// previous one's end) overwritten with `filler`.
inline std::string fill_values(std::string text, const std::vector<std::string_view>& values, char filler = 'x') {
    size_t from = 0;
    for (std::string_view v : values) {
        const size_t at = text.find(v, from);
        if (at == std::string::npos) throw std::logic_error("fill_values: value not found");
        for (size_t k = 0; k < v.size(); ++k) text[at + k] = filler;
        from = at + v.size();
    }
    return text;
}

}  // namespace optgate::httptest
