#include "dns_builder.hpp"

#include <arpa/inet.h>

#include <array>
#include <charconv>
#include <stdexcept>

namespace optgate::test {

Bytes ecs_option_data(std::string_view prefix, uint8_t scope) {
    auto fail = [&](const char* why) {
        return std::invalid_argument("ecs_option_data: " + std::string(why) + ": '" + std::string(prefix) + "'");
    };
    std::string addr(prefix.substr(0, prefix.find('/')));
    std::array<uint8_t, 16> bytes{};
    uint8_t family = 0;
    unsigned max_len = 0;
    if (inet_pton(AF_INET, addr.c_str(), bytes.data()) == 1) {
        family = 1;
        max_len = 32;
    } else if (inet_pton(AF_INET6, addr.c_str(), bytes.data()) == 1) {
        family = 2;
        max_len = 128;
    } else {
        throw fail("not an address");
    }
    unsigned len = max_len;
    if (auto slash = prefix.find('/'); slash != std::string_view::npos) {
        auto digits = prefix.substr(slash + 1);
        auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), len);
        if (ec != std::errc() || end != digits.data() + digits.size() || len > max_len) throw fail("bad prefix length");
    }
    if (scope > max_len) throw fail("scope longer than the address");
    Bytes out;
    append16(out, family);
    out.push_back(uint8_t(len));
    out.push_back(scope);
    size_t n = (len + 7) / 8;
    out.insert(out.end(), bytes.begin(), bytes.begin() + n);
    if (len % 8) out.back() &= uint8_t(0xff << (8 - len % 8));  // RFC 7871 6: bits past the prefix are 0
    return out;
}

Bytes dns_name(std::string_view name) {
    if (!name.empty() && name.back() == '.') name.remove_suffix(1);
    Bytes out;
    while (!name.empty()) {
        size_t dot = name.find('.');
        std::string_view label = name.substr(0, dot);
        if (label.empty() || label.size() > 63)
            throw std::invalid_argument("dns_name: empty or > 63-byte label in '" + std::string(name) + "'");
        out.push_back(uint8_t(label.size()));
        out.insert(out.end(), label.begin(), label.end());
        name = dot == std::string_view::npos ? std::string_view{} : name.substr(dot + 1);
        if (dot != std::string_view::npos && name.empty()) throw std::invalid_argument("dns_name: empty label");
    }
    out.push_back(0);
    if (out.size() > 255) throw std::invalid_argument("dns_name: longer than 255 bytes");
    return out;
}

Bytes dns_rr(std::string_view name, uint16_t type, uint16_t rclass, uint32_t ttl, const Bytes& rdata) {
    if (rdata.size() > 0xffff) throw std::invalid_argument("dns_rr: rdata longer than 65535 bytes");
    Bytes out = dns_name(name);
    append16(out, type);
    append16(out, rclass);
    append16(out, uint16_t(ttl >> 16));
    append16(out, uint16_t(ttl));
    append16(out, uint16_t(rdata.size()));
    out.insert(out.end(), rdata.begin(), rdata.end());
    return out;
}

Bytes edns_opt_rr(uint16_t udp_size, const std::vector<EdnsOption>& options, bool do_bit) {
    Bytes rdata;
    for (const auto& o : options) {
        if (o.data.size() > 0xffff) throw std::invalid_argument("edns_opt_rr: option longer than 65535 bytes");
        append16(rdata, o.code);
        append16(rdata, uint16_t(o.data.size()));
        rdata.insert(rdata.end(), o.data.begin(), o.data.end());
    }
    // TTL field: extended RCODE 0, version 0, then the flags (DO is the top bit).
    return dns_rr("", 41, udp_size, do_bit ? 0x8000u : 0u, rdata);
}

Bytes dns_query(const DnsQuery& q) {
    const uint16_t ar = uint16_t((q.edns_udp_size ? 1 : 0) + q.extra_additional.size());
    Bytes out;
    append16(out, q.id);
    append16(out, q.rd ? 0x0100 : 0x0000);  // QR=0, opcode QUERY
    append16(out, q.qdcount.value_or(1));
    append16(out, q.ancount.value_or(0));
    append16(out, q.nscount.value_or(0));
    append16(out, q.arcount.value_or(ar));
    Bytes name = dns_name(q.qname);
    out.insert(out.end(), name.begin(), name.end());
    append16(out, q.qtype);
    append16(out, q.qclass);
    if (q.edns_udp_size) {
        Bytes opt = edns_opt_rr(*q.edns_udp_size, q.options, q.do_bit);
        out.insert(out.end(), opt.begin(), opt.end());
    } else if (!q.options.empty() || q.do_bit) {
        throw std::invalid_argument("dns_query: EDNS options or DO without edns_udp_size");
    }
    for (const auto& rr : q.extra_additional) out.insert(out.end(), rr.begin(), rr.end());
    return out;
}

}  // namespace optgate::test
