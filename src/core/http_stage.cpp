#include "core/http_stage.hpp"

#include <algorithm>
#include <cstring>
#include <utility>

#include "core/packet_edit.hpp"
#include "core/pipeline.hpp"
#include "core/pseudonym.hpp"

namespace optgate {
namespace {

// A flow that scrubbed something keeps its entry while it may still see
// retransmissions of those bytes: a sender with unacknowledged data resends
// within its retransmission timeout, so a flow idle this long has none in
// flight that it is not already backing off from for tens of seconds.
constexpr uint32_t kScrubGraceTicks = flow_ticks(30ull * 1000000000ull);
// A closed flow's entry serves retransmissions of its last segments this
// long before it is reused ahead of live flows.
constexpr uint32_t kClosedGraceTicks = flow_ticks(5ull * 1000000000ull);
// A flow stopped inside an identifier line keeps its entry this long, past
// the idle timeout: losing it would let the rest of the value through if the
// sender went on. Web servers abandon a stalled request header within a
// minute or two, so after an hour nothing can still deliver it.
constexpr uint32_t kIdentifierLineHoldTicks = flow_ticks(3600ull * 1000000000ull);

// Rank for reusing a way. Never: a flow inside an identifier line (for an
// hour, even past the idle timeout), or one that scrubbed bytes and was
// active in the last 30 s (a retransmission of those bytes to a forgotten
// flow could start in the middle of a value, which conservative mode cannot
// recognise). First: flows closed more than 5 s ago. Then the others,
// oldest first: their next segment is read in conservative mode from a line
// start.
unsigned http_eviction_rank(const HttpFlow& f, uint32_t idle_ticks) noexcept {
    if (HttpParser::in_identifier_line(f.parser) && idle_ticks <= kIdentifierLineHoldTicks)
        return HttpStage::Table::kKeep;
    if (f.scrub_count > 0 && idle_ticks <= kScrubGraceTicks) return HttpStage::Table::kKeep;
    return (f.flags & HttpFlow::kClosed) && idle_ticks > kClosedGraceTicks ? 0 : 1;
}

// `pseudonym`: the range holds a pseudonym (never merged with a neighbour:
// it is recomputed from exactly its own bytes).
void push_scrubbed(HttpFlow& f, uint32_t seq, uint32_t len, bool pseudonym = false) noexcept {
    if (f.scrub_count > 0 && !pseudonym) {
        const unsigned last = f.scrub_count - 1u;
        if (!(f.pseudonyms >> last & 1u) && f.scrub_seq[last] + f.scrub_len[last] == seq &&
            f.scrub_len[last] + len <= 0xffffu) {
            f.scrub_len[last] = uint16_t(f.scrub_len[last] + len);
            return;
        }
    }
    if (f.scrub_count == HttpFlow::kScrubRanges) {
        f.history_from = f.scrub_seq[0] + f.scrub_len[0];
        f.flags |= HttpFlow::kHistoryLost;
        for (unsigned i = 1; i < HttpFlow::kScrubRanges; ++i) {
            f.scrub_seq[i - 1] = f.scrub_seq[i];
            f.scrub_len[i - 1] = f.scrub_len[i];
        }
        f.pseudonyms = uint8_t(f.pseudonyms >> 1);
        --f.scrub_count;
    }
    f.scrub_seq[f.scrub_count] = seq;
    f.scrub_len[f.scrub_count] = uint16_t(len);
    if (pseudonym) f.pseudonyms = uint8_t(f.pseudonyms | 1u << f.scrub_count);
    ++f.scrub_count;
}

// A held line stripped on Sec-GPC (http_parser.hpp) may come before lines
// of the same segment already recorded: keep the record oldest first.
void insert_scrubbed(HttpFlow& f, uint32_t seq, uint32_t len) noexcept {
    push_scrubbed(f, seq, len);
    for (unsigned at = f.scrub_count - 1u; at > 0 && seq_before(f.scrub_seq[at], f.scrub_seq[at - 1]); --at) {
        std::swap(f.scrub_seq[at], f.scrub_seq[at - 1]);
        std::swap(f.scrub_len[at], f.scrub_len[at - 1]);
        const unsigned a = f.pseudonyms >> at & 1u, b = f.pseudonyms >> (at - 1) & 1u;
        f.pseudonyms = uint8_t((f.pseudonyms & ~(3u << (at - 1))) | b << at | a << (at - 1));
    }
}

}  // namespace

// The parser's view of one packet: decisions from the verdict rule, scrubs
// into the frame (and the flow's record of scrubbed ranges).
struct HttpStage::Sink {
    // The held-line arrays are written before they are read (counts below):
    // left uninitialised, so that a segment does not pay for zeroing them.
    // NOLINTNEXTLINE(cppcoreguidelines-pro-type-member-init)
    Sink(BurstContext& c, BurstSlot& slot, PacketRef& p, HttpFlow* rec, uint32_t fb, uint32_t sb, uint8_t fill_byte)
        : ctx(c), s(slot), pkt(p), record(rec), frame_base(fb), seq_base(sb), filler(fill_byte) {}

