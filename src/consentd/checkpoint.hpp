// Signed checkpoints of the ledger's head (docs/consentd.md, "Signed
// checkpoints"): (seq, head hash) signed with Ed25519 through OpenSSL and
// appended, one line each, to a file outside the database. Whoever can
// rewrite the database but not the key can then neither drop the newest
// events nor rewrite history and recompute the chain without verify-ledger
// --checkpoints noticing.
//
// The file, one record a line (text, "\n"-terminated):
//   optgate-checkpoint-key-v1 key=KEYID public=HEX
//       the public key of the records after it (written when consentd opens
//       the file with a key whose id differs from the previous key line's);
//   optgate-checkpoint-v1 seq=N head=HEX time=RFC3339 key=KEYID sig=HEX
//       the signature covers the line's bytes before " sig=".
// KEYID: the first 16 hex digits of SHA-256 of the raw 32-byte public key.
#pragma once

#include <openssl/evp.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace optgate::consentd {

// ledger.checkpoints in consentd's config.
struct CheckpointConfig {
    std::string key;   // PEM Ed25519 private key (openssl genpkey -algorithm ed25519)
    std::string file;  // the append-only checkpoint file
    uint64_t every_events = 10000;
    std::chrono::milliseconds every{60000};
};

// An Ed25519 key (private, or public only) from a PEM file.
class CheckpointKey {
public:
    // `openssl genpkey -algorithm ed25519 -out FILE`. Throws std::runtime_error
    // naming the file and what is wrong with it.
    static CheckpointKey load_private(const std::string& path);
    // `openssl pkey -in KEY -pubout -out FILE`, or a private key file.
    static CheckpointKey load_public(const std::string& path);
    // From the raw 32 bytes (a key line's public=); nullopt if not a key.
    static std::optional<CheckpointKey> from_raw_public(std::string_view raw);

    const std::string& id() const noexcept { return id_; }
    const std::string& raw_public() const noexcept { return raw_public_; }
    // 64 bytes. Throws std::runtime_error without a private key.
    std::string sign(std::string_view message) const;
    bool verify(std::string_view message, std::string_view signature) const;

private:
    explicit CheckpointKey(EVP_PKEY* key);
    struct Free {
        void operator()(EVP_PKEY* k) const noexcept { EVP_PKEY_free(k); }
    };
    std::shared_ptr<EVP_PKEY> key_;
    std::string raw_public_, id_;
};

struct Checkpoint {
    uint64_t seq = 0;
    std::string head;  // hex, as the events table stores it
    std::string time;  // when it was signed, UTC, RFC 3339 with ms
    std::string key_id;
    std::string signature;  // raw 64 bytes

    std::string signed_text() const;  // the line before " sig="
    std::string line() const;         // without the "\n"
};

Checkpoint sign_checkpoint(const CheckpointKey& key, uint64_t seq, std::string head, std::string time);
std::string key_line(const CheckpointKey& key);

// One line of the file, read.
struct CheckpointLine {
    std::optional<Checkpoint> checkpoint;  // a record...
    std::optional<CheckpointKey> key;      // ...or a key line
};
// nullopt and `why` for a line that is neither, or malformed.
std::optional<CheckpointLine> parse_checkpoint_line(std::string_view line, std::string& why);

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
