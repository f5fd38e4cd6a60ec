#include "core/dns_tcp_stage.hpp"

#include <algorithm>

#include "core/dns_stage.hpp"
#include "core/packet_edit.hpp"
#include "core/pipeline.hpp"

namespace optgate {
namespace {

namespace flag {
constexpr uint8_t query = 1 << 0;        // the message is a query: its OPT options are read
constexpr uint8_t owner_root = 1 << 1;   // the record's owner name is the root
constexpr uint8_t padding = 1 << 2;      // the option being read is made Padding
constexpr uint8_t counted = 1 << 3;      // the message's verdict was counted
constexpr uint8_t pointer = 1 << 4;      // a compression pointer's second byte is next
constexpr uint8_t name_start = 1 << 5;   // at a name's first byte
constexpr uint8_t in_question = 1 << 6;  // the name is a question's
constexpr uint8_t seen_opt = 1 << 7;     // the message had an OPT record
}  // namespace flag

// Rank for reusing a way: a forgotten flow's next segments pass or are
// dropped by the packet's verdict, so no flow needs keeping.
unsigned dns_eviction_rank(const DnsTcpFlow& f, uint32_t) noexcept { return (f.flags & DnsTcpFlow::kClosed) ? 0 : 1; }

// Remembers an option made Padding (from its code's first byte), or
// extends the last one when it is the same option.
void remember_padded(DnsTcpFlow& f, uint32_t seq, uint32_t len, bool keep_high) noexcept {
    if (f.padded_count > 0 && f.padded_seq[f.padded_count - 1] == seq) {
        f.padded_len[f.padded_count - 1] = uint16_t(len);
        return;
    }
    if (f.padded_count == DnsTcpFlow::kPadded) {
        const uint32_t end = f.padded_seq[0] + f.padded_len[0];
        if (seq_before(f.history_from, end)) f.history_from = end;
        f.flags |= DnsTcpFlow::kHistoryLost;
        for (unsigned i = 1; i < DnsTcpFlow::kPadded; ++i) {
            f.padded_seq[i - 1] = f.padded_seq[i];
            f.padded_len[i - 1] = f.padded_len[i];
            f.padded_keep_high[i - 1] = f.padded_keep_high[i];
        }
        --f.padded_count;
    }
    f.padded_seq[f.padded_count] = seq;
    f.padded_len[f.padded_count] = uint16_t(len);
    f.padded_keep_high[f.padded_count] = keep_high;
    ++f.padded_count;
}

}  // namespace

// The reader's view of one packet: the verdict, rewrites into the frame
// (and the flow's record), counters.
struct DnsTcpStage::Sink {
    BurstContext& ctx;
    BurstSlot& s;
    PacketRef& pkt;
    DnsTcpFlow& flow;
    uint32_t frame_base = 0;  // frame offset of the first byte fed
    uint32_t seq_base = 0;    // its stream sequence number
    bool changed = false;

    bool strips() noexcept { return !passes(ctx.packet_verdict(s)); }
    // An identifier option in a query: counts it (and the message's
    // verdict, once); true if it passes.
    bool identifier(int id, uint8_t& flags, bool force_strip) noexcept {
        const Verdict v = ctx.packet_verdict(s);
        if (!(flags & flag::counted)) {
            flags |= flag::counted;
            ctx.counters.add(Counter::dns_with_identifiers);
            ctx.counters.add(verdict_counter(v));
        }
        const bool passed = passes(v) && !force_strip;
        ctx.count_identifier(s.parsed, s.destination, id, passed);
        return passed;
    }
    // Sets `len` bytes at `offset` of the piece fed to `value`.
    void set(uint32_t offset, uint32_t len, uint8_t value) noexcept { fill(frame_base + offset, len, value); }
    // The option whose code starts `back` bytes before `offset` is Padding
    // up to `offset` + `len`.
    void padded(uint32_t offset, uint32_t back, uint32_t len, bool keep_high) noexcept {
        remember_padded(flow, seq_base + offset - back, back + len, keep_high);
    }
    void fill(uint32_t at, uint32_t len, uint8_t value) noexcept {
        const uint8_t* p = pkt.data + at;
        uint32_t k = 0;
        while (k < len && p[k] == value) ++k;
        if (k == len) return;  // already so: the frame stays byte-identical
        l4_fill_bytes(pkt.data, s.parsed, at, len, value);
        changed = true;
    }
    void count(Counter c) noexcept { ctx.counters.add(c); }
};

namespace {

// The streaming reader over one piece of a flow's stream.
class Reader {
public:
    Reader(DnsStreamState& st, const Runtime& rt) : st_(st), rt_(rt) {}

