// The `dataplanes:` section of consentd's config (config/consentd.example.yaml):
// where data planes connect and how consentd streams the table to them.
//
//   dataplanes:
//     socket: /run/optgate/consentd.sock     # Unix socket ("" : none)
//     socket_mode: "0660"                    # who may connect: the file's permissions
//     tcp:                                   # optional
//       address: 0.0.0.0
//       port: 8471
//       tls:                                 # required unless address is loopback
//         certificate: /etc/optgate/consentd.crt
//         private_key: /etc/optgate/consentd.key
//         client_ca: /etc/optgate/dataplane-ca.crt
//     heartbeat_interval: 1s
//     history_commits: 100000
//     max_queue_bytes: 16777216
//     write_timeout: 10s
//     hello_timeout: 10s
//     handshake_timeout: 3s
//     max_pending: 64
//     max_pending_per_address: 8
//     max_dataplanes: 256
//     enforced_wait_timeout: 5s
//     stats_retention: 10m
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "policy/usability.hpp"
#include "policy/yaml_reader.hpp"
#include "proto/tls.hpp"

namespace optgate::consentd {

struct DataPlaneTcp {
    std::string address;
    uint16_t port = 8471;
    std::optional<proto::TlsFiles> tls;  // ca = the CA that signs data plane certificates
};

struct DataPlaneConfig {
    std::string socket = "/run/optgate/consentd.sock";
    unsigned socket_mode = 0660;
    std::optional<DataPlaneTcp> tcp;
    std::chrono::milliseconds heartbeat_interval{policy::kDefaultHeartbeatInterval};
    // Commits kept in memory so that a reconnecting data plane gets deltas
    // instead of a snapshot; also bounded by history_bytes.
    size_t history_commits = 100000;
    size_t history_bytes = 64u << 20;
    // Per data plane: queued frames beyond a snapshot in flight; past it the
    // data plane is resynchronised with a snapshot.
    size_t max_queue_bytes = 16u << 20;
    // A write that makes no progress this long closes the connection.
    std::chrono::milliseconds write_timeout{10000};
    // TLS handshake and hello must be done within this.
    std::chrono::milliseconds hello_timeout{10000};
    // The TLS handshake alone must be done within this: a data plane needs a
    // round trip or two; a connection that says nothing is closed soon.
    std::chrono::milliseconds handshake_timeout{3000};
    // TCP connections accepted without a hello yet (TLS handshake included):
    // at most max_pending (beyond it the listener stops accepting and the
    // excess waits in the kernel's backlog), and at most
    // max_pending_per_address from one address (IPv6: one /64); beyond that
    // a connection is closed as soon as it is accepted. docs/protocol.md,
    // "Limits before hello". max_pending is lowered at start if
    // RLIMIT_NOFILE cannot hold it beside everything else.
    unsigned max_pending = 64;
    unsigned max_pending_per_address = 8;
    unsigned max_dataplanes = 256;
    // ?wait=enforced without ?timeout=.
    std::chrono::milliseconds enforced_wait_timeout{5000};
    // A data plane that disconnected stays in GET /metrics (up 0, its last
    // stats) and in GET /v1/dataplanes this long, or until it reconnects.
    std::chrono::milliseconds stats_retention{600000};
};

// Reads the section into `c`, reporting every problem into `d`. Relative
// paths are resolved against `base_dir`.
void read_dataplane_config(const policy::syntax::Value& v, DataPlaneConfig& c, policy::syntax::Diagnostics& d,
                           const std::string& base_dir);

// The cross-check with the policy: heartbeats must come well within the
// staleness limit (at most a third of it), or a data plane goes stale while
// consentd is healthy. Returns the problem, or "" if none.
std::string check_heartbeat_against(const DataPlaneConfig& c, std::chrono::milliseconds staleness_limit);

}  // namespace optgate::consentd
