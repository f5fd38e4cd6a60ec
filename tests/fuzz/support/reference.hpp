// What the fuzz targets check the core against, written apart from the core
// (no src/core code here): where a frame's layers are, whether its checksums
// are right as a receiver sees them, which HTTP bytes are identifier values,
// and what a DNS query looks like with its identifier options made Padding.
//
// Each reader is deliberately no more lenient than the core where the core
// documents a limit (two VLAN tags, eight IPv6 extension headers, DNS
// compression pointers that point backwards): an input the reference
// accepts is one the core must handle, so a disagreement is a finding.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace optgate::fuzz {

using Bytes = std::vector<uint8_t>;

inline uint16_t get16(const uint8_t* p) { return uint16_t(p[0] << 8 | p[1]); }
inline void put16(uint8_t* p, uint16_t v) {
    p[0] = uint8_t(v >> 8);
    p[1] = uint8_t(v);
}

// A frame's layers: Ethernet, at most two 802.1Q/802.1ad tags, IPv4 (with
// options) or IPv6 (hop-by-hop, routing, destination options, AH), then TCP
// with a valid data offset or UDP whose length fits the IP payload.
// Fragments (IPv4 MF/offset, any IPv6 fragment header) are `fragment` and
// have no L4 view.
struct FrameView {
    bool ip = false;  // Ethernet + IP with lengths inside the frame
    bool v6 = false;
    bool fragment = false;
    bool l4 = false;      // a whole TCP or UDP datagram, as above
    bool routed = false;  // IPv6 routing header with segments left: the pseudo-header uses another address
    size_t l3 = 0, ip_header = 0, l4_at = 0, ip_end = 0;
    uint8_t proto = 0;
    size_t payload = 0, payload_end = 0;  // TCP: to ip_end; UDP: to the UDP length
    uint16_t sport = 0, dport = 0;
    uint32_t seq = 0;
    uint8_t tcp_flags = 0;
    size_t src_at = 0, dst_at = 0;  // address bytes (4 or 16) in the frame

    size_t addr_len() const { return v6 ? 16 : 4; }
};

FrameView read_frame(const uint8_t* f, size_t len);
inline FrameView read_frame(const Bytes& f) { return read_frame(f.data(), f.size()); }

// Checksums as a receiver checks them: the IPv4 header checksum; TCP over
// the IP payload; UDP over its own length (a receiver ignores IP payload
// bytes past it), 0 meaning "none" over IPv4 only. nullopt when the frame
// has no whole TCP/UDP datagram to check or a routing header changes the
// pseudo-header.
std::optional<bool> checksums_ok(const uint8_t* f, size_t len, std::string* why = nullptr);
inline std::optional<bool> checksums_ok(const Bytes& f, std::string* why = nullptr) {
    return checksums_ok(f.data(), f.size(), why);
}
// Sets the IPv4 header checksum and the TCP/UDP checksum (as above) right.
void fix_checksums(uint8_t* f, size_t len);

// ---- HTTP ----

// A run of identifier value bytes in a client's stream, [begin, end). CR
// bytes inside are not required to change (a bare CR stays; docs/http.md).
struct ValueRange {
    size_t begin, end;
};

// The identifier values that the HTTP stage must overwrite on a strip
// verdict, per docs/http.md, found without the core's parser:
//  - `midstream` (a flow met without SYN, read in conservative mode from
//    its first byte): every line that starts with an identifier name, then
//    optional spaces/tabs and ':', and the obs-fold lines after it;
//  - otherwise (the stream starts at a request): the header section of
//    each request, the request line excluded, while requests have no body
//    (no Content-Length or Transfer-Encoding line: after one, the body's
//    extent would need the core's own framing, so checking stops).
// `names` are lowercase. A value runs from after the colon and spaces/tabs
// to the LF (its CR excluded); a fold line's value from after its leading
// whitespace.
std::vector<ValueRange> http_identifier_values(std::string_view stream, const std::vector<std::string>& names,
                                               bool midstream);

// Describes a byte for failure messages.
std::string show_bytes(std::string_view s, size_t at, size_t context = 24);

// ---- DNS ----

// A DNS query read by RFC 1035/6891 rules: QR=0, every record inside the
// message, names of labels (<= 63 bytes, <= 255 in all) ending at the root
// or at a compression pointer to before the name, at most one OPT record,
// in the additional section, owned by the root, whose options fill its
// RDATA exactly. Bytes after the last record are allowed (as by resolvers).
struct DnsOptView {
    size_t rdlength_at = 0;  // message offset of the OPT RDLENGTH
    size_t rdata_begin = 0, rdata_end = 0;
};
struct DnsQueryView {
    bool well_formed = false;
    std::optional<DnsOptView> opt;
};
DnsQueryView read_dns_query(const uint8_t* msg, size_t len);

// The message with every option whose code is in `codes` made a Padding
// option (code 12, RFC 7830) of the same length with zeroed content; the
// message itself if there is none.
Bytes dns_options_padded(const uint8_t* msg, size_t len, const DnsQueryView& q, const std::vector<uint16_t>& codes);
// Option codes in the OPT record of a well-formed query.
std::vector<uint16_t> dns_option_codes(const uint8_t* msg, const DnsQueryView& q);

std::string hex(const uint8_t* p, size_t n, size_t max = 96);

}  // namespace optgate::fuzz
