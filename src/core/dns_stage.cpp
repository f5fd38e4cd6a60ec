#include "core/dns_stage.hpp"

#include "core/checksum.hpp"

namespace optgate {
namespace {

using checksum::load16;

constexpr uint16_t kTypeOpt = 41;
constexpr unsigned kMaxNameLength = 255;

// Advances `pos` past a (possibly compressed) name. A pointer ends the name
// and must point before the name's own start, which rules out loops.
bool skip_name(const uint8_t* msg, uint32_t len, uint32_t& pos) noexcept {
    const uint32_t start = pos;
    unsigned total = 1;
    for (;;) {
        if (pos >= len) return false;
        const uint8_t l = msg[pos];
        if (l == 0) {
            ++pos;
            return true;
        }
        if ((l & 0xc0) == 0xc0) {
            if (pos + 2 > len) return false;
            const uint32_t target = uint32_t(l & 0x3f) << 8 | msg[pos + 1];
            if (target >= start) return false;
            pos += 2;
            return true;
        }
        if (l & 0xc0) return false;  // 0x40 / 0x80: obsolete or reserved label types
        total += l + 1u;
        if (total > kMaxNameLength) return false;
        pos += 1u + l;
    }
}

}  // namespace

Counter scan_dns_query(const uint8_t* msg, uint32_t len, const Runtime& rt, DnsScan& out) noexcept {
    out = DnsScan{};
    if (len < 12) return Counter::dns_malformed_header;
    if (msg[2] & 0x80) return Counter::dns_not_query;
    const unsigned qdcount = load16(msg + 4);
    const unsigned rrcount = unsigned(load16(msg + 6)) + load16(msg + 8) + load16(msg + 10);
    uint32_t pos = 12;
    for (unsigned i = 0; i < qdcount; ++i) {
        if (pos >= len) return Counter::dns_malformed_record;  // count larger than the message
        if (!skip_name(msg, len, pos)) return Counter::dns_malformed_name;
        if (pos + 4 > len) return Counter::dns_malformed_record;
        pos += 4;
    }
    for (unsigned i = 0; i < rrcount; ++i) {
        const uint32_t owner = pos;
        if (pos >= len) return Counter::dns_malformed_record;
        if (!skip_name(msg, len, pos)) return Counter::dns_malformed_name;
        if (pos + 10 > len) return Counter::dns_malformed_record;
        const uint16_t type = load16(msg + pos);
        const uint32_t rdlength = load16(msg + pos + 8);
        const uint32_t rdata = pos + 10;
        if (rdata + rdlength > len) return Counter::dns_malformed_record;
        if (type == kTypeOpt) {
            if (out.has_opt) return Counter::dns_multiple_opt;
            if (pos != owner + 1 || msg[owner] != 0) return Counter::dns_malformed_opt;  // owner must be root
            out.has_opt = true;
            out.opt_rdlength_at = pos + 8;
            out.rdata_begin = rdata;
            out.rdata_end = rdata + rdlength;
            uint32_t o = rdata;
            while (o < out.rdata_end) {
                if (o + 4 > out.rdata_end) return Counter::dns_malformed_opt;
                const uint32_t olen = load16(msg + o + 2);
                if (o + 4 + olen > out.rdata_end) return Counter::dns_malformed_opt;
                if (rt.dns_identifier(load16(msg + o)) >= 0) ++out.identifier_options;
                o += 4 + olen;
            }
        }
        pos = rdata + rdlength;
    }
    return Counter::packets;
}

}  // namespace optgate