    BurstContext& ctx;
    BurstSlot& s;
    PacketRef& pkt;
    HttpFlow* record = nullptr;  // where scrubbed ranges are remembered; null: not remembered
    uint32_t frame_base = 0;     // frame offset of the first byte fed
    uint32_t seq_base = 0;       // its stream sequence number
    uint8_t filler = 0;
    bool changed = false;
    bool conservative_known = false;
    bool conservative_counted = false;
    HttpDecision conservative{};

    HttpDecision request_decision() noexcept {
        release();  // the previous request's lines: no Sec-GPC can reach them now
        const Verdict v = ctx.packet_verdict(s);
        return {v, s.destination.counter_slot};
    }
    HttpDecision host_decision(std::string_view host) noexcept {
        const ParsedPacket& p = s.parsed;
        const Destination d = ctx.runtime.classify(p.family, p.dst, p.dst_port, &host);
        return {ctx.verdict_for(p, d), d.counter_slot};
    }
    HttpDecision conservative_decision() noexcept {
        if (!conservative_known) {
            ctx.packet_verdict(s);  // fills s.destination (address and port)
            Verdict v = ctx.verdict_for(s.parsed, s.destination, true);
            // Without framing, where a value ends is a guess: no pseudonym.
            if (pseudonymises(v)) v = Verdict::strip_out_of_sync;
            conservative = {v, s.destination.counter_slot};
            conservative_known = true;
        }
        return conservative;
    }
    // Global Privacy Control: identifier lines that pass but that a
    // Sec-GPC: 1 later in this segment would strip are held (counted later)
    // with their value bytes' ranges, so that the signal can still strip
    // them before the segment leaves.
    static constexpr unsigned kHeldLines = 4, kHeldRanges = 8;
    struct Held {  // NOLINT(cppcoreguidelines-pro-type-member-init): written before read (held_count)
        int id;
        HttpDecision d;
        bool first;
    };
    Held held[kHeldLines];
    uint32_t range_off[kHeldRanges], range_len[kHeldRanges];
    uint8_t held_count = 0, range_count = 0;
    bool range_lost = false;

