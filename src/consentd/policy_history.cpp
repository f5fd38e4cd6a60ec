#include "consentd/policy_history.hpp"

#include <chrono>

#include "consentd/event.hpp"
#include "consentd/ledger.hpp"
#include "consentd/schema.hpp"
#include "consentd/sha256.hpp"

namespace optgate::consentd {

namespace {

constexpr std::string_view kColumns =
    "id, from_seq, loaded_at, sha256, text, jurisdiction, controller_name, controller_contact, policy_url";

std::shared_ptr<const PolicyRecord> from_row(const Statement& st) {
    auto r = std::make_shared<PolicyRecord>();
    r->id = uint64_t(st.int64(0));
    r->from_seq = uint64_t(st.int64(1));
    r->loaded_at = st.text(2);
    r->sha256 = st.opt_text(3);
    r->text = st.opt_text(4);
    r->issuer = {st.opt_text(5), st.opt_text(6), st.opt_text(7), st.opt_text(8)};
    return r;
}

std::shared_ptr<const PolicyRecord> one(Database& db, const std::string& where, std::optional<uint64_t> seq) {
    if (!has_table(db, "policies")) return nullptr;
    auto st = db.prepare("SELECT " + std::string(kColumns) + " FROM policies " + where + " ORDER BY id DESC LIMIT 1");
    if (seq) st.bind(1, int64_t(*seq));
    if (!st.step()) return nullptr;
    return from_row(st);
}

}  // namespace

void create_policy_history(Database& db) {
    db.exec("BEGIN IMMEDIATE");
    try {
        db.exec(kPolicyHistorySchema);
        db.exec("COMMIT");
    } catch (...) {
        db.exec("ROLLBACK");
        throw;
    }
}

std::shared_ptr<const PolicyRecord> policy_record_at(Database& db, uint64_t seq) {
    return one(db, "WHERE from_seq <= ?1", seq);
}

std::shared_ptr<const PolicyRecord> latest_policy_record(Database& db) { return one(db, "", std::nullopt); }

std::shared_ptr<const PolicyRecord> append_policy_record(Database& db, uint64_t from_seq,
                                                         const std::optional<std::string>& text,
                                                         const ReceiptIssuer& issuer) {
    std::optional<std::string> digest;
    if (text) digest = to_hex(sha256(*text));
    auto latest = latest_policy_record(db);
    if (latest && latest->sha256 == digest && latest->issuer == issuer) return latest;
    auto r = std::make_shared<PolicyRecord>();
    r->id = latest ? latest->id + 1 : 1;
    r->from_seq = from_seq;
    r->loaded_at = format_utc_ms(std::chrono::system_clock::now());
    r->sha256 = std::move(digest);
    r->text = text;
    r->issuer = issuer;
    auto st = db.prepare("INSERT INTO policies (" + std::string(kColumns) +
                         ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
    st.bind(1, int64_t(r->id))
        .bind(2, int64_t(r->from_seq))
        .bind(3, r->loaded_at)
        .bind(4, r->sha256)
        .bind(5, r->text)
        .bind(6, issuer.jurisdiction)
        .bind(7, issuer.controller_name)
        .bind(8, issuer.controller_contact)
        .bind(9, issuer.policy_url);
    st.run();  // one statement: its own durable transaction (synchronous=FULL)
    return r;
}

std::string check_policy_history(Database& db, uint64_t head_seq, uint64_t& rows) {
    rows = 0;
    if (!has_table(db, "policies")) return {};
    auto st = db.prepare("SELECT " + std::string(kColumns) + " FROM policies ORDER BY id");
    uint64_t from = 0;
    while (st.step()) {
        const auto r = from_row(st);
        const std::string what = "policies row " + std::to_string(r->id) + " ";
        if (r->id != rows + 1) return what + "follows row " + std::to_string(rows) + ": rows are missing";
        if (r->from_seq < from)
            return what + "is in force from event " + std::to_string(r->from_seq) + ", before row " +
                   std::to_string(rows) + " (event " + std::to_string(from) + ")";
        if (r->from_seq == 0 || r->from_seq > head_seq + 1)
            return what + "is in force from event " + std::to_string(r->from_seq) + ", but the ledger's head is " +
                   std::to_string(head_seq);
        if (r->text.has_value() != r->sha256.has_value()) return what + "has a text without a sha256, or the reverse";
        if (r->text && to_hex(sha256(*r->text)) != *r->sha256)
            return what + "has sha256 " + *r->sha256 + " but its text hashes to " + to_hex(sha256(*r->text));
        from = r->from_seq;
        ++rows;
    }
    return {};
}

}  // namespace optgate::consentd
