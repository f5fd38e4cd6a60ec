#include "reference.hpp"

#include <algorithm>
#include <cstdio>

#include "inet_checksum.hpp"  // tests/support: the builder's own RFC 1071 code, not the core's

namespace optgate::fuzz {
namespace {

namespace ck = optgate::test::detail;

bool is_ows(char c) { return c == ' ' || c == '\t'; }

char lower(char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; }

bool starts_with_ci(std::string_view s, std::string_view prefix) {
    if (s.size() < prefix.size()) return false;
    for (size_t i = 0; i < prefix.size(); ++i)
        if (lower(s[i]) != prefix[i]) return false;
    return true;
}

void read_l4(const uint8_t* f, FrameView& v) {
    const size_t room = v.ip_end - v.l4_at;
    const uint8_t* t = f + v.l4_at;
    if (v.proto == 6) {
        if (room < 20 || (t[12] >> 4) < 5 || size_t(t[12] >> 4) * 4 > room) return;
        v.payload = v.l4_at + size_t(t[12] >> 4) * 4;
        v.payload_end = v.ip_end;
        v.seq = uint32_t(t[4]) << 24 | uint32_t(t[5]) << 16 | uint32_t(t[6]) << 8 | t[7];
        v.tcp_flags = t[13];
    } else if (v.proto == 17) {
        if (room < 8) return;
        const size_t ulen = get16(t + 4);
        if (ulen < 8 || ulen > room) return;
        v.payload = v.l4_at + 8;
        v.payload_end = v.l4_at + ulen;
    } else {
        return;
    }
    v.sport = get16(t);
    v.dport = get16(t + 2);
    v.l4 = true;
}

}  // namespace

FrameView read_frame(const uint8_t* f, size_t len) {
    FrameView v;
    if (len < 14) return v;
    size_t off = 12;
    uint16_t type = get16(f + off);
    for (int tags = 0; type == 0x8100 || type == 0x88a8; ++tags) {
        if (tags == 2 || off + 6 > len) return v;
        off += 4;
        type = get16(f + off);
    }
    v.l3 = off + 2;
    const uint8_t* ip = f + v.l3;
    if (type == 0x0800) {
        if (len < v.l3 + 20 || (ip[0] >> 4) != 4) return v;
        v.ip_header = size_t(ip[0] & 0x0f) * 4;
        const size_t total = get16(ip + 2);
        if (v.ip_header < 20 || total < v.ip_header || v.l3 + total > len) return v;
        v.ip_end = v.l3 + total;
        v.proto = ip[9];
        v.src_at = v.l3 + 12;
        v.dst_at = v.l3 + 16;
        v.l4_at = v.l3 + v.ip_header;
        v.ip = true;
        v.fragment = (get16(ip + 6) & 0x3fff) != 0;
    } else if (type == 0x86dd) {
        if (len < v.l3 + 40 || (ip[0] >> 4) != 6) return v;
        v.v6 = true;
        v.ip_header = 40;
        v.ip_end = v.l3 + 40 + get16(ip + 4);
        if (v.ip_end > len) return v;
        v.src_at = v.l3 + 8;
        v.dst_at = v.l3 + 24;
        uint8_t next = ip[6];
        size_t pos = v.l3 + 40;
        for (int n = 0;; ++n) {
            if (next == 44) {
                if (n == 8 || pos + 8 > v.ip_end) return v;
                // An atomic fragment (offset 0, no more fragments) is a whole
                // datagram, processed on its own (RFC 6946).
                if ((get16(f + pos + 2) & 0xfff9) != 0) {
                    v.ip = true;
                    v.fragment = true;
                    return v;
                }
                next = f[pos];
                pos += 8;
                continue;
            }
            if (next != 0 && next != 43 && next != 60 && next != 51) break;
            if (n == 8 || pos + 8 > v.ip_end) return v;
            const size_t ext = next == 51 ? (size_t(f[pos + 1]) + 2) * 4 : (size_t(f[pos + 1]) + 1) * 8;
            if (pos + ext > v.ip_end) return v;
            if (next == 43 && f[pos + 3] != 0) v.routed = true;
            next = f[pos];
            pos += ext;
        }
        v.proto = next;
        v.l4_at = pos;
        v.ip = true;
    } else {
        return v;
    }
    if (!v.fragment) read_l4(f, v);
    return v;
}

std::optional<bool> checksums_ok(const uint8_t* f, size_t len, std::string* why) {
    const FrameView v = read_frame(f, len);
    if (!v.l4 || v.routed) return std::nullopt;
    auto bad = [&](const char* what) {
        if (why) *why = what;
        return false;
    };
    if (!v.v6 && ck::inet_checksum(f + v.l3, v.ip_header) != 0) return bad("IPv4 header checksum");
    const size_t l4_len = v.payload_end - v.l4_at;
    if (v.proto == 17 && get16(f + v.l4_at + 6) == 0) return v.v6 ? bad("UDP checksum 0 over IPv6") : true;
    if (ck::l4_checksum(f + v.src_at, f + v.dst_at, v.addr_len(), v.proto, f + v.l4_at, l4_len) != 0)
        return bad(v.proto == 6 ? "TCP checksum" : "UDP checksum");
    return true;
}

void fix_checksums(uint8_t* f, size_t len) {
    const FrameView v = read_frame(f, len);
    if (!v.ip) return;
    if (!v.v6) {
        put16(f + v.l3 + 10, 0);
        put16(f + v.l3 + 10, ck::inet_checksum(f + v.l3, v.ip_header));
    }
    if (!v.l4 || v.routed) return;
    uint8_t* field = f + v.l4_at + (v.proto == 6 ? 16 : 6);
    put16(field, 0);
    uint16_t c = ck::l4_checksum(f + v.src_at, f + v.dst_at, v.addr_len(), v.proto, f + v.l4_at,
                                 v.payload_end - v.l4_at);
    if (v.proto == 17 && c == 0) c = 0xffff;
    put16(field, c);
}

// ---- HTTP ----

std::vector<ValueRange> http_identifier_values(std::string_view s, const std::vector<std::string>& names,
                                               bool midstream) {
    std::vector<ValueRange> out;
    const size_t n = s.size();
    auto line_end = [&](size_t p) { return std::min(s.find('\n', p), n); };
    // The value start if the line [p, e) is an identifier field line.
    auto identifier_line = [&](size_t p, size_t e) -> std::optional<size_t> {
        for (const auto& name : names) {
            if (!starts_with_ci(s.substr(p, e - p), name)) continue;
            size_t q = p + name.size();
            while (q < e && is_ows(s[q])) ++q;
            if (q == e || s[q] != ':') continue;
            ++q;
            while (q < e && is_ows(s[q])) ++q;
            return q;
        }
        return std::nullopt;
    };
    // Adds the value of the identifier line at [p, e) and of its fold lines;
    // returns where the next line starts.
    auto take_value = [&](size_t q, size_t e) {
        out.push_back({q, e});
        size_t p = e + 1;
        while (p < n && is_ows(s[p])) {
            const size_t e2 = line_end(p);
            size_t q2 = p;
            while (q2 < e2 && is_ows(s[q2])) ++q2;
            out.push_back({q2, e2});
            p = e2 + 1;
        }
        return p;
    };

    if (midstream) {
        for (size_t p = 0; p < n;) {
            const size_t e = line_end(p);
            if (const auto q = identifier_line(p, e))
                p = take_value(*q, e);
            else
                p = e + 1;
        }
        return out;
    }
    size_t p = 0;
    for (;;) {
        while (p < n && (s[p] == '\r' || s[p] == '\n')) ++p;  // empty lines before a request
        if (p >= n) return out;
        p = line_end(p) + 1;  // the request line
        bool body = false;
        for (;;) {
            if (p >= n) return out;
            const size_t e = line_end(p);
            const std::string_view line = s.substr(p, e - p);
            if (line.empty() || line == "\r") {
                p = e + 1;
                break;
            }
            if (starts_with_ci(line, "content-length") || starts_with_ci(line, "transfer-encoding")) body = true;
            if (const auto q = identifier_line(p, e))
                p = take_value(*q, e);
            else
                p = e + 1;
        }
        if (body) return out;
    }
}

std::string show_bytes(std::string_view s, size_t at, size_t context) {
    const size_t from = at > context ? at - context : 0;
    const size_t to = std::min(s.size(), at + context);
    std::string r = "offset " + std::to_string(at) + ": \"";
    for (size_t i = from; i < to; ++i) {
        if (i == at) r += "[[";
        const unsigned char c = uint8_t(s[i]);
        if (c == '\r')
            r += "\\r";
        else if (c == '\n')
            r += "\\n";
        else if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            r += char(c);
        else {
            char b[8];
            std::snprintf(b, sizeof b, "\\x%02x", c);
            r += b;
        }
        if (i == at) r += "]]";
    }
    return r + "\"";
}

// ---- DNS ----

namespace {

// RFC 1035 name at `pos`; a pointer must point before the name's start.
bool skip_name(const uint8_t* m, size_t len, size_t& pos) {
    const size_t start = pos;
    size_t total = 1;
    for (;;) {
        if (pos >= len) return false;
        const uint8_t l = m[pos];
        if (l == 0) {
            ++pos;
            return true;
        }
        if ((l & 0xc0) == 0xc0) {
            if (pos + 2 > len) return false;
            if ((size_t(l & 0x3f) << 8 | m[pos + 1]) >= start) return false;
            pos += 2;
            return true;
        }
        if (l > 63) return false;
        total += l + 1u;
        if (total > 255) return false;
        pos += 1u + l;
    }
}

}  // namespace

DnsQueryView read_dns_query(const uint8_t* m, size_t len) {
    DnsQueryView q;
    if (len < 12 || (m[2] & 0x80)) return q;
    const size_t qd = get16(m + 4), an = get16(m + 6), ns = get16(m + 8), ar = get16(m + 10);
    size_t pos = 12;
    for (size_t i = 0; i < qd; ++i) {
        if (!skip_name(m, len, pos) || pos + 4 > len) return q;
        pos += 4;
    }
    for (size_t i = 0; i < an + ns + ar; ++i) {
        const size_t owner = pos;
        if (!skip_name(m, len, pos) || pos + 10 > len) return q;
        const uint16_t type = get16(m + pos);
        const size_t rdlen = get16(m + pos + 8);
        const size_t rdata = pos + 10;
        if (rdata + rdlen > len) return q;
        if (type == 41) {
            if (i < an + ns || q.opt || pos != owner + 1) return q;  // additional only, once, root owner
            for (size_t o = rdata; o < rdata + rdlen;) {
                if (o + 4 > rdata + rdlen || o + 4 + get16(m + o + 2) > rdata + rdlen) return q;
                o += 4 + get16(m + o + 2);
            }
            q.opt = DnsOptView{pos + 8, rdata, rdata + rdlen};
        }
        pos = rdata + rdlen;
    }
    q.well_formed = true;
    return q;
}

Bytes dns_options_padded(const uint8_t* m, size_t len, const DnsQueryView& q, const std::vector<uint16_t>& codes) {
    Bytes out(m, m + len);
    if (!q.opt) return out;
    for (size_t p = q.opt->rdata_begin; p < q.opt->rdata_end;) {
        const size_t size = 4 + get16(m + p + 2);
        if (std::find(codes.begin(), codes.end(), get16(m + p)) != codes.end()) {
            put16(&out[p], 12);
            std::fill(out.begin() + long(p + 4), out.begin() + long(p + size), 0);
        }
        p += size;
    }
    return out;
}

std::vector<uint16_t> dns_option_codes(const uint8_t* m, const DnsQueryView& q) {
    std::vector<uint16_t> codes;
    if (!q.opt) return codes;
    for (size_t p = q.opt->rdata_begin; p < q.opt->rdata_end; p += 4 + get16(m + p + 2)) codes.push_back(get16(m + p));
    return codes;
}

std::string hex(const uint8_t* p, size_t n, size_t max) {
    std::string r;
    char b[4];
    for (size_t i = 0; i < n && i < max; ++i) {
        std::snprintf(b, sizeof b, "%02x", p[i]);
        r += b;
        r += (i % 16 == 15) ? '\n' : ' ';
    }
    if (n > max) r += "... (" + std::to_string(n) + " bytes)";
    return r;
}

}  // namespace optgate::fuzz
