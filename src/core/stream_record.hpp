// What a TCP stage remembers of the stream bytes it forwarded, so that a
// retransmission of them can be checked (docs/http.md, "Retransmissions").
//
// A sender's TCP resends the bytes it sent the first time; a retransmission
// that carries other bytes over positions already forwarded is an insertion
// or evasion attempt (Ptacek & Newsham 1998): the receiver may keep either
// copy. Keeping the forwarded bytes themselves (the normaliser of Handley,
// Paxson & Kreibich 2001) costs a buffer per flow; instead a stage keeps a
// keyed 64-bit fingerprint of the bytes it forwarded from each of the
// flow's last segments that it parsed, and drops a retransmission whose
// bytes over such a segment are not exactly what was forwarded, or that
// covers only part of one (it cannot be checked). The sender's TCP resends;
// an honest sender resends the same bytes.
#pragma once

#include <cstdint>

namespace optgate {

// Whether TCP sequence number a comes before b, modulo 2^32 (RFC 793 3.3;
// RFC 1982 serial number arithmetic): shared by the TCP stages.
inline bool seq_before(uint32_t a, uint32_t b) noexcept { return int32_t(a - b) < 0; }

// Keyed fingerprint of a byte run (Carter-Wegman): the polynomial whose
// coefficients are the run's 7-byte little-endian words, and the length,
// evaluated at a secret point modulo the prime 2^61 - 1. Two different runs
// of the same length collide with probability at most (words + 1) / 2^61
// over the key, which senders do not know: they cannot craft other bytes
// with the fingerprint of what was forwarded. Words go four at a time
// (h = h*r^4 + a*r^3 + b*r^2 + c*r + d), so the multiplications overlap.
class StreamFingerprint {
public:
    explicit StreamFingerprint(uint64_t key) noexcept;
    // A key from getrandom(2) (cold: a stage's constructor).
    static StreamFingerprint random() noexcept;

    uint64_t operator()(const uint8_t* d, uint32_t n) const noexcept;

private:
    uint64_t r1_, r2_, r3_, r4_;  // the point and its powers
};

// The fingerprints of the flow's last kRanges forwarded segments that were
// parsed (one run per segment: from its first byte the parser read, body
// bytes skipped unread before it excluded, to its end), oldest first.
struct ForwardedRecord {
    static constexpr unsigned kRanges = 4;
    uint32_t seq[kRanges] = {};
    uint16_t len[kRanges] = {};
    uint8_t count = 0;
    uint64_t hash[kRanges] = {};

    // Remembers a run. When full, the oldest is forgotten and its end is
    // returned in `forgotten_end` (true): bytes before it can no longer be
    // checked.
    bool push(uint32_t at, uint32_t n, uint64_t h, uint32_t& forgotten_end) noexcept;

    enum class Check : uint8_t { consistent, inconsistent, unverifiable };
    // Checks `n` bytes at stream position `at` (already given the recorded
    // rewrite, so that they read as forwarded): every remembered run inside
    // them must have its fingerprint; one they cover only in part cannot be
    // checked. Bytes outside every run are not this record's business.
    Check check(uint32_t at, const uint8_t* d, uint32_t n, const StreamFingerprint& fp) const noexcept;
};

}  // namespace optgate