    template <class Sink>
    void feed(uint8_t* d, uint32_t n, Sink& sink) noexcept {
        using S = DnsTcpState;
        uint32_t i = 0;
        while (i < n) {
            if (st_.state == S::length_hi) {
                st_.value = uint16_t(d[i++] << 8);
                st_.state = S::length_lo;
                continue;
            }
            if (st_.state == S::length_lo) {
                st_.message_left = uint16_t(st_.value | d[i++]);
                st_ = DnsStreamState{st_.message_left};
                st_.state = S::header;
                if (st_.message_left == 0) {  // an empty message
                    sink.count(Counter::dns_malformed_header);
                    st_.state = S::length_hi;
                }
                continue;
            }
            const uint32_t avail = std::min<uint32_t>(n - i, st_.message_left);
            const uint32_t used = step(d, i, avail, i + 1 == n, sink);
            i += used;
            st_.message_left = uint16_t(st_.message_left - used);
            if (st_.message_left == 0) end_message(sink);
        }
    }

private:
    // One step inside a message at d[i], `avail` (>= 1) bytes of it here;
    // `last` says d[i] ends the piece. Returns the bytes consumed.
    template <class Sink>
    uint32_t step(uint8_t* d, uint32_t i, uint32_t avail, bool last, Sink& sink) noexcept {
        using S = DnsTcpState;
        const uint8_t c = d[i];
        switch (st_.state) {
        case S::header:
            switch (st_.aux) {
            case 2:
                if (c & 0x80) {  // QR=1: a response
                    sink.count(Counter::dns_not_query);
                    st_.state = S::skip;
                }
                break;
            case 4: st_.questions = uint16_t(c << 8); break;
            case 5: st_.questions = uint16_t(st_.questions | c); break;
            case 6:
            case 8:
            case 10: st_.value = uint16_t(c << 8); break;
            case 7:
            case 9:
            case 11: st_.records = uint16_t(st_.records + (st_.value | c)); break;
            default: break;
            }
            if (++st_.aux == 12 && st_.state == S::header) {
                st_.flags = flag::query;
                sink.count(Counter::dns_queries);
                next_item();
            }
            return 1;
        case S::name: {
            if (st_.left > 0) {
                const uint32_t take = std::min<uint32_t>(st_.left, avail);
                st_.left = uint16_t(st_.left - take);
                if (st_.left == 0 && (st_.flags & flag::pointer)) name_done();
                return take;
            }
            const bool first = st_.flags & flag::name_start;
            st_.flags &= uint8_t(~(flag::name_start | flag::owner_root | flag::pointer));
            if (c == 0) {
                if (first) st_.flags |= flag::owner_root;
                name_done();
            } else if ((c & 0xc0) == 0xc0) {  // a pointer ends the name (never followed)
                st_.flags |= flag::pointer;
                st_.left = 1;
            } else if (c & 0xc0) {  // 0x40 / 0x80: obsolete or reserved label types
                malformed(sink, Counter::dns_malformed_name);
            } else {
                st_.name_length = uint16_t(st_.name_length + c + 1);
                if (st_.name_length > kDnsMaxNameLength) {
                    malformed(sink, Counter::dns_malformed_name);
                } else {
                    st_.left = c;
                }
            }
            return 1;
        }
        case S::question_fixed: {
            const uint32_t take = std::min<uint32_t>(st_.left, avail);
            st_.left = uint16_t(st_.left - take);
            if (st_.left == 0) {
                --st_.questions;
                next_item();
            }
            return take;
        }
        case S::rr_fixed:
            switch (st_.aux) {
            case 0:
            case 8: st_.value = uint16_t(c << 8); break;
            case 1: st_.type = uint16_t(st_.value | c); break;
            case 9: st_.left = uint16_t(st_.value | c); break;  // RDLENGTH
            default: break;
            }
            if (++st_.aux == 10) {
                if (st_.type == kDnsTypeOpt && (st_.flags & flag::owner_root) && (st_.flags & flag::query)) {
                    if (st_.flags & flag::seen_opt) sink.count(Counter::dns_multiple_opt);  // each is read
                    st_.flags |= flag::seen_opt;
                    st_.rdata_left = st_.left;
                    st_.left = 0;
                    st_.state = S::opt_code_hi;
                    if (st_.rdata_left == 0) record_done();
                } else {
                    st_.state = S::rdata;
                    if (st_.left == 0) record_done();
                }
            }
            return 1;
        case S::rdata: {
            const uint32_t take = std::min<uint32_t>(st_.left, avail);
            st_.left = uint16_t(st_.left - take);
            if (st_.left == 0) record_done();
            return take;
        }
        case S::opt_code_hi:
            if (st_.rdata_left < 4) {  // an option that overruns the record
                sink.count(Counter::dns_malformed_opt);
                st_.left = st_.rdata_left;
                st_.state = S::rdata;
                if (st_.left == 0) record_done();
                return 0;
            }
            st_.value = uint16_t(c << 8);
            st_.rdata_left = uint16_t(st_.rdata_left - 1);
            st_.state = S::opt_code_lo;
            // The code's second byte is in the next segment: this one leaves
            // before we know the option. If it could be an identifier's, it
            // leaves as Padding's first byte, and the option will be Padding.
            if (last && rt_.dns_identifier_high_byte(c) && sink.strips()) {
                st_.flags |= flag::padding;
                sink.set(i, 1, 0);
                sink.padded(i, 0, 1, false);
            }
            return 1;
        case S::opt_code_lo: {
            const uint16_t code = uint16_t(st_.value | c);
            st_.rdata_left = uint16_t(st_.rdata_left - 1);
            st_.state = S::opt_len_hi;
            const int id = rt_.dns_identifier(code);
            const bool straddled = st_.flags & flag::padding;
            if (id >= 0) {
                if (sink.identifier(id, st_.flags, straddled)) return 1;
            } else if (!straddled) {
                return 1;
            } else {
                sink.count(Counter::dns_tcp_padded_straddling);
            }
            // Padding: the code's first byte (if it is in this piece; if it
            // left unchanged in an earlier one, the option becomes an
            // unknown one with zeroed content), its second, then its data.
            st_.flags |= flag::padding;
            if (i > 0 && !straddled) sink.set(i - 1, 1, 0);
            sink.set(i, 1, kDnsPaddingCode);
            sink.padded(i, 1, 1, i == 0 && !straddled);
            st_.aux = i == 0 && !straddled;  // the code's first byte left unchanged
            return 1;
        }
        case S::opt_len_hi:
            st_.value = uint16_t(c << 8);
            st_.rdata_left = uint16_t(st_.rdata_left - 1);
            st_.state = S::opt_len_lo;
            return 1;
        case S::opt_len_lo:
            st_.left = uint16_t(st_.value | c);
            st_.rdata_left = uint16_t(st_.rdata_left - 1);
            if (st_.left > st_.rdata_left) {  // overruns the record: treat its end as the option's
                sink.count(Counter::dns_malformed_opt);
                st_.left = st_.rdata_left;
            }
            if (st_.flags & flag::padding) sink.padded(i, 3, 1u + st_.left, st_.aux != 0);
            st_.state = S::opt_data;
            if (st_.left == 0) option_done();
            return 1;
        case S::opt_data: {
            const uint32_t take = std::min<uint32_t>(st_.left, avail);
            if (st_.flags & flag::padding) sink.set(i, take, 0);
            st_.left = uint16_t(st_.left - take);
            st_.rdata_left = uint16_t(st_.rdata_left - take);
            if (st_.left == 0) option_done();
            return take;
        }
        case S::skip: return avail;
        case S::length_hi:
        case S::length_lo: break;  // handled by feed()
        }
        return avail;
    }

