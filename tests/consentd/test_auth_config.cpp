// Tokens and roles, the config file's checks, and strict JSON.
#include <doctest/doctest.h>

#include <algorithm>

#include "consentd/auth.hpp"
#include "consentd/config.hpp"
#include "policy/strict_json.hpp"

using namespace optgate;
using namespace optgate::consentd;
using optgate::policy::JsonFields;
using optgate::policy::parse_json_strict;

namespace {

const std::string kHashS3cret = "a81e611a041b13f078bf8ebe5dab4d4fd63fcc5594661c918bec093a2f416a7e";  // "s3cret-token"

TokenTable sample_tokens() {
    return TokenTable(
        {{"portal", Role::write, *digest_from_hex(kHashS3cret)}, {"auditor", Role::read, sha256("read-token")}});
}

std::vector<std::string> config_errors(const std::string& yaml) {
    try {
        load_config_text(yaml, "c.yaml", "/etc/optgate");
    } catch (const policy::PolicyError& e) {
        std::vector<std::string> out;
        for (const auto& d : e.diagnostics()) out.push_back(d.to_string());
        return out;
    }
    return {};
}

const std::string kTokens = "tokens:\n  - {name: portal, role: write, sha256: " + kHashS3cret + "}\n";

}  // namespace

TEST_CASE("bearer tokens map to their name and role") {
    const auto t = sample_tokens();
    auto c = t.authenticate("Bearer s3cret-token");
    REQUIRE(c.token);
    CHECK(c.token->name == "portal");
    CHECK(c.token->role == Role::write);
    CHECK(t.authenticate("bearer read-token").token->name == "auditor");
    CHECK_FALSE(t.authenticate("Bearer s3cret-tokeN").token);
    CHECK(t.authenticate("Bearer s3cret-tokeN").presented);
    CHECK_FALSE(t.authenticate("Basic czNjcmV0LXRva2Vu").token);
    CHECK_FALSE(t.authenticate("Bearer ").token);
    CHECK_FALSE(t.authenticate("").presented);
    CHECK(Role::read < Role::write);
    CHECK(Role::write < Role::admin);
    CHECK(hash_token("s3cret-token") == kHashS3cret);
}

TEST_CASE("a full config") {
    const auto c = load_config_text(
        "listen: {address: 127.0.0.1, port: 0}\n"
        "database: consentd.db\n"
        "policy: /etc/optgate/policy.yaml\n" +
            kTokens + "  - {name: ops, role: admin, sha256: " + to_hex(sha256("x")) +
            "}\n"
            "limits: {max_body_bytes: 4096, header_timeout: 2s, import_timeout: 5m, max_connections: 10}\n"
            "ledger: {max_batch: 64, history_limit: 10}\n",
        "c.yaml", "/var/lib/optgate");
    CHECK(c.warnings.empty());
    CHECK(c.config.port == 0);
    CHECK(c.config.database == "/var/lib/optgate/consentd.db");  // relative to the config's directory
    CHECK(c.config.policy == "/etc/optgate/policy.yaml");
    REQUIRE(c.config.tokens.size() == 2);
    CHECK(c.config.tokens[1].role == Role::admin);
    CHECK(c.config.limits.max_body_bytes == 4096);
    CHECK(c.config.limits.header_timeout == std::chrono::seconds(2));
    CHECK(c.config.limits.import_timeout == std::chrono::minutes(5));
    CHECK(c.config.limits.max_import_bytes == 256u << 20);  // default
    CHECK(c.config.limits.reserved() == 0);                 // default: max_connections / 16
    CHECK(c.config.max_batch == 64);
    CHECK(c.config.history_limit == 10);
}

TEST_CASE("reserved connections: fewer than all of them") {
    const std::string head = "database: x.db\npolicy: p.yaml\n" + kTokens;
    const auto ok = load_config_text(head + "limits: {max_connections: 100, reserved_connections: 99}\n", "c.yaml",
                                     "/");
    CHECK(ok.config.limits.reserved() == 99);
    const auto e = config_errors(head + "limits: {max_connections: 100, reserved_connections: 100}\n");
    REQUIRE(e.size() == 1);
    CHECK(e[0].find("'reserved_connections' must be less than max_connections (100)") != std::string::npos);
}

