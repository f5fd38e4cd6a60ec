// Offline ledger verification (optgatectl verify-ledger): re-walks the hash
// chain from the first event, recomputes the derived state by folding the
// events (fold.hpp), and compares it with the stored consents and bindings
// tables. Stops at the first inconsistency. Safe on a live database: it reads
// one WAL snapshot.
#pragma once

#include <cstdint>
#include <string>

namespace optgate::consentd {

struct VerifyReport {
    bool ok = false;
    std::string problem;  // the first inconsistency, or why the file could not be read
    uint64_t events = 0;
    std::string head_hash;
    uint64_t consents = 0;
    uint64_t bindings = 0;
    uint64_t subscribers = 0;
};

VerifyReport verify_ledger(const std::string& path);

}  // namespace optgate::consentd
