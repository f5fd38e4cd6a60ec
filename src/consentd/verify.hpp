// Offline ledger verification (optgatectl verify-ledger): re-walks the hash
// chain from the first event, recomputes the derived state by folding the
// events (fold.hpp), and compares it with the stored consents and bindings
// tables. Stops at the first inconsistency. Safe on a live database: it reads
// one WAL snapshot.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace optgate::consentd {

struct VerifyReport {
    bool ok = false;
    std::string problem;  // the first inconsistency, or why the file could not be read
    uint64_t events = 0;
    std::string head_hash;
    uint64_t consents = 0;
    uint64_t bindings = 0;
    uint64_t subscribers = 0;
    uint64_t policies = 0;  // rows of the policy history (policy_history.hpp)
};

VerifyReport verify_ledger(const std::string& path);

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