TEST_CASE("config errors: all of them, located") {
    const auto e = config_errors(
        "listen: {address: localhost, prot: 80}\n"
        "database: x.db\n" +
        kTokens +
        "  - {name: portal, role: root, sha256: s3cret-token}\n"
        "limits: {header_timeout: 10}\n");
    REQUIRE(e.size() == 7);
    CHECK(e[0] == "c.yaml:1:1: the consentd config is missing the required key 'policy'");
    CHECK(e[1] == "c.yaml:1:19: 'address' must be an IPv4 or IPv6 address, not 'localhost'");
    CHECK(e[2] == "c.yaml:1:30: unknown key 'prot' in 'listen' (did you mean 'port'?)");
    CHECK(e[3] == "c.yaml:5:12: duplicate token name 'portal' (first at line 4)");
    CHECK(e[4] == "c.yaml:5:26: role 'root' is not one of: read, write, admin");
    CHECK(e[5].find("c.yaml:5:40: 'sha256' must be the token's SHA-256") == 0);
    CHECK(e[6].find("c.yaml:6:26: 'header_timeout': '10' is not a duration") == 0);
}

TEST_CASE("the example config is valid and says what the defaults are") {
    const auto c = load_config_file(OPTGATE_SOURCE_ROOT "/config/consentd.example.yaml");
    CHECK(c.warnings.empty());
    CHECK(c.config.listen_address == "127.0.0.1");
    CHECK(c.config.port == 8470);
    CHECK(c.config.database == "/var/lib/consentd/consentd.db");
    CHECK(c.config.tokens.size() == 4);
    // The limits it lists are the built-in defaults.
    const Limits defaults;
    CHECK(c.config.limits.max_body_bytes == defaults.max_body_bytes);
    CHECK(c.config.limits.max_import_bytes == defaults.max_import_bytes);
    CHECK(c.config.limits.max_header_bytes == defaults.max_header_bytes);
    CHECK(c.config.limits.header_timeout == defaults.header_timeout);
    CHECK(c.config.limits.body_timeout == defaults.body_timeout);
    CHECK(c.config.limits.import_timeout == defaults.import_timeout);
    CHECK(c.config.limits.write_timeout == defaults.write_timeout);
    CHECK(c.config.limits.max_connections == defaults.max_connections);
    CHECK(c.config.limits.reserved() == defaults.reserved());
    const Config d;
    CHECK(c.config.max_batch == d.max_batch);
    CHECK(c.config.history_limit == d.history_limit);
    CHECK(c.config.receipts.controller_name);  // the example shows the receipts section
    CHECK(c.config.receipts.policy_url);
}

TEST_CASE("receipts: who issues them, all keys required and checked") {
    const std::string base = "database: a.db\npolicy: p.yaml\n" + kTokens;
    const auto c = load_config_text(base +
                                        "receipts:\n"
                                        "  jurisdiction: EU\n"
                                        "  controller: {name: Exämple ISP GmbH, contact: privacy@isp.example}\n"
                                        "  policy_url: https://isp.example/privacy\n",
                                    "c.yaml", "");
    CHECK(c.warnings.empty());
    CHECK(c.config.receipts.jurisdiction == std::string("EU"));
    CHECK(c.config.receipts.controller_name == std::string("Exämple ISP GmbH"));
    CHECK(c.config.receipts.controller_contact == std::string("privacy@isp.example"));
    CHECK(c.config.receipts.policy_url == std::string("https://isp.example/privacy"));
    // Not configured: receipts name nobody (consentd logs a warning at start).
    CHECK_FALSE(load_config_text(base, "c.yaml", "").config.receipts.controller_name);

    const auto e = config_errors(base +
                                 "receipts:\n"                                   // 5
                                 "  jurisdiction: \"EU\\tDE\"\n"                 // 6
                                 "  controller: {name: Example ISP, mail: x}\n"  // 7
                                 "  policy_url: isp.example/privacy\n");         // 8
    REQUIRE(e.size() == 4);
    CHECK(e[0] == "c.yaml:6:17: 'jurisdiction' must be one line of at most 64 bytes");
    CHECK(e[1] == "c.yaml:7:15: 'controller' of 'receipts' is missing the required key 'contact'");
    CHECK(e[2].find("c.yaml:7:35: unknown key 'mail' in 'controller' of 'receipts'") == 0);
    CHECK(e[3].find("c.yaml:8:15: 'policy_url' must be an http or https URL") == 0);
    CHECK(config_errors(base + "receipts: {jurisdiction: EU}\n").size() == 2);  // controller, policy_url
}

