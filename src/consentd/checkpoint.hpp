// Signed checkpoints of the ledger's head (docs/consentd.md, "Signed
// checkpoints"): (seq, head hash) signed with Ed25519 through OpenSSL and
// appended, one line each, to a file outside the database. Whoever can
// rewrite the database but not the key can then neither drop the newest
// events nor rewrite history and recompute the chain without verify-ledger
// --checkpoints noticing.
//
// The file holds one record a line (proto/checkpoint_record.hpp).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proto/checkpoint_record.hpp"

namespace optgate::consentd {

// ledger.checkpoints in consentd's config.
struct CheckpointConfig {
    std::string key;   // PEM Ed25519 private key (openssl genpkey -algorithm ed25519)
    std::string file;  // the append-only checkpoint file
    uint64_t every_events = 10000;
    std::chrono::milliseconds every{60000};
};

// The record format and the key: proto/checkpoint_record.hpp (the data
// planes read the same records).
using proto::CheckpointKey;
using proto::CheckpointLine;
using proto::key_line;
using proto::parse_checkpoint_line;
using proto::sign_checkpoint;
using Checkpoint = proto::CheckpointRecord;

// verify-ledger --checkpoints FILE [--public-key FILE]: every signature
// verifies (against the key line naming its key, or only against `pinned`
// when given), seqs never decrease, and for each record the ledger reaches
// its seq (else: truncated) and its event there has its head hash (else:
// rewritten). Reads one WAL snapshot of `database`.
struct CheckpointReport {
    bool ok = false;
    std::string problem;  // the first failure, with its line number
    uint64_t checkpoints = 0;
    std::optional<Checkpoint> latest;
    std::vector<std::string> key_ids;  // the keys that signed, in order of appearance
};
CheckpointReport verify_checkpoints(const std::string& database, const std::string& file,
                                    const std::optional<CheckpointKey>& pinned);

// The end of a checkpoint file, for consentd at start: its last record and
// the id of its last key line (both empty when the file does not exist).
// Throws std::runtime_error on a malformed line.
struct CheckpointTail {
    std::optional<Checkpoint> last;
    std::string key_id;
};
CheckpointTail read_checkpoint_tail(const std::string& file);

}  // namespace optgate::consentd
