#include "consentd/portal_config.hpp"

#include "policy/values.hpp"

namespace optgate::consentd {

using namespace policy::syntax;

std::string_view to_string(PortalConfig::Mode m) noexcept {
    return m == PortalConfig::Mode::network ? "network" : "signed-link";
}

namespace {

bool is_loopback(const IpAddr& ip) {
    return ip.family == Family::v4 ? ip.bytes[0] == 127 : ip == *IpAddr::parse("::1");
}

// An HMAC key shorter than its hash's output weakens it (RFC 2104 §3).
constexpr size_t kMinSecretBytes = 32;

void read_secret(const Value& v, PortalConfig& c, Diagnostics& d, const std::string& base_dir) {
    const auto t = as_text(v, d);
    if (!t) return;
    const std::string path = resolve_path(*t, base_dir);
    try {
        c.link_secret = read_file(path);
    } catch (const policy::PolicyError&) {
        d.error(v.at, "cannot read 'link_secret_file' " + path + " (make one: openssl rand -hex 32 > FILE)");
        return;
    }
    while (!c.link_secret.empty() && (c.link_secret.back() == '\n' || c.link_secret.back() == '\r'))
        c.link_secret.pop_back();
    if (c.link_secret.size() < kMinSecretBytes)
        d.error(v.at, "'link_secret_file' " + path + " holds " + std::to_string(c.link_secret.size()) +
                          " bytes; it needs at least " + std::to_string(kMinSecretBytes) +
                          " (openssl rand -hex 32 > FILE)");
}

}  // namespace

std::string PortalConfig::url_for(uint16_t bound_port) const {
    if (!public_url.empty()) return public_url;
    const bool v6 = listen_address.find(':') != std::string::npos;
    return std::string(tls ? "https://" : "http://") + (v6 ? "[" : "") + listen_address + (v6 ? "]" : "") + ":" +
           std::to_string(bound_port);
}

void read_portal_config(const Value& v, PortalConfig& c, Diagnostics& d, const std::string& base_dir) {
    const MapReader m(v, "'portal'",
                      {"listen", "tls", "public_url", "mode", "link_secret_file", "link_lifetime", "session_lifetime",
                       "max_sessions", "rate_limits", "trusted_proxies", "notice_version", "texts"},
                      d);
    if (!m.is_map()) return;
    c.enabled = true;
    using std::chrono::milliseconds;
    bool loopback = true;
    if (const auto x = m.get("listen")) {
        const MapReader l(*x, "'portal.listen'", {"address", "port"}, d);
        if (l.is_map()) {
            if (const auto a = l.get("address")) {
                if (const auto text = as_text(*a, d)) {
                    const auto ip = IpAddr::parse(*text);
                    if (!ip)
                        d.error(a->at, "'address' must be an IPv4 or IPv6 address, not '" + *text + "'");
                    else
                        c.listen_address = *text, loopback = is_loopback(*ip);
                }
            }
            if (const auto p = l.get("port"))
                if (const auto n = as_integer(*p, d, 0, 65535)) c.port = uint16_t(*n);
        }
    }
    if (const auto x = m.get("tls")) {
        const MapReader t(*x, "'portal.tls'", {"certificate", "private_key"}, d);
        if (t.is_map()) {
            const auto cert = t.require("certificate");
            const auto key = t.require("private_key");
            const auto cert_text = cert ? as_text(*cert, d) : std::nullopt;
            const auto key_text = key ? as_text(*key, d) : std::nullopt;
            if (cert_text && key_text)
                c.tls = PortalTls{resolve_path(*cert_text, base_dir), resolve_path(*key_text, base_dir)};
        }
    }
    if (!loopback && !c.tls)
        d.warning(m.value().at, "the portal listens on " + c.listen_address +
                                    " in plain HTTP: session cookies travel unencrypted; give it 'tls' or keep it on "
                                    "loopback behind a TLS proxy");
    if (const auto x = m.get("public_url")) {
        if (const auto t = as_text(*x, d)) {
            const bool ok = (t->rfind("http://", 0) == 0 || t->rfind("https://", 0) == 0) &&
                            t->find_first_of(" \"'<>") == std::string::npos && t->size() <= 256;
            if (!ok)
                d.error(x->at, "'public_url' must be an http:// or https:// URL, like https://privacy.isp.example");
            else
                c.public_url = *t;
            while (!c.public_url.empty() && c.public_url.back() == '/') c.public_url.pop_back();
        }
    }
    if (const auto x = m.get("mode")) {
        if (const auto t = as_text(*x, d)) {
            if (*t == "signed-link")
                c.mode = PortalConfig::Mode::signed_link;
            else if (*t == "network")
                c.mode = PortalConfig::Mode::network;
            else
                d.error(x->at, "'mode' is signed-link or network, not '" + *t + "'");
        }
    }
    if (const auto x = m.get("link_secret_file")) read_secret(*x, c, d, base_dir);
    if (c.mode == PortalConfig::Mode::signed_link && !m.get("link_secret_file"))
        d.error(m.value().at, "mode signed-link needs 'link_secret_file' (openssl rand -hex 32 > FILE)");
    if (const auto x = m.get("link_lifetime"))
        if (const auto t = as_duration(*x, d, milliseconds(1000), milliseconds(86400000))) c.link_lifetime = *t;
    if (const auto x = m.get("session_lifetime"))
        if (const auto t = as_duration(*x, d, milliseconds(1000), milliseconds(86400000))) c.session_lifetime = *t;
    if (const auto x = m.get("max_sessions"))
        if (const auto n = as_integer(*x, d, 1, 10000000)) c.max_sessions = *n;
    if (const auto x = m.get("rate_limits")) {
        const MapReader r(*x, "'portal.rate_limits'", {"per_address", "per_session"}, d);
        if (r.is_map()) {
            if (const auto y = r.get("per_address"))
                if (const auto n = as_integer(*y, d, 1, 1000000)) c.per_address_per_minute = unsigned(*n);
            if (const auto y = r.get("per_session"))
                if (const auto n = as_integer(*y, d, 1, 1000000)) c.per_session_per_minute = unsigned(*n);
        }
    }
    if (const auto x = m.get("trusted_proxies")) {
        if (const auto items = as_text_list(*x, d, true)) {
            for (const auto& text : *items) {
                std::string why;
                if (const auto p = Prefix::parse(text, &why)) {
                    c.trusted_proxies.push_back(*p);
                    continue;
                }
                std::string msg = "'trusted_proxies': '" + text;  // in a loop: appended, not concatenated
                msg += "' is not an address or prefix: ";
                msg += why;
                d.error(x->at, std::move(msg));
            }
        }
    }
    if (const auto x = m.require("notice_version")) {
        if (const auto t = as_text(*x, d)) {
            if (t->size() > 128 || t->find_first_of("\r\n\t") != std::string::npos)
                d.error(x->at, "'notice_version' must be 1..128 printable characters");
            else
                c.notice_version = *t;
        }
    }
    if (const auto x = m.get("texts"))
        if (const auto t = as_text(*x, d)) c.texts = resolve_path(*t, base_dir);
}

}  // namespace optgate::consentd
