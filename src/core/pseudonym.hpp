// Per-collector pseudonyms (docs/http.md#pseudonyms): an identifier value
// replaced by a keyed pseudonym of the same length and character class, so
// that nothing downstream that checks a value's shape breaks, and so that
// two collectors (two keys) cannot link their data through it.
//
//   class of the value                    pseudonym bytes
//   digits only                           digits
//   hex digits, letters in one case       hex digits, letters in that case
//   base64 (A-Za-z0-9 + / or - _),        the same alphabet; '=' padding
//     '=' padding only at the end           kept where it is
//   anything else                         token characters (RFC 9110 tchar)
//
// The pseudonym is a function of the collector's key and the value's bytes
// only: not of the subscriber's address (it would change with every new
// address and so break the stability a collector relies on, and it adds no
// unlinkability across collectors, which the keys give). One key per
// collector and rotation period: a new key, new pseudonyms.
//
// The keyed hash is SipHash-2-4 written here (siphash24), not OpenSSL's
// EVP_MAC: OpenSSL can run it without allocating (a context made once,
// re-initialised with its key kept; 110 ns per 36-byte value here), but a
// context is mutable, so every worker would need its own per collector,
// made again at every key change inside the worker. A plain function of an
// immutable key shared read-only by workers needs none of that and costs
// less (docs/benchmarks.md, "Pseudonyms"). Tested against the reference
// implementation's vectors (tests/core/test_pseudonym.cpp).
//
// The value's 64-bit SipHash seeds a SplitMix64 stream that picks each
// output character (multiply-shift into the alphabet): 64 bits of the key's
// secret per value, enough that pseudonyms of distinct values collide only
// by chance (2^-32 at 4 billion values).
//
// Hot path: no allocation, no exceptions; about one SipHash pass over the
// value plus a few cycles per byte.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/policy.hpp"

namespace optgate {

// SipHash-2-4 (Aumasson and Bernstein 2012) of `n` bytes under a 128-bit key
// (k0 = key bytes 0..7 little-endian, k1 = bytes 8..15), 64-bit output.
uint64_t siphash24(const PseudonymKey& key, const uint8_t* d, size_t n) noexcept;

enum class ValueClass : uint8_t { digits, hex_lower, hex_upper, base64, base64url, token };

// The class of a value (the table above). Empty values are `token`.
ValueClass value_class(const uint8_t* d, size_t n) noexcept;

// Writes the pseudonym of d[0, n) under `key` into out[0, n) (`out` may be
// `d`).
void pseudonymise(const PseudonymKey& key, const uint8_t* d, size_t n, uint8_t* out) noexcept;

}  // namespace optgate
