// The `portal:` section of consentd's config (config/consentd.example.yaml,
// docs/portal.md): the subscriber's own privacy page, on its own listener.
// Off unless the section is present.
//
//   portal:
//     listen: {address: 127.0.0.1, port: 8480}
//     tls: {certificate: portal.crt, private_key: portal.key}   # optional
//     public_url: https://privacy.isp.example                   # what links start with
//     mode: signed-link                                          # or network
//     link_secret_file: portal-link.key                          # signed-link: >= 32 bytes
//     link_lifetime: 15m
//     session_lifetime: 30m
//     max_sessions: 10000
//     rate_limits: {per_address: 120, per_session: 60}           # requests per minute
//     trusted_proxies: [127.0.0.1]                               # X-Forwarded-For from these only
//     notice_version: "2026-01"                                  # recorded on every change
//     texts: portal-texts.yaml                                   # optional overrides
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/addr.hpp"
#include "policy/yaml_reader.hpp"

namespace optgate::consentd {

struct PortalTls {
    std::string certificate;  // PEM chain
    std::string private_key;  // PEM
};

struct PortalConfig {
    enum class Mode : uint8_t { signed_link, network };

    bool enabled = false;  // the section is present
    std::string listen_address = "127.0.0.1";
    uint16_t port = 8480;
    std::optional<PortalTls> tls;
    // The origin subscribers' browsers use (the TLS proxy's, when there is
    // one); signed links start with it. "" : http(s)://address:port, with
    // the port bound (see url_for()).
    std::string public_url;
    Mode mode = Mode::signed_link;
    std::string link_secret;  // the bytes of link_secret_file
    std::chrono::milliseconds link_lifetime{15 * 60 * 1000};
    std::chrono::milliseconds session_lifetime{30 * 60 * 1000};
    size_t max_sessions = 10000;
    unsigned per_address_per_minute = 120;
    unsigned per_session_per_minute = 60;
    std::vector<Prefix> trusted_proxies;
    std::string notice_version;
    std::string texts;  // path of the text overrides file; "" : none

    // The session cookie gets Secure when the browser talks TLS: to us, or
    // to the proxy public_url names.
    bool secure_cookie() const { return tls || public_url.rfind("https://", 0) == 0; }
    // public_url, or this listener's own URL once bound to `port`.
    std::string url_for(uint16_t bound_port) const;
};

std::string_view to_string(PortalConfig::Mode m) noexcept;

// Reads the section into `c`, reporting every problem into `d`; reads the
// link secret file. Relative paths are resolved against `base_dir`.
void read_portal_config(const policy::syntax::Value& v, PortalConfig& c, policy::syntax::Diagnostics& d,
                        const std::string& base_dir);

}  // namespace optgate::consentd
