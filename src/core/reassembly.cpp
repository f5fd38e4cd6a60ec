#include "core/reassembly.hpp"

#include <algorithm>
#include <bit>
#include <cstring>

#include "core/big_endian.hpp"
#include "core/checksum.hpp"

namespace optgate {

using big_endian::load16;
using big_endian::store16;

struct Reassembly::Datagram {
    uint64_t expires_ns = 0;
    Family family = Family::v4;
    uint8_t proto = 0;  // IPv4 only: part of the RFC 791 key (IPv6 uses addresses and id)
    bool complete = false;
    bool have_last = false;
    uint32_t id = 0;
    std::array<uint8_t, 16> src{}, dst{};
    uint32_t head = kNone, tail = kNone;   // fragments, in arrival order
    uint32_t first = kNone;                // the offset-0 fragment
    uint32_t total = 0;                    // data bytes, once the last fragment is in
    uint32_t high = 0;                     // end of the highest data so far
    uint32_t received = 0;                 // data bytes held (fragments never overlap)
    uint32_t max_ip = 0;                   // largest IP length of a fragment: the path MTU to keep
    uint32_t l3 = 0, link = 0;             // of the first fragment (ParsedPacket::l3_offset, fragment_link)
    std::array<uint64_t, kWords> have{};   // 8-byte units of data held
    std::array<uint64_t, kWords> start{};  // units where a held fragment starts
};

namespace {

bool test_bit(const uint64_t* bits, size_t u) noexcept { return bits[u / 64] >> (u % 64) & 1; }

// Whether any (all) bits in [from, to) are set.
bool any_set(const uint64_t* bits, size_t from, size_t to) noexcept {
    for (size_t u = from; u < to; ++u)
        if (test_bit(bits, u)) return true;
    return false;
}
bool all_set(const uint64_t* bits, size_t from, size_t to) noexcept {
    for (size_t u = from; u < to; ++u)
        if (!test_bit(bits, u)) return false;
    return true;
}
void set_range(uint64_t* bits, size_t from, size_t to) noexcept {
    for (size_t u = from; u < to; ++u) bits[u / 64] |= uint64_t(1) << (u % 64);
}

uint32_t header_sum(const uint8_t* ip, unsigned ihl) noexcept {
    // The IPv4 header without its checksum field, for checksum::update.
    return checksum::sum(ip + 12, ihl - 12, checksum::sum(ip, 10));
}

}  // namespace

Reassembly::Reassembly(const ReassemblyConfig& config)
    : config_(config), slots_(uint32_t(std::max<size_t>(config.datagrams, 1))),
      blocks_(uint32_t(std::max<size_t>(config.memory / kBlockBytes, 1))), hash_(std::make_unique<uint64_t[]>(slots_)),
      bucket_mask_(uint32_t(std::bit_ceil(size_t(slots_) * 2) - 1)),
      bucket_(std::make_unique<uint32_t[]>(size_t(bucket_mask_) + 1)), chain_(std::make_unique<uint32_t[]>(slots_)),
      free_slot_(std::make_unique<uint32_t[]>(slots_)), datagrams_(std::make_unique<Datagram[]>(slots_)),
      bytes_(std::make_unique<uint8_t[]>(size_t(blocks_) * kBlockBytes)),
      next_block_(std::make_unique<uint32_t[]>(blocks_)), fragments_(std::make_unique<Fragment[]>(blocks_)),
      decision_set_mask_(uint32_t(std::bit_ceil(std::max<size_t>(config.decisions / kDecisionWays, 1)) - 1)),
      decided_(std::make_unique<Decided[]>((size_t(decision_set_mask_) + 1) * kDecisionWays)),
      frame_(std::make_unique<uint8_t[]>(kMaxFrame)), out_(std::make_unique<uint8_t[]>(kMaxFrame)) {
    for (uint32_t b = 0; b < blocks_; ++b) next_block_[b] = b + 1 < blocks_ ? b + 1 : kNone;
    for (uint32_t b = 0; b <= bucket_mask_; ++b) bucket_[b] = kNone;
    for (uint32_t k = 0; k < slots_; ++k) free_slot_[k] = slots_ - 1 - k;  // slot 0 first
    free_slots_ = slots_;
    free_block_ = 0;
    free_blocks_ = blocks_;
}

Reassembly::~Reassembly() = default;

uint64_t Reassembly::key_of(const ParsedPacket& p) noexcept {
    // FNV-1a over what identifies a datagram: addresses, protocol (IPv4), id.
    const unsigned alen = p.family == Family::v4 ? 4 : 16;
    uint64_t h = 0xcbf29ce484222325ull;
    auto mix = [&h](uint8_t b) { h = (h ^ b) * 0x100000001b3ull; };
    mix(uint8_t(p.family));
    for (unsigned i = 0; i < alen; ++i) mix(p.src[i]);
    for (unsigned i = 0; i < alen; ++i) mix(p.dst[i]);
    if (p.family == Family::v4) mix(p.l4_proto);  // RFC 791 reassembly key; IPv6 uses (src, dst, id)
    for (int s = 0; s < 32; s += 8) mix(uint8_t(p.fragment_id >> s));
    return h | 1;  // never 0, the empty key
}

Reassembly::Decision Reassembly::decided(uint64_t key, uint64_t now) const noexcept {
    const Decided* set = decided_.get() + (key >> 20 & decision_set_mask_) * kDecisionWays;
    for (size_t w = 0; w < kDecisionWays; ++w)
        if (set[w].key == key && set[w].expires_ns > now) return set[w].decision;
    return Decision::none;
}

void Reassembly::decide(uint64_t key, Decision d, uint64_t expires) noexcept {
    Decided* set = decided_.get() + (key >> 20 & decision_set_mask_) * kDecisionWays;
    Decided* victim = nullptr;
    for (size_t w = 0; w < kDecisionWays && !victim; ++w)
        if (set[w].key == key) victim = set + w;
    if (d == Decision::none) {
        if (victim) *victim = Decided{};
        return;
    }
    if (!victim) {
        victim = set;
        for (size_t w = 1; w < kDecisionWays; ++w)
            if (set[w].expires_ns < victim->expires_ns) victim = set + w;  // the one expiring first
    }
    *victim = Decided{key, expires, d};
}

Reassembly::Step Reassembly::accept(const uint8_t* frame, const ParsedPacket& p, Need need, uint64_t now,
                                    WorkerCounters& c, const Emitter& emit, uint32_t& datagram) noexcept {
    const uint64_t key = key_of(p);
    const Decision known = decided(key, now);
    if (!p.first_fragment) {
        // A later fragment: what its datagram's first fragment decided, if
        // it came. A "pass" that is really another datagram's (hash
        // collision, id reuse) only lets later fragments through whose
        // first fragment is held here: that datagram never completes, and
        // the receiver cannot reassemble it either.
        if (known == Decision::pass || need == Need::none) return Step::forward;
        if (known == Decision::drop) {
            c.add(Counter::fragment_dropped);
            return Step::drop;
        }
    } else if (need == Need::none || need == Need::tiny) {
        const uint32_t d = find(p, key, now, c);
        if (need == Need::none && (d == kNone || datagrams_[d].first == kNone)) {
            if (d != kNone) release(d, now, c, emit);  // later fragments that came first
            decide(key, Decision::pass, now + timeout(p.family));
            return Step::forward;
        }
        // Tiny, or a second first fragment that disagrees with the one held
        // (an overlap of the headers): the whole datagram goes.
        if (d != kNone) discard(d, Decision::drop, now);
        decide(key, Decision::drop, now + timeout(p.family));
        c.add(need == Need::tiny ? Counter::fragment_tiny : Counter::fragment_overlap);
        c.add(Counter::fragment_dropped);
        return Step::drop;
    } else if (known == Decision::drop) {
        c.add(Counter::fragment_dropped);
        return Step::drop;
    } else if (known == Decision::pass) {
        decide(key, Decision::none, 0);  // a new datagram with the id of one that passed
    }
    uint32_t d = find(p, key, now, c);
    if (d == kNone && decided(key, now) == Decision::drop) {
        c.add(Counter::fragment_dropped);  // find() just found its datagram timed out
        return Step::drop;
    }
    if (d == kNone) d = make(p, key, now, c);
    if (d == kNone) {
        c.add(Counter::fragment_store_full);
        c.add(Counter::fragment_dropped);
        return Step::drop;
    }
    const Step step = hold(d, frame, p, c);
    if (step == Step::drop) discard(d, Decision::drop, now);
    datagram = d;
    return step;
}

bool Reassembly::expire_if_due(uint32_t d, uint64_t now, WorkerCounters& c) noexcept {
    if (hash_[d] == 0 || datagrams_[d].complete || datagrams_[d].expires_ns > now) return false;
    c.add(Counter::fragment_timeout);
    discard(d, Decision::drop, now);
    return true;
}

uint32_t Reassembly::find(const ParsedPacket& p, uint64_t key, uint64_t now, WorkerCounters& c) noexcept {
    // A little of the expiry sweep, then the datagram's chain.
    for (int k = 0; k < 2; ++k) {
        expire_if_due(hand_, now, c);
        hand_ = hand_ + 1 == slots_ ? 0 : hand_ + 1;
    }
    const unsigned alen = p.family == Family::v4 ? 4 : 16;
    for (uint32_t k = bucket(key); k != kNone; k = chain_[k]) {
        const Datagram& g = datagrams_[k];
        if (hash_[k] != key || g.family != p.family || g.id != p.fragment_id ||
            (p.family == Family::v4 && g.proto != p.l4_proto) || std::memcmp(g.src.data(), p.src, alen) != 0 ||
            std::memcmp(g.dst.data(), p.dst, alen) != 0)
            continue;
        return expire_if_due(k, now, c) ? kNone : k;
    }
    return kNone;
}

uint32_t Reassembly::make(const ParsedPacket& p, uint64_t key, uint64_t now, WorkerCounters& c) noexcept {
    if (free_slots_ == 0)
        for (uint32_t k = 0; k < slots_; ++k) expire_if_due(k, now, c);  // the whole sweep, only when full
    if (free_slots_ == 0) return kNone;
    const uint32_t k = free_slot_[--free_slots_];
    Datagram& g = datagrams_[k];
    g.expires_ns = now + timeout(p.family);  // from the first fragment to arrive (RFC 791, RFC 8200)
    g.family = p.family;
    g.proto = p.l4_proto;
    g.complete = g.have_last = false;
    g.id = p.fragment_id;
    const unsigned alen = p.family == Family::v4 ? 4 : 16;
    std::memcpy(g.src.data(), p.src, alen);
    std::memcpy(g.dst.data(), p.dst, alen);
    g.head = g.tail = g.first = kNone;
    g.total = g.high = g.received = g.max_ip = 0;
    g.have.fill(0);
    g.start.fill(0);
    hash_[k] = key;
    chain_[k] = bucket(key);
    bucket(key) = k;
    ++live_;
    return k;
}

Reassembly::Step Reassembly::hold(uint32_t d, const uint8_t* frame, const ParsedPacket& p, WorkerCounters& c) noexcept {
    Datagram& g = datagrams_[d];
    if (g.complete) {
        c.add(Counter::fragment_duplicate);  // a copy arriving in the burst that completed it
        c.add(Counter::fragment_dropped);
        return Step::held;  // not a reason to discard the whole one
    }
    const uint32_t off = p.fragment_offset;
    const uint32_t len = p.ip_end - p.fragment_data;
    const uint32_t end = off + len;
    const bool last = !p.more_fragments;
    // Empty, not a multiple of 8 before the end (RFC 8200 §4.5, RFC 791),
    // past 65535 bytes, beyond the end the last fragment set, or a last
    // fragment that ends before data already held.
    const bool malformed = len == 0 || (!last && len % 8 != 0) || end > 65535 || (g.have_last && end > g.total) ||
                           (last && g.have_last && end != g.total) || (last && end < g.high);
    if (malformed) {
        c.add(Counter::fragment_malformed);
        c.add(Counter::fragment_dropped);
        return Step::drop;
    }
    const size_t u0 = off / 8, u1 = (end + 7) / 8;
    if (any_set(g.have.data(), u0, u1)) {
        // An exact copy (same start, same end) is dropped alone (RFC 5722
        // §4); anything else overlapping discards the datagram (RFC 5722).
        const bool exact = test_bit(g.start.data(), u0) && !any_set(g.start.data(), u0 + 1, u1) &&
                           all_set(g.have.data(), u0, u1) &&
                           (u1 >= kUnits || !test_bit(g.have.data(), u1) || test_bit(g.start.data(), u1)) &&
                           (!last || (g.have_last && end == g.total));
        if (exact) {
            c.add(Counter::fragment_duplicate);
            c.add(Counter::fragment_dropped);
            return Step::held;  // consumed; the datagram stays
        }
        c.add(Counter::fragment_overlap);
        c.add(Counter::fragment_dropped);
        return Step::drop;
    }
    const uint32_t block = store(frame, p.ip_end);
    if (block == kNone) {
        c.add(Counter::fragment_store_full);
        c.add(Counter::fragment_dropped);
        return Step::drop;
    }
    fragments_[block] = Fragment{kNone, p.ip_end, p.fragment_data, off, len};
    if (g.tail == kNone)
        g.head = block;
    else
        fragments_[g.tail].next = block;
    g.tail = block;
    set_range(g.have.data(), u0, u1);
    set_range(g.start.data(), u0, u0 + 1);
    g.received += len;
    g.high = std::max(g.high, end);
    g.max_ip = std::max(g.max_ip, p.ip_end - p.l3_offset);
    if (off == 0) {
        g.first = block;
        g.l3 = p.l3_offset;
        g.link = p.fragment_link;
    }
    if (last) {
        g.have_last = true;
        g.total = end;
    }
    c.add(Counter::fragment_held);
    if (g.have_last && g.first != kNone && g.received == g.total) {
        g.complete = true;
        return Step::complete;
    }
    return Step::held;
}

uint32_t Reassembly::store(const uint8_t* frame, uint32_t len) noexcept {
    const uint32_t need = (len + kBlockBytes - 1) / kBlockBytes;
    if (need == 0 || need > free_blocks_) return kNone;
    const uint32_t head = free_block_;
    uint32_t b = head;
    for (uint32_t i = 0;; ++i) {
        const uint32_t n = std::min(kBlockBytes, len - i * kBlockBytes);
        std::memcpy(bytes_.get() + size_t(b) * kBlockBytes, frame + size_t(i) * kBlockBytes, n);
        if (i + 1 == need) break;
        b = next_block_[b];
    }
    free_block_ = next_block_[b];
    next_block_[b] = kNone;
    free_blocks_ -= need;
    return head;
}

void Reassembly::copy_out(uint32_t block, uint32_t from, uint32_t len, uint8_t* to) const noexcept {
    while (from >= kBlockBytes) {
        block = next_block_[block];
        from -= kBlockBytes;
    }
    while (len) {
        const uint32_t n = std::min(len, kBlockBytes - from);
        std::memcpy(to, bytes_.get() + size_t(block) * kBlockBytes + from, n);
        to += n;
        len -= n;
        from = 0;
        block = next_block_[block];
    }
}

void Reassembly::free_fragments(Datagram& g) noexcept {
    for (uint32_t f = g.head; f != kNone; f = fragments_[f].next) {
        uint32_t b = f;
        for (;;) {
            const uint32_t next = next_block_[b];
            next_block_[b] = free_block_;
            free_block_ = b;
            ++free_blocks_;
            if (next == kNone) break;
            b = next;
        }
    }
    g.head = g.tail = g.first = kNone;
}

void Reassembly::discard(uint32_t d, Decision decision, uint64_t now) noexcept {
    Datagram& g = datagrams_[d];
    free_fragments(g);
    const uint64_t key = hash_[d];
    if (decision != Decision::none) decide(key, decision, now + timeout(g.family));
    for (uint32_t* at = &bucket(key); *at != kNone; at = &chain_[*at]) {
        if (*at == d) {
            *at = chain_[d];
            break;
        }
    }
    hash_[d] = 0;
    free_slot_[free_slots_++] = d;
    --live_;
}

void Reassembly::release(uint32_t d, uint64_t now, WorkerCounters& c, const Emitter& emit) noexcept {
    for (uint32_t f = datagrams_[d].head; f != kNone; f = fragments_[f].next) {
        copy_out(f, 0, fragments_[f].frame_len, out_.get());
        emit(out_.get(), fragments_[f].frame_len);
        c.add(Counter::fragment_emitted);
    }
    c.add(Counter::fragment_released);
    discard(d, Decision::pass, now);
}

uint32_t Reassembly::assemble(uint32_t d, WorkerCounters& c) noexcept {
    const Datagram& g = datagrams_[d];
    const Fragment& f0 = fragments_[g.first];
    const bool v4 = g.family == Family::v4;
    // The headers: the first fragment's frame up to its data, without the
    // IPv6 fragment header.
    const uint32_t hdr = v4 ? f0.data_at : f0.data_at - 8;
    const uint32_t len = hdr + g.total;
    const uint32_t ip_len = len - g.l3;
    if (len > kMaxFrame || ip_len > 65535u + (v4 ? 0u : 40u)) {
        c.add(Counter::fragment_malformed);  // more than an IP datagram holds
        c.add(Counter::fragment_dropped);
        return 0;
    }
    uint8_t* out = frame_.get();
    copy_out(g.first, 0, hdr, out);
    for (uint32_t f = g.head; f != kNone; f = fragments_[f].next)
        copy_out(f, fragments_[f].data_at, fragments_[f].len, out + hdr + fragments_[f].offset);
    uint8_t* ip = out + g.l3;
    if (v4) {
        // Total length and fragment fields, checksum patched (a wrong one
        // stays wrong). DF and the reserved bit stay.
        const uint16_t old_len = load16(ip + 2), old_frag = load16(ip + 6);
        const uint16_t new_len = uint16_t(ip_len), new_frag = old_frag & 0xc000;
        store16(ip + 2, new_len);
        store16(ip + 6, new_frag);
        store16(ip + 10, checksum::update(load16(ip + 10), uint32_t(old_len) + old_frag, uint32_t(new_len) + new_frag));
    } else {
        uint8_t next = 0;
        copy_out(g.first, f0.data_at - 8, 1, &next);  // the fragment header's next header
        store16(ip + 4, uint16_t(ip_len - 40));
        out[g.link] = next;
    }
    c.add(Counter::fragment_reassembled);
    return len;
}

void Reassembly::refragment(uint32_t d, uint32_t len, WorkerCounters& c, const Emitter& emit) noexcept {
    const Datagram& g = datagrams_[d];
    const uint8_t* pkt = frame_.get();
    const uint8_t* ip = pkt + g.l3;
    const bool v4 = g.family == Family::v4;
    const uint32_t hdr_end = v4 ? g.l3 + (ip[0] & 0x0fu) * 4 : fragments_[g.first].data_at - 8;
    uint32_t ip_len = v4 ? load16(ip + 2) : 40u + load16(ip + 4);
    ip_len = std::min(ip_len, len - g.l3);
    if (ip_len <= g.max_ip) {
        emit(pkt, g.l3 + ip_len);  // fits the largest fragment: whole (no IPv6 atomic fragment)
        c.add(Counter::fragment_emitted);
        return;
    }
    const uint8_t* data = pkt + hdr_end;
    const uint32_t data_len = g.l3 + ip_len - hdr_end;
    uint8_t* out = out_.get();
    if (v4) {
        const unsigned ihl = (ip[0] & 0x0fu) * 4;
        // Later fragments carry only the options with the copied flag (RFC 791).
        uint8_t later[60];
        std::memcpy(later, ip, 20);
        unsigned later_len = 20;
        for (unsigned o = 20; o < ihl;) {
            const uint8_t type = ip[o];
            if (type == 0) break;  // end of options
            if (type == 1) {
                ++o;
                continue;
            }
            const unsigned olen = o + 1 < ihl ? ip[o + 1] : 0;
            if (olen < 2 || o + olen > ihl) break;  // malformed: keep what was copied
            if (type & 0x80) {
                std::memcpy(later + later_len, ip + o, olen);
                later_len += olen;
            }
            o += olen;
        }
        while (later_len % 4) later[later_len++] = 0;
        const uint32_t old_sum = header_sum(ip, ihl);
        const uint16_t flags = load16(ip + 6) & 0xc000;
        for (uint32_t off = 0; off < data_len;) {
            const unsigned h = off == 0 ? ihl : later_len;
            const uint32_t room = g.max_ip >= h + 8 ? (g.max_ip - h) & ~7u : 8;
            const uint32_t piece = std::min(room, data_len - off);
            const bool more = off + piece < data_len;
            std::memcpy(out, pkt, g.l3);
            uint8_t* o = out + g.l3;
            std::memcpy(o, off == 0 ? ip : later, h);
            std::memcpy(o + h, data + off, piece);
            o[0] = uint8_t(0x40 | h / 4);
            store16(o + 2, uint16_t(h + piece));
            store16(o + 6, uint16_t(flags | (more ? 0x2000 : 0) | off / 8));
            store16(o + 10, checksum::update(load16(ip + 10), old_sum, header_sum(o, h)));
            emit(out, g.l3 + h + piece);
            c.add(Counter::fragment_emitted);
            off += piece;
        }
        return;
    }
    const uint32_t h = hdr_end - g.l3;  // IPv6 header and the headers before the fragment header
    const uint8_t next = pkt[g.link];
    const uint32_t room = g.max_ip >= h + 16 ? (g.max_ip - h - 8) & ~7u : 8;
    for (uint32_t off = 0; off < data_len;) {
        const uint32_t piece = std::min(room, data_len - off);
        const bool more = off + piece < data_len;
        std::memcpy(out, pkt, hdr_end);
        out[g.link] = 44;
        store16(out + g.l3 + 4, uint16_t(h - 40 + 8 + piece));
        uint8_t* fh = out + hdr_end;
        fh[0] = next;
        fh[1] = 0;
        store16(fh + 2, uint16_t(off | (more ? 1 : 0)));
        fh[4] = uint8_t(g.id >> 24);
        fh[5] = uint8_t(g.id >> 16);
        fh[6] = uint8_t(g.id >> 8);
        fh[7] = uint8_t(g.id);
        std::memcpy(fh + 8, data + off, piece);
        emit(out, hdr_end + 8 + piece);
        c.add(Counter::fragment_emitted);
        off += piece;
    }
}

void Reassembly::finish(uint32_t d, uint64_t now) noexcept {
    // Nothing remembered: the next datagram may reuse the id (IPv4 ids
    // wrap after 65536 datagrams). A late copy of a fragment starts a
    // datagram that never completes and times out.
    discard(d, Decision::none, now);
}

}  // namespace optgate
