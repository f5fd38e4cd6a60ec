// RADIUS accounting packets (RFC 2865 §3, RFC 2866, RFC 3162, RFC 3579 §3.2,
// RFC 4818): a bounded decoder, the two authenticator checks, and the
// Accounting-Response. docs/radius.md describes what consentd does with them.
//
// Why our own and not a library: Debian bookworm offers libradcli4 (radcli)
// and FreeRADIUS' own libfreeradius-radius (in freeradius' server package,
// no -dev): radcli is a client library (it sends requests and reads the
// answers to them: no server-side Request Authenticator check for
// accounting, a dictionary file to load at run time, global state, logging
// through syslog), and libfreeradius is not packaged for linking. What a
// listener needs is about 150 lines: walk the attributes with every length
// checked, two MD5 checks, one MD5 for the answer. Written here, the
// decoder is a pure function of its bytes with no allocation, fuzzed on its
// own (tests/fuzz/fuzz_radius.cpp).
//
// decode() accepts a packet only if every attribute lies inside the Length
// field, every attribute's length is at least 2, the datagram holds Length
// bytes (extra bytes after Length are padding and ignored, RFC 2865 §3),
// and Length is 20..4096. Anything else is a named Malformed reason.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "core/addr.hpp"

namespace optgate::consentd::radius {

inline constexpr size_t kHeaderBytes = 20;
inline constexpr size_t kMaxPacketBytes = 4096;

inline constexpr uint8_t kAccountingRequest = 4;
inline constexpr uint8_t kAccountingResponse = 5;

enum Attr : uint8_t {
    user_name = 1,
    nas_ip_address = 4,
    framed_ip_address = 8,
    class_ = 25,
    vendor_specific = 26,
    calling_station_id = 31,
    nas_identifier = 32,
    acct_status_type = 40,
    acct_session_id = 44,
    message_authenticator = 80,
    nas_ipv6_address = 95,
    framed_ipv6_prefix = 97,
    delegated_ipv6_prefix = 123,
    framed_ipv6_address = 168,
};

enum Status : uint32_t { start = 1, stop = 2, interim_update = 3, accounting_on = 7, accounting_off = 8 };

enum class Malformed : uint8_t {
    none,
    too_short,                         // under 20 bytes: no header
    bad_length,                        // Length field under 20 or over 4096
    truncated,                         // the datagram is shorter than its Length field
    attribute_too_short,               // an attribute's length byte is 0 or 1
    attribute_overrun,                 // an attribute runs past Length
    bad_message_authenticator_length,  // Message-Authenticator not 18 bytes, or twice
};
std::string_view to_string(Malformed m) noexcept;

struct Attribute {
    uint8_t type = 0;
    std::span<const uint8_t> value;
};

// A packet whose attributes have been walked once and found in bounds. Holds
// views into the caller's buffer.
class Packet {
public:
    uint8_t code() const noexcept { return bytes_[0]; }
    uint8_t identifier() const noexcept { return bytes_[1]; }
    std::span<const uint8_t, 16> authenticator() const noexcept { return bytes_.subspan<4, 16>(); }
    std::span<const uint8_t> bytes() const noexcept { return bytes_; }  // exactly Length bytes

    // Calls fn(Attribute) for each attribute in order.
    template <class Fn>
    void for_each(Fn&& fn) const {
        for (size_t at = kHeaderBytes; at < bytes_.size(); at += bytes_[at + 1])
            fn(Attribute{bytes_[at], bytes_.subspan(at + 2, bytes_[at + 1] - 2u)});
    }
    // The first attribute of `type` with a non-empty value (RFC 8044 §3.5:
    // an empty value is treated as absent).
    std::optional<std::span<const uint8_t>> find(uint8_t type) const noexcept;
    // The first sub-attribute `vendor_type` of a Vendor-Specific attribute of
    // `vendor` (RFC 2865 §5.26's recommended format); empty values as absent.
    std::optional<std::span<const uint8_t>> find_vendor(uint32_t vendor, uint8_t vendor_type) const noexcept;
    // Offset of the Message-Authenticator's value, or 0 when absent.
    size_t message_authenticator_at() const noexcept { return message_authenticator_at_; }

private:
    friend std::optional<Packet> decode(std::span<const uint8_t>, Malformed&) noexcept;
    std::span<const uint8_t> bytes_;
    size_t message_authenticator_at_ = 0;
};

std::optional<Packet> decode(std::span<const uint8_t> datagram, Malformed& why) noexcept;

// RFC 2866 §3: MD5(Code | Identifier | Length | 16 zero octets | attributes | secret).
bool request_authenticator_ok(const Packet& p, std::string_view secret) noexcept;
// RFC 3579 §3.2 applied to Accounting-Request as FreeRADIUS and radclient
// do: HMAC-MD5(secret, the packet with its Request Authenticator and the
// Message-Authenticator's value zeroed). True when there is none.
bool message_authenticator_ok(const Packet& p, std::string_view secret) noexcept;

// The Accounting-Response to `request`, no attributes (RFC 2866 §4.2):
// Response Authenticator = MD5(5 | Identifier | 20 | request authenticator | secret).
std::array<uint8_t, kHeaderBytes> accounting_response(const Packet& request, std::string_view secret) noexcept;

// Typed values (RFC 8044); nullopt when the value has the wrong length or shape.
std::optional<uint32_t> integer(std::span<const uint8_t> v) noexcept;
std::optional<IpAddr> ipv4_address(std::span<const uint8_t> v) noexcept;
std::optional<IpAddr> ipv6_address(std::span<const uint8_t> v) noexcept;
// RFC 3162 §2.3: reserved octet, prefix length (0..128), then at least the
// prefix's significant octets (up to 16). Bits past the length are cleared.
std::optional<Prefix> ipv6_prefix(std::span<const uint8_t> v) noexcept;
inline std::string_view text(std::span<const uint8_t> v) noexcept {
    return {reinterpret_cast<const char*>(v.data()), v.size()};
}

}  // namespace optgate::consentd::radius
