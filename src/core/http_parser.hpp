// Streaming HTTP/1.0 and HTTP/1.1 request parser for identifier scrubbing.
//
// The parser reads a client's byte stream in whatever pieces TCP delivers
// (one byte per segment is fine): HttpParser::feed() takes the next bytes of
// the stream and a per-flow HttpParserState (40 bytes, kept in the flow
// table) and calls a Sink (the HTTP stage, or a test) to decide and act:
//
//   request_decision()        at each request's first byte: the verdict
//                             with the host unknown (consent read now)
//   host_decision(host)       at the end of the request's Host field
//   conservative_decision()   for an identifier line found in conservative mode
//   identifier(i, d, first)   an identifier field line `i` under decision `d`;
//                             returns whether the sink holds it (IdentifierHold)
//   held_value(offset, length)  value bytes of a held line, in the piece fed
//   gpc_decision(d)           `d` for a request that carried Sec-GPC: 1
//   gpc()                     Sec-GPC: 1 arrived: strip the lines held in this
//                             piece; false if one could not be held whole
//   conservative_identifier(i, d)   the same in conservative mode (i may be -1)
//   scrub(offset, length)     overwrite these bytes of the piece fed
//   pseudonym(offset, length, d)  replace this whole value (a line under a
//                             pseudonymises() decision) with its pseudonym
//   count(counter)            parse errors, bail-outs, requests
//
// What it understands: the request line; field lines with any letter case,
// bare-LF line endings, obs-fold continuation lines; Content-Length (lists
// of equal values) and Transfer-Encoding: chunked (sizes, extensions, chunk
// CRLFs, trailer fields, which are scrubbed like header fields), so that
// body bytes are never read as fields and the next pipelined request's
// fields are. Values it scrubs: from the first byte after the colon and
// optional whitespace up to, not including, the CR LF (or LF); on an
// obs-fold line, everything after the fold's leading whitespace.
//
// Which identifier fields are scrubbed: st.decision is taken at the
// request's first byte with the host unknown; when a Host field ends before
// an identifier field, the decision is retaken with that host
// (host_decision), and every identifier field after it uses it. A request
// with an absolute-form target, two Host fields, a folded, invalid or
// unbufferable Host keeps the host-unknown decision (fail closed).
//
// Global Privacy Control: a `Sec-GPC: 1` field in a request's header section
// changes the request's decision to gpc_decision() for every identifier
// field after it. Identifier lines before it in the same piece (segment)
// have not left yet: the sink holds the ones the signal would strip and
// strips them when it comes (gpc()); lines that left in an earlier piece
// are counted as too late (Counter::http_gpc_too_late). Not read in
// trailers or in conservative mode (docs/http.md#global-privacy-control).
//
// Pseudonyms: a line whose decision pseudonymises() has its value replaced
// only when the whole value is in the piece that holds its first byte (the
// first bytes would otherwise leave before the last are known): a value
// split across pieces, folded (obs-fold), ended by a bare CR or by a CR at
// the piece's end, is scrubbed from there to the end of the line instead
// (Counter::http_pseudonym_split). Conservative mode never pseudonymises
// (the sink's conservative_decision strips).
//
// Conservative mode: on a parse error, or after the flow stops being
// HTTP/1 (CONNECT, Upgrade, HTTP/2 preface, TLS, other bytes), or for a
// flow first seen mid-stream, the parser only looks for identifier fields:
// at every line start (after LF, and after a bare CR, which a lenient server
// might take as a line end) it matches identifier names followed by
// optional whitespace and ':' and scrubs the value to the end of the line,
// and obs-fold continuation lines after it. Conservative mode lasts for the
// rest of the flow. The matcher state carries names split across segments.
//
// Cost: see docs/benchmarks.md (bench/bench_http.cpp). Values and request
// targets are skipped 16 bytes per step (SSE2); names one byte per step
// with a first-byte filter.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <string_view>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "core/chars.hpp"
#include "core/counters.hpp"
#include "core/http_host.hpp"
#include "core/http_matcher.hpp"
#include "core/verdict.hpp"

