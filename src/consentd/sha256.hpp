// SHA-256 through OpenSSL's libcrypto: API token hashes and the ledger's hash
// chain. Hex is lowercase.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace optgate::consentd {

using Digest = std::array<uint8_t, 32>;

Digest sha256(std::string_view data);
// SHA-256 of a || b without concatenating them first.
Digest sha256(std::string_view a, std::string_view b);

std::string to_hex(std::span<const uint8_t> bytes);
// 64 hex digits (either case); nullopt otherwise.
std::optional<Digest> digest_from_hex(std::string_view hex);

// Compares in time independent of where the digests differ.
bool digest_equal(const Digest& a, const Digest& b) noexcept;

}  // namespace optgate::consentd
