// consentd's configuration file (config/consentd.example.yaml documents every
// key). Read with the policy layer's located YAML reader, so that errors look
// the same everywhere: every problem as FILE:LINE:COLUMN: message, unknown
// keys with a "did you mean", all of them in one run.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "consentd/auth.hpp"
#include "consentd/checkpoint.hpp"
#include "consentd/database.hpp"
#include "consentd/dataplane_config.hpp"
#include "consentd/policy_history.hpp"
#include "consentd/portal_config.hpp"
#include "consentd/radius_config.hpp"
#include "policy/loader.hpp"

namespace optgate::consentd {

struct Limits {
    size_t max_body_bytes = 1u << 20;      // JSON request bodies
    size_t max_import_bytes = 256u << 20;  // POST /v1/import bodies
    size_t max_header_bytes = 16u << 10;
    std::chrono::milliseconds header_timeout{10000};  // idle keep-alive wait included
    std::chrono::milliseconds body_timeout{30000};
    std::chrono::milliseconds import_timeout{600000};  // an import body's upload
    std::chrono::milliseconds write_timeout{30000};    // a client that does not read its response
    unsigned max_connections = 1024;
    // Slots only connections that presented a valid token may hold; unset:
    // max_connections / 16 (64 of 1024). docs/consentd.md "Limits under attack".
    std::optional<unsigned> reserved_connections;
    unsigned reserved() const { return reserved_connections.value_or(max_connections / 16); }
};

// disclosures: what was shared about each subscriber (docs/transparency.md).
struct DisclosureConfig {
    unsigned retention_days = 400;                 // "400d": daily rows older than this are pruned
    std::chrono::milliseconds clock_margin{5000};  // data plane vs consentd clocks, binding delays
};

struct Config {
    std::string file;  // the config file itself
    std::string listen_address = "127.0.0.1";
    uint16_t port = 8470;
    // The ledger's store (database.hpp): an SQLite file, absolute or
    // relative to the config file's directory; or, with backend
    // postgresql, "postgresql:" + the dsn (a postgresql:// URI as given).
    Backend backend = Backend::sqlite;
    std::string database;
    // PostgreSQL: wait for the writer's lock when another consentd holds it
    // (a standby), rather than exit.
    bool standby = false;
    // PostgreSQL: while another consentd is the writer, follow its events
    // and serve reads and data planes (writes: 503 not_writer, naming the
    // writer); take over as the writer when its session ends
    // (docs/scale-out.md, "Followers").
    bool follow = false;
    // PostgreSQL: how long consentd may go without confirming that it holds
    // the whole ledger before it closes its data planes and answers
    // /healthz 503 (docs/scale-out.md, "Fencing").
    std::chrono::milliseconds fence_after{5000};
    // The collectors' pseudonym keys (pseudonym_keys.hpp): beside an SQLite
    // ledger unless given; required with PostgreSQL.
    std::string pseudonym_keys;
    std::string policy;  // same
    std::vector<Token> tokens;
    Limits limits;
    size_t max_batch = 4096;     // requests per group commit
    size_t history_limit = 100;  // events GET /v1/subscribers/{id} returns by default
    // Signed checkpoints of the ledger's head (checkpoint.hpp); unset: none.
    std::optional<CheckpointConfig> checkpoints;
    DataPlaneConfig dataplanes;  // where data planes connect (docs/protocol.md)
    ReceiptIssuer receipts;      // who issues consent receipts (docs/receipts.md); empty: not configured
    // The RADIUS accounting listener, when configured (docs/radius.md).
    std::optional<RadiusConfig> radius;
    DisclosureConfig disclosures;
    PortalConfig portal;  // the subscriber's privacy page (docs/portal.md); off by default
};

struct LoadedConfig {
    Config config;
    std::vector<policy::Diagnostic> warnings;
};

// Throws policy::PolicyError with every error found.
LoadedConfig load_config_file(const std::string& path);
LoadedConfig load_config_text(std::string_view yaml, const std::string& name, const std::string& base_dir);

}  // namespace optgate::consentd