    // The next question or record, or the rest of the message.
    void next_item() noexcept {
        st_.name_length = 1;
        st_.left = 0;
        st_.aux = 0;
        st_.flags |= flag::name_start;
        if (st_.questions > 0) {
            st_.flags |= flag::in_question;
            st_.state = DnsTcpState::name;
        } else if (st_.records > 0) {
            st_.flags &= uint8_t(~flag::in_question);
            st_.state = DnsTcpState::name;
        } else {
            st_.state = DnsTcpState::skip;
        }
    }
    void name_done() noexcept {
        st_.flags &= uint8_t(~flag::pointer);
        st_.aux = 0;
        if (st_.flags & flag::in_question) {
            st_.left = 4;
            st_.state = DnsTcpState::question_fixed;
        } else {
            st_.state = DnsTcpState::rr_fixed;
        }
    }
    void record_done() noexcept {
        --st_.records;
        next_item();
    }
    void option_done() noexcept {
        st_.flags &= uint8_t(~flag::padding);
        if (st_.rdata_left == 0)
            record_done();
        else
            st_.state = DnsTcpState::opt_code_hi;
    }
    template <class Sink>
    void malformed(Sink& sink, Counter why) noexcept {
        sink.count(why);
        st_.state = DnsTcpState::skip;
    }
    // The message's last byte was read.
    template <class Sink>
    void end_message(Sink& sink) noexcept {
        if (st_.state != DnsTcpState::skip) sink.count(Counter::dns_malformed_record);  // ended early
        st_.state = DnsTcpState::length_hi;
        st_.flags = 0;
    }

