// What a data plane reports about identifiers it passed and stripped, per
// subscriber key, destination and identifier (docs/transparency.md). The
// seam between the three layers that make the transparency view:
//
//   core (per-worker DisclosureTable, drained by the control thread)
//     ─► DisclosureBatch ─► proto (disclosure frame, ids, resend until acked)
//     ─► consentd (attribution to subscribers through the binding history)
//
// Names, not indices: consentd may run another policy version than the data
// plane that counted, so the report says what each count is about in words.
// Cold path only: built on the control thread, never on the packet path.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "core/addr.hpp"

namespace optgate {

// The identifier name of the rows that count, per destination, identifier
// instances stripped only because the request carried Sec-GPC: 1 (Global
// Privacy Control, docs/http.md#global-privacy-control). In parentheses, like
// the "(none)" destination: never a name the policy gives.
inline constexpr const char* kGpcIdentifierName = "(Global Privacy Control)";
// Appended to the identifier name of rows that count values passed as a
// collector's pseudonym (docs/http.md#pseudonyms), so that a subscriber can
// be told "shared as a pseudonym" apart from "shared". The policy loader
// refuses identifier names that end with it.
inline constexpr const char* kPseudonymSuffix = " (pseudonym)";

struct DisclosureEntry {
    // The subscriber key as in the consent table: the IPv4 address (bytes
    // 0..3), or the IPv6 address masked to the policy's ipv6_key_length.
    Family family = Family::v4;
    std::array<uint8_t, 16> key{};
    std::string destination;  // collector or exemption name; "(none)": neither
    std::string identifier;   // the policy's identifier name
    uint64_t passed = 0;      // identifier instances (header lines, EDNS0 options)
    uint64_t stripped = 0;

    friend bool operator==(const DisclosureEntry&, const DisclosureEntry&) = default;
};

// The counts of one interval [start, end), wall clock (Unix ms), summed over
// every worker. `overflowed`: identifier instances counted in that interval
// that found no room in a worker's table (they are in the global counters,
// not here).
struct DisclosureBatch {
    uint64_t start_unix_ms = 0;
    uint64_t end_unix_ms = 0;
    uint64_t overflowed = 0;
    std::vector<DisclosureEntry> entries;
};

}  // namespace optgate
