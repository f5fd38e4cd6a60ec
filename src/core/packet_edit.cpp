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
// the UDP checksum of VXLAN, Geneve, GTP-U, L2TP) also cover; no edit
// changes a length (docs/pipeline.md#encapsulations). The edit records what it changed as
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

// Patches an outer checksum over bytes starting at `start` whose covered
// bytes changed by `ch`.
void patch_outer_checksum(uint8_t* frame, uint32_t start, uint32_t field_offset, const Changes& ch, bool udp,
                          Changes& record) noexcept {
    uint32_t old_sum = ch.old_sum, new_sum = ch.new_sum;
    if (start & 1) {
        old_sum = swapped(old_sum);
        new_sum = swapped(new_sum);
    }
    uint8_t* field = frame + field_offset;
    const uint16_t stored = load16(field);
    store_l4_checksum(field, checksum::update(stored, old_sum, new_sum), udp);
    record.word(field_offset, stored, load16(field));
}

void fix_outer(uint8_t* frame, const ParsedPacket& p, Changes ch) noexcept {
    for (unsigned i = p.outer_count; i-- > 0;) {
        const OuterField& f = p.outer[i];
        const uint32_t o = f.offset;
        switch (f.kind) {
        case OuterField::Kind::ipv4:  // its checksum covers only its own header
        case OuterField::Kind::ipv6:
        case OuterField::Kind::pppoe:
        case OuterField::Kind::gtpu:
        case OuterField::Kind::l2tp: break;  // lengths only, and no edit changes one
        case OuterField::Kind::udp: {
            Changes mine;
            // Zero: no checksum (IPv4, and IPv6 tunnels by RFC 6935); stays zero.
            if (load16(frame + o + 6) != 0) patch_outer_checksum(frame, o, o + 6, ch, true, mine);
            ch.old_sum += mine.old_sum;
            ch.new_sum += mine.new_sum;
            break;
        }
        case OuterField::Kind::gre_checksum: {
            Changes mine;
            patch_outer_checksum(frame, o, o + 4, ch, false, mine);
            ch.old_sum += mine.old_sum;
            ch.new_sum += mine.new_sum;
            break;
        }
        }
    }
}

// l4_payload_changed(), inlined into l4_fill_bytes, the HTTP filler's path
// (not inlined, that costs 8 instructions a fill: callgrind, optgate-bench).
[[gnu::always_inline]] inline void patch_l4_checksums(uint8_t* frame, const ParsedPacket& p, uint32_t old_sum,
                                                      uint32_t new_sum) noexcept {
    uint8_t* field = frame + checksum_field_offset(p);
    const uint16_t stored = load16(field);
    const bool udp = p.l4_proto == kProtoUdp;
    if (!(udp && p.family == Family::v4 && stored == 0))
        store_l4_checksum(field, checksum::update(stored, old_sum, new_sum), udp);
    if (p.outer_count) [[unlikely]] {
        Changes ch;
        ch.l4_run(p, old_sum, new_sum);
        ch.word(checksum_field_offset(p), stored, load16(field));
        fix_outer(frame, p, ch);
    }
}

}  // namespace

void l4_payload_changed(uint8_t* frame, const ParsedPacket& p, uint32_t old_sum, uint32_t new_sum) noexcept {
    patch_l4_checksums(frame, p, old_sum, new_sum);
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
    patch_l4_checksums(frame, p, old_sum, new_sum);
}

uint32_t l4_run_sum(const uint8_t* frame, const ParsedPacket& p, uint32_t at, uint32_t len) noexcept {
    return checksum::sum(frame + at, len, 0, ((at - p.l4_offset) & 1) != 0);
}

void l4_bytes_rewritten(uint8_t* frame, const ParsedPacket& p, uint32_t at, uint32_t len, uint32_t old_sum) noexcept {
    patch_l4_checksums(frame, p, old_sum, l4_run_sum(frame, p, at, len));
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
            fix_outer(frame, p, ch);
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
        fix_outer(frame, p, ch);
    }
    return true;
}

}  // namespace optgate
