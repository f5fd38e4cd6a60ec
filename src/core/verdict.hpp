// The verdict rule: the one place that decides whether identifiers pass.
//
// Identifiers on a packet pass only if
//   - the consent table is fresh (received, and not older than the policy's
//     staleness limit), and
//   - the packet comes from a subscriber, and
//   - its destination is an exemption, or a collector whose purpose is in
//     that subscriber's consent (and, for an HTTP request carrying
//     Sec-GPC: 1, whose purpose does not honour it: with_gpc below).
// Every other case strips: opt-in is the default and failure is closed. A
// stale or missing table strips everything, exemptions included ("strip
// everything" is always the safe side for the subscriber).
#pragma once

#include <cstdint>

#include "core/consent_table.hpp"
#include "core/counters.hpp"
#include "core/runtime.hpp"

namespace optgate {

enum class TableHealth : uint8_t { not_received, fresh, stale };

enum class Verdict : uint8_t {
    pass_consent,
    pass_exempt,
    strip_not_subscriber,
    strip_unknown_subscriber,
    strip_no_collector,
    strip_no_consent,
    strip_table_not_received,
    strip_table_stale,
    strip_out_of_sync,
    strip_gpc,
};

inline constexpr bool passes(Verdict v) noexcept { return v == Verdict::pass_consent || v == Verdict::pass_exempt; }

// The counter for each verdict (same order as the enum).
inline constexpr Counter verdict_counter(Verdict v) noexcept {
    return Counter(unsigned(Counter::verdict_pass_consent) + unsigned(v));
}

struct VerdictInputs {
    TableHealth health = TableHealth::not_received;
    bool from_subscriber = false;
    Destination destination;
    // The HTTP stage lost sync and the destination could only be a collector
    // by hostname: no host, no pass.
    bool out_of_sync = false;
};

// `consent` is looked up lazily: only when a collector decides.
template <class ConsentFn>
inline Verdict decide(const VerdictInputs& in, unsigned collector_purpose, ConsentFn&& consent) noexcept {
    if (in.health == TableHealth::not_received) return Verdict::strip_table_not_received;
    if (in.health == TableHealth::stale) return Verdict::strip_table_stale;
    if (!in.from_subscriber) return Verdict::strip_not_subscriber;
    switch (in.destination.kind) {
    case Destination::Kind::exemption: return Verdict::pass_exempt;
    case Destination::Kind::none: return in.out_of_sync ? Verdict::strip_out_of_sync : Verdict::strip_no_collector;
    case Destination::Kind::collector: break;
    }
    const ConsentLookup c = consent();
    if (!c.found) return Verdict::strip_unknown_subscriber;
    if (!(c.purposes & (PurposeMask(1) << collector_purpose))) return Verdict::strip_no_consent;
    return Verdict::pass_consent;
}

// Global Privacy Control (docs/http.md#global-privacy-control): a request
// carrying Sec-GPC: 1 withdraws, for that request, the consent of every
// purpose that honours it. Exemptions do not rest on consent and are not
// affected; a strip stays a strip.
inline constexpr Verdict with_gpc(Verdict v, bool purpose_honours_gpc) noexcept {
    return v == Verdict::pass_consent && purpose_honours_gpc ? Verdict::strip_gpc : v;
}

static_assert(verdict_counter(Verdict::strip_gpc) == Counter::verdict_strip_gpc,
              "verdict counters must follow the Verdict enum order");

}  // namespace optgate