namespace optgate {

enum class HttpState : uint8_t {
    // request line
    request_start,
    method,
    target_start,
    target,
    version,
    request_line_cr,
    // field lines (header section and trailer section)
    field_start,
    name,
    value_ows,
    value,
    value_cr,
    host_value,
    length_value,
    coding_value,
    gpc_value,
    blank_cr,
    // message body
    body,
    chunk_size,
    chunk_ext,
    chunk_size_cr,
    chunk_data,
    chunk_data_end,
    chunk_data_cr,
    // conservative mode: everything from here on
    c_line_start,
    c_name,
    c_name_ws,
    c_value_ows,
    c_value,
    c_value_cr,
    c_after_identifier,
    c_skip_line,
    c_unknown_name,
};

// The field whose value is being read (or, at field_start, the field of the
// previous line, which an obs-fold line continues).
// `pseudonym`: an identifier whose value is replaced by a pseudonym.
enum class FieldKind : uint8_t { none, other, identifier, pseudonym, host, content_length, transfer_encoding, gpc };

namespace http_flag {
inline constexpr uint16_t host_seen = 1 << 0;      // a Host field set st.decision
inline constexpr uint16_t host_unusable = 1 << 1;  // this request's host is unknown, whatever follows
inline constexpr uint16_t length_seen = 1 << 2;
inline constexpr uint16_t te_seen = 1 << 3;
inline constexpr uint16_t te_chunked = 1 << 4;  // the last transfer coding read is "chunked"
inline constexpr uint16_t upgrade = 1 << 5;
inline constexpr uint16_t connect = 1 << 6;
inline constexpr uint16_t counted = 1 << 7;  // the request's verdict was counted
inline constexpr uint16_t trailers = 1 << 8;
inline constexpr uint16_t http10 = 1 << 9;
inline constexpr uint16_t scrubbing = 1 << 10;          // the current identifier line is overwritten
inline constexpr uint16_t gpc = 1 << 11;                // the request carried Sec-GPC: 1
inline constexpr uint16_t gpc_held_line = 1 << 12;      // the current identifier line is held by the sink
inline constexpr uint16_t gpc_held = 1 << 13;           // a line of this request is held in the piece being fed
inline constexpr uint16_t gpc_exposed = 1 << 14;        // a line Sec-GPC would strip left in an earlier piece
inline constexpr uint16_t pseudonym_pending = 1 << 15;  // the pseudonym line's value has not begun
}  // namespace http_flag

// What the sink did with an identifier line (Sink::identifier).
enum class IdentifierHold : uint8_t {
    counted,  // decided for good
    // Passes, but a Sec-GPC: 1 later in this piece would strip it: the sink
    // counts it at the end of the piece or request, or strips it on gpc();
    // the parser reports its value bytes (held_value) until the line ends.
    held,
    exposed,  // the same, but the sink had no room to hold it: it passes
};

// A verdict and the per-destination counter slot it counts under.
struct HttpDecision {
    Verdict verdict = Verdict::strip_out_of_sync;
    uint16_t dest_slot = 0;
};

struct HttpParserState {
    uint64_t remaining = 0;        // body or chunk bytes left; a number being read
    uint64_t content_length = 0;   // the request's Content-Length
    HttpDecision decision;         // for this request's identifier fields
    HttpDecision decision_nohost;  // taken at the request's first byte
    HeaderMatch match;
    uint16_t flags = 0;       // http_flag
    uint16_t host_slot = 0;   // HostBuffers slot holding a split Host value
    uint16_t generation = 0;  // HttpParseContext::generation the match state belongs to
    HttpState state = HttpState::request_start;
    FieldKind field = FieldKind::none;
    uint8_t aux = 0;  // small per-state counter (see the states)
};
static_assert(sizeof(HttpParserState) <= 40, "the parser state lives in every flow entry");

// What the parser reads for one burst (one policy).
struct HttpParseContext {
    const HeaderMatcher& matcher;
    HostBuffers& hosts;
    uint16_t generation = 0;  // changes when the matcher does
    bool use_host = true;     // some collector or exemption is matched by hostname
};

namespace http_detail {

// Index of the first CR or LF in d[i, n), or n. Sixteen bytes per step
// with SSE2 (every x86-64), else eight.
inline uint32_t find_cr_lf(const uint8_t* d, uint32_t i, uint32_t n) noexcept {
#if defined(__SSE2__)
    const __m128i cr = _mm_set1_epi8('\r'), lf = _mm_set1_epi8('\n');
    for (; i + 16 <= n; i += 16) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(d + i));
        const unsigned m = unsigned(_mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf))));
        if (m) return i + uint32_t(std::countr_zero(m));
    }
#endif
    if constexpr (std::endian::native == std::endian::little) {
        constexpr uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
        for (; i + 8 <= n; i += 8) {
            uint64_t w = 0;
            std::memcpy(&w, d + i, 8);
            const uint64_t a = w ^ (ones * '\n'), b = w ^ (ones * '\r');
            // Exact for the lowest matching byte, which is all we use.
            const uint64_t z = ((a - ones) & ~a & high) | ((b - ones) & ~b & high);
            if (z) return i + uint32_t(std::countr_zero(z) >> 3);
        }
    }
    for (; i < n; ++i)
        if (d[i] == '\n' || d[i] == '\r') return i;
    return n;
}

// Index of the first byte in d[i, n) that cannot be in a request target
// (a control byte, space or DEL: <= 0x20 or 0x7f), or n. Eight bytes per step.
inline uint32_t find_target_end(const uint8_t* d, uint32_t i, uint32_t n) noexcept {
#if defined(__SSE2__)
    const __m128i space = _mm_set1_epi8(0x20), del7f = _mm_set1_epi8(0x7f);
    for (; i + 16 <= n; i += 16) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(d + i));
        const __m128i low = _mm_cmpeq_epi8(_mm_min_epu8(v, space), v);  // v <= 0x20, unsigned
        const unsigned m = unsigned(_mm_movemask_epi8(_mm_or_si128(low, _mm_cmpeq_epi8(v, del7f))));
        if (m) return i + uint32_t(std::countr_zero(m));
    }
