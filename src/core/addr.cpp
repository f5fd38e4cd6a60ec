#include "core/addr.hpp"

#include <arpa/inet.h>

#include <charconv>

namespace optgate {

IpAddr IpAddr::from_v4_host(uint32_t host_order) noexcept {
    IpAddr a;
    a.family = Family::v4;
    a.bytes[0] = uint8_t(host_order >> 24);
    a.bytes[1] = uint8_t(host_order >> 16);
    a.bytes[2] = uint8_t(host_order >> 8);
    a.bytes[3] = uint8_t(host_order);
    return a;
}

std::optional<IpAddr> IpAddr::parse(std::string_view text) {
    if (text.empty() || text.size() > 45) return std::nullopt;
    char buf[64];
    std::memcpy(buf, text.data(), text.size());
    buf[text.size()] = '\0';
    IpAddr a;
    if (text.find(':') == std::string_view::npos) {
        a.family = Family::v4;
        if (inet_pton(AF_INET, buf, a.bytes.data()) != 1) return std::nullopt;
    } else {
        a.family = Family::v6;
        if (inet_pton(AF_INET6, buf, a.bytes.data()) != 1) return std::nullopt;
    }
    return a;
}

IpAddr IpAddr::masked(unsigned len) const noexcept {
    IpAddr out = *this;
    const unsigned width = bit_width();
    if (len >= width) return out;
    const unsigned full = len / 8;
    const unsigned rem = len % 8;
    unsigned i = full;
    if (rem) {
        out.bytes[i] &= uint8_t(0xff00u >> rem);
        ++i;
    }
    for (; i < 16; ++i) out.bytes[i] = 0;
    return out;
}

std::string IpAddr::to_string() const {
    char buf[INET6_ADDRSTRLEN];
    if (family == Family::v4) {
        // Four decimals by hand: inet_ntop goes through sprintf, and consentd
        // formats an address for every binding event it records.
        char* p = buf;
        for (int i = 0; i < 4; ++i) {
            if (i) *p++ = '.';
            p = std::to_chars(p, buf + sizeof buf, bytes[i]).ptr;
        }
        return std::string(buf, p);
    }
    inet_ntop(AF_INET6, bytes.data(), buf, sizeof buf);
    return buf;
}

std::optional<Prefix> Prefix::parse(std::string_view text, std::string* error, bool allow_host_bits) {
    auto fail = [&](std::string msg) -> std::optional<Prefix> {
        if (error) *error = std::move(msg);
        return std::nullopt;
    };
    const auto slash = text.find('/');
    const auto addr_text = text.substr(0, slash);
    auto addr = IpAddr::parse(addr_text);
    if (!addr) return fail("'" + std::string(addr_text) + "' is not an IPv4 or IPv6 address");
    Prefix p;
    p.addr = *addr;
    p.len = uint8_t(addr->bit_width());
    if (slash != std::string_view::npos) {
        const auto len_text = text.substr(slash + 1);
        unsigned len = 0;
        auto [end, ec] = std::from_chars(len_text.data(), len_text.data() + len_text.size(), len);
        if (len_text.empty() || ec != std::errc() || end != len_text.data() + len_text.size())
            return fail("prefix length '" + std::string(len_text) + "' is not a number");
        if (len > addr->bit_width())
            return fail("prefix length /" + std::to_string(len) + " is longer than " +
                        std::to_string(addr->bit_width()) + " bits");
        p.len = uint8_t(len);
    }
    if (p.addr.masked(p.len) != p.addr) {
        if (!allow_host_bits)
            return fail("'" + std::string(text) + "' has host bits set (did you mean " +
                        p.addr.masked(p.len).to_string() + "/" + std::to_string(p.len) + "?)");
        p.addr = p.addr.masked(p.len);
    }
    return p;
}

bool Prefix::contains(const IpAddr& a) const noexcept { return a.family == addr.family && a.masked(len) == addr; }

bool Prefix::overlaps(const Prefix& other) const noexcept {
    if (other.addr.family != addr.family) return false;
    const unsigned shorter = len < other.len ? len : other.len;
    return addr.masked(shorter) == other.addr.masked(shorter);
}

std::string Prefix::to_string() const { return addr.to_string() + "/" + std::to_string(len); }

}  // namespace optgate
