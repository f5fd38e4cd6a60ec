// The data plane's configuration file (config/optgate.example.yaml,
// docs/dataplane.md#the-configuration-file). DPDK-free, so that
// `optgate --check-config` and the unit tests run without EAL.
//
// Every setting also has a command-line flag; a flag given on the command
// line wins over the file.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policy/loader.hpp"

namespace optgate::dataplane {

// How both directions of a flow reach the same worker (docs/dataplane.md#workers).
enum class Steering : uint8_t {
    automatic,  // rss when every port supports it with enough queues, else software
    rss,        // the NIC hashes with a symmetric key; each worker polls its own queues
    software,   // one queue per port; its poller hashes and hands frames over rte_rings
};
std::string_view to_string(Steering s) noexcept;

struct Config {
    std::string file;  // where it came from, for messages; empty: flags only

    // Ports, each by DPDK port id ("0") or device name ("0000:3b:00.0", "net_pcap0").
    std::string subscriber_port = "0";
    std::string internet_port = "1";
    // When one port loses its link, take the other down until it is back
    // (link.hpp, docs/deploy.md#link-faults).
    bool link_propagation = true;

    // Workers: EAL lcore ids; empty means every lcore EAL was given but the
    // main one (which keeps the control thread), or the main one if alone.
    std::vector<unsigned> worker_lcores;
    Steering steering = Steering::automatic;
    // Sleep this long after 64 empty polls in a row (0: poll without
    // sleeping, for isolated cores). Trades latency for CPU on shared hosts.
    std::chrono::microseconds idle_sleep{0};

    uint16_t rx_descriptors = 1024;
    uint16_t tx_descriptors = 1024;
    uint16_t burst = 32;
    unsigned ring_size = 4096;  // software steering and shared-TX rings, per worker
    unsigned mbufs = 0;         // 0: computed from ports, queues and workers
    unsigned mbuf_cache = 256;

    // Controlled mode (consentd) or static mode (files): exactly one.
    std::string control;  // Unix socket path or HOST:PORT; several comma-separated (proto::Endpoint::parse_list)
    std::string name;     // this data plane's name at consentd; default optgate-<hostname>
    std::string bootstrap_policy;
    std::string tls_cert, tls_key, tls_ca;
    std::string checkpoint_public_key;               // consentd's checkpoint key (PEM): checkpoints verified
    std::chrono::milliseconds sync_timeout{0};       // 0: forward (stripping) while waiting
    std::chrono::milliseconds stats_interval{1000};  // reports to consentd

    std::string policy, consent;  // static mode

    size_t http_flows = 262144;  // per worker
    std::chrono::seconds http_idle_timeout{120};

    // Disclosure accounting (core/disclosure.hpp): counts per subscriber key,
    // destination and identifier, drained every interval. entries: slots per
    // worker table (two tables, 40 bytes a slot; 0: off).
    std::chrono::milliseconds disclosure_interval{60000};
    size_t disclosure_entries = 65536;

    // Fragment reassembly (core/reassembly.hpp, docs/pipeline.md#fragments):
    // datagrams held at once and bytes of fragment copies, per worker.
    size_t fragment_datagrams = 256;
    size_t fragment_memory = size_t{4} << 20;

    // Its own Prometheus endpoint (metrics_server.hpp): on by default, on
    // loopback. Port 0: any free port (logged).
    bool metrics = true;
    std::string metrics_address = "127.0.0.1";
    uint16_t metrics_port = 9477;

    std::string stats_file;          // counters as JSON on exit
    std::string log_level = "info";  // error, warning, info, debug
};

struct LoadedConfig {
    Config config;
    std::vector<policy::Diagnostic> warnings;
};

// Throws policy::PolicyError listing every problem (FILE:LINE:COL).
// Relative paths are taken from `base_dir`.
LoadedConfig load_config_text(std::string_view yaml, const std::string& name, const std::string& base_dir);
LoadedConfig load_config_file(const std::string& path);

// Checks that hold whether settings came from the file or from flags;
// returns the first problem, or an empty string.
std::string validate(const Config& c);

}  // namespace optgate::dataplane
