// The signed ledger checkpoint's record (docs/consentd.md, "Signed
// checkpoints"): one format for consentd, which signs records and appends
// them to its checkpoint file (consentd/checkpoint.hpp), for the checkpoint
// frame that carries the latest record to data planes (wire.hpp), and for
// the data plane that verifies and keeps it (CheckpointWitness below).
// Ed25519 through OpenSSL's EVP API.
//
// One record a line (text, "\n"-terminated in the file):
//   optgate-checkpoint-key-v1 key=KEYID public=HEX
//       the public key of the records after it (written when consentd opens
//       the file with a key whose id differs from the previous key line's);
//   optgate-checkpoint-v1 seq=N head=HEX time=RFC3339 key=KEYID sig=HEX
//       the signature covers the line's bytes before " sig=".
// KEYID: the first 16 hex digits of SHA-256 of the raw 32-byte public key.
#pragma once

#include <openssl/evp.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace optgate::proto {

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

struct CheckpointRecord {
    uint64_t seq = 0;
    std::string head;  // hex, as the events table stores it
    std::string time;  // when it was signed, UTC, RFC 3339 with ms
    std::string key_id;
    std::string signature;  // raw 64 bytes

    std::string signed_text() const;  // the line before " sig="
    std::string line() const;         // without the "\n"
};

CheckpointRecord sign_checkpoint(const CheckpointKey& key, uint64_t seq, std::string head, std::string time);
std::string key_line(const CheckpointKey& key);

// One line of the file, read.
struct CheckpointLine {
    std::optional<CheckpointRecord> checkpoint;  // a record...
    std::optional<CheckpointKey> key;            // ...or a key line
};
// nullopt and `why` for a line that is neither, or malformed.
std::optional<CheckpointLine> parse_checkpoint_line(std::string_view line, std::string& why);

// A data plane's copy of the ledger's latest checkpoint, as consentd sends
// it (the checkpoint frame; docs/protocol.md, "Checkpoints"). Only the
// control thread calls it.
//
// It keeps the newest record it has taken and refuses (keeps the one it
// has, counts, says why) a record that is malformed, whose seq differs from
// the frame's, whose seq goes backwards, that has the kept record's seq but
// another head, or, with a public key, whose signature does not verify or
// that another key signed. Without a key it keeps records unverified:
// `optgatectl verify-ledger --checkpoints` checks them later.
class CheckpointWitness {
public:
    explicit CheckpointWitness(std::optional<CheckpointKey> key = std::nullopt) : key_(std::move(key)) {}

    enum class Result : uint8_t { kept, repeated, refused };
    // `why` says what was refused.
    Result offer(uint64_t frame_seq, std::string_view line, uint64_t now_unix_ms, std::string& why);

    const std::optional<CheckpointRecord>& latest() const noexcept { return latest_; }
    const std::string& latest_line() const noexcept { return line_; }
    uint64_t received_unix_ms() const noexcept { return received_unix_ms_; }  // when latest() came; 0: never
    bool verifying() const noexcept { return key_.has_value(); }
    uint64_t kept() const noexcept { return kept_; }
    uint64_t refused() const noexcept { return refused_; }

private:
    std::optional<CheckpointKey> key_;
    std::optional<CheckpointRecord> latest_;
    std::string line_;
    uint64_t received_unix_ms_ = 0;
    uint64_t kept_ = 0, refused_ = 0;
};

// Whole seconds since a checkpoint was received (its "age" in the stats and
// metrics); 0 when none was, or the clock went back.
constexpr uint64_t checkpoint_age_seconds(uint64_t received_unix_ms, uint64_t now_unix_ms) noexcept {
    return received_unix_ms && now_unix_ms > received_unix_ms ? (now_unix_ms - received_unix_ms) / 1000 : 0;
}

}  // namespace optgate::proto
