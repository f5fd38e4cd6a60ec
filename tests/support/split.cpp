// Splitting built packets and byte streams: IP fragmentation and TCP segments.
#include <algorithm>
#include <stdexcept>

#include "frame_layout.hpp"
#include "inet_checksum.hpp"
#include "packet_builder.hpp"

namespace optgate::test {
namespace {

detail::FrameLayout layout_for(const Bytes& frame, int version, size_t payload_bytes, const char* who) {
    if (payload_bytes == 0 || payload_bytes % 8 != 0)
        throw std::invalid_argument(std::string(who) + ": payload_bytes must be a positive multiple of 8");
    detail::FrameLayout L = detail::parse_frame(frame);
    if (!L.error.empty()) throw std::invalid_argument(std::string(who) + ": " + L.error);
    if (L.ip_version != version)
        throw std::invalid_argument(std::string(who) + ": not an IPv" + std::to_string(version) + " frame");
    return L;
}

// IPv4 options a non-first fragment carries: those with the copied flag (RFC 791).
Bytes copied_options(const uint8_t* opt, size_t n) {
    Bytes out;
    for (size_t i = 0; i < n;) {
        uint8_t type = opt[i];
        if (type == 0) break;  // end of option list
        if (type == 1) {       // no-operation, not copied
            ++i;
            continue;
        }
        if (i + 1 >= n || opt[i + 1] < 2 || i + opt[i + 1] > n)
            throw std::invalid_argument("fragment_ipv4: malformed IPv4 options");
        if (type & 0x80) out.insert(out.end(), opt + i, opt + i + opt[i + 1]);
        i += opt[i + 1];
    }
    out.resize((out.size() + 3) / 4 * 4, 0);
    return out;
}

}  // namespace

std::vector<Bytes> fragment_ipv4(const Bytes& frame, size_t payload_bytes) {
    detail::FrameLayout L = layout_for(frame, 4, payload_bytes, "fragment_ipv4");
    const size_t data_begin = L.l3 + L.ip_header_len;
    const uint16_t flags = get16(frame, L.l3 + 6);
    const uint16_t base_offset8 = flags & 0x1fff;
    const bool base_more = flags & 0x2000;
    const Bytes later_options = copied_options(&frame[L.l3 + 20], L.ip_header_len - 20);

    std::vector<Bytes> out;
    for (size_t pos = data_begin; pos < L.ip_end || out.empty(); pos += payload_bytes) {
        size_t chunk = std::min(payload_bytes, L.ip_end - pos);
        bool last = pos + chunk >= L.ip_end;
        Bytes f(frame.begin(), frame.begin() + L.l3);  // L2 headers
        if (pos == data_begin) {
            f.insert(f.end(), frame.begin() + L.l3, frame.begin() + data_begin);
        } else {
            f.insert(f.end(), frame.begin() + L.l3, frame.begin() + L.l3 + 20);
            f.insert(f.end(), later_options.begin(), later_options.end());
        }
        size_t hl = f.size() - L.l3;
        f[L.l3] = uint8_t(0x40 | hl / 4);
        f.insert(f.end(), frame.begin() + pos, frame.begin() + pos + chunk);
        put16(f, L.l3 + 2, uint16_t(hl + chunk));
        uint16_t offset8 = uint16_t(base_offset8 + (pos - data_begin) / 8);
        bool more = !last || base_more;
        put16(f, L.l3 + 6, uint16_t((flags & 0xc000) | (more ? 0x2000 : 0) | offset8));
        put16(f, L.l3 + 10, 0);
        put16(f, L.l3 + 10, detail::inet_checksum(&f[L.l3], hl));
        out.push_back(std::move(f));
    }
    return out;
}

std::vector<Bytes> fragment_ipv6(const Bytes& frame, size_t payload_bytes, uint32_t id) {
    detail::FrameLayout L = layout_for(frame, 6, payload_bytes, "fragment_ipv6");
    // Per-fragment part: IPv6 header + headers up to the last hop-by-hop or
    // routing header. nh_at is the next-header byte that must now say 44.
    size_t unfrag_end = L.l3 + 40;
    size_t nh_at = L.l3 + 6;
    for (const auto& e : L.ext) {
        if (e.type == kIp6Fragment) throw std::invalid_argument("fragment_ipv6: already has a fragment header");
        if (e.type == kIp6HopByHop || e.type == kIp6Routing) {
            unfrag_end = e.offset + e.length;
            nh_at = e.offset;
        }
    }
    const uint8_t inner_nh = frame[nh_at];
    const size_t unfrag_ext = unfrag_end - (L.l3 + 40);

    std::vector<Bytes> out;
    for (size_t pos = unfrag_end; pos < L.ip_end || out.empty(); pos += payload_bytes) {
        size_t chunk = std::min(payload_bytes, L.ip_end - pos);
        bool last = pos + chunk >= L.ip_end;
        Bytes f(frame.begin(), frame.begin() + unfrag_end);
        f[nh_at] = kIp6Fragment;
        put16(f, L.l3 + 4, uint16_t(unfrag_ext + 8 + chunk));
        uint16_t offset8 = uint16_t((pos - unfrag_end) / 8);
        f.push_back(inner_nh);
        f.push_back(0);
        f.push_back(uint8_t(offset8 >> 5));
        f.push_back(uint8_t(offset8 << 3 | (last ? 0 : 1)));
        for (int s = 24; s >= 0; s -= 8) f.push_back(uint8_t(id >> s));
        f.insert(f.end(), frame.begin() + pos, frame.begin() + pos + chunk);
        out.push_back(std::move(f));
    }
    return out;
}

std::optional<Bytes> reassemble(const std::vector<Bytes>& frames) {
    struct Piece {
        size_t offset;
        Bytes data;
    };
    std::vector<Piece> pieces;
    std::optional<Bytes> head;  // the first fragment's L2 + IP headers (IPv6: without the fragment header)
    size_t link = 0;            // IPv6: the next-header byte that named the fragment header
    uint8_t inner_nh = 0;
    std::optional<size_t> total;
    int version = 0;
    for (const Bytes& f : frames) {
        const detail::FrameLayout L = detail::parse_frame(f);
        if (!L.error.empty()) throw std::invalid_argument("reassemble: " + L.error);
        if (!L.fragment) {
            if (frames.size() == 1) return f;
            throw std::invalid_argument("reassemble: a whole datagram among fragments");
        }
        version = L.ip_version;
        size_t offset = 0, data_at = 0, hdr_end = 0;
        bool more = false;
        if (L.ip_version == 4) {
            const uint16_t fo = get16(f, L.l3 + 6);
            offset = size_t(fo & 0x1fff) * 8;
            more = fo & 0x2000;
            data_at = hdr_end = L.l3 + L.ip_header_len;
        } else {
            size_t prev = L.l3 + 6;
            for (const auto& e : L.ext) {
                if (e.type == kIp6Fragment) {
                    const uint16_t fo = get16(f, e.offset + 2);
                    offset = fo & 0xfff8;
                    more = fo & 1;
                    hdr_end = e.offset;
                    data_at = e.offset + 8;
                    if (offset == 0) {
                        link = prev;
                        inner_nh = f[e.offset];
                    }
                    break;
                }
                prev = e.offset;
            }
        }
        if (offset == 0) head = Bytes(f.begin(), f.begin() + long(hdr_end));
        if (!more) total = offset + (L.ip_end - data_at);
        pieces.push_back({offset, Bytes(f.begin() + long(data_at), f.begin() + long(L.ip_end))});
    }
    if (!head || !total) return std::nullopt;
    Bytes data(*total);
    std::vector<bool> have(*total, false);
    for (const auto& p : pieces) {
        if (p.offset + p.data.size() > *total) throw std::invalid_argument("reassemble: fragment beyond the end");
        for (size_t i = 0; i < p.data.size(); ++i) {
            if (have[p.offset + i] && data[p.offset + i] != p.data[i])
                throw std::invalid_argument("reassemble: overlapping fragments disagree");
            data[p.offset + i] = p.data[i];
            have[p.offset + i] = true;
        }
    }
    if (std::find(have.begin(), have.end(), false) != have.end()) return std::nullopt;
    Bytes out = *head;
    const size_t l3 = detail::parse_frame(frames.front()).l3;
    if (version == 4) {
        const size_t hl = out.size() - l3;
        put16(out, l3 + 2, uint16_t(hl + *total));
        put16(out, l3 + 6, get16(out, l3 + 6) & 0x4000);  // DF stays; MF and offset go
        put16(out, l3 + 10, 0);
        put16(out, l3 + 10, detail::inet_checksum(&out[l3], hl));
    } else {
        out[link] = inner_nh;
        put16(out, l3 + 4, uint16_t(out.size() - l3 - 40 + *total));
    }
    out.insert(out.end(), data.begin(), data.end());
    return out;
}

std::vector<Segment> segment_stream(std::string_view data, uint32_t isn, const std::vector<size_t>& sizes) {
    if (sizes.empty()) throw std::invalid_argument("segment_stream: no sizes");
    for (size_t s : sizes)
        if (s == 0) throw std::invalid_argument("segment_stream: zero segment size");
    std::vector<Segment> out;
    for (size_t pos = 0, i = 0; pos < data.size(); ++i) {
        size_t n = std::min(sizes[i % sizes.size()], data.size() - pos);
        out.push_back({uint32_t(isn + pos), Bytes(data.begin() + pos, data.begin() + pos + n), ACK});
        pos += n;
    }
    if (!out.empty()) out.back().flags |= PSH;
    return out;
}

}  // namespace optgate::test
