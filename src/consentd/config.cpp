#include "consentd/config.hpp"

#include <boost/url/parse.hpp>

#include <algorithm>
#include <filesystem>

#include "core/addr.hpp"
#include "core/chars.hpp"
#include "policy/values.hpp"
#include "policy/yaml_reader.hpp"

namespace optgate::consentd {

using namespace policy::syntax;

namespace {

void read_listen(const Value& v, Config& c, Diagnostics& d) {
    const MapReader m(v, "'listen'", {"address", "port"}, d);
    if (!m.is_map()) return;
    if (const auto a = m.get("address")) {
        if (const auto text = as_text(*a, d)) {
            const auto ip = IpAddr::parse(*text);
            if (!ip) {
                d.error(a->at, "'address' must be an IPv4 or IPv6 address, not '" + *text + "'");
            } else {
                c.listen_address = *text;
                const bool loopback = ip->family == Family::v4 ? ip->bytes[0] == 127 : *ip == *IpAddr::parse("::1");
                if (!loopback)
                    d.warning(a->at, "the API is plain HTTP: listening on " + *text +
                                         " sends bearer tokens unencrypted; keep it on loopback or put a TLS proxy "
                                         "in front");
            }
        }
    }
    if (const auto p = m.get("port"))
        if (const auto n = as_integer(*p, d, 0, 65535)) c.port = uint16_t(*n);
}

void read_tokens(const Value& v, Config& c, Diagnostics& d) {
    const auto items = as_list(v, d);
    if (!items) return;
    std::vector<Location> name_at;
    for (const auto& item : *items) {
        const MapReader m(item, item.name, {"name", "role", "sha256"}, d);
        if (!m.is_map()) continue;
        Token t;
        bool ok = true;
        if (const auto n = m.require("name")) {
            const auto text = as_text(*n, d);
            if (text && !is_subscriber_id(*text)) {
                d.error(n->at, "token name '" + *text + "' must be 1..128 characters of [A-Za-z0-9._:@-]");
                ok = false;
            } else if (text) {
                for (size_t i = 0; i < c.tokens.size(); ++i)
                    if (c.tokens[i].name == *text) {
                        d.error(n->at, "duplicate token name '" + *text + "' (first at line " +
                                           std::to_string(name_at[i].line) + ")");
                        ok = false;
                    }
                t.name = *text;
            } else {
                ok = false;
            }
        } else {
            ok = false;
        }
        if (const auto r = m.require("role")) {
            const auto text = as_text(*r, d);
            const auto role = text ? parse_role(*text) : std::nullopt;
            if (text && !role) d.error(r->at, "role '" + *text + "' is not one of: read, write, admin");
            if (role) t.role = *role;
            ok = ok && role;
        } else {
            ok = false;
        }
        if (const auto h = m.require("sha256")) {
            const auto text = as_text(*h, d);
            const auto digest = text ? digest_from_hex(*text) : std::nullopt;
            if (text && !digest)
                d.error(h->at,
                        "'sha256' must be the token's SHA-256 as 64 hex digits (consentd --hash-token "
                        "prints it); never put the token itself here");
            if (digest) {
                for (const auto& other : c.tokens)
                    if (other.sha256 == *digest)
                        d.error(h->at, "token '" + t.name + "' has the same hash as token '" + other.name +
                                           "': one token, two names");
                t.sha256 = *digest;
            }
            ok = ok && digest;
        } else {
            ok = false;
        }
        if (ok) {
            c.tokens.push_back(std::move(t));
            name_at.push_back(item.at);
        }
    }
}

void read_limits(const Value& v, Config& c, Diagnostics& d) {
    const MapReader m(v, "'limits'",
                      {"max_body_bytes", "max_import_bytes", "max_header_bytes", "header_timeout", "body_timeout",
                       "import_timeout", "write_timeout", "max_connections", "reserved_connections"},
                      d);
    if (!m.is_map()) return;
    Limits& l = c.limits;
    if (const auto x = m.get("max_body_bytes"))
        if (const auto n = as_integer(*x, d, 1024, 64u << 20)) l.max_body_bytes = *n;
    if (const auto x = m.get("max_import_bytes"))
        if (const auto n = as_integer(*x, d, 1024, uint64_t(4) << 30)) l.max_import_bytes = *n;
    if (const auto x = m.get("max_header_bytes"))
        if (const auto n = as_integer(*x, d, 1024, 1u << 20)) l.max_header_bytes = *n;
    if (const auto x = m.get("header_timeout"))
        if (const auto t = as_duration(*x, d)) l.header_timeout = *t;
    if (const auto x = m.get("body_timeout"))
        if (const auto t = as_duration(*x, d)) l.body_timeout = *t;
    if (const auto x = m.get("import_timeout"))
        if (const auto t = as_duration(*x, d)) l.import_timeout = *t;
    if (const auto x = m.get("write_timeout"))
        if (const auto t = as_duration(*x, d)) l.write_timeout = *t;
    if (const auto x = m.get("max_connections"))
        if (const auto n = as_integer(*x, d, 1, 65536)) l.max_connections = unsigned(*n);
    if (const auto x = m.get("reserved_connections"))
        if (const auto n = as_integer(*x, d, 0, 65535)) {
            if (*n >= l.max_connections)
                d.error(x->at, "'reserved_connections' must be less than max_connections (" +
                                   std::to_string(l.max_connections) + ")");
            else
                l.reserved_connections = unsigned(*n);
        }
}

void read_checkpoints(const Value& v, Config& c, Diagnostics& d, const std::string& base_dir) {
    const MapReader m(v, "'checkpoints' of 'ledger'", {"key", "file", "every_events", "every"}, d);
    if (!m.is_map()) return;
    CheckpointConfig cp;
    bool ok = true;
    for (const auto& [name, path] : {std::pair{"key", &cp.key}, std::pair{"file", &cp.file}}) {
        const auto x = m.require(name);
        const auto t = x ? as_text(*x, d) : std::nullopt;
        if (t) *path = resolve_path(*t, base_dir);
        ok = ok && t;
    }
    if (const auto x = m.get("every_events")) {
        if (const auto n = as_integer(*x, d, 1, 100000000))
            cp.every_events = uint64_t(*n);
        else
            ok = false;
    }
    if (const auto x = m.get("every")) {
        if (const auto t = as_duration(*x, d, std::chrono::seconds(1), std::chrono::hours(24)))
            cp.every = *t;
        else
            ok = false;
    }
    if (ok) c.checkpoints = std::move(cp);
}

void read_ledger(const Value& v, Config& c, Diagnostics& d, const std::string& base_dir) {
    const MapReader m(
        v, "'ledger'",
        {"backend", "dsn", "standby", "follow", "fence_after", "max_batch", "history_limit", "checkpoints"}, d);
    if (!m.is_map()) return;
    if (const auto x = m.get("backend")) {
        if (const auto t = as_text(*x, d)) {
            if (*t == "postgresql")
                c.backend = Backend::postgresql;
            else if (*t != "sqlite")
                d.error(x->at, "'backend' must be sqlite or postgresql, not '" + *t + "'");
        }
    }
    if (const auto x = m.get("dsn")) {
        if (const auto t = as_text(*x, d)) {
            if (c.backend != Backend::postgresql)
                d.error(x->at, "'dsn' is for 'backend: postgresql'; an SQLite ledger is named by 'database'");
            else if (t->empty())
                d.error(x->at, "'dsn' must name a PostgreSQL database, like \"host=/run/postgresql dbname=optgate\"");
            else
                c.database = t->starts_with("postgresql://") || t->starts_with("postgres://") ? *t : "postgresql:" + *t;
        }
    } else if (c.backend == Backend::postgresql) {
        d.error(v.at, "'backend: postgresql' needs 'dsn', like \"host=/run/postgresql dbname=optgate\"");
    }
    if (const auto x = m.get("standby")) {
        if (const auto b = as_bool(*x, d)) {
            if (*b && c.backend != Backend::postgresql)
                d.error(x->at, "'standby' is for 'backend: postgresql': an SQLite ledger has one consentd");
            else
                c.standby = *b;
        }
    }
    if (const auto x = m.get("follow")) {
        if (const auto b = as_bool(*x, d)) {
            if (*b && c.backend != Backend::postgresql)
                d.error(x->at, "'follow' is for 'backend: postgresql': an SQLite ledger has one consentd");
            else
                c.follow = *b;
        }
    }
    if (const auto x = m.get("fence_after")) {
        if (const auto t = as_duration(*x, d, std::chrono::milliseconds(500), std::chrono::minutes(10))) {
            if (c.backend != Backend::postgresql)
                d.error(x->at, "'fence_after' is for 'backend: postgresql': an SQLite ledger has one consentd");
            else
                c.fence_after = *t;
        }
    }
    if (const auto x = m.get("max_batch"))
        if (const auto n = as_integer(*x, d, 1, 1000000)) c.max_batch = *n;
    if (const auto x = m.get("history_limit"))
        if (const auto n = as_integer(*x, d, 1, 100000)) c.history_limit = *n;
    if (const auto x = m.get("checkpoints")) read_checkpoints(*x, c, d, base_dir);
}

// Receipt texts are shown to subscribers: any language, no control characters.
std::optional<std::string> receipt_text(const Value& v, Diagnostics& d, size_t max) {
    auto t = as_text(v, d);
    if (!t) return std::nullopt;
    const bool control = std::any_of(t->begin(), t->end(), ascii::is_control);
    if (control || t->size() > max) {
        d.error(v.at, v.name + " must be one line of at most " + std::to_string(max) + " bytes");
        return std::nullopt;
    }
    return t;
}

void read_receipts(const Value& v, Config& c, Diagnostics& d) {
    const MapReader m(v, "'receipts'", {"jurisdiction", "controller", "policy_url"}, d);
    if (!m.is_map()) return;
    ReceiptIssuer& r = c.receipts;
    if (const auto x = m.require("jurisdiction")) r.jurisdiction = receipt_text(*x, d, 64);
    if (const auto x = m.require("controller")) {
        const MapReader cm(*x, "'controller' of 'receipts'", {"name", "contact"}, d);
        if (cm.is_map()) {
            if (const auto y = cm.require("name")) r.controller_name = receipt_text(*y, d, 256);
            if (const auto y = cm.require("contact")) r.controller_contact = receipt_text(*y, d, 256);
        }
    }
    if (const auto x = m.require("policy_url")) {
        if (auto t = receipt_text(*x, d, 2048)) {
            const auto url = boost::urls::parse_absolute_uri(*t);
            if (!url || (url->scheme() != "https" && url->scheme() != "http") || url->encoded_host().empty())
                d.error(x->at, "'policy_url' must be an http or https URL, like https://isp.example/privacy, not '" +
                                   *t + "'");
            else
                r.policy_url = std::move(t);
        }
    }
}

void read_disclosures(const Value& v, Config& c, Diagnostics& d) {
    const MapReader m(v, "'disclosures'", {"retention", "clock_margin"}, d);
    if (!m.is_map()) return;
    if (const auto x = m.get("retention")) {
        // Days, beyond what a duration (at most 24h) can say: "400d".
        if (const auto text = as_text(*x, d)) {
            const auto n = text->size() > 1 && text->back() == 'd'
                               ? parse_decimal(std::string_view(*text).substr(0, text->size() - 1))
                               : std::nullopt;
            if (!n || *n < 1 || *n > 36500)
                d.error(x->at,
                        "'retention' must be a number of days from 1d to 36500d, like 400d, not '" + *text + "'");
            else
                c.disclosures.retention_days = unsigned(*n);
        }
    }
    if (const auto x = m.get("clock_margin"))
        if (const auto t = as_duration(*x, d, std::chrono::milliseconds(1), std::chrono::minutes(10)))
            c.disclosures.clock_margin = *t;
}

}  // namespace

LoadedConfig load_config_text(std::string_view yaml, const std::string& name, const std::string& base_dir) {
    Diagnostics d(name);
    Config c;
    c.file = name;
    if (const auto root = parse_document(yaml, d)) {
        const Value top{*root, location_of(*root), "the consentd config"};
        const MapReader m(top, "the consentd config",
                          {"listen", "database", "policy", "tokens", "limits", "ledger", "dataplanes", "receipts",
                           "radius", "disclosures", "portal", "pseudonym_keys"},
                          d);
        if (m.is_map()) {
            if (const auto v = m.get("listen")) read_listen(*v, c, d);
            // The ledger's store first: 'database' names an SQLite file,
            // 'ledger: {backend: postgresql, dsn: ...}' a PostgreSQL one.
            if (const auto v = m.get("ledger")) read_ledger(*v, c, d, base_dir);
            if (c.backend == Backend::sqlite) {
                if (const auto v = m.require("database"))
                    if (const auto t = as_text(*v, d)) c.database = resolve_path(*t, base_dir);
            } else if (const auto v = m.get("database")) {
                d.error(v->at, "'database' names an SQLite ledger; with 'backend: postgresql' the ledger is 'dsn'");
            }
            if (const auto v = m.get("pseudonym_keys")) {
                if (const auto t = as_text(*v, d)) c.pseudonym_keys = resolve_path(*t, base_dir);
            } else if (c.backend == Backend::postgresql) {
                d.error(top.at,
                        "'backend: postgresql' needs 'pseudonym_keys': a file, the same on every consentd "
                        "of the ledger (docs/scale-out.md)");
            } else if (!c.database.empty()) {
                c.pseudonym_keys = c.database + ".pseudonym-keys";
            }
            if (const auto v = m.require("policy"))
                if (const auto t = as_text(*v, d)) c.policy = resolve_path(*t, base_dir);
            if (const auto v = m.require("tokens")) read_tokens(*v, c, d);
            if (const auto v = m.get("limits")) read_limits(*v, c, d);
            if (const auto v = m.get("dataplanes")) read_dataplane_config(*v, c.dataplanes, d, base_dir);
            if (const auto v = m.get("receipts")) read_receipts(*v, c, d);
            if (const auto v = m.get("radius")) read_radius_config(*v, c.radius, d);
            if (const auto v = m.get("disclosures")) read_disclosures(*v, c, d);
            if (const auto v = m.get("portal")) read_portal_config(*v, c.portal, d, base_dir);
            if (c.tokens.empty() && d.error_count() == 0)
                d.error(top.at, "no tokens: every API call needs one (see consentd --hash-token)");
        }
    }
    d.throw_if_errors();
    return {std::move(c), d.warnings()};
}

LoadedConfig load_config_file(const std::string& path) {
    const std::string text = read_file(path);
    return load_config_text(text, path, std::filesystem::path(path).parent_path().string());
}

}  // namespace optgate::consentd