TEST_CASE("config warnings and the no-token rule") {
    const auto c = load_config_text("listen: {address: 0.0.0.0}\ndatabase: a.db\npolicy: p.yaml\n" + kTokens, "c.yaml",
                                    "");
    REQUIRE(c.warnings.size() == 1);
    CHECK(c.warnings[0].message.find("plain HTTP") != std::string::npos);
    const auto e = config_errors("database: a.db\npolicy: p.yaml\ntokens: []\n");
    REQUIRE(e.size() == 1);
    CHECK(e[0].find("no tokens") != std::string::npos);
}

// Duplicate keys are found with a hash set: with a list, an object of 120k
// keys took 21.6 s (issue 17); 1M keys would take hours and time this test
// out, where the set takes well under a second.
TEST_CASE("strict JSON: a million keys in one object, and a duplicate at the end") {
    std::string body = "{";
    for (int i = 0; i < 1000000; ++i) body += "\"k" + std::to_string(i) + "\":1,";
    std::string err;
    const auto v = parse_json_strict(body.substr(0, body.size() - 1) + "}", err);
    REQUIRE(v);
    CHECK(v->as_object().size() == 1000000);
    CHECK_FALSE(parse_json_strict(body + "\"k999999\":2}", err));
    CHECK(err == "duplicate key 'k999999'");
}

TEST_CASE("strict JSON") {
    std::string err;
    CHECK(parse_json_strict("{\"a\": 1, \"b\": {\"a\": 2}}", err));
    CHECK_FALSE(parse_json_strict("{\"a\": 1, \"a\": 2}", err));
    CHECK(err == "duplicate key 'a'");
    CHECK_FALSE(parse_json_strict("{\"x\": {\"k\": 1, \"k\": 1}}", err));
    CHECK_FALSE(parse_json_strict("{\"a\": 1} x", err));
    CHECK(err.find("unexpected content") != std::string::npos);
    CHECK_FALSE(parse_json_strict("{\"a\": 1,}", err));
    CHECK_FALSE(parse_json_strict("{\"a\": \"\xff\"}", err));    // invalid UTF-8
    CHECK_FALSE(parse_json_strict(std::string(100, '['), err));  // too deep

    const auto v = parse_json_strict("{\"source\": \"portal\", \"notice_version\": 3}", err);
    REQUIRE(v);
    JsonFields f(*v, {"source", "notice_version"});
    CHECK(f.text("source", true) == "portal");
    CHECK_FALSE(f.text("notice_version", true));
    CHECK(f.error() == "field 'notice_version' must be a string");

    const auto u = parse_json_strict("{\"source\": \"portal\", \"sauce\": \"x\"}", err);
    JsonFields g(*u, {"source", "notice_version"});
    CHECK_FALSE(g.ok());
    CHECK(g.error().find("unknown field 'sauce'") == 0);

    const auto ctl = parse_json_strict("{\"source\": \"a\\nb\"}", err);
    JsonFields h(*ctl, {"source"});
    CHECK_FALSE(h.text("source", true));  // control characters are refused
}