    DnsStreamState& st_;
    const Runtime& rt_;
};

}  // namespace

DnsTcpStage::DnsTcpStage(const DnsTcpStageConfig& config)
    : table_(config.flow_capacity, config.idle_timeout_ns), fingerprint_(StreamFingerprint::random()) {}

void DnsTcpStage::process_burst(PacketRef* pkts, BurstSlot* slots, const uint8_t* list, uint32_t count,
                                BurstContext& ctx) noexcept {
    for (uint32_t k = 0; k < count; ++k) {
        const uint32_t i = list[k];
        BurstSlot& s = slots[i];
        const ParsedPacket& p = s.parsed;
        if (p.payload_len == 0 && !(p.tcp_flags & (tcp_flag::syn | tcp_flag::fin | tcp_flag::rst))) continue;
        process(pkts[i], s, ctx);
    }
}

void DnsTcpStage::process(PacketRef& pkt, BurstSlot& s, BurstContext& ctx) noexcept {
    WorkerCounters& c = ctx.counters;
    const ParsedPacket& p = s.parsed;
    const uint8_t flags = p.tcp_flags;
    const uint32_t now = flow_ticks(pkt.timestamp_ns);
    const FlowKey key = FlowKey::from(p);
    Table::Entry* e = table_.find(key, s.flow_hash);
    if (flags & tcp_flag::rst) {
        if (e) table_.erase(e);
        return;
    }
    uint32_t seq = p.tcp_seq;
    if (flags & tcp_flag::syn) {
        // Every SYN starts the flow over (as in the HTTP stage).
        if (!e) {
            e = table_.insert(key, s.flow_hash, now, dns_eviction_rank, [](DnsTcpFlow&) {}).entry;
            if (!e) return;  // cannot happen: no flow is kept (dns_eviction_rank)
            c.add(Counter::dns_tcp_flows);
        }
        e->value = DnsTcpFlow{};
        ++seq;
        e->value.next_seq = e->value.history_from = seq;
    } else if (!e) {
        if (p.payload_len == 0) return;
        // Met mid-stream: where its messages start is unknown.
        c.add(Counter::dns_tcp_segments);
        if (!passes(ctx.packet_verdict(s))) {
            pkt.action = Action::drop;
            c.add(Counter::dns_tcp_midstream_dropped);
        }
        return;
    }
    e->last_seen = now;
    if (p.payload_len) payload(e->value, pkt, s, ctx, seq);
    if (flags & tcp_flag::fin) e->value.flags |= DnsTcpFlow::kClosed;
}

void DnsTcpStage::payload(DnsTcpFlow& f, PacketRef& pkt, BurstSlot& s, BurstContext& ctx, uint32_t seq) noexcept {
    WorkerCounters& c = ctx.counters;
    const ParsedPacket& p = s.parsed;
    const uint32_t len = p.payload_len;
    c.add(Counter::dns_tcp_segments);
    Sink sink{ctx, s, pkt, f, p.payload_offset, seq};
    uint32_t off = 0;
    const int32_t gap = int32_t(seq - f.next_seq);
    if (gap > 0) {
        pkt.action = Action::drop;  // TCP resends the hole first
        c.add(Counter::dns_tcp_out_of_order_dropped);
        return;
    }
    if (gap < 0) {
        const uint32_t seen = uint32_t(-int64_t(gap)) < len ? uint32_t(-int64_t(gap)) : len;
        const Counter why = replay(f, sink, seq, seen);
        if (why != Counter::dns_tcp_retransmitted) {
            pkt.action = Action::drop;
            c.add(why);
            return;
        }
        c.add(why);
        off = seen;
    }
    if (off < len) {
        uint8_t* d = pkt.data + p.payload_offset + off;
        sink.frame_base = p.payload_offset + off;
        sink.seq_base = seq + off;
        Reader(f.reader, ctx.runtime).feed(d, len - off, sink);
        const uint32_t n = len - off;
        uint32_t forgotten = seq + len;
        if (n > 0xffff || f.forwarded.push(seq + off, n, fingerprint_(d, n), forgotten)) {
            if (seq_before(f.history_from, forgotten)) f.history_from = forgotten;
            f.flags |= DnsTcpFlow::kHistoryLost;
        }
        f.next_seq = seq + len;
    }
    if (sink.changed) {
        s.changed = true;
        c.add(Counter::dns_tcp_rewritten);
    }
}

Counter DnsTcpStage::replay(DnsTcpFlow& f, Sink& sink, uint32_t seq, uint32_t len) noexcept {
    if (seq_before(seq, f.history_from)) return Counter::dns_tcp_retransmit_dropped;
    const uint32_t end = seq + len;
    // Sets the bytes of [a, b) inside the retransmission to v.
    auto fill = [&](uint32_t a, uint32_t b, uint8_t v) noexcept {
        const uint32_t from = seq_before(a, seq) ? seq : a;
        const uint32_t to = seq_before(end, b) ? end : b;
        if (seq_before(from, to)) sink.fill(sink.frame_base + (from - seq), to - from, v);
    };
    for (unsigned r = 0; r < f.padded_count; ++r) {
        const uint32_t a = f.padded_seq[r], n = f.padded_len[r];
        if (!f.padded_keep_high[r]) fill(a, a + 1, 0);
        if (n > 1) fill(a + 1, a + 2, kDnsPaddingCode);
        if (n > 4) fill(a + 4, a + n, 0);
    }
    switch (f.forwarded.check(seq, sink.pkt.data + sink.frame_base, len, fingerprint_)) {
    case ForwardedRecord::Check::consistent: return Counter::dns_tcp_retransmitted;
    case ForwardedRecord::Check::inconsistent: return Counter::dns_tcp_retransmit_inconsistent;
    case ForwardedRecord::Check::unverifiable: return Counter::dns_tcp_retransmit_unverified;
    }
    return Counter::dns_tcp_retransmit_unverified;
}

}  // namespace optgate
