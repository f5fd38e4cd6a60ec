// DNS messages for tests: queries with an EDNS0 OPT record (RFC 6891) and
// options such as Client Subnet (RFC 7871). Names are written without
// compression. Malformed messages: override the counts, or append raw RRs.
//
//   Bytes q = dns_query({.qname = "example.com", .edns_udp_size = 1232,
//                        .options = {{8, ecs_option_data("100.64.0.0/24")},
//                                    {65001, from_hex("02 00 00 00 00 01")}}});
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "packet_builder.hpp"

namespace optgate::test {

inline constexpr uint16_t kEdnsClientSubnet = 8;

struct EdnsOption {
    uint16_t code = 0;
    Bytes data{};
};

// What optgate leaves of an identifier option on a strip verdict: a
// Padding option (code 12, RFC 7830) of the same length, zeroed.
inline EdnsOption padding_for(const EdnsOption& o) { return {12, Bytes(o.data.size(), 0)}; }

// RFC 7871 option data (without code/length): family (1 IPv4, 2 IPv6),
// source prefix length, scope, then the address truncated to
// ceil(source / 8) bytes with the bits past the prefix zeroed.
// "100.64.0.0/24" -> 00 01 18 00 64 40 00. A bare address is a full-length
// prefix. Throws std::invalid_argument.
Bytes ecs_option_data(std::string_view prefix, uint8_t scope = 0);

// EDNS options the tests put in queries: the sample policy's identifiers
// (a client subnet, RFC 7871; a MAC, 65001; a CPE id, 65074) and a cookie
// (RFC 7873), which is not one.
inline const EdnsOption kEcs4{kEdnsClientSubnet, ecs_option_data("100.64.0.0/24")};
inline const EdnsOption kEcs6{kEdnsClientSubnet, ecs_option_data("2001:db8:1000::/56")};
inline const EdnsOption kMac{65001, {0x02, 0x42, 0xac, 0x11, 0x00, 0x02}};
inline const EdnsOption kCpe{65074, {0, 0, 0, 42}};
inline const EdnsOption kCookie{10, {1, 2, 3, 4, 5, 6, 7, 8}};

struct DnsQuery {
    uint16_t id = 0x1234;
    std::string qname = "example.com";
    uint16_t qtype = 1;   // A
    uint16_t qclass = 1;  // IN
    bool rd = true;
    std::optional<uint16_t> edns_udp_size{};  // set: an OPT RR (root owner) in the additional section
    std::vector<EdnsOption> options{};        // OPT options, in order
    bool do_bit = false;
    std::vector<Bytes> extra_additional{};  // raw RRs after the OPT (e.g. to test "OPT not last")
    // Overrides of the header counts (malformed messages); default: what is there.
    std::optional<uint16_t> qdcount{}, ancount{}, nscount{}, arcount{};
};

// Header, one question, then [OPT] + extra_additional.
Bytes dns_query(const DnsQuery& q);

// Wire-format name: "example.com" / "example.com." -> 07 example 03 com 00;
// "" or "." is the root. Throws on empty or > 63-byte labels, > 255 bytes.
Bytes dns_name(std::string_view name);

// A resource record: name, type, class, TTL, RDLENGTH, RDATA.
Bytes dns_rr(std::string_view name, uint16_t type, uint16_t rclass, uint32_t ttl, const Bytes& rdata);

// An OPT RR: root owner, type 41, class = UDP payload size, extended RCODE
// and version 0, DO flag, then the options as code/length/data.
Bytes edns_opt_rr(uint16_t udp_size, const std::vector<EdnsOption>& options, bool do_bit = false);

}  // namespace optgate::test
