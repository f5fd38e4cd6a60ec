// Every CREATE statement consentd runs on a ledger file, in one place, and
// the check that a ledger holds no other schema object (docs/consentd.md,
// "Startup integrity check"). A new table, index or trigger goes into one of
// these strings (or a new one listed in schema.cpp), or consentd refuses its
// own ledger at the next start.
#pragma once

#include <string>
#include <string_view>

#include "consentd/sqlite.hpp"

namespace optgate::consentd {

// Created with the file (ledger.cpp); never added to an existing ledger, so
// each of these must be present.
inline constexpr std::string_view kLedgerSchema = R"sql(
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE events (
    seq            INTEGER PRIMARY KEY,
    time           TEXT NOT NULL,
    subscriber     TEXT NOT NULL,
    action         TEXT NOT NULL CHECK (action IN ('grant', 'revoke', 'bind', 'unbind')),
    purpose        TEXT,
    address        TEXT,
    source         TEXT NOT NULL,
    notice_version TEXT,
    credential     TEXT NOT NULL,
    prev_hash      TEXT NOT NULL,
    hash           TEXT NOT NULL
);
CREATE INDEX events_by_subscriber ON events (subscriber, seq);

-- Append-only: the hash chain detects edits, these refuse them outright.
CREATE TRIGGER events_append_only_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'the events table is append-only'); END;
CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'the events table is append-only'); END;

CREATE TABLE consents (
    subscriber     TEXT NOT NULL,
    purpose        TEXT NOT NULL,
    seq            INTEGER NOT NULL,
    time           TEXT NOT NULL,
    source         TEXT NOT NULL,
    notice_version TEXT,
    credential     TEXT NOT NULL,
    PRIMARY KEY (subscriber, purpose)
) WITHOUT ROWID;

CREATE TABLE bindings (
    address        TEXT PRIMARY KEY,
    subscriber     TEXT NOT NULL,
    seq            INTEGER NOT NULL,
    time           TEXT NOT NULL,
    source         TEXT NOT NULL,
    credential     TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX bindings_by_subscriber ON bindings (subscriber);
)sql";

// The policy history (policy_history.hpp), added when missing.
inline constexpr std::string_view kPolicyHistorySchema = R"sql(
CREATE TABLE IF NOT EXISTS policies (
    id                 INTEGER PRIMARY KEY,
    from_seq           INTEGER NOT NULL,
    loaded_at          TEXT NOT NULL,
    sha256             TEXT,
    text               TEXT,
    jurisdiction       TEXT,
    controller_name    TEXT,
    controller_contact TEXT,
    policy_url         TEXT
);
CREATE TRIGGER IF NOT EXISTS policies_append_only_update BEFORE UPDATE ON policies
BEGIN SELECT RAISE(ABORT, 'the policies table is append-only'); END;
CREATE TRIGGER IF NOT EXISTS policies_append_only_delete BEFORE DELETE ON policies
BEGIN SELECT RAISE(ABORT, 'the policies table is append-only'); END;
)sql";

// Disclosure counts (disclosures.hpp), added when missing.
inline constexpr std::string_view kDisclosureSchema = R"sql(
CREATE TABLE IF NOT EXISTS disclosures (
    subscriber  TEXT NOT NULL,
    day         TEXT NOT NULL,
    destination TEXT NOT NULL,
    purpose     TEXT NOT NULL,
    identifier  TEXT NOT NULL,
    passed      INTEGER NOT NULL,
    stripped    INTEGER NOT NULL,
    PRIMARY KEY (subscriber, day, destination, purpose, identifier)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS disclosures_by_day ON disclosures (day);

CREATE TABLE IF NOT EXISTS disclosures_unattributed (
    day         TEXT NOT NULL,
    reason      TEXT NOT NULL CHECK (reason IN ('unbound', 'ambiguous')),
    destination TEXT NOT NULL,
    purpose     TEXT NOT NULL,
    identifier  TEXT NOT NULL,
    passed      INTEGER NOT NULL,
    stripped    INTEGER NOT NULL,
    PRIMARY KEY (day, reason, destination, purpose, identifier)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS disclosure_reports (
    dataplane   TEXT NOT NULL,
    reporter    INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    day         TEXT NOT NULL,
    start_ms    INTEGER NOT NULL,
    end_ms      INTEGER NOT NULL,
    entries     INTEGER NOT NULL,
    overflowed  INTEGER NOT NULL,
    PRIMARY KEY (dataplane, reporter, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS disclosure_reports_by_day ON disclosure_reports (day);

CREATE INDEX IF NOT EXISTS events_by_address ON events (address, seq);
)sql";

// RADIUS sessions (radius_sessions.hpp), added when missing.
inline constexpr std::string_view kRadiusSchema = R"sql(
CREATE TABLE IF NOT EXISTS radius_events (
    seq        INTEGER PRIMARY KEY,
    client     TEXT NOT NULL,
    nas        TEXT NOT NULL,
    session_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS radius_session_bindings (
    client     TEXT NOT NULL,
    nas        TEXT NOT NULL,
    session_id TEXT NOT NULL,
    address    TEXT NOT NULL,
    PRIMARY KEY (client, nas, session_id, address)
) WITHOUT ROWID;
)sql";

// What consentd before 2026-12-05 kept instead of radius_session_bindings:
// one row per current binding keyed by address, with an index by session
// (three B-tree writes per binding where one does now). migrate_schema()
// moves its rows and drops it; until a consentd has opened the ledger,
// schema_difference() accepts it as it was created.
inline constexpr std::string_view kLegacyRadiusSchema = R"sql(
CREATE TABLE IF NOT EXISTS radius_sessions (
    address    TEXT PRIMARY KEY,
    client     TEXT NOT NULL,
    nas        TEXT NOT NULL,
    session_id TEXT NOT NULL,
    subscriber TEXT NOT NULL,
    seq        INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS radius_sessions_by_session ON radius_sessions (client, nas, session_id);
)sql";

// Brings a ledger's side tables from an older consentd's layout to this
// one's, in one transaction (today: radius_sessions to
// radius_session_bindings). The events and the derived tables are never
// touched. Idempotent; consentd runs it when it opens a ledger, before the
// startup integrity check.
void migrate_schema(Database& db);

// Empty when every object in `db`'s sqlite_schema is one these statements
// create, with the same definition (whitespace aside), and every object of
// kLedgerSchema is there. Otherwise the first object that is not, named:
// a trigger, view, index or table planted with sqlite3, or one of ours
// dropped or redefined. SQLite's own statistics tables (sqlite_stat1..4,
// written by ANALYZE) are allowed: they hold no code and no data of ours.
std::string schema_difference(Database& db);

}  // namespace optgate::consentd
