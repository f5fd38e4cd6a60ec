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
    if (p.family == Family::v4) {
        const uint16_t old_total = load16(ip + 2);
        const uint16_t new_total = uint16_t(old_total - count);
        store16(ip + 2, new_total);
        store16(ip + 10, checksum::update16(load16(ip + 10), old_total, new_total));
    } else {
        store16(ip + 4, uint16_t(load16(ip + 4) - count));
    }

    uint8_t* field = frame + checksum_field_offset(p);
    const uint16_t stored = load16(field);
    if (p.family == Family::v4 && stored == 0) return frame_len;  // sender sent no checksum
    // What changed: the tail, and the UDP length twice (header and pseudo-header).
    const uint32_t old_sum = old_tail_sum + old_udp_len + old_udp_len;
    const uint32_t new_sum = l4_tail_sum(frame, p, from) + new_udp_len + new_udp_len;
    store_l4_checksum(field, checksum::update(stored, old_sum, new_sum), true);
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
    if (udp && p.family == Family::v4 && stored == 0) return;
    store_l4_checksum(field, checksum::update(stored, old_sum, new_sum), udp);
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
    if (p.family == Family::v4) {
        const uint16_t old_word = load16(ip);
        ip[1] = uint8_t(dscp << 2 | (ip[1] & 0x03));
        store16(ip + 10, checksum::update16(load16(ip + 10), old_word, load16(ip)));
        return true;
    }
    // Traffic class straddles bytes 0 and 1: vvvv TTTT | TTTT ffff.
    const uint8_t tc = uint8_t(dscp << 2 | (((ip[1] >> 4) & 0x03)));
    ip[0] = uint8_t((ip[0] & 0xf0) | tc >> 4);
    ip[1] = uint8_t((ip[1] & 0x0f) | (tc & 0x0f) << 4);
    return true;
}

}  // namespace optgate
