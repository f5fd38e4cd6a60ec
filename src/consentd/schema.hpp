// Every CREATE statement consentd runs on a ledger file, in one place, and
// the check that a ledger holds no other schema object (docs/consentd.md,
// "Startup integrity check"). A new table, index or trigger goes into one of
// these strings (or a new one listed in schema.cpp), or consentd refuses its
// own ledger at the next start.
#pragma once

#include <string>
#include <string_view>

#include "consentd/database.hpp"

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

// The same ledger on PostgreSQL (docs/scale-out.md), every table at once:
// the store is new, no older layout exists. What differs from the SQLite
// text above, and why:
//  - BIGINT where SQLite's INTEGER is 64-bit anyway;
//  - every text COLLATE "C": keys sort byte by byte, as in SQLite, so
//    listings page in the same order on both stores whatever the
//    database's locale;
//  - the append-only rule as one trigger function, on TRUNCATE too (which
//    row triggers do not see);
//  - no WITHOUT ROWID (PostgreSQL has no rowid).
inline constexpr std::string_view kPgSchema = R"sql(
CREATE TABLE meta (
    key   TEXT COLLATE "C" PRIMARY KEY,
    value TEXT COLLATE "C" NOT NULL
);

CREATE TABLE events (
    seq            BIGINT PRIMARY KEY,
    time           TEXT COLLATE "C" NOT NULL,
    subscriber     TEXT COLLATE "C" NOT NULL,
    action         TEXT COLLATE "C" NOT NULL CHECK (action IN ('grant', 'revoke', 'bind', 'unbind')),
    purpose        TEXT COLLATE "C",
    address        TEXT COLLATE "C",
    source         TEXT COLLATE "C" NOT NULL,
    notice_version TEXT COLLATE "C",
    credential     TEXT COLLATE "C" NOT NULL,
    prev_hash      TEXT COLLATE "C" NOT NULL,
    hash           TEXT COLLATE "C" NOT NULL
);
CREATE INDEX events_by_subscriber ON events (subscriber, seq);
CREATE INDEX events_by_address ON events (address, seq);

CREATE FUNCTION optgate_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'the % table is append-only', TG_TABLE_NAME; END $$;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
FOR EACH ROW EXECUTE FUNCTION optgate_append_only();
CREATE TRIGGER events_append_only_truncate BEFORE TRUNCATE ON events
FOR EACH STATEMENT EXECUTE FUNCTION optgate_append_only();

CREATE TABLE consents (
    subscriber     TEXT COLLATE "C" NOT NULL,
    purpose        TEXT COLLATE "C" NOT NULL,
    seq            BIGINT NOT NULL,
    time           TEXT COLLATE "C" NOT NULL,
    source         TEXT COLLATE "C" NOT NULL,
    notice_version TEXT COLLATE "C",
    credential     TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (subscriber, purpose)
);

CREATE TABLE bindings (
    address        TEXT COLLATE "C" PRIMARY KEY,
    subscriber     TEXT COLLATE "C" NOT NULL,
    seq            BIGINT NOT NULL,
    time           TEXT COLLATE "C" NOT NULL,
    source         TEXT COLLATE "C" NOT NULL,
    credential     TEXT COLLATE "C" NOT NULL
);
CREATE INDEX bindings_by_subscriber ON bindings (subscriber);

CREATE TABLE policies (
    id                 BIGINT PRIMARY KEY,
    from_seq           BIGINT NOT NULL,
    loaded_at          TEXT COLLATE "C" NOT NULL,
    sha256             TEXT COLLATE "C",
    text               TEXT COLLATE "C",
    jurisdiction       TEXT COLLATE "C",
    controller_name    TEXT COLLATE "C",
    controller_contact TEXT COLLATE "C",
    policy_url         TEXT COLLATE "C"
);
CREATE TRIGGER policies_append_only BEFORE UPDATE OR DELETE ON policies
FOR EACH ROW EXECUTE FUNCTION optgate_append_only();
CREATE TRIGGER policies_append_only_truncate BEFORE TRUNCATE ON policies
FOR EACH STATEMENT EXECUTE FUNCTION optgate_append_only();

CREATE TABLE disclosures (
    subscriber  TEXT COLLATE "C" NOT NULL,
    day         TEXT COLLATE "C" NOT NULL,
    destination TEXT COLLATE "C" NOT NULL,
    purpose     TEXT COLLATE "C" NOT NULL,
    identifier  TEXT COLLATE "C" NOT NULL,
    passed      BIGINT NOT NULL,
    stripped    BIGINT NOT NULL,
    PRIMARY KEY (subscriber, day, destination, purpose, identifier)
);
CREATE INDEX disclosures_by_day ON disclosures (day);

CREATE TABLE disclosures_unattributed (
    day         TEXT COLLATE "C" NOT NULL,
    reason      TEXT COLLATE "C" NOT NULL CHECK (reason IN ('unbound', 'ambiguous')),
    destination TEXT COLLATE "C" NOT NULL,
    purpose     TEXT COLLATE "C" NOT NULL,
    identifier  TEXT COLLATE "C" NOT NULL,
    passed      BIGINT NOT NULL,
    stripped    BIGINT NOT NULL,
    PRIMARY KEY (day, reason, destination, purpose, identifier)
);

CREATE TABLE disclosure_reports (
    dataplane   TEXT COLLATE "C" NOT NULL,
    reporter    BIGINT NOT NULL,
    seq         BIGINT NOT NULL,
    day         TEXT COLLATE "C" NOT NULL,
    start_ms    BIGINT NOT NULL,
    end_ms      BIGINT NOT NULL,
    entries     BIGINT NOT NULL,
    overflowed  BIGINT NOT NULL,
    PRIMARY KEY (dataplane, reporter, seq)
);
CREATE INDEX disclosure_reports_by_day ON disclosure_reports (day);

CREATE TABLE radius_events (
    seq        BIGINT PRIMARY KEY,
    client     TEXT COLLATE "C" NOT NULL,
    nas        TEXT COLLATE "C" NOT NULL,
    session_id TEXT COLLATE "C" NOT NULL
);
CREATE TABLE radius_session_bindings (
    client     TEXT COLLATE "C" NOT NULL,
    nas        TEXT COLLATE "C" NOT NULL,
    session_id TEXT COLLATE "C" NOT NULL,
    address    TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (client, nas, session_id, address)
);
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
