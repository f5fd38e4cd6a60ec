// In-place packet edits that keep headers and checksums consistent. Every
// stage that changes bytes goes through here, so checksums are fixed in one
// place, always incrementally (a wrong checksum stays wrong). No edit
// changes a packet's length: TCP payloads keep theirs (no sequence
// rewriting), and DNS over UDP makes options Padding instead of cutting them.
#pragma once

#include <cstdint>

#include "core/packet.hpp"

namespace optgate {

// The caller changed L4 payload bytes in place (the length kept); their
// one's-complement sums before and after are `old_sum` and `new_sum`, taken
// at their parity relative to the L4 header (checksum::sum's odd_start).
// Fixes the L4 checksum (a zero UDP checksum over IPv4, "none", stays zero)
// and every outer checksum of an encapsulation that covers the bytes.
void l4_payload_changed(uint8_t* frame, const ParsedPacket& p, uint32_t old_sum, uint32_t new_sum) noexcept;

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
