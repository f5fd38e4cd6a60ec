// consentd's pseudonym keys (docs/consentd.md, "Pseudonym keys"): one
// random 128-bit key per (collector with `deliver: pseudonym`, rotation
// period), made with RAND_bytes, kept durably, sent to data planes
// (docs/protocol.md, "Pseudonym keys").
//
//  - Periods are numbered floor(unix_time / (rotate days * 86400)), so every
//    consentd and data plane agrees on where one ends without talking. The
//    key of the current period and of the next are kept and sent: a data
//    plane switches at the boundary by its own clock, with no gap while
//    consentd's next frame travels.
//  - The store is a file of its own, `<database>.pseudonym-keys`, mode 0600,
//    written whole to a temporary file, fsync'd and renamed over the old one
//    (then the directory fsync'd) before a new key is handed out: a restart
//    within a period finds the same key, so collectors see the same
//    pseudonyms. Not a ledger table: the ledger is the audit record, copied
//    to auditors and checked by verify-ledger; keys are secrets that must
//    not travel with it.
//  - A key is deleted once its period has ended (and only then): pseudonyms
//    of past periods cannot be made again, from this file or a backup taken
//    later. A collector removed from the policy keeps its keys until their
//    periods end, so removing and re-adding it within a period (a reload
//    undone) changes nothing; a changed `rotate` starts new keys (a key
//    belongs to one period length).
//  - Never logged, never in metrics or API answers; cleared on free
//    (OPENSSL_cleanse).
//
// Not thread-safe: the publisher's io thread owns it.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/policy.hpp"

namespace optgate::consentd {

struct PeriodKey {
    std::string collector;
    unsigned rotate_days = 0;
    uint64_t period = 0;  // floor(unix_s / (rotate_days * 86400))
    PseudonymKey key{};

    uint64_t period_seconds() const noexcept { return uint64_t(rotate_days) * 86400; }
    uint64_t not_before() const noexcept { return period * period_seconds(); }
    uint64_t not_after() const noexcept { return (period + 1) * period_seconds(); }
};

class PseudonymKeyStore {
public:
    using UnixClock = std::function<uint64_t()>;  // seconds; default time()

    // Reads the store if it exists. Throws std::runtime_error naming the
    // file and line (never a key) if it does not parse, or if group or
    // others may read it.
    explicit PseudonymKeyStore(std::string path, UnixClock unix_now = {});
    ~PseudonymKeyStore();
    PseudonymKeyStore(const PseudonymKeyStore&) = delete;
    PseudonymKeyStore& operator=(const PseudonymKeyStore&) = delete;

    // The keys data planes need now under `policy`: for every collector
    // with `deliver: pseudonym`, the current period's and the next's,
    // made and stored first if missing; keys whose period ended are
    // deleted. Throws std::runtime_error if the store cannot be written
    // (then nothing new is handed out, and the store is as it was).
    std::vector<PeriodKey> keys_for(const Policy& policy);

    // When keys_for will answer differently without a policy change: the
    // earliest end of a current period among `policy`'s collectors (unix
    // seconds); 0 without pseudonym collectors.
    uint64_t next_change(const Policy& policy) const;

    const std::string& path() const noexcept { return path_; }
    size_t size() const noexcept { return keys_.size(); }

private:
    void save() const;

    std::string path_;
    UnixClock unix_now_;
    std::vector<PeriodKey> keys_;
};

}  // namespace optgate::consentd