TEST_CASE("the disclosures section: retention in days, clock margin, and their errors") {
    const std::string base = "database: a.db\npolicy: p.yaml\n" + kTokens;
    const auto c = load_config_text(base + "disclosures: {retention: 30d, clock_margin: 2s}\n", "c.yaml", "");
    CHECK(c.config.disclosures.retention_days == 30);
    CHECK(c.config.disclosures.clock_margin == std::chrono::seconds(2));
    const DisclosureConfig defaults;
    CHECK(load_config_text(base, "c.yaml", "").config.disclosures.retention_days == defaults.retention_days);
    // The example documents the defaults.
    const auto example = load_config_file(OPTGATE_SOURCE_ROOT "/config/consentd.example.yaml");
    CHECK(example.config.disclosures.retention_days == 400);
    CHECK(defaults.retention_days == 400);
    CHECK(example.config.disclosures.clock_margin == defaults.clock_margin);

    const auto e = config_errors(base + "disclosures: {retention: 400, clock_margin: 1h, retain: 1d}\n");
    REQUIRE(e.size() == 3);
    CHECK(e[0] == "c.yaml:5:26: 'retention' must be a number of days from 1d to 36500d, like 400d, not '400'");
    CHECK(e[1] == "c.yaml:5:45: 'clock_margin' must be between 1ms and 600000ms");
    CHECK(e[2].find("c.yaml:5:49: unknown key 'retain' in 'disclosures'") == 0);
    CHECK(config_errors(base + "disclosures: {retention: 0d}\n").size() == 1);
    CHECK(config_errors(base + "disclosures: {retention: 36501d}\n").size() == 1);
    CHECK(config_errors(base + "disclosures: {retention: d}\n").size() == 1);
}

TEST_CASE("ledger.checkpoints: key and file required, paths relative to the config, defaults documented") {
    const std::string base = "database: a.db\npolicy: p.yaml\n" + kTokens;
    const auto c = load_config_text(
        base + "ledger: {checkpoints: {key: k.pem, file: /var/log/cp, every_events: 50, every: 5s}}\n", "c.yaml",
        "/etc/optgate");
    REQUIRE(c.config.checkpoints);
    CHECK(c.config.checkpoints->key == "/etc/optgate/k.pem");
    CHECK(c.config.checkpoints->file == "/var/log/cp");
    CHECK(c.config.checkpoints->every_events == 50);
    CHECK(c.config.checkpoints->every == std::chrono::seconds(5));
    CHECK_FALSE(load_config_text(base, "c.yaml", "").config.checkpoints);  // off unless given

    const auto e = config_errors(base + "ledger: {checkpoints: {key: k.pem, every_events: 0, every: 1ms}}\n");
    REQUIRE(e.size() == 3);
    CHECK(e[0] == "c.yaml:5:23: 'checkpoints' of 'ledger' is missing the required key 'file'");
    CHECK(e[1] == "c.yaml:5:50: 'every_events' is out of range: 0 is not in 1..100000000");
    CHECK(e[2] == "c.yaml:5:60: 'every' must be between 1000ms and 86400000ms");

    // The example shows the section commented out, with the defaults.
    const CheckpointConfig defaults;
    CHECK(defaults.every_events == 10000);
    CHECK(defaults.every == std::chrono::seconds(60));
    CHECK_FALSE(load_config_file(OPTGATE_SOURCE_ROOT "/config/consentd.example.yaml").config.checkpoints);
}

