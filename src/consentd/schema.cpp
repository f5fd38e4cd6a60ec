#include "consentd/schema.hpp"

#include <map>
#include <optional>
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

// PostgreSQL: every object in the current schema (tables, views,
// sequences, indexes, triggers, functions, rules, row security policies)
// with a definition read back from the catalog, so that a column, a
// constraint or a trigger's body that differs is a different object.
constexpr std::string_view kPgObjects = R"sql(
WITH ns AS (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
SELECT CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'view'
         WHEN 'S' THEN 'sequence' WHEN 'f' THEN 'foreign table' ELSE 'relation' END,
       c.relname, c.relname,
       (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) ||
                          CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END ||
                          coalesce(' COLLATE ' || co.collname, '') ||
                          coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), ''), ', ' ORDER BY a.attnum)
          FROM pg_attribute a
          LEFT JOIN pg_collation co ON co.oid = a.attcollation AND a.attcollation <> 0
          LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) || ' | ' ||
       coalesce((SELECT string_agg(pg_get_constraintdef(k.oid), '; ' ORDER BY pg_get_constraintdef(k.oid))
                   FROM pg_constraint k WHERE k.conrelid = c.oid), '') ||
       CASE WHEN c.relrowsecurity THEN ' | row security' ELSE '' END
  FROM pg_class c WHERE c.relnamespace = (SELECT oid FROM ns) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
UNION ALL
SELECT 'index', i.relname, t.relname, pg_get_indexdef(x.indexrelid)
  FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
 WHERE t.relnamespace = (SELECT oid FROM ns)
UNION ALL
SELECT 'trigger', g.tgname, t.relname, pg_get_triggerdef(g.oid)
  FROM pg_trigger g JOIN pg_class t ON t.oid = g.tgrelid
 WHERE t.relnamespace = (SELECT oid FROM ns) AND NOT g.tgisinternal
UNION ALL
SELECT 'function', p.proname, '', pg_get_function_identity_arguments(p.oid) || ' ' || p.prosrc
  FROM pg_proc p WHERE p.pronamespace = (SELECT oid FROM ns)
UNION ALL
SELECT 'rule', r.rulename, t.relname, pg_get_ruledef(r.oid)
  FROM pg_rewrite r JOIN pg_class t ON t.oid = r.ev_class
 WHERE t.relnamespace = (SELECT oid FROM ns) AND t.relkind <> 'v'
UNION ALL
SELECT 'policy', y.polname, t.relname, pg_get_expr(y.polqual, y.polrelid)
  FROM pg_policy y JOIN pg_class t ON t.oid = y.polrelid WHERE t.relnamespace = (SELECT oid FROM ns)
)sql";

Schema read_pg_schema(Database& db) {
    Schema s;
    auto st = db.prepare(kPgObjects);
    const std::string qualifier = [&] {
        auto cs = db.prepare("SELECT current_schema()");
        return cs.step() ? std::string(cs.text(0)) + "." : std::string();
    }();
    while (st.step()) {
        // Definitions name the schema ("ON public.events"): not part of the object.
        std::string sql = collapse_whitespace(st.text(3));
        for (size_t at = 0; !qualifier.empty() && (at = sql.find(qualifier, at)) != std::string::npos;)
            sql.erase(at, qualifier.size());
        s.emplace(std::string(st.text(1)), SchemaObject{std::string(st.text(0)), std::string(st.text(2)), sql});
    }
    return s;
}

// What kPgSchema makes, read the same way: created in a schema of its own
// on a second session, in a transaction that is rolled back.
Expected build_expected_pg(Database& db) {
    Database scratch(db.locator(), Database::Mode::read_write);
    scratch.exec("BEGIN READ WRITE");
    Expected e;
    try {
        scratch.exec("CREATE SCHEMA optgate_expected; SET LOCAL search_path TO optgate_expected");
        scratch.exec(kPgSchema);
        e.all = read_pg_schema(scratch);
    } catch (...) {
        scratch.rollback();
        throw;
    }
    scratch.rollback();
    for (const auto& [name, object] : e.all) e.created.insert(name);
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
    if (db.postgresql() || !has_object(db, "radius_sessions")) return;  // no older layout on PostgreSQL
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
    static const Expected sqlite_expected = build_expected();
    const std::optional<Expected> pg_expected = db.postgresql() ? std::optional<Expected>(build_expected_pg(db))
                                                                : std::nullopt;
    const Expected& expected = pg_expected ? *pg_expected : sqlite_expected;
    const Schema found = db.postgresql() ? read_pg_schema(db) : read_schema(db);
    const std::string tool = db.postgresql() ? "psql" : "sqlite3";
    for (const auto& [name, object] : found) {
        if (object.type == "table" && name.starts_with("sqlite_stat")) continue;
        const auto it = expected.all.find(name);
        if (it == expected.all.end())
            return "the ledger holds " + describe(name, object) + ", which consentd did not create (remove it with " +
                   tool + " after finding out who added it)";
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
