// Ledger verification (optgatectl verify-ledger, and consentd at every
// start): checks that the schema holds only what consentd creates
// (schema.hpp), re-walks the hash chain from the first event, recomputes the
// derived state by folding the events (fold.hpp), and compares it with the
// stored consents and bindings tables. Stops at the first inconsistency.
// Safe on a live database: it reads one WAL snapshot.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace optgate::consentd {

class Ledger;

// What the first inconsistency is in. Only `derived` can be repaired: the
// events are the record, consents and bindings their fold.
enum class Damage { unreadable, schema, chain, derived, policies };

struct VerifyReport {
    bool ok = false;
    std::string problem;                 // the first inconsistency, or why the file could not be read
    Damage damage = Damage::unreadable;  // when !ok
    uint64_t events = 0;
    std::string head_hash;
    uint64_t consents = 0;
    uint64_t bindings = 0;
    uint64_t subscribers = 0;  // not counted by check_ledger_at_start()
    uint64_t policies = 0;     // rows of the policy history (policy_history.hpp)
};

VerifyReport verify_ledger(const std::string& path);

// consentd's start (docs/consentd.md, "Startup integrity check"): the same
// checks on the ledger's own connection. With `rebuild`
// (--rebuild-derived-tables), derived tables that disagree with the events
// are replaced by the fold of the events and checked again; a damaged
// schema, chain or policy history is never repaired.
struct StartupCheck {
    VerifyReport report;  // of the ledger as consentd will serve it
    std::string rebuilt;  // the first difference a rebuild replaced; empty when none
};
StartupCheck check_ledger_at_start(Ledger& ledger, bool rebuild);

// verify-ledger --receipt (docs/receipts.md): the receipt's event exists at
// its seq, the chain verifies from event 1 up to it, its hash is the
// receipt id, and every field equals the receipt built again from that event
// and the policy recorded for it. `receipt` is the JSON of a receipt, or of
// a grant or revoke answer that holds one.
struct ReceiptCheck {
    bool ok = false;
    std::string problem;  // the first difference, or why it could not be checked
    uint64_t seq = 0;
    std::string receipt_id;
};

ReceiptCheck verify_receipt(const std::string& path, std::string_view receipt);

}  // namespace optgate::consentd
