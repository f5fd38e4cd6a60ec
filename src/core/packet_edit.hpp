// In-place packet edits that keep headers and checksums consistent. Every
// stage that changes bytes goes through here, so lengths and checksums are
// fixed in one place, always incrementally (a wrong checksum stays wrong).
#pragma once

#include <cstdint>

#include "core/packet.hpp"

namespace optgate {

// The one's-complement sum of the L4 bytes [from, end of the L4 segment) at
// their parity relative to the L4 header: what a shrinking edit passes to
// udp_remove_bytes(), taken before any of those bytes change.
uint32_t l4_tail_sum(const uint8_t* frame, const ParsedPacket& p, uint32_t from) noexcept;

// Removes `count` bytes at frame offset `at` from a UDP datagram's payload:
// moves the rest of the frame down, then fixes the UDP length, the IPv4
// total length or IPv6 payload length, the IPv4 header checksum and the UDP
// checksum (left at zero if it was zero: "no checksum" over IPv4).
// The caller may also have changed bytes in [from, at) (from <= at);
// `old_tail_sum` is l4_tail_sum(frame, p, from) taken before it did. Only
// [from, end) is summed again, so the cost is that of the changed tail.
// Returns the new frame length; `p` is updated to the new lengths.
uint32_t udp_remove_bytes(uint8_t* frame, uint32_t frame_len, ParsedPacket& p, uint32_t from, uint32_t at,
                          uint32_t count, uint32_t old_tail_sum) noexcept;

// Overwrites `len` payload bytes at frame offset `at` (inside the TCP or UDP
// payload) with `fill`, fixing the L4 checksum incrementally. Same length.
void l4_fill_bytes(uint8_t* frame, const ParsedPacket& p, uint32_t at, uint32_t len, uint8_t fill) noexcept;

// Any other same-length rewrite of payload bytes (a pseudonym): take
// l4_run_sum of the `len` bytes at frame offset `at`, change them in place,
// then call l4_bytes_rewritten with that sum to fix the L4 checksum.
uint32_t l4_run_sum(const uint8_t* frame, const ParsedPacket& p, uint32_t at, uint32_t len) noexcept;
void l4_bytes_rewritten(uint8_t* frame, const ParsedPacket& p, uint32_t at, uint32_t len, uint32_t old_sum) noexcept;

// Sets the DSCP (upper six bits of the IPv4 TOS / IPv6 traffic class),
// keeping ECN; fixes the IPv4 header checksum. Returns true if it changed.
bool set_dscp(uint8_t* frame, const ParsedPacket& p, uint8_t dscp) noexcept;

// Reads the DSCP.
uint8_t get_dscp(const uint8_t* frame, const ParsedPacket& p) noexcept;

}  // namespace optgate