#endif
    if constexpr (std::endian::native == std::endian::little) {
        constexpr uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
        for (; i + 8 <= n; i += 8) {
            uint64_t w = 0;
            std::memcpy(&w, d + i, 8);
            // Bytes < 0x21 (those with the high bit set are excluded by ~w), and 0x7f.
            const uint64_t del = w ^ (ones * 0x7f);
            const uint64_t z = ((w - ones * 0x21) & ~w & high) | ((del - ones) & ~del & high);
            if (z) return i + uint32_t(std::countr_zero(z) >> 3);
        }
    }
    for (; i < n; ++i)
        if (d[i] <= ' ' || d[i] == 0x7f) return i;
    return n;
}

constexpr uint64_t pack(std::string_view s) noexcept {
    uint64_t v = 0;
    for (char c : s) v = v << 8 | uint8_t(c);
    return v;
}

}  // namespace http_detail

class HttpParser {
public:
    template <class Sink>
    static void feed(HttpParserState& st, const HttpParseContext& cx, const uint8_t* d, uint32_t n,
                     Sink& sink) noexcept;

    static bool conservative(const HttpParserState& st) noexcept { return st.state >= HttpState::c_line_start; }

    // Out-of-order segments: true when the next `n` stream bytes are body
    // bytes the parser would skip unread, so a gap of `n` can be skipped.
    static bool can_skip(const HttpParserState& st, uint64_t n) noexcept {
        return (st.state == HttpState::body || st.state == HttpState::chunk_data) && n <= st.remaining;
    }
    static void skip(HttpParserState& st, HostBuffers& hosts, uint64_t n) noexcept {
        st.remaining -= n;
        if (st.remaining != 0) return;
        if (st.state == HttpState::body)
            request_done(st, hosts);
        else
            st.state = HttpState::chunk_data_end;
    }

    // True while the stream is inside a line that is, or may turn out to
    // be, an identifier field (including a possible obs-fold after one):
    // losing the state here could let the rest of that value through.
    static bool in_identifier_line(const HttpParserState& st) noexcept;

    // A new connection (SYN).
    static void reset(HttpParserState& st, HostBuffers& hosts, uint16_t generation) noexcept {
        release(st, hosts);
        st = HttpParserState{};
        st.generation = generation;
    }
    // A flow met at an unknown position: conservative mode, at a line start.
    static void reset_conservative(HttpParserState& st, HostBuffers& hosts, uint16_t generation) noexcept {
        reset(st, hosts, generation);
        st.state = HttpState::c_line_start;
    }
    static void release(HttpParserState& st, HostBuffers& hosts) noexcept {
        hosts.release(st.host_slot);
        st.host_slot = 0;
    }

private:
    template <class Sink>
    static void to_conservative(HttpParserState& st, const HttpParseContext& cx, Sink& sink, Counter why,
                                HttpState next) noexcept {
        sink.count(why);
        sink.count(Counter::http_conservative_flows);
        release(st, cx.hosts);
        st.flags &= http_flag::scrubbing;
        st.state = next;
    }

    static void request_done(HttpParserState& st, HostBuffers& hosts) noexcept {
        release(st, hosts);
        st.flags = 0;
        st.field = FieldKind::none;
        st.state = HttpState::request_start;
    }

    static void host_unusable(HttpParserState& st) noexcept {
        st.flags |= http_flag::host_unusable;
        st.decision = st.decision_nohost;
    }

    // A chunk-size line ended: the chunk's data follows, or the trailer
    // fields after the last chunk.
    static void chunk_size_done(HttpParserState& st) noexcept {
        if (st.remaining == 0) {  // last chunk: trailer fields follow
            st.flags |= http_flag::trailers;
            st.field = FieldKind::none;
            st.state = HttpState::field_start;
        } else {
            st.state = HttpState::chunk_data;
        }
    }

    template <class Sink>
    static void name_done(HttpParserState& st, const HttpParseContext& cx, Sink& sink) noexcept;
    template <class Sink>
    static void conservative_name_done(HttpParserState& st, const HttpParseContext& cx, Sink& sink) noexcept;
    template <class Sink>
    static void host_piece(HttpParserState& st, const HttpParseContext& cx, Sink& sink, const uint8_t* p, uint32_t n,
                           bool last) noexcept;
    template <class Sink>
    static void end_of_fields(HttpParserState& st, const HttpParseContext& cx, Sink& sink) noexcept;
    template <class Sink>
    static void policy_changed(HttpParserState& st, const HttpParseContext& cx, Sink& sink) noexcept;
    template <class Sink>
    static void gpc_signal(HttpParserState& st, Sink& sink) noexcept;
};

// ---- implementation (templates: the sink's calls inline) ----