TEST_CASE("the ledger's store: SQLite by default, PostgreSQL with a dsn and pseudonym keys, a standby") {
    const std::string policy = "policy: p.yaml\n" + kTokens;
    const auto sqlite = load_config_text("database: a.db\n" + policy, "c.yaml", "/etc/optgate");
    CHECK(sqlite.config.backend == Backend::sqlite);
    CHECK(sqlite.config.database == "/etc/optgate/a.db");
    CHECK(sqlite.config.pseudonym_keys == "/etc/optgate/a.db.pseudonym-keys");  // beside the ledger, as before
    CHECK_FALSE(sqlite.config.standby);

    const auto pg = load_config_text(
        "ledger: {backend: postgresql, dsn: \"host=/run/postgresql dbname=optgate\", standby: true}\n"
        "pseudonym_keys: keys\n" +
            policy,
        "c.yaml", "/etc/optgate");
    CHECK(pg.config.backend == Backend::postgresql);
    CHECK(pg.config.database == "postgresql:host=/run/postgresql dbname=optgate");
    CHECK(is_postgresql_locator(pg.config.database));
    CHECK(postgresql_conninfo(pg.config.database) == "host=/run/postgresql dbname=optgate");
    CHECK(pg.config.pseudonym_keys == "/etc/optgate/keys");
    CHECK(pg.config.standby);
    const auto uri = load_config_text(
        "ledger: {backend: postgresql, dsn: \"postgresql://db.isp.example/optgate\"}\npseudonym_keys: k\n" + policy,
        "c.yaml", "");
    CHECK(uri.config.database == "postgresql://db.isp.example/optgate");
    CHECK(postgresql_conninfo(uri.config.database) == "postgresql://db.isp.example/optgate");

    // Every error, in the order of where it is (the file's top for a missing key).
    const auto has = [](const std::vector<std::string>& errors, const std::string& text) {
        return std::any_of(errors.begin(), errors.end(),
                           [&](const std::string& e) { return e.find(text) != std::string::npos; });
    };
    const auto e = config_errors("ledger: {backend: postgres}\n" + policy);
    CHECK(e.size() == 2);
    CHECK(has(e, "c.yaml:1:19: 'backend' must be sqlite or postgresql, not 'postgres'"));
    CHECK(has(e, "missing the required key 'database'"));  // still SQLite: its file is required
    const auto needs = config_errors("ledger: {backend: postgresql}\n" + policy);
    CHECK(needs.size() == 2);
    CHECK(has(needs, "'backend: postgresql' needs 'dsn'"));
    CHECK(has(needs, "'backend: postgresql' needs 'pseudonym_keys'"));
    const auto both = config_errors(
        "database: a.db\nledger: {backend: postgresql, dsn: \"dbname=x\"}\npseudonym_keys: k\n" + policy);
    CHECK(both.size() == 1);
    CHECK(has(both, "c.yaml:1:11: 'database' names an SQLite ledger"));
    const auto sqlite_only = config_errors(
        "database: a.db\nledger: {dsn: \"dbname=x\", standby: true, follow: true, fence_after: 2s}\n" + policy);
    CHECK(sqlite_only.size() == 4);
    CHECK(has(sqlite_only, "'dsn' is for 'backend: postgresql'"));
    CHECK(has(sqlite_only, "'standby' is for 'backend: postgresql'"));
    CHECK(has(sqlite_only, "'follow' is for 'backend: postgresql'"));
    CHECK(has(sqlite_only, "'fence_after' is for 'backend: postgresql'"));

    // fence_after: 5 s unless set, at least 500 ms.
    CHECK(uri.config.fence_after == std::chrono::milliseconds(5000));
    const auto fenced = load_config_text(
        "ledger: {backend: postgresql, dsn: \"dbname=x\", fence_after: 1500ms}\npseudonym_keys: k\n" + policy, "c.yaml",
        "");
    CHECK(fenced.config.fence_after == std::chrono::milliseconds(1500));
    const auto too_short = config_errors(
        "ledger: {backend: postgresql, dsn: \"dbname=x\", fence_after: 100ms}\npseudonym_keys: k\n" + policy);
    CHECK(too_short.size() == 1);
    CHECK(has(too_short, "fence_after"));
}

TEST_CASE("a PostgreSQL locator is printed without its password") {
    CHECK(printable_locator("/var/lib/consentd/consentd.db") == "/var/lib/consentd/consentd.db");
    const auto kw = printable_locator("postgresql:host=/run/postgresql dbname=optgate password=s3cret user=c");
    CHECK(kw.find("s3cret") == std::string::npos);
    CHECK(kw.find("dbname=optgate") != std::string::npos);
    CHECK(kw.find("user=c") != std::string::npos);
    const auto uri = printable_locator("postgresql://c:s3cret@db.isp.example:5433/optgate?sslmode=require");
    CHECK(uri.find("s3cret") == std::string::npos);
    CHECK(uri.find("host=db.isp.example") != std::string::npos);
    CHECK(uri.find("port=5433") != std::string::npos);
    CHECK(uri.find("sslmode=require") != std::string::npos);
}