    IdentifierHold identifier(int id, const HttpDecision& d, bool first_of_request) noexcept {
        if ((d.verdict == Verdict::pass_consent || pseudonymises(d.verdict)) && ctx.runtime.honours_gpc(d.dest_slot)) {
            if (held_count < kHeldLines) {
                held[held_count++] = {id, d, first_of_request};
                return IdentifierHold::held;
            }
            count_identifier(id, d, first_of_request);
            return IdentifierHold::exposed;
        }
        count_identifier(id, d, first_of_request);
        return IdentifierHold::counted;
    }
    void count_identifier(int id, const HttpDecision& d, bool first_of_request) noexcept {
        if (first_of_request) {
            ctx.counters.add(verdict_counter(d.verdict));
            ctx.counters.add(Counter::http_requests_with_identifiers);
        }
        count_line(id, d);
    }
    void held_value(uint32_t offset, uint32_t len) noexcept {
        if (range_count == kHeldRanges) {
            range_lost = true;  // these bytes leave whatever comes
            return;
        }
        range_off[range_count] = offset;
        range_len[range_count++] = len;
    }
    HttpDecision gpc_decision(const HttpDecision& d) const noexcept {
        return {with_gpc(d.verdict, ctx.runtime.honours_gpc(d.dest_slot)), d.dest_slot};
    }
    // All or nothing: with a value piece not remembered, the held lines
    // pass as they are (and the parser counts the signal too late).
    bool gpc() noexcept {
        if (range_lost) {
            release();
            return false;
        }
        for (unsigned k = 0; k < range_count; ++k) {
            fill(frame_base + range_off[k], range_len[k]);
            if (record) insert_scrubbed(*record, seq_base + range_off[k], range_len[k]);
        }
        for (unsigned k = 0; k < held_count; ++k) count_identifier(held[k].id, gpc_decision(held[k].d), held[k].first);
        held_count = range_count = 0;
        return true;
    }
    // The held lines pass: their request ended, or their segment is done.
    void release() noexcept {
        for (unsigned k = 0; k < held_count; ++k) count_identifier(held[k].id, held[k].d, held[k].first);
        held_count = range_count = 0;
        range_lost = false;
    }
    void conservative_identifier(int id, const HttpDecision& d) noexcept {
        if (!conservative_counted) {  // one verdict per packet in conservative mode
            ctx.counters.add(verdict_counter(d.verdict));
            conservative_counted = true;
        }
        count_line(id, d);
    }
    void count_line(int id, const HttpDecision& d) noexcept {
        const bool pseudonym = pseudonymises(d.verdict);
        const bool passed = passes(d.verdict) || pseudonym;
        const bool gpc = d.verdict == Verdict::strip_gpc;
        if (gpc) ctx.counters.add(Counter::http_gpc_stripped);
        if (id >= 0) {
            Destination dest;
            dest.counter_slot = d.dest_slot;
            ctx.count_identifier(s.parsed, dest, id, passed, gpc, pseudonym);
        } else {  // name lost at a policy change: destination only
            (passed ? ctx.counters.destination_passed : ctx.counters.destination_stripped)[d.dest_slot]++;
        }
    }
    void scrub(uint32_t offset, uint32_t len) noexcept {
        fill(frame_base + offset, len);
        if (record) push_scrubbed(*record, seq_base + offset, len);
    }
    // A whole value toward a pseudonym collector: its pseudonym, or filler
    // when the key is gone (a policy change since the line's decision) or
    // the flow's record holds another key's pseudonyms.
    void pseudonym(uint32_t offset, uint32_t len, const HttpDecision& d) noexcept {
        const PseudonymKey* key = ctx.runtime.pseudonym_key(d.dest_slot);
        const unsigned number = ctx.runtime.pseudonym_number(d.dest_slot);
        if (key && record && record->pseudonyms != 0 && record->pseudonym_key != number) {
            ctx.counters.add(Counter::http_pseudonym_unrecorded);
            key = nullptr;
        }
        if (!key) {
            scrub(offset, len);
            return;
        }
        write_pseudonym(*key, frame_base + offset, len);
        ctx.counters.add(Counter::http_pseudonymised);
        if (record) {
            push_scrubbed(*record, seq_base + offset, len, true);
            record->pseudonym_key = uint8_t(number);
        }
    }
    void write_pseudonym(const PseudonymKey& key, uint32_t at, uint32_t len) noexcept {
        const uint32_t old_sum = l4_run_sum(pkt.data, s.parsed, at, len);
        pseudonymise(key, pkt.data + at, len, pkt.data + at);
        l4_bytes_rewritten(pkt.data, s.parsed, at, len, old_sum);
        changed = true;
    }
    void fill(uint32_t at, uint32_t len) noexcept {
        const uint8_t* p = pkt.data + at;
        uint32_t k = 0;
        while (k < len && p[k] == filler) ++k;
        if (k == len) return;  // already filler: leave the packet byte-identical
        l4_fill_bytes(pkt.data, s.parsed, at, len, filler);
        changed = true;
    }
    void count(Counter c) noexcept { ctx.counters.add(c); }
};

HttpStage::HttpStage(const HttpStageConfig& config)
    : config_(config), table_(config.flow_capacity, config.idle_timeout_ns), hosts_(config.host_buffers),
      fingerprint_(StreamFingerprint::random()) {}

HttpStage::~HttpStage() = default;

void HttpStage::prepare(const Runtime& rt, Enforcement& enforcement) noexcept {
    if (&rt == runtime_) return;
    // Once per policy change, and nothing allocates: the matcher was built
    // by Runtime::compile; this takes a reference to it. Pin the runtime so
    // that pointer equality means "same policy" (a freed runtime's address
    // could be reused).
    std::shared_ptr<const Runtime> current = enforcement.runtime();
    pinned_ = current.get() == &rt ? std::move(current) : nullptr;
    runtime_ = pinned_ ? &rt : nullptr;
    const std::shared_ptr<const HeaderMatcher>& m = rt.header_matcher();
    bool same = matcher_ && m->names().size() == matcher_->names().size();
    for (size_t i = 0; same && i < m->names().size(); ++i)
        same = m->names()[i].name == matcher_->names()[i].name &&
               m->names()[i].identifier == matcher_->names()[i].identifier &&
               m->names()[i].prefix == matcher_->names()[i].prefix;
    // Match states in flows belong to a matcher's name order: a different
    // list of names starts a new generation (HttpParser::policy_changed).
    if (!same && ++generation_ == 0) generation_ = 1;
    matcher_ = m;
    use_host_ = rt.has_host_rules();
}

void HttpStage::process_burst(PacketRef* pkts, BurstSlot* slots, const uint8_t* list, uint32_t count, BurstContext& ctx,
                              Enforcement& enforcement) noexcept {
    // First pass: keys, and the flow's entry line (classify already loaded
    // the bucket's signatures). Second pass: the work.
    uint32_t m = 0;
    for (uint32_t k = 0; k < count; ++k) {
        const uint32_t i = list[k];
        const BurstSlot& s = slots[i];
        const ParsedPacket& p = s.parsed;
        // A bare ACK carries nothing to read and changes no state.
        if (p.payload_len == 0 && !(p.tcp_flags & (tcp_flag::syn | tcp_flag::fin | tcp_flag::rst))) continue;
        keys_[m] = FlowKey::from(p);
        table_.prefetch_entry(s.flow_hash);
        todo_[m++] = uint8_t(i);
    }
    if (m == 0) return;
    prepare(ctx.runtime, enforcement);
    for (uint32_t j = 0; j < m; ++j) {
        const uint32_t i = todo_[j];
        BurstSlot& s = slots[i];
        process(pkts[i], s, ctx, keys_[j], s.flow_hash);
    }
}

void HttpStage::forget(Table::Entry* e) noexcept {
    HttpParser::release(e->value.parser, hosts_);
    table_.erase(e);
}

HttpStage::Table::Entry* HttpStage::make_entry(const FlowKey& key, uint64_t hash, uint32_t now,
                                               BurstContext& ctx) noexcept {
    const Table::InsertResult r = table_.insert(key, hash, now, http_eviction_rank,
                                                [&](HttpFlow& old) { HttpParser::release(old.parser, hosts_); });
    if (!r.entry) {
        ctx.counters.add(Counter::http_flow_table_full);
        return nullptr;
    }
    ctx.counters.add(Counter::http_flows);
    if (r.evicted) ctx.counters.add(Counter::http_flows_evicted);
    return r.entry;
}

void HttpStage::process(PacketRef& pkt, BurstSlot& s, BurstContext& ctx, const FlowKey& key, uint64_t hash) noexcept {
    WorkerCounters& c = ctx.counters;
    const ParsedPacket& p = s.parsed;
    const uint8_t flags = p.tcp_flags;
    const uint32_t now = flow_ticks(pkt.timestamp_ns);
    Table::Entry* e = table_.find(key, hash);
    if (flags & tcp_flag::rst) {
        // The connection is over; RST payload is never delivered to the server.
        if (e) {
            forget(e);
            c.add(Counter::http_flows_reset);
        }
        return;
    }
    uint32_t seq = p.tcp_seq;
    if (flags & tcp_flag::syn) {
        // Every SYN starts the flow over, even one with the ISN the flow
        // started with: a new connection that reused the 4-tuple and the ISN
        // must never have its bytes taken for retransmissions (whose rewrite
        // is replayed, not parsed). A late duplicate SYN after data makes the
        // connection's next segments look out of order (dropped): a stall,
        // never a leak.
        if (e && (e->value.next_seq != seq + 1 || e->value.parser.state != HttpState::request_start)) {
            c.add(Counter::http_flows_reused);  // a new connection on the same 4-tuple
        } else if (!e && !(e = make_entry(key, hash, now, ctx))) {
            pkt.action = Action::drop;
            return;
        }
        HttpFlow& f = e->value;
        HttpParser::reset(f.parser, hosts_, generation_);
        f = HttpFlow{f.parser};
        ++seq;  // the SYN takes one sequence number; data (TCP Fast Open) follows it
        f.next_seq = f.history_from = seq;
    } else if (!e) {
        if (p.payload_len == 0) return;  // FIN of a flow we do not know
        if (!(e = make_entry(key, hash, now, ctx))) {
            pkt.action = Action::drop;
            return;
        }
        HttpFlow& f = e->value;
        HttpParser::reset_conservative(f.parser, hosts_, generation_);
        f = HttpFlow{f.parser};
        f.next_seq = f.history_from = seq;
        f.flags = HttpFlow::kMidstream;
        c.add(Counter::http_midstream_flows);
        c.add(Counter::http_conservative_flows);
    }
    e->last_seen = now;
    if (p.payload_len) payload(*e, pkt, s, ctx, seq);
    if (flags & tcp_flag::fin) e->value.flags |= HttpFlow::kClosed;
}

void HttpStage::payload(Table::Entry& e, PacketRef& pkt, BurstSlot& s, BurstContext& ctx, uint32_t seq) noexcept {
    WorkerCounters& c = ctx.counters;
    HttpFlow& f = e.value;
    const ParsedPacket& p = s.parsed;
    const uint32_t len = p.payload_len;
    c.add(Counter::http_segments);
    Sink sink{ctx, s, pkt, &f, p.payload_offset, seq, uint8_t(ctx.runtime.policy().strip_filler)};
    uint32_t off = 0;
    const int32_t gap = int32_t(seq - f.next_seq);
    if (gap < 0) {
        // Bytes already seen: the same rewrite as the first time.
        const uint32_t seen = uint32_t(-int64_t(gap)) < len ? uint32_t(-int64_t(gap)) : len;
        const Counter why = replay(f, sink, seq, seen);
        if (why != Counter::http_retransmitted) {
            pkt.action = Action::drop;
            c.add(why);
            return;
        }
        c.add(Counter::http_retransmitted);
        off = seen;
    } else if (gap > 0) {
        if (f.hole_len != 0 || gap > 0xffff || !HttpParser::can_skip(f.parser, uint32_t(gap))) {
            // A hole before bytes that may be field lines: let TCP resend.
            pkt.action = Action::drop;
            c.add(Counter::http_out_of_order_dropped);
            return;
        }
        HttpParser::skip(f.parser, hosts_, uint32_t(gap));  // body bytes: never read anyway
        f.hole_seq = f.next_seq;
        f.hole_len = uint16_t(gap);
        f.next_seq = seq;
        c.add(Counter::http_out_of_order_skipped);
    }
    if (off < len) {
        const HttpParseContext cx{*matcher_, hosts_, generation_, use_host_};
        sink.frame_base = p.payload_offset + off;
        sink.seq_base = seq + off;
        const bool was_conservative = HttpParser::conservative(f.parser);
        // Body bytes at the front that the parser skips unread need no
        // fingerprint: a retransmission may change them without effect.
        const HttpParserState& st = f.parser;
        uint32_t unread = 0;
        if (st.state == HttpState::body || st.state == HttpState::chunk_data)
            unread = uint32_t(std::min<uint64_t>(st.remaining, len - off));
        HttpParser::feed(f.parser, cx, pkt.data + p.payload_offset + off, len - off, sink);
        sink.release();
        if (off + unread < len)
            remember_forwarded(f, seq + off + unread, pkt.data + p.payload_offset + off + unread, len - off - unread);
        f.next_seq = seq + len;
        if (was_conservative || HttpParser::conservative(f.parser)) c.add(Counter::http_conservative_packets);
    }
    if (sink.changed) {
        s.changed = true;
        c.add(Counter::http_rewritten);
    }
}

void HttpStage::remember_forwarded(HttpFlow& f, uint32_t seq, const uint8_t* d, uint32_t n) noexcept {
    uint32_t forgotten = seq + n;  // a run too long to record is forgotten at once
    if (n <= 0xffff && !f.forwarded.push(seq, n, fingerprint_(d, n), forgotten)) return;
    if (seq_before(f.history_from, forgotten)) f.history_from = forgotten;
    f.flags |= HttpFlow::kHistoryLost;
}

// Gives bytes already seen the rewrite recorded for them and checks them
// against what was forwarded. Returns http_retransmitted, or why to drop.
Counter HttpStage::replay(HttpFlow& f, Sink& sink, uint32_t seq, uint32_t len) noexcept {
    const uint32_t end = seq + len;
    const uint32_t frame0 = sink.frame_base;  // frame offset of `seq`
    // The open hole's bytes were never seen and hold nothing to scrub; only
    // the bytes outside it need the record. The hole closes from its front.
    uint32_t needs_record = seq;  // first byte outside the hole
    uint32_t hole_seq = f.hole_seq, hole_len = f.hole_len;
    if (hole_len != 0) {
        const uint32_t hole_end = f.hole_seq + f.hole_len;
        if (!seq_before(seq, f.hole_seq) && seq_before(seq, hole_end))
            needs_record = seq_before(end, hole_end) ? end : hole_end;
        if (!seq_before(f.hole_seq, seq) && seq_before(f.hole_seq, end)) {
            hole_seq = seq_before(end, hole_end) ? end : hole_end;
            hole_len = hole_end - hole_seq;
        }
    }
    if (needs_record != end && seq_before(needs_record, f.history_from)) {
        if (!(f.flags & HttpFlow::kMidstream) || (f.flags & HttpFlow::kHistoryLost))
            return Counter::http_retransmit_dropped;
        // A flow met mid-stream: these bytes are from before the first one we
        // saw. Scan them on their own, in conservative mode.
        const uint32_t upto = seq_before(end, f.history_from) ? end : f.history_from;
        HttpParserState st;
        HttpParser::reset_conservative(st, hosts_, generation_);
        const HttpParseContext cx{*matcher_, hosts_, generation_, use_host_};
        HttpFlow* record = sink.record;
        sink.record = nullptr;
        sink.frame_base = frame0 + (needs_record - seq);
        HttpParser::feed(st, cx, sink.pkt.data + sink.frame_base, upto - needs_record, sink);
        HttpParser::release(st, hosts_);
        sink.record = record;
        sink.frame_base = frame0;
        sink.ctx.counters.add(Counter::http_midstream_unseen);
    }
    // Pseudonyms first: a value held for Sec-GPC and then scrubbed has a
    // filler range over its pseudonym range, and the filler is what left.
    const PseudonymKey* key = f.pseudonyms ? sink.ctx.runtime.pseudonym_key_by_number(f.pseudonym_key) : nullptr;
    for (unsigned pass = 0; pass < 2; ++pass) {
        for (unsigned r = 0; r < f.scrub_count; ++r) {
            const bool pseudonym = (f.pseudonyms >> r & 1u) != 0;
            if (pseudonym != (pass == 0)) continue;
            const uint32_t a = f.scrub_seq[r], b = a + f.scrub_len[r];
            const uint32_t from = seq_before(a, seq) ? seq : a;
            const uint32_t to = seq_before(end, b) ? end : b;
            if (!seq_before(from, to)) continue;
            // A pseudonym is computed from the whole value; a part of one (or
            // one whose key is gone: a policy change or a new period) gets
            // filler, which the fingerprint check then refuses.
            if (pseudonym && key && from == a && to == b)
                sink.write_pseudonym(*key, frame0 + (from - seq), to - from);
            else
                sink.fill(frame0 + (from - seq), to - from);
        }
    }
    // Now they read as forwarded, if they are the same bytes.
    switch (f.forwarded.check(seq, sink.pkt.data + frame0, len, fingerprint_)) {
    case ForwardedRecord::Check::consistent: break;
    case ForwardedRecord::Check::inconsistent: return Counter::http_retransmit_inconsistent;
    case ForwardedRecord::Check::unverifiable: return Counter::http_retransmit_unverified;
    }
    f.hole_seq = hole_seq;
    f.hole_len = uint16_t(hole_len);
    return Counter::http_retransmitted;
}

}  // namespace optgate
