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
    // A collector that receives pseudonyms (Collector::deliver): identifier
    // values pass replaced by keyed pseudonyms, never as they are. Only the
    // HTTP stage can write one; every other stage strips them (!passes).
    pass_pseudonym,
    strip_no_pseudonym_key,  // a pseudonym collector whose key has not arrived
};

// The identifiers leave as they are.
inline constexpr bool passes(Verdict v) noexcept { return v == Verdict::pass_consent || v == Verdict::pass_exempt; }
// The identifiers leave as pseudonyms (HTTP only).
inline constexpr bool pseudonymises(Verdict v) noexcept { return v == Verdict::pass_pseudonym; }

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
    // The collector receives pseudonyms (Collector::deliver), and whether
    // its key is there.
    bool pseudonym = false;
    bool pseudonym_key = false;
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
    if (in.pseudonym) return in.pseudonym_key ? Verdict::pass_pseudonym : Verdict::strip_no_pseudonym_key;
    return Verdict::pass_consent;
}

// Global Privacy Control (docs/http.md#global-privacy-control): a request
// carrying Sec-GPC: 1 withdraws, for that request, the consent of every
// purpose that honours it. Exemptions do not rest on consent and are not
// affected; a strip stays a strip.
inline constexpr Verdict with_gpc(Verdict v, bool purpose_honours_gpc) noexcept {
    return (v == Verdict::pass_consent || v == Verdict::pass_pseudonym) && purpose_honours_gpc ? Verdict::strip_gpc : v;
}

static_assert(verdict_counter(Verdict::strip_no_pseudonym_key) == Counter::verdict_strip_no_pseudonym_key,
              "verdict counters must follow the Verdict enum order");

}  // namespace optgate
