#include "core/packet_edit.hpp"

#include <cstring>

#include "core/big_endian.hpp"
#include "core/checksum.hpp"

namespace optgate {
namespace {

using big_endian::load16;
using big_endian::store16;

uint32_t checksum_field_offset(const ParsedPacket& p) noexcept {
    return p.l4_offset + (p.l4_proto == kProtoTcp ? 16u : 6u);
}

// Writes an updated L4 checksum; `udp` keeps 0 meaning "none" (IPv4) and
// turns a computed 0 into 0xffff (RFC 768).
void store_l4_checksum(uint8_t* at, uint16_t value, bool udp) noexcept {
    if (udp && value == 0) value = 0xffff;
    store16(at, value);
}

// A folded sum taken at the other parity: its bytes swapped.
uint32_t swapped(uint32_t sum) noexcept {
    const uint16_t f = checksum::fold(sum);
    return uint16_t(f << 8 | f >> 8);
}

// ---- outer headers of an encapsulated packet (ParsedPacket::outer) ----
//
// An edit of the inner packet changes bytes that outer checksums (GRE's,
// the UDP checksum of VXLAN, Geneve, GTP-U, L2TP) also cover, and a length
// change shrinks every outer length. The edit records what it changed as
// one's-complement sums at frame parity (a byte at an even frame offset is
// the high byte of a word); fix_outer() then walks the outer fields from the
// innermost out, patching each incrementally and adding its own changes for
// the layers around it.
struct Changes {
    uint32_t old_sum = 0, new_sum = 0;
    void word(uint32_t offset, uint16_t old_word, uint16_t new_word) noexcept {
        if (offset & 1) {
            old_word = uint16_t(old_word << 8 | old_word >> 8);
            new_word = uint16_t(new_word << 8 | new_word >> 8);
        }
        old_sum += old_word;
        new_sum += new_word;
    }
    // Sums of a changed run taken relative to the L4 header's parity.
    void l4_run(const ParsedPacket& p, uint32_t old_run, uint32_t new_run) noexcept {
        if (p.l4_offset & 1) {
            old_run = swapped(old_run);
            new_run = swapped(new_run);
        }
        old_sum += checksum::fold(old_run);
        new_sum += checksum::fold(new_run);
    }
};

// A length-changing edit: the bytes from `from` to the end of the inner
// segment before and after (frame parity), and the bytes after it that
// moved down by `removed` (inner Ethernet padding, UDP trailers), which
// outer checksums also cover.
struct MovedTail {
    const uint8_t* frame;
    uint32_t inner_old, inner_new;
    uint32_t inner_end;  // after the edit
    uint32_t removed;
    // Old and new sums of [from, end) for an outer layer ending at `end` (after the edit).
    void add(uint32_t end, uint32_t& old_sum, uint32_t& new_sum) const noexcept {
        old_sum += inner_old;
        new_sum += inner_new;
        if (end <= inner_end) return;
        const uint32_t moved = checksum::sum(frame + inner_end, end - inner_end, 0, (inner_end & 1) != 0);
        old_sum += removed & 1 ? swapped(moved) : checksum::fold(moved);
        new_sum += checksum::fold(moved);
    }
};

void shrink16(uint8_t* field, uint32_t field_offset, uint32_t removed, Changes& ch) noexcept {
    const uint16_t before = load16(field);
    const uint16_t after = uint16_t(before - removed);
    store16(field, after);
    ch.word(field_offset, before, after);
}

// Patches an outer checksum over [start, end) (end after the edit) whose
// covered bytes changed by `ch` (and `tail`); `extra_old`/`extra_new` are
// changes in checksum-relative parity (UDP length, pseudo-header).
void patch_outer_checksum(uint8_t* frame, uint32_t start, uint32_t field_offset, uint32_t end, const Changes& ch,
                          const MovedTail* tail, uint32_t extra_old, uint32_t extra_new, bool udp,
                          Changes& record) noexcept {
    uint32_t old_sum = ch.old_sum, new_sum = ch.new_sum;
    if (tail) tail->add(end, old_sum, new_sum);
    if (start & 1) {
        old_sum = swapped(old_sum);
        new_sum = swapped(new_sum);
    }
    uint8_t* field = frame + field_offset;
    const uint16_t stored = load16(field);
    store_l4_checksum(field, checksum::update(stored, old_sum + extra_old, new_sum + extra_new), udp);
    record.word(field_offset, stored, load16(field));
}

void fix_outer(uint8_t* frame, const ParsedPacket& p, Changes ch, uint32_t removed, const MovedTail* tail) noexcept {
    for (unsigned i = p.outer_count; i-- > 0;) {
        const OuterField& f = p.outer[i];
        const uint32_t o = f.offset;
        uint8_t* h = frame + o;
        switch (f.kind) {
        case OuterField::Kind::ipv4:
            if (removed) {
                const uint16_t old_total = load16(h + 2);
                shrink16(h + 2, o + 2, removed, ch);
                const uint16_t old_check = load16(h + 10);
                store16(h + 10, checksum::update16(old_check, old_total, load16(h + 2)));
                ch.word(o + 10, old_check, load16(h + 10));
            }
            break;
        case OuterField::Kind::ipv6:   // payload length
        case OuterField::Kind::pppoe:  // payload length
            if (removed) shrink16(h + 4, o + 4, removed, ch);
            break;
        case OuterField::Kind::gtpu:
        case OuterField::Kind::l2tp:
            if (removed) shrink16(h + 2, o + 2, removed, ch);
            break;
        case OuterField::Kind::udp: {
            const uint16_t old_len = load16(h + 4);
            const uint16_t new_len = uint16_t(old_len - removed);
            Changes mine;
            // Zero: no checksum (IPv4, and IPv6 tunnels by RFC 6935); stays zero.
            if (load16(h + 6) != 0)
                patch_outer_checksum(frame, o, o + 6, o + new_len, ch, tail, 2u * old_len, 2u * new_len, true, mine);
            if (removed) shrink16(h + 4, o + 4, removed, mine);
            ch.old_sum += mine.old_sum;
            ch.new_sum += mine.new_sum;
            break;
        }
        case OuterField::Kind::gre_checksum: {
            Changes mine;
            patch_outer_checksum(frame, o, o + 4, f.end - removed, ch, tail, 0, 0, false, mine);
            ch.old_sum += mine.old_sum;
            ch.new_sum += mine.new_sum;
            break;
        }
        }
    }
}

}  // namespace

uint32_t l4_tail_sum(const uint8_t* frame, const ParsedPacket& p, uint32_t from) noexcept {
    // The segment ends where its payload does: for UDP that is the UDP
    // length, which may stop short of the IP payload (receivers ignore the
    // bytes after it, and so does the checksum).
    const uint32_t end = p.payload_offset + p.payload_len;
    return checksum::sum(frame + from, end - from, 0, ((from - p.l4_offset) & 1) != 0);
}

uint32_t udp_remove_bytes(uint8_t* frame, uint32_t frame_len, ParsedPacket& p, uint32_t from, uint32_t at,
                          uint32_t count, uint32_t old_tail_sum) noexcept {
    std::memmove(frame + at, frame + at + count, frame_len - at - count);
    frame_len -= count;
    p.ip_end -= count;
    p.payload_len -= count;

    uint8_t* udp = frame + p.l4_offset;
    const uint16_t old_udp_len = load16(udp + 4);
    const uint16_t new_udp_len = uint16_t(old_udp_len - count);
    store16(udp + 4, new_udp_len);

    uint8_t* ip = frame + p.l3_offset;
    const uint16_t old_ip_check = p.family == Family::v4 ? load16(ip + 10) : 0;
    const uint32_t ip_length_at = p.l3_offset + (p.family == Family::v4 ? 2 : 4);
    const uint16_t old_ip_length = load16(frame + ip_length_at);
    store16(frame + ip_length_at, uint16_t(old_ip_length - count));
    if (p.family == Family::v4)
        store16(ip + 10, checksum::update16(old_ip_check, old_ip_length, uint16_t(old_ip_length - count)));

    uint8_t* field = frame + checksum_field_offset(p);
    const uint16_t stored = load16(field);
    const uint32_t new_tail_sum = l4_tail_sum(frame, p, from);
    // Zero over IPv4: the sender sent no checksum.
    if (p.family == Family::v6 || stored != 0) {
        // What changed: the tail, and the UDP length twice (header and pseudo-header).
        const uint32_t old_sum = old_tail_sum + old_udp_len + old_udp_len;
        const uint32_t new_sum = new_tail_sum + new_udp_len + new_udp_len;
        store_l4_checksum(field, checksum::update(stored, old_sum, new_sum), true);
    }
    if (p.outer_count) [[unlikely]] {
        Changes ch;
        ch.word(p.l4_offset + 4, old_udp_len, new_udp_len);
        ch.word(checksum_field_offset(p), stored, load16(field));
        ch.word(ip_length_at, old_ip_length, uint16_t(old_ip_length - count));
        if (p.family == Family::v4) ch.word(p.l3_offset + 10, old_ip_check, load16(ip + 10));
        const bool odd = (p.l4_offset & 1) != 0;
        const MovedTail tail{frame, odd ? swapped(old_tail_sum) : checksum::fold(old_tail_sum),
                             odd ? swapped(new_tail_sum) : checksum::fold(new_tail_sum),
                             p.payload_offset + p.payload_len, count};
        fix_outer(frame, p, ch, count, &tail);
    }
    return frame_len;
}

void l4_fill_bytes(uint8_t* frame, const ParsedPacket& p, uint32_t at, uint32_t len, uint8_t fill) noexcept {
    const bool odd = ((at - p.l4_offset) & 1) != 0;
    const uint32_t old_sum = checksum::sum(frame + at, len, 0, odd);
    std::memset(frame + at, fill, len);
    // The filled run's sum without reading it back: len/2 words of
    // fill:fill, plus a lone high byte if len is odd; swapped when odd.
    uint32_t new_sum = (len / 2) * (uint32_t(fill) << 8 | fill);
    if (len & 1) new_sum += uint32_t(fill) << 8;
    new_sum = checksum::fold(new_sum);
    if (odd) new_sum = (new_sum & 0xff) << 8 | new_sum >> 8;
    uint8_t* field = frame + checksum_field_offset(p);
    const uint16_t stored = load16(field);
    const bool udp = p.l4_proto == kProtoUdp;
    if (!(udp && p.family == Family::v4 && stored == 0))
        store_l4_checksum(field, checksum::update(stored, old_sum, new_sum), udp);
    if (p.outer_count) [[unlikely]] {
        Changes ch;
        ch.l4_run(p, old_sum, new_sum);
        ch.word(checksum_field_offset(p), stored, load16(field));
        fix_outer(frame, p, ch, 0, nullptr);
    }
}

uint32_t l4_run_sum(const uint8_t* frame, const ParsedPacket& p, uint32_t at, uint32_t len) noexcept {
    return checksum::sum(frame + at, len, 0, ((at - p.l4_offset) & 1) != 0);
}

void l4_bytes_rewritten(uint8_t* frame, const ParsedPacket& p, uint32_t at, uint32_t len, uint32_t old_sum) noexcept {
    const uint32_t new_sum = l4_run_sum(frame, p, at, len);
    uint8_t* field = frame + checksum_field_offset(p);
    const uint16_t stored = load16(field);
    const bool udp = p.l4_proto == kProtoUdp;
    if (!(udp && p.family == Family::v4 && stored == 0))
        store_l4_checksum(field, checksum::update(stored, old_sum, new_sum), udp);
    if (p.outer_count) [[unlikely]] {
        Changes ch;
        ch.l4_run(p, old_sum, new_sum);
        ch.word(checksum_field_offset(p), stored, load16(field));
        fix_outer(frame, p, ch, 0, nullptr);
    }
}

uint8_t get_dscp(const uint8_t* frame, const ParsedPacket& p) noexcept {
    const uint8_t* ip = frame + p.l3_offset;
    if (p.family == Family::v4) return ip[1] >> 2;
    const uint8_t tc = uint8_t((ip[0] & 0x0f) << 4 | ip[1] >> 4);
    return tc >> 2;
}

bool set_dscp(uint8_t* frame, const ParsedPacket& p, uint8_t dscp) noexcept {
    uint8_t* ip = frame + p.l3_offset;
    if (get_dscp(frame, p) == dscp) return false;
    const uint16_t old_word = load16(ip);
    if (p.family == Family::v4) {
        const uint16_t old_check = load16(ip + 10);
        ip[1] = uint8_t(dscp << 2 | (ip[1] & 0x03));
        store16(ip + 10, checksum::update16(old_check, old_word, load16(ip)));
        if (p.outer_count) [[unlikely]] {
            Changes ch;
            ch.word(p.l3_offset, old_word, load16(ip));
            ch.word(p.l3_offset + 10, old_check, load16(ip + 10));
            fix_outer(frame, p, ch, 0, nullptr);
        }
        return true;
    }
    // Traffic class straddles bytes 0 and 1: vvvv TTTT | TTTT ffff.
    const uint8_t tc = uint8_t(dscp << 2 | (((ip[1] >> 4) & 0x03)));
    ip[0] = uint8_t((ip[0] & 0xf0) | tc >> 4);
    ip[1] = uint8_t((ip[1] & 0x0f) | (tc & 0x0f) << 4);
    if (p.outer_count) [[unlikely]] {
        Changes ch;
        ch.word(p.l3_offset, old_word, load16(ip));
        fix_outer(frame, p, ch, 0, nullptr);
    }
    return true;
}

}  // namespace optgate
