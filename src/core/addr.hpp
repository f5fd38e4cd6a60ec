// IP addresses and prefixes: the one place where addresses are parsed,
// printed, masked and compared. Cold-path parsing uses inet_pton; the packet
// path only builds IpAddr from raw header bytes.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "core/big_endian.hpp"

namespace optgate {

enum class Family : uint8_t { v4 = 4, v6 = 6 };

struct IpAddr {
    Family family = Family::v4;
    // IPv4 uses bytes[0..3] (network order); the rest stays zero.
    std::array<uint8_t, 16> bytes{};

    static IpAddr from_v4(const uint8_t* network_order) noexcept {
        IpAddr a;
        a.family = Family::v4;
        std::memcpy(a.bytes.data(), network_order, 4);
        return a;
    }
    static IpAddr from_v6(const uint8_t* network_order) noexcept {
        IpAddr a;
        a.family = Family::v6;
        std::memcpy(a.bytes.data(), network_order, 16);
        return a;
    }
    static IpAddr from_v4_host(uint32_t host_order) noexcept;

    // Accepts dotted-quad IPv4 or any RFC 4291 IPv6 text form.
    static std::optional<IpAddr> parse(std::string_view text);

    unsigned bit_width() const noexcept { return family == Family::v4 ? 32 : 128; }
    uint32_t v4_host_order() const noexcept { return big_endian::load32(bytes.data()); }
    // Clears every bit after the first `len` bits.
    IpAddr masked(unsigned len) const noexcept;
    std::string to_string() const;

    friend bool operator==(const IpAddr&, const IpAddr&) = default;
};

struct Prefix {
    IpAddr addr;
    uint8_t len = 0;

    // "A.B.C.D/N", "X::/N"; a bare address is a full-length prefix.
    // On failure returns nullopt and, if `error` is given, why.
    static std::optional<Prefix> parse(std::string_view text, std::string* error = nullptr,
                                       bool allow_host_bits = false);

    bool contains(const IpAddr& a) const noexcept;
    bool overlaps(const Prefix& other) const noexcept;
    std::string to_string() const;

    friend bool operator==(const Prefix&, const Prefix&) = default;
};

}  // namespace optgate
