#include "consentd/dataplane_config.hpp"

#include <filesystem>

#include "policy/values.hpp"
#include "proto/endpoint.hpp"

namespace optgate::consentd {

using namespace policy::syntax;

namespace {

void read_tls(const Value& v, DataPlaneTcp& tcp, Diagnostics& d, const std::string& base_dir) {
    const MapReader m(v, "'tls'", {"certificate", "private_key", "client_ca"}, d);
    if (!m.is_map()) return;
    proto::TlsFiles f;
    bool ok = true;
    for (auto [key, field] : {std::pair{"certificate", &f.certificate}, std::pair{"private_key", &f.private_key},
                              std::pair{"client_ca", &f.ca}}) {
        const auto x = m.require(key);
        const auto text = x ? as_text(*x, d) : std::nullopt;
        if (text)
            *field = resolve_path(*text, base_dir);
        else
            ok = false;
    }
    if (ok) tcp.tls = std::move(f);
}

void read_tcp(const Value& v, DataPlaneConfig& c, Diagnostics& d, const std::string& base_dir) {
    const MapReader m(v, "'tcp'", {"address", "port", "tls"}, d);
    if (!m.is_map()) return;
    DataPlaneTcp tcp;
    bool ok = true;
    if (const auto a = m.require("address")) {
        const auto text = as_text(*a, d);
        if (text && !IpAddr::parse(*text)) {
            d.error(a->at, "'address' must be an IPv4 or IPv6 address, not '" + *text + "'");
            ok = false;
        } else if (text) {
            tcp.address = *text;
        } else {
            ok = false;
        }
    } else {
        ok = false;
    }
    if (const auto p = m.get("port")) {
        if (const auto n = as_integer(*p, d, 0, 65535))
            tcp.port = uint16_t(*n);
        else
            ok = false;
    }
    if (const auto t = m.get("tls")) read_tls(*t, tcp, d, base_dir);
    if (!ok) return;
    proto::Endpoint ep;
    ep.kind = proto::Endpoint::Kind::tcp;
    ep.host = tcp.address;
    if (!tcp.tls && !ep.is_loopback()) {
        d.error(m.value().at, "data planes on " + tcp.address +
                                  " would receive the consent table unauthenticated and in clear: a TCP "
                                  "listener on a non-loopback address needs 'tls' (certificate, private_key, "
                                  "client_ca) and data planes with client certificates");
        return;
    }
    c.tcp = std::move(tcp);
}

}  // namespace

void read_dataplane_config(const Value& v, DataPlaneConfig& c, Diagnostics& d, const std::string& base_dir) {
    const MapReader m(v, "'dataplanes'",
                      {"socket", "socket_mode", "tcp", "heartbeat_interval", "history_commits", "history_bytes",
                       "max_queue_bytes", "write_timeout", "hello_timeout", "handshake_timeout", "max_pending",
                       "max_pending_per_address", "max_dataplanes", "enforced_wait_timeout", "stats_retention"},
                      d);
    if (!m.is_map()) return;
    using std::chrono::milliseconds;
    if (const auto x = m.get("socket")) {
        if (const auto t = as_text(*x, d, true)) c.socket = t->empty() ? std::string() : resolve_path(*t, base_dir);
    }
    if (const auto x = m.get("socket_mode")) {
        const auto t = as_text(*x, d);
        bool ok = t && t->size() >= 3 && t->size() <= 4 && t->find_first_not_of("01234567") == std::string::npos;
        if (ok) {
            c.socket_mode = unsigned(std::stoul(*t, nullptr, 8));
            if (c.socket_mode & 0007) {
                d.error(x->at, "'socket_mode' " + *t +
                                   " lets any local user connect and read the consent table; use 0660 or 0600");
            }
        } else if (t) {
            d.error(x->at, "'socket_mode' must be octal permissions in quotes, like \"0660\"");
        }
    }
    if (const auto x = m.get("tcp")) read_tcp(*x, c, d, base_dir);
    if (const auto x = m.get("heartbeat_interval"))
        if (const auto t = as_duration(*x, d, policy::kMinHeartbeatInterval, policy::kMaxHeartbeatInterval))
            c.heartbeat_interval = *t;
    if (const auto x = m.get("history_commits"))
        if (const auto n = as_integer(*x, d, 0, 100000000)) c.history_commits = *n;
    if (const auto x = m.get("history_bytes"))
        if (const auto n = as_integer(*x, d, 0, uint64_t(16) << 30)) c.history_bytes = *n;
    if (const auto x = m.get("max_queue_bytes"))
        if (const auto n = as_integer(*x, d, 64u << 10, uint64_t(16) << 30)) c.max_queue_bytes = *n;
    if (const auto x = m.get("write_timeout"))
        if (const auto t = as_duration(*x, d, milliseconds(100), milliseconds(3600000))) c.write_timeout = *t;
    if (const auto x = m.get("hello_timeout"))
        if (const auto t = as_duration(*x, d, milliseconds(100), milliseconds(3600000))) c.hello_timeout = *t;
    if (const auto x = m.get("handshake_timeout"))
        if (const auto t = as_duration(*x, d, milliseconds(100), milliseconds(60000))) c.handshake_timeout = *t;
    if (const auto x = m.get("max_pending"))
        if (const auto n = as_integer(*x, d, 1, 65536)) c.max_pending = unsigned(*n);
    if (const auto x = m.get("max_pending_per_address"))
        if (const auto n = as_integer(*x, d, 1, 65536)) c.max_pending_per_address = unsigned(*n);
    if (const auto x = m.get("max_dataplanes"))
        if (const auto n = as_integer(*x, d, 1, 65536)) c.max_dataplanes = unsigned(*n);
    if (const auto x = m.get("enforced_wait_timeout"))
        if (const auto t = as_duration(*x, d, milliseconds(1), milliseconds(600000))) c.enforced_wait_timeout = *t;
    if (const auto x = m.get("stats_retention"))
        if (const auto t = as_duration(*x, d, milliseconds(1), milliseconds(86400000))) c.stats_retention = *t;
    if (c.socket.empty() && !c.tcp)
        d.error(m.value().at, "'dataplanes' has neither a socket nor a tcp listener: data planes could not connect");
}

std::string check_heartbeat_against(const DataPlaneConfig& c, std::chrono::milliseconds staleness_limit) {
    return policy::staleness_limit_problem(staleness_limit, c.heartbeat_interval);  // optgatectl check warns alike
}

}  // namespace optgate::consentd
