// The policy history (docs/receipts.md, "Policy history"): every policy
// consentd runs, with the receipt issuer (controller, jurisdiction, privacy
// policy URL) of its config, recorded in the ledger's `policies` table from
// the first event judged under it. A consent receipt is built from the policy
// in force at its event, so it says what the subscriber was told then, not
// what the policy says now.
//
// The table is added to any ledger when it opens (CREATE TABLE IF NOT
// EXISTS): a ledger from before it has no record for its older events, whose
// receipts then say so (policy null). Rows are append-only, like events; they
// are outside the hash chain, so each row carries its text's SHA-256, every
// receipt names the row's SHA-256, and verify-ledger checks both.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "consentd/database.hpp"

namespace optgate::consentd {

// consentd's `receipts:` config: who issues receipts, under which law, and
// where the privacy policy is. Empty when not configured.
struct ReceiptIssuer {
    std::optional<std::string> jurisdiction;
    std::optional<std::string> controller_name;
    std::optional<std::string> controller_contact;
    std::optional<std::string> policy_url;
    friend bool operator==(const ReceiptIssuer&, const ReceiptIssuer&) = default;
};

struct PolicyRecord {
    uint64_t id = 0;        // 1, 2, 3... in the order recorded
    uint64_t from_seq = 0;  // the first event judged under it
    std::string loaded_at;  // UTC, RFC 3339 with milliseconds
    // NULL: the policy in force from from_seq was not recorded (a writer
    // given no text); receipts of those events say the policy is unknown.
    std::optional<std::string> sha256;  // hex, of `text`
    std::optional<std::string> text;    // the YAML as read
    ReceiptIssuer issuer;
};

// Creates the table and its append-only triggers if missing. Read-write
// connections only.
void create_policy_history(Database& db);

// The record in force at event `seq` (the latest with from_seq <= seq), or
// null when the history starts after it (or the table does not exist).
std::shared_ptr<const PolicyRecord> policy_record_at(Database& db, uint64_t seq);
// The latest record, or null.
std::shared_ptr<const PolicyRecord> latest_policy_record(Database& db);

// Appends a record in force from `from_seq`, unless the latest one already
// has this text and issuer (then returns that one). Not inside another
// transaction: it commits its own.
std::shared_ptr<const PolicyRecord> append_policy_record(Database& db, uint64_t from_seq,
                                                         const std::optional<std::string>& text,
                                                         const ReceiptIssuer& issuer);

// Walks the table in id order: ids 1, 2, 3..., from_seq never decreasing nor
// past `head_seq` + 1, each SHA-256 that of its text. Returns the first
// problem ("" when consistent) and counts the rows.
std::string check_policy_history(Database& db, uint64_t head_seq, uint64_t& rows);

}  // namespace optgate::consentd
