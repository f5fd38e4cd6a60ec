#include "dataplane/config.hpp"

#include <arpa/inet.h>

#include <filesystem>

#include "policy/yaml_reader.hpp"
#include "proto/endpoint.hpp"

namespace optgate::dataplane {

using namespace policy::syntax;

std::string_view to_string(Steering s) noexcept {
    switch (s) {
    case Steering::automatic: return "auto";
    case Steering::rss: return "rss";
    case Steering::software: return "software";
    }
    return "?";
}

namespace {

// A port by id or by device name; both are text to the config.
void read_port(const Value& v, std::string& out, Diagnostics& d) {
    if (v.node.IsScalar() && !v.node.Scalar().empty()) {
        out = v.node.Scalar();
        return;
    }
    d.error(v.at, v.name + " must be a DPDK port id or device name, not " + std::string(kind_of(v.node)));
}

void read_ports(const Value& v, Config& c, Diagnostics& d) {
    const MapReader m(v, "'ports'", {"subscriber", "internet", "link_propagation"}, d);
    if (!m.is_map()) return;
    if (const auto x = m.require("subscriber")) read_port(*x, c.subscriber_port, d);
    if (const auto x = m.require("internet")) read_port(*x, c.internet_port, d);
    if (const auto x = m.get("link_propagation"))
        if (const auto b = as_bool(*x, d)) c.link_propagation = *b;
}

void read_workers(const Value& v, Config& c, Diagnostics& d) {
    const MapReader m(v, "'workers'", {"lcores", "steering", "idle_sleep_us"}, d);
    if (!m.is_map()) return;
    if (const auto x = m.get("lcores")) {
        if (const auto items = as_list(*x, d)) {
            for (const auto& item : *items) {
                const auto n = as_integer(item, d, 0, 1023);
                if (!n) continue;
                bool repeated = false;
                for (unsigned l : c.worker_lcores) repeated = repeated || l == *n;
                if (repeated)
                    d.error(item.at, "lcore " + std::to_string(*n) + " is listed twice");
                else
                    c.worker_lcores.push_back(unsigned(*n));
            }
            if (items->empty()) d.error(x->at, "'lcores' must list at least one lcore (or be left out: every lcore)");
        }
    }
    if (const auto x = m.get("steering")) {
        if (const auto t = as_text(*x, d)) {
            if (*t == "auto")
                c.steering = Steering::automatic;
            else if (*t == "rss")
                c.steering = Steering::rss;
            else if (*t == "software")
                c.steering = Steering::software;
            else
                d.error(x->at, "'steering' must be one of: auto, rss, software; not '" + *t + "'");
        }
    }
    if (const auto x = m.get("idle_sleep_us"))
        if (const auto n = as_integer(*x, d, 0, 100000)) c.idle_sleep = std::chrono::microseconds(*n);
}

bool power_of_two(uint64_t n) { return n && !(n & (n - 1)); }

void read_queues(const Value& v, Config& c, Diagnostics& d) {
    const MapReader m(v, "'queues'", {"rx_descriptors", "tx_descriptors", "burst", "ring_size"}, d);
    if (!m.is_map()) return;
    if (const auto x = m.get("rx_descriptors"))
        if (const auto n = as_integer(*x, d, 64, 32768)) c.rx_descriptors = uint16_t(*n);
    if (const auto x = m.get("tx_descriptors"))
        if (const auto n = as_integer(*x, d, 64, 32768)) c.tx_descriptors = uint16_t(*n);
    if (const auto x = m.get("burst"))
        if (const auto n = as_integer(*x, d, 1, 64)) c.burst = uint16_t(*n);
    if (const auto x = m.get("ring_size")) {
        if (const auto n = as_integer(*x, d, 64, 1u << 20)) {
            if (!power_of_two(*n))
                d.error(x->at, "'ring_size' must be a power of two, not " + std::to_string(*n));
            else
                c.ring_size = unsigned(*n);
        }
    }
}

void read_mempool(const Value& v, Config& c, Diagnostics& d) {
    const MapReader m(v, "'mempool'", {"mbufs", "cache"}, d);
    if (!m.is_map()) return;
    if (const auto x = m.get("mbufs")) {
        if (x->node.IsScalar() && x->node.Scalar() == "auto")
            c.mbufs = 0;
        else if (const auto n = as_integer(*x, d, 1024, 1u << 28))
            c.mbufs = unsigned(*n);
    }
    if (const auto x = m.get("cache"))
        if (const auto n = as_integer(*x, d, 0, 512)) c.mbuf_cache = unsigned(*n);
}

void read_tls(const Value& v, Config& c, Diagnostics& d, const std::string& base) {
    const MapReader m(v, "'tls'", {"cert", "key", "ca"}, d);
    if (!m.is_map()) return;
    if (const auto x = m.require("cert"))
        if (const auto t = as_text(*x, d)) c.tls_cert = resolve_path(*t, base);
    if (const auto x = m.require("key"))
        if (const auto t = as_text(*x, d)) c.tls_key = resolve_path(*t, base);
    if (const auto x = m.require("ca"))
        if (const auto t = as_text(*x, d)) c.tls_ca = resolve_path(*t, base);
}

void read_control(const Value& v, Config& c, Diagnostics& d, const std::string& base) {
    const MapReader m(
        v, "'control'",
        {"endpoint", "name", "bootstrap_policy", "sync_timeout", "stats_interval", "tls", "checkpoint_public_key"}, d);
    if (!m.is_map()) return;
    if (const auto x = m.require("endpoint")) {
        // One endpoint, or several (consentd instances tried in turn): a
        // list, or text with commas.
        std::vector<std::string> items;
        if (x->node.IsSequence()) {
            if (const auto list = as_list(*x, d))
                for (const auto& item : *list)
                    if (const auto t = as_text(item, d)) items.push_back(*t);
        } else if (const auto t = as_text(*x, d)) {
            for (const auto item : proto::split_comma_list(*t)) items.emplace_back(item);
        }
        std::string joined;
        for (const auto& item : items) {
            // A Unix socket path is relative to the config file like every path.
            const bool unix_path = !item.starts_with("unix:") && item.find('/') != std::string::npos;
            if (!joined.empty()) joined += ',';
            joined += unix_path ? resolve_path(item, base) : item;
        }
        std::string why;
        if (!items.empty() && !proto::Endpoint::parse_list(joined, why)) d.error(x->at, "'endpoint': " + why);
        c.control = std::move(joined);
    }
    if (const auto x = m.get("name"))
        if (const auto t = as_text(*x, d)) c.name = *t;
    if (const auto x = m.get("bootstrap_policy"))
        if (const auto t = as_text(*x, d)) c.bootstrap_policy = resolve_path(*t, base);
    if (const auto x = m.get("sync_timeout"))
        if (const auto t = as_duration(*x, d)) c.sync_timeout = *t;
    if (const auto x = m.get("stats_interval"))
        if (const auto t = as_duration(*x, d, std::chrono::milliseconds(100), std::chrono::minutes(10)))
            c.stats_interval = *t;
    if (const auto x = m.get("tls")) read_tls(*x, c, d, base);
    if (const auto x = m.get("checkpoint_public_key"))
        if (const auto t = as_text(*x, d)) c.checkpoint_public_key = resolve_path(*t, base);
    // Without a policy nothing is known about identifiers: the core drops
    // every frame (fail closed) until consentd's first snapshot. Say so where
    // an operator looks before a restart.
    if (c.bootstrap_policy.empty() && c.sync_timeout.count() == 0)
        d.warning(v.at,
                  "without 'bootstrap_policy' optgate drops every frame from its start until consentd's first "
                  "snapshot (no_policy_dropped); a copy of consentd's policy there forwards them with every "
                  "identifier stripped instead (docs/deploy.md#failure-behaviour)");
}

void read_static(const Value& v, Config& c, Diagnostics& d, const std::string& base) {
    const MapReader m(v, "'static'", {"policy", "consent"}, d);
    if (!m.is_map()) return;
    if (const auto x = m.require("policy"))
        if (const auto t = as_text(*x, d)) c.policy = resolve_path(*t, base);
    if (const auto x = m.require("consent"))
        if (const auto t = as_text(*x, d)) c.consent = resolve_path(*t, base);
}

void read_http(const Value& v, Config& c, Diagnostics& d) {
    const MapReader m(v, "'http'", {"flows", "idle_timeout"}, d);
    if (!m.is_map()) return;
    if (const auto x = m.get("flows"))
        if (const auto n = as_integer(*x, d, 8, uint64_t(1) << 26)) c.http_flows = size_t(*n);
    if (const auto x = m.get("idle_timeout"))
        if (const auto t = as_duration(*x, d, std::chrono::seconds(1), std::chrono::hours(24)))
            c.http_idle_timeout = std::chrono::duration_cast<std::chrono::seconds>(*t);
}

void read_disclosure(const Value& v, Config& c, Diagnostics& d) {
    const MapReader m(v, "'disclosure'", {"interval", "entries"}, d);
    if (!m.is_map()) return;
    if (const auto x = m.get("interval"))
        if (const auto t = as_duration(*x, d, std::chrono::seconds(1), std::chrono::hours(24)))
            c.disclosure_interval = *t;
    if (const auto x = m.get("entries"))
        if (const auto n = as_integer(*x, d, 0, uint64_t(1) << 24)) c.disclosure_entries = size_t(*n);
}

void read_fragments(const Value& v, Config& c, Diagnostics& d) {
    const MapReader m(v, "'fragments'", {"datagrams", "memory"}, d);
    if (!m.is_map()) return;
    if (const auto x = m.get("datagrams"))
        if (const auto n = as_integer(*x, d, 1, 65536)) c.fragment_datagrams = size_t(*n);
    if (const auto x = m.get("memory"))
        if (const auto n = as_integer(*x, d, 65536, uint64_t(1) << 32)) c.fragment_memory = size_t(*n);
}

void read_metrics(const Value& v, Config& c, Diagnostics& d) {
    const MapReader m(v, "'metrics'", {"enabled", "address", "port"}, d);
    if (!m.is_map()) return;
    if (const auto x = m.get("enabled"))
        if (const auto b = as_bool(*x, d)) c.metrics = *b;
    if (const auto x = m.get("address"))
        if (const auto t = as_text(*x, d)) c.metrics_address = *t;
    if (const auto x = m.get("port"))
        if (const auto n = as_integer(*x, d, 0, 65535)) c.metrics_port = uint16_t(*n);
}

}  // namespace

LoadedConfig load_config_text(std::string_view yaml, const std::string& name, const std::string& base_dir) {
    Diagnostics d(name);
    Config c;
    c.file = name;
    if (const auto root = parse_document(yaml, d)) {
        const Value top{*root, location_of(*root), "the optgate config"};
        const MapReader m(top, "the optgate config",
                          {"ports", "workers", "queues", "mempool", "control", "static", "http", "disclosure",
                           "fragments", "metrics", "stats_file", "log_level"},
                          d);
        if (m.is_map()) {
            if (const auto v = m.require("ports")) read_ports(*v, c, d);
            if (const auto v = m.get("workers")) read_workers(*v, c, d);
            if (const auto v = m.get("queues")) read_queues(*v, c, d);
            if (const auto v = m.get("mempool")) read_mempool(*v, c, d);
            const auto control = m.get("control");
            const auto fixed = m.get("static");
            if (control) read_control(*control, c, d, base_dir);
            if (fixed) read_static(*fixed, c, d, base_dir);
            if (control && fixed)
                d.error(fixed->at, "give either 'control' (consent from consentd) or 'static' (files), not both");
            if (!control && !fixed)
                d.error(top.at, "missing 'control' (consent from consentd) or 'static' (policy and consent files)");
            if (const auto v = m.get("http")) read_http(*v, c, d);
            if (const auto v = m.get("disclosure")) read_disclosure(*v, c, d);
            if (const auto v = m.get("fragments")) read_fragments(*v, c, d);
            if (const auto v = m.get("metrics")) read_metrics(*v, c, d);
            if (const auto v = m.get("stats_file"))
                if (const auto t = as_text(*v, d)) c.stats_file = resolve_path(*t, base_dir);
            if (const auto v = m.get("log_level")) {
                if (const auto t = as_text(*v, d)) {
                    if (*t == "error" || *t == "warning" || *t == "info" || *t == "debug")
                        c.log_level = *t;
                    else
                        d.error(v->at, "'log_level' must be one of: error, warning, info, debug; not '" + *t + "'");
                }
            }
            if (d.error_count() == 0) {
                if (const std::string why = validate(c); !why.empty()) d.error(top.at, why);
            }
        }
    }
    d.throw_if_errors();
    return {std::move(c), d.warnings()};
}

LoadedConfig load_config_file(const std::string& path) {
    const std::string text = read_file(path);
    return load_config_text(text, path, std::filesystem::path(path).parent_path().string());
}

std::string validate(const Config& c) {
    const bool static_mode = !c.policy.empty() || !c.consent.empty();
    if (static_mode == !c.control.empty()) return "give either a control endpoint or a policy and consent file";
    if (static_mode && (c.policy.empty() || c.consent.empty()))
        return "static mode needs both a policy and a consent file";
    if (!c.control.empty()) {
        std::string why;
        if (!proto::Endpoint::parse_list(c.control, why)) return "control endpoint " + c.control + ": " + why;
    }
    if (c.subscriber_port == c.internet_port) return "the subscriber and internet ports must differ";
    if (c.burst == 0 || c.burst > 64) return "burst must be between 1 and 64";
    if (c.http_flows < 8 || c.http_flows > (size_t(1) << 26)) return "http flows must be between 8 and 67108864";
    if (c.http_idle_timeout.count() < 1) return "the HTTP idle timeout must be at least 1 second";
    if (c.disclosure_entries > (size_t(1) << 24)) return "disclosure entries must be between 0 (off) and 16777216";
    if (c.fragment_datagrams < 1 || c.fragment_datagrams > 65536)
        return "fragment datagrams must be between 1 and 65536";
    if (c.fragment_memory < 65536 || c.fragment_memory > (size_t(1) << 32))
        return "fragment memory must be between 65536 and 4294967296 bytes";
    if (c.disclosure_interval < std::chrono::seconds(1) || c.disclosure_interval > std::chrono::hours(24))
        return "the disclosure interval must be between 1 second and 24 hours";
    if (c.metrics) {
        in6_addr a{};
        if (::inet_pton(AF_INET, c.metrics_address.c_str(), &a) != 1 &&
            ::inet_pton(AF_INET6, c.metrics_address.c_str(), &a) != 1)
            return "the metrics address must be an IPv4 or IPv6 address, not '" + c.metrics_address + "'";
    }
    const bool tls_any = !c.tls_cert.empty() || !c.tls_key.empty() || !c.tls_ca.empty();
    const bool tls_all = !c.tls_cert.empty() && !c.tls_key.empty() && !c.tls_ca.empty();
    if (tls_any && !tls_all) return "TLS needs a certificate, a key and a CA together";
    return {};
}

}  // namespace optgate::dataplane
