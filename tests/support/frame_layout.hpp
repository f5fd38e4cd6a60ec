// Where the layers of a frame are, found by the test support's own small
// parser (not the core's): used by verify_checksums() and the fragment
// helpers. Internal to tests/support.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "packet_builder.hpp"

namespace optgate::test::detail {

struct ExtHeaderPos {
    uint8_t type;   // the next-header value that announced this header
    size_t offset;  // in the frame
    size_t length;  // bytes
};

struct FrameLayout {
    std::string error;  // non-empty: the frame is not Ethernet + IP with sane lengths
    size_t l3 = 0;      // IP header offset
    int ip_version = 0;
    size_t ip_header_len = 0;       // IPv4 IHL * 4, IPv6 40
    size_t ip_end = 0;              // end of the datagram per the IP length field
    std::vector<ExtHeaderPos> ext;  // IPv6 extension headers, in chain order
    uint8_t l4_proto = 0;           // protocol / last next-header
    size_t l4 = 0;                  // upper-layer offset (or fragment data)
    bool fragment = false;          // part of a fragmented datagram (not a whole one)
    // Pseudo-header destination from a routing header with segments left.
    std::optional<std::array<uint8_t, 16>> final_dst;
};

FrameLayout parse_frame(const Bytes& frame);

}  // namespace optgate::test::detail
