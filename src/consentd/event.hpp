// A ledger event and its place in the hash chain (docs/consentd.md, "Hash
// chain").
//
//   hash(n) = SHA-256( raw 32 bytes of hash(n-1) || canonical(event n) )
//   hash(0) = 32 zero bytes (the "previous hash" of event 1)
//   canonical(e) = "optgate-ledger-v1\n" then, in this order, seq (decimal),
//     time, subscriber, action, purpose, address, source, notice_version,
//     credential, each encoded as 0x00 when NULL, else
//     0x01 || uint32 big-endian byte length || UTF-8 bytes.
//
// Length prefixes make the encoding unambiguous, so no two different events
// share a canonical form and an auditor can recompute it in a few lines.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "consentd/sha256.hpp"

namespace optgate::consentd {

enum class Action : uint8_t { grant, revoke, bind, unbind };
inline constexpr unsigned kActionCount = 4;

std::string_view to_string(Action a) noexcept;
std::optional<Action> parse_action(std::string_view s) noexcept;

struct Event {
    uint64_t seq = 0;
    std::string time;  // UTC, RFC 3339 with milliseconds: 2024-05-01T12:00:00.123Z
    std::string subscriber;
    Action action = Action::grant;
    std::optional<std::string> purpose;  // grant, revoke
    std::optional<std::string> address;  // bind, unbind: the canonical key text
    std::string source;                  // channel: portal, call-centre, import...
    std::optional<std::string> notice_version;
    std::string credential;  // the API token's name, never the token
    std::string prev_hash;   // hex
    std::string hash;        // hex
};

inline const std::string kGenesisHash(64, '0');

std::string canonical_encoding(const Event& e);
Digest event_hash(const Digest& prev, const Event& e);

// Which fields an action requires: purpose for grant/revoke, address for
// bind/unbind, never both; a notice_version on every grant, none on
// bind/unbind. Empty when the event is well formed.
std::string shape_error(const Event& e);

std::string format_utc_ms(std::chrono::system_clock::time_point t);
// An RFC 3339 date-time ("2024-05-01T14:00:00+02:00", "2024-05-01T12:00:00.5Z";
// 't', 'z' and a space for 'T' accepted), to milliseconds (finer digits are
// dropped); nullopt with `error` saying what is wrong.
std::optional<std::chrono::system_clock::time_point> parse_rfc3339(std::string_view text, std::string& error);

}  // namespace optgate::consentd
