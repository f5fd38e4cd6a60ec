#include "consentd/schema.hpp"

#include <map>
#include <set>
#include <tuple>

namespace optgate::consentd {

namespace {

struct SchemaObject {
    std::string type, table, sql;  // sql with whitespace runs collapsed
};
using Schema = std::map<std::string, SchemaObject>;  // by name

// Reindenting a CREATE statement in the source must not make every existing
// ledger foreign; any other change to its text is a different object.
std::string collapse_whitespace(std::string_view sql) {
    std::string out;
    bool space = false;
    for (const char c : sql) {
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            space = !out.empty();
            continue;
        }
        if (space) out += ' ';
        space = false;
        out += c;
    }
    return out;
}

Schema read_schema(Database& db) {
    Schema s;
    auto st = db.prepare("SELECT type, name, tbl_name, sql FROM sqlite_schema");
    while (st.step())
        s.emplace(std::string(st.text(1)),
                  SchemaObject{std::string(st.text(0)), std::string(st.text(2)),
                               st.is_null(3) ? std::string() : collapse_whitespace(st.text(3))});
    return s;
}

struct Expected {
    Schema all;                     // what consentd may create in a ledger
    std::set<std::string> created;  // of which created with the file: never missing
};

// The creators themselves, run on an empty in-memory database: sqlite_schema
// then holds exactly what they make, in SQLite's own normalised form.
Expected build_expected() {
    Database db(":memory:", Database::Mode::read_write_create);
    Expected e;
    db.exec(kLedgerSchema);
    for (const auto& [name, object] : read_schema(db)) e.created.insert(name);
    db.exec(kPolicyHistorySchema);
    db.exec(kDisclosureSchema);
    db.exec(kRadiusSchema);
    db.exec(kLegacyRadiusSchema);  // accepted until migrate_schema() has run
    e.all = read_schema(db);
    return e;
}

bool has_object(Database& db, std::string_view name) {
    auto st = db.prepare("SELECT 1 FROM sqlite_schema WHERE name = ?1");
    st.bind(1, name);
    return st.step();
}

std::string describe(const std::string& name, const SchemaObject& o) {
    std::string d = o.type + " '" + name + "'";
    if (o.type != "table" && !o.table.empty()) d += " on table '" + o.table + "'";
    return d;
}

}  // namespace

void migrate_schema(Database& db) {
    if (!has_object(db, "radius_sessions")) return;
    db.exec("BEGIN IMMEDIATE");
    try {
        db.exec(kRadiusSchema);
        // A row of the old table is a session that made a binding; whether
        // that binding is still the session's is now read from bindings.seq
        // and radius_events, exactly the condition the old table's seq
        // column stood for.
        db.exec(
            "INSERT INTO radius_session_bindings (client, nas, session_id, address) "
            "SELECT client, nas, session_id, address FROM radius_sessions WHERE true ON CONFLICT DO NOTHING");
        db.exec("DROP TABLE radius_sessions");  // and its index
        db.exec("COMMIT");
    } catch (...) {
        db.exec("ROLLBACK");
        throw;
    }
}

std::string schema_difference(Database& db) {
    static const Expected expected = build_expected();
    const Schema found = read_schema(db);
    for (const auto& [name, object] : found) {
        if (object.type == "table" && name.starts_with("sqlite_stat")) continue;
        const auto it = expected.all.find(name);
        if (it == expected.all.end())
            return "the ledger holds " + describe(name, object) +
                   ", which consentd did not create (remove it with sqlite3 after finding out who added it)";
        const auto& want = it->second;
        if (std::tie(object.type, object.table, object.sql) != std::tie(want.type, want.table, want.sql))
            return "the ledger's " + describe(name, object) + " is not the " + want.type +
                   " consentd created: its definition is \"" + object.sql + "\"";
    }
    for (const auto& name : expected.created)
        if (!found.contains(name))
            return "the ledger has no " + describe(name, expected.all.at(name)) +
                   ", which consentd creates with every ledger";
    return {};
}

}  // namespace optgate::consentd