template <class Sink>
void HttpParser::name_done(HttpParserState& st, const HttpParseContext& cx, Sink& sink) noexcept {
    const HeaderName* h = cx.matcher.complete(st.match);
    st.flags &= uint16_t(~(http_flag::scrubbing | http_flag::gpc_held_line));
    st.state = HttpState::value_ows;
    if (h && h->identifier >= 0) {
        const HttpDecision dec = st.decision;
        const IdentifierHold hold = sink.identifier(h->identifier, dec, !(st.flags & http_flag::counted));
        st.flags |= http_flag::counted;
        st.field = FieldKind::identifier;
        if (pseudonymises(dec.verdict)) {
            st.field = FieldKind::pseudonym;
            st.flags |= http_flag::pseudonym_pending;
        } else if (!passes(dec.verdict)) {
            st.flags |= http_flag::scrubbing;
        }
        if (hold == IdentifierHold::held) st.flags |= http_flag::gpc_held | http_flag::gpc_held_line;
        if (hold == IdentifierHold::exposed) st.flags |= http_flag::gpc_exposed;
        // An identifier that is also a framing field: scrub it, trust no framing.
        if (h->conflict) {
            if (st.field == FieldKind::pseudonym) st.flags |= http_flag::scrubbing;  // no pseudonym there
            to_conservative(st, cx, sink, Counter::http_error_header_line, HttpState::c_value_ows);
        }
        return;
    }
    st.field = FieldKind::other;
    if (!h || (st.flags & http_flag::trailers)) return;  // framing fields mean nothing in trailers
    switch (h->role) {
    case FieldRole::host:
        if (cx.use_host) st.field = FieldKind::host;
        break;
    case FieldRole::content_length: st.field = FieldKind::content_length; break;
    case FieldRole::transfer_encoding: st.field = FieldKind::transfer_encoding; break;
    case FieldRole::upgrade: st.flags |= http_flag::upgrade; break;
    case FieldRole::gpc: st.field = FieldKind::gpc; break;
    case FieldRole::other: break;
    }
}

// A field name ended (its ':' consumed) in conservative mode: only
// identifiers matter, and their lines are scrubbed unless the verdict passes.
template <class Sink>
void HttpParser::conservative_name_done(HttpParserState& st, const HttpParseContext& cx, Sink& sink) noexcept {
    const HeaderName* h = cx.matcher.complete(st.match);
    if (!h || h->identifier < 0) {
        st.state = HttpState::c_skip_line;
        return;
    }
    const HttpDecision dec = sink.conservative_decision();
    sink.conservative_identifier(h->identifier, dec);
    st.flags = passes(dec.verdict) ? 0 : http_flag::scrubbing;
    st.field = FieldKind::identifier;
    st.state = HttpState::c_value_ows;
}

template <class Sink>
void HttpParser::host_piece(HttpParserState& st, const HttpParseContext& cx, Sink& sink, const uint8_t* p, uint32_t n,
                            bool last) noexcept {
    if (st.flags & http_flag::host_unusable) return;
    if (!last || st.host_slot) {
        if (!st.host_slot) {
            st.host_slot = cx.hosts.acquire();
            if (!st.host_slot) {
                sink.count(Counter::http_host_no_buffer);
                host_unusable(st);
                return;
            }
        }
        if (!cx.hosts.append(st.host_slot, p, n)) {  // longer than any hostname
            release(st, cx.hosts);
            host_unusable(st);
            return;
        }
        if (!last) return;
    }
    const std::string_view raw = st.host_slot ? cx.hosts.view(st.host_slot)
                                              : std::string_view(reinterpret_cast<const char*>(p), n);
    if (st.flags & http_flag::host_seen) {
        host_unusable(st);  // a second Host field: which one a server takes is anyone's guess
    } else {
        char buf[HostBuffers::kBytes];
        const std::string_view host = normalize_host(raw, buf);
        if (host.empty()) {
            host_unusable(st);
        } else {
            st.decision = sink.host_decision(host);
            if (st.flags & http_flag::gpc) st.decision = sink.gpc_decision(st.decision);
            st.flags |= http_flag::host_seen;
        }
    }
    release(st, cx.hosts);
}

template <class Sink>
void HttpParser::end_of_fields(HttpParserState& st, const HttpParseContext& cx, Sink& sink) noexcept {
    using S = HttpState;
    const uint16_t f = st.flags;
    if (f & http_flag::trailers) {
        request_done(st, cx.hosts);
        return;
    }
    if (f & http_flag::te_seen) {
        // Both lengths is how requests are smuggled (RFC 9112 §6.3): trust neither.
        if (f & http_flag::length_seen)
            return to_conservative(st, cx, sink, Counter::http_error_content_length, S::c_line_start);
        if (!(f & http_flag::te_chunked) || (f & http_flag::http10))
            return to_conservative(st, cx, sink, Counter::http_error_transfer_encoding, S::c_line_start);
    }
    if (f & http_flag::connect) return to_conservative(st, cx, sink, Counter::http_bail_connect, S::c_line_start);
    if (f & http_flag::upgrade) return to_conservative(st, cx, sink, Counter::http_bail_upgrade, S::c_line_start);
    st.field = FieldKind::none;
    if (f & http_flag::te_seen) {
        st.remaining = 0;
        st.aux = 0;
        st.state = S::chunk_size;
    } else if ((f & http_flag::length_seen) && st.content_length > 0) {
        st.remaining = st.content_length;
        st.state = S::body;
    } else {
        request_done(st, cx.hosts);
    }
}

// A `Sec-GPC: 1` line ended: the request's decisions from now on, and the
// lines of this piece the sink holds, take the signal into account.
template <class Sink>
void HttpParser::gpc_signal(HttpParserState& st, Sink& sink) noexcept {
    if (st.flags & http_flag::gpc) return;  // a second Sec-GPC field
    sink.count(Counter::http_gpc_requests);
    const bool held_whole = (st.flags & http_flag::gpc_held) ? sink.gpc() : true;
    if ((st.flags & http_flag::gpc_exposed) || !held_whole) sink.count(Counter::http_gpc_too_late);
    st.flags = uint16_t((st.flags | http_flag::gpc) & ~(http_flag::gpc_held | http_flag::gpc_held_line));
    st.decision = sink.gpc_decision(st.decision);
    st.decision_nohost = sink.gpc_decision(st.decision_nohost);
}

template <class Sink>
void HttpParser::policy_changed(HttpParserState& st, const HttpParseContext& cx, Sink& sink) noexcept {
    st.generation = cx.generation;
    // A name half-read was matched against the old policy's names: its
    // prefix is gone, so treat the field as an identifier (fail closed).
    switch (st.state) {
    case HttpState::name: to_conservative(st, cx, sink, Counter::http_policy_resync, HttpState::c_unknown_name); break;
    case HttpState::c_name:
    case HttpState::c_name_ws:
        sink.count(Counter::http_policy_resync);
        st.state = HttpState::c_unknown_name;
        break;
    default: break;
    }
}

template <class Sink>
void HttpParser::feed(HttpParserState& st, const HttpParseContext& cx, const uint8_t* d, uint32_t n,
                      Sink& sink) noexcept {
    using S = HttpState;
    using http_chars::is_tchar;
    using http_detail::find_cr_lf;
    if (st.generation != cx.generation) policy_changed(st, cx, sink);
    // Lines held in the previous piece have left with it.
    if (st.flags & http_flag::gpc_held)
        st.flags = uint16_t((st.flags | http_flag::gpc_exposed) & ~(http_flag::gpc_held | http_flag::gpc_held_line));
    uint32_t i = 0;
    while (i < n) {
        switch (st.state) {
        // ---------------------------------------------------------- request line
        case S::request_start: {
            const uint8_t c = d[i];
            if (c == '\r' || c == '\n') {  // empty lines before a request are allowed (RFC 9112 §2.2)
                ++i;
                break;
            }
            if (!is_tchar(c)) {
                to_conservative(st, cx, sink, c == 0x16 ? Counter::http_bail_tls : Counter::http_bail_non_http,
                                S::c_line_start);
                break;
            }
            st.flags = 0;
            st.field = FieldKind::none;
            st.remaining = 0;  // the method's first 8 bytes
            st.aux = 0;        // the method's length
            st.decision = st.decision_nohost = sink.request_decision();
            st.state = S::method;
            break;
        }
        case S::method: {
            while (i < n && is_tchar(d[i])) {
                if (st.aux < 8) st.remaining = st.remaining << 8 | d[i];
                if (st.aux < 255) ++st.aux;
                ++i;
            }
            if (i == n) break;
            if (d[i] != ' ') {
                to_conservative(st, cx, sink, Counter::http_bail_non_http, S::c_skip_line);
                break;
            }
            ++i;
            if (st.aux == 3 && st.remaining == http_detail::pack("PRI")) {  // "PRI * HTTP/2.0": h2 prior knowledge
                to_conservative(st, cx, sink, Counter::http_bail_h2, S::c_skip_line);
                break;
            }
            if (st.aux == 7 && st.remaining == http_detail::pack("CONNECT")) st.flags |= http_flag::connect;
            st.state = S::target_start;
            break;
        }
        case S::target_start: {
            const uint8_t c = d[i];
            if (c <= ' ' || c == 0x7f) {
                to_conservative(st, cx, sink, Counter::http_error_request_line, S::c_skip_line);
                break;
            }
            // absolute-form ("http://host/") or authority-form: the target,
            // not the Host field, names the host. Take neither.
            if (c != '/' && c != '*') st.flags |= http_flag::host_unusable;
            st.state = S::target;
            ++i;
            break;
        }
        case S::target: {
            i = http_detail::find_target_end(d, i, n);
            if (i == n) break;
            if (d[i] != ' ') {  // HTTP/0.9 or garbage
                to_conservative(st, cx, sink, Counter::http_error_request_line, S::c_skip_line);
                break;
            }
            ++i;
            st.aux = 0;
            st.state = S::version;
            break;
        }
        case S::version: {
            static constexpr char kVersion[] = "HTTP/1.";
            const uint8_t c = d[i];
            if (st.aux < 7 ? c == uint8_t(kVersion[st.aux]) : st.aux == 7 && c >= '0' && c <= '9') {
                if (st.aux == 7 && c == '0') st.flags |= http_flag::http10;
                ++st.aux;
                ++i;
                break;
            }
            if (st.aux == 8 && (c == '\r' || c == '\n')) {
                ++i;
                if (c == '\r') {
                    st.state = S::request_line_cr;
                } else {
                    sink.count(Counter::http_requests);
                    st.state = S::field_start;
                }
                break;
            }
            to_conservative(st, cx, sink, Counter::http_error_request_line, S::c_skip_line);
            break;
        }
        case S::request_line_cr:
            if (d[i] != '\n') {
                to_conservative(st, cx, sink, Counter::http_error_bare_cr, S::c_line_start);
                break;
            }
            ++i;
            sink.count(Counter::http_requests);
            st.state = S::field_start;
            break;

        // ----------------------------------------------------------- field lines
        case S::field_start: {
            const uint8_t c = d[i];
            if (c == ' ' || c == '\t') {  // obs-fold: the previous field's value goes on
                switch (st.field) {
                case FieldKind::none:  // whitespace before the first field (RFC 9112 §2.2)
                    to_conservative(st, cx, sink, Counter::http_error_header_line, S::c_skip_line);
                    break;
                case FieldKind::content_length:
                    to_conservative(st, cx, sink, Counter::http_error_content_length, S::c_skip_line);
                    break;
                case FieldKind::transfer_encoding:
                    to_conservative(st, cx, sink, Counter::http_error_transfer_encoding, S::c_skip_line);
                    break;
                case FieldKind::host:
                    host_unusable(st);
                    st.field = FieldKind::other;
                    st.state = S::value_ows;
                    break;
                case FieldKind::gpc:  // a folded Sec-GPC: the continuation is not read
                    st.field = FieldKind::other;
                    st.state = S::value_ows;
                    break;
                case FieldKind::pseudonym:
                    // The value's first line has left (as a pseudonym): the
                    // rest cannot join it, so it is scrubbed.
                    if (!(st.flags & http_flag::scrubbing)) {
                        sink.count(Counter::http_pseudonym_split);
                        st.flags |= http_flag::scrubbing;
                    }
                    st.state = S::value_ows;
                    break;
                case FieldKind::identifier:
                case FieldKind::other:
                    st.state = S::value_ows;  // keeps the fold's whitespace, then the value as before
                    break;
                }
                break;
            }
            if (c == '\r') {
                st.state = S::blank_cr;
                ++i;
                break;
            }
            if (c == '\n') {
                ++i;
                end_of_fields(st, cx, sink);
                break;
            }
            if (!is_tchar(c)) {
                to_conservative(st, cx, sink, Counter::http_error_header_line, S::c_skip_line);
                break;
            }
            st.match = cx.matcher.start(c);
            st.field = FieldKind::none;
            st.state = S::name;
            ++i;
            break;
        }
        case S::name: {
            if (st.match.dead()) {
                while (i < n && is_tchar(d[i])) ++i;
            } else {
                while (i < n && is_tchar(d[i])) cx.matcher.step(st.match, d[i++]);
            }
            if (i == n) break;
            const uint8_t c = d[i];
            if (c == ':') {
                ++i;
                name_done(st, cx, sink);
            } else if (c == ' ' || c == '\t') {
                // Whitespace before the colon must be rejected (RFC 9112 §5.1),
                // but a lenient server may still take the name: scan it.
                to_conservative(st, cx, sink, Counter::http_error_header_line, S::c_name_ws);
            } else {
                to_conservative(st, cx, sink, Counter::http_error_header_line, S::c_name);
            }
            break;
        }
        case S::value_ows: {
            while (i < n && (d[i] == ' ' || d[i] == '\t')) ++i;
            if (i == n) break;
            switch (st.field) {
            case FieldKind::host: st.state = S::host_value; break;
            case FieldKind::content_length:
                st.aux = 0;
                st.remaining = 0;
                st.state = S::length_value;
                break;
            case FieldKind::transfer_encoding:
                st.aux = 0;
                st.state = S::coding_value;
                break;
            case FieldKind::gpc:
                st.aux = 0;
                st.state = S::gpc_value;
                break;
            default: st.state = S::value; break;
            }
            break;
        }
        case S::value: {
            const uint32_t start = i;
            i = find_cr_lf(d, i, n);
            if (st.field == FieldKind::pseudonym && !(st.flags & http_flag::scrubbing)) {
                // Whole in this piece: the line ends here with LF or CR LF.
                const bool whole = (st.flags & http_flag::pseudonym_pending) && i < n &&
                                   (d[i] == '\n' || (i + 1 < n && d[i + 1] == '\n'));
                st.flags &= uint16_t(~http_flag::pseudonym_pending);
                if (whole) {
                    if (i > start) sink.pseudonym(start, i - start, st.decision);
                } else {
                    sink.count(Counter::http_pseudonym_split);
                    st.flags |= http_flag::scrubbing;
                }
            }
            if (i > start) {
                if (st.flags & http_flag::scrubbing)
                    sink.scrub(start, i - start);
                else if (st.flags & http_flag::gpc_held_line)
                    sink.held_value(start, i - start);
            }
            if (i == n) break;
            if (d[i] == '\n') {
                st.state = S::field_start;
                ++i;
            } else if (i + 1 < n && d[i + 1] == '\n') {  // CR LF, the usual case
                st.state = S::field_start;
                i += 2;
            } else {
                st.state = S::value_cr;
                ++i;
            }
            break;
        }
        case S::value_cr:
            if (d[i] == '\n') {
                ++i;
                st.state = S::field_start;
                break;
            }
            // A bare CR. RFC 9112 §2.2 has servers read it as a space, so an
            // identifier's value goes on; a lenient one may end the line here,
            // so what follows is scanned as a new line too.
            to_conservative(
                st, cx, sink, Counter::http_error_bare_cr,
                st.field == FieldKind::identifier || st.field == FieldKind::pseudonym ? S::c_value : S::c_line_start);
            break;
        case S::host_value: {
            const uint32_t start = i;
            i = find_cr_lf(d, i, n);
            host_piece(st, cx, sink, d + start, i - start, i < n);
            if (i < n) st.state = S::value;  // ends the line
            break;
        }
        case S::length_value: {
            // aux: bits 0-1: 0 before a number, 1 in digits, 2 after digits;
            // bit 2: a number was read. Equal repeated values are one length.
            auto element = [&]() noexcept {
                if ((st.aux & 3) == 0) return true;
                if (st.flags & http_flag::length_seen) return st.content_length == st.remaining;
                st.content_length = st.remaining;
                st.flags |= http_flag::length_seen;
                return true;
            };
            bool ok = true;
            for (; i < n && ok; ++i) {
                const uint8_t c = d[i];
                if (c >= '0' && c <= '9') {
                    if ((st.aux & 3) == 2 || st.remaining > (UINT64_MAX - 9) / 10) {
                        ok = false;
                        break;
                    }
                    st.remaining = st.remaining * 10 + (c - '0');
                    st.aux = uint8_t((st.aux & ~3) | 1 | 4);
                } else if (c == ' ' || c == '\t') {
                    if ((st.aux & 3) == 1) st.aux = uint8_t((st.aux & ~3) | 2);
                } else if (c == ',') {
                    ok = element();
                    st.aux &= uint8_t(~3);
                    st.remaining = 0;
                } else {
                    break;
                }
            }
            if (ok && i == n) break;
            if (ok && (d[i] == '\r' || d[i] == '\n')) ok = element() && (st.aux & 4);
            if (!ok || (d[i] != '\r' && d[i] != '\n')) {
                to_conservative(st, cx, sink, Counter::http_error_content_length, S::c_skip_line);
                break;
            }
            st.state = S::value;  // ends the line
            break;
        }
        case S::coding_value: {
            // aux: bits 0-2: bytes of "chunked" matched; bit 3: not chunked;
            // bit 4: in a coding; bit 5: whitespace after a coding.
            static constexpr char kChunked[] = "chunked";
            auto element = [&]() noexcept {
                if (!(st.aux & 0x30)) return;
                if (!(st.aux & 8) && (st.aux & 7) == 7)
                    st.flags |= http_flag::te_chunked;
                else
                    st.flags &= uint16_t(~http_flag::te_chunked);
            };
            bool ok = true;
            for (; i < n; ++i) {
                const uint8_t c = d[i];
                if (is_tchar(c)) {
                    if (st.aux & 0x20) {  // "gzip chunked": not a list
                        ok = false;
                        break;
                    }
                    const unsigned pos = st.aux & 7;
                    if (!(st.aux & 8) && pos < 7 && http_chars::lower(c) == uint8_t(kChunked[pos]))
                        st.aux = uint8_t((st.aux & ~7) | (pos + 1) | 0x10);
                    else
                        st.aux |= 8 | 0x10;
                } else if (c == ' ' || c == '\t') {
                    if (st.aux & 0x10) st.aux = uint8_t((st.aux & ~0x10) | 0x20);
                } else if (c == ',') {
                    element();
                    st.aux = 0;
                } else {
                    break;
                }
            }
            if (ok && i == n) break;
            if (!ok || (d[i] != '\r' && d[i] != '\n')) {  // parameters, quotes, controls
                to_conservative(st, cx, sink, Counter::http_error_transfer_encoding, S::c_skip_line);
                break;
            }
            element();
            st.flags |= http_flag::te_seen;
            st.state = S::value;  // ends the line
            break;
        }
        case S::gpc_value: {
            // aux: 0 nothing read, 1 "1", 2 "1" and whitespace, 3 anything
            // else. Only a value of exactly "1" is the signal (the GPC spec).
            for (; i < n && d[i] != '\r' && d[i] != '\n'; ++i) {
                const uint8_t c = d[i];
                if (c == ' ' || c == '\t') {
                    if (st.aux == 1) st.aux = 2;
                } else {
                    st.aux = c == '1' && st.aux == 0 ? 1 : 3;
                }
            }
            if (i == n) break;
            if (st.aux == 1 || st.aux == 2) gpc_signal(st, sink);
            st.state = S::value;  // ends the line
            break;
        }
        case S::blank_cr:
            if (d[i] != '\n') {
                to_conservative(st, cx, sink, Counter::http_error_bare_cr, S::c_line_start);
                break;
            }
            ++i;
            end_of_fields(st, cx, sink);
            break;

        // ------------------------------------------------------------------ body
        case S::body: {
            const uint32_t take = uint32_t(std::min<uint64_t>(st.remaining, n - i));
            i += take;
            st.remaining -= take;
            if (st.remaining == 0) request_done(st, cx.hosts);
            break;
        }
        case S::chunk_size: {
            bool ok = true;
            for (; i < n; ++i) {
                const int v = hex_chars::value(char(d[i]));
                if (v < 0) break;
                if (st.aux >= 16) {  // more than 64 bits
                    ok = false;
                    break;
                }
                st.remaining = st.remaining << 4 | unsigned(v);
                ++st.aux;
            }
            if (ok && i == n) break;
            const uint8_t c = ok ? d[i] : 0;
            if (ok && st.aux > 0 && (c == ';' || c == ' ' || c == '\t')) {
                st.state = S::chunk_ext;
                ++i;
            } else if (ok && st.aux > 0 && c == '\r') {
                st.state = S::chunk_size_cr;
                ++i;
            } else if (ok && st.aux > 0 && c == '\n') {
                ++i;
                chunk_size_done(st);
            } else {
                to_conservative(st, cx, sink, Counter::http_error_chunk, S::c_skip_line);
            }
            break;
        }
        case S::chunk_ext:
            i = find_cr_lf(d, i, n);
            if (i == n) break;
            if (d[i++] == '\r') {
                st.state = S::chunk_size_cr;
                break;
            }
            chunk_size_done(st);
            break;
        case S::chunk_size_cr:
            if (d[i] != '\n') {
                to_conservative(st, cx, sink, Counter::http_error_bare_cr, S::c_line_start);
                break;
            }
            ++i;
            chunk_size_done(st);
            break;
        case S::chunk_data: {
            const uint32_t take = uint32_t(std::min<uint64_t>(st.remaining, n - i));
            i += take;
            st.remaining -= take;
            if (st.remaining == 0) st.state = S::chunk_data_end;
            break;
        }
        case S::chunk_data_end:
        case S::chunk_data_cr: {
            const uint8_t c = d[i];
            if (c == '\n') {
                ++i;
                st.remaining = 0;
                st.aux = 0;
                st.state = S::chunk_size;
            } else if (c == '\r' && st.state == S::chunk_data_end) {
                ++i;
                st.state = S::chunk_data_cr;
            } else {
                to_conservative(st, cx, sink,
                                st.state == S::chunk_data_cr ? Counter::http_error_bare_cr : Counter::http_error_chunk,
                                S::c_line_start);
            }
            break;
        }

        // ----------------------------------------------------- conservative mode
        case S::c_line_start: {
            const uint8_t c = d[i];
            if (c == '\r' || c == '\n') {
                ++i;
                break;
            }
            if (is_tchar(c)) {
                st.match = cx.matcher.start(c);
                if (!st.match.dead()) {
                    st.state = S::c_name;
                    ++i;
                    break;
                }
            }
            st.state = S::c_skip_line;
            break;
        }
        case S::c_name: {
            while (i < n && is_tchar(d[i]) && !st.match.dead()) cx.matcher.step(st.match, d[i++]);
            if (st.match.dead()) {
                st.state = S::c_skip_line;
                break;
            }
            if (i == n) break;
            const uint8_t c = d[i];
            if (c == ' ' || c == '\t') {
                st.state = S::c_name_ws;
                ++i;
                break;
            }
            if (c != ':') {
                st.state = c == '\r' || c == '\n' ? S::c_line_start : S::c_skip_line;
                break;
            }
            ++i;
            conservative_name_done(st, cx, sink);
            break;
        }
        case S::c_name_ws: {
            const uint8_t c = d[i];
            if (c == ' ' || c == '\t') {
                ++i;
                break;
            }
            if (c != ':') {
                st.state = c == '\r' || c == '\n' ? S::c_line_start : S::c_skip_line;
                break;
            }
            ++i;
            conservative_name_done(st, cx, sink);
            break;
        }
        case S::c_unknown_name: {
            while (i < n && (is_tchar(d[i]) || d[i] == ' ' || d[i] == '\t')) ++i;
            if (i == n) break;
            const uint8_t c = d[i];
            if (c != ':') {
                st.state = c == '\r' || c == '\n' ? S::c_line_start : S::c_skip_line;
                break;
            }
            ++i;
            const HttpDecision dec = sink.conservative_decision();
            sink.conservative_identifier(-1, dec);
            st.flags = passes(dec.verdict) ? 0 : http_flag::scrubbing;
            st.field = FieldKind::identifier;
            st.state = S::c_value_ows;
            break;
        }
        case S::c_value_ows:
            while (i < n && (d[i] == ' ' || d[i] == '\t')) ++i;
            if (i < n) st.state = S::c_value;
            break;
        case S::c_value: {
            // To the LF: in conservative mode a bare CR does not end a value.
            const uint32_t start = i;
            const void* lf = std::memchr(d + i, '\n', n - i);
            const uint32_t e = lf ? uint32_t(static_cast<const uint8_t*>(lf) - d) : n;
            uint32_t end = e;
            if (end > start && d[end - 1] == '\r') --end;  // CR of CR LF (or maybe, at the end of the piece)
            if ((st.flags & http_flag::scrubbing) && end > start) sink.scrub(start, end - start);
            if (lf) {
                i = e + 1;
                st.state = S::c_after_identifier;
            } else {
                i = n;
                if (end < e) st.state = S::c_value_cr;
            }
            break;
        }
        case S::c_value_cr:
            if (d[i] == '\n') {
                ++i;
                st.state = S::c_after_identifier;
            } else {
                st.state = S::c_value;  // the CR was bare and stays as it was
            }
            break;
        case S::c_after_identifier:
            st.state = d[i] == ' ' || d[i] == '\t' ? S::c_value_ows : S::c_line_start;  // obs-fold goes on scrubbing
            break;
        case S::c_skip_line:
            i = find_cr_lf(d, i, n);
            if (i < n) st.state = S::c_line_start;
            break;
        }
    }
}

}  // namespace optgate
