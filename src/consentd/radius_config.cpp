#include "consentd/radius_config.hpp"

#include "policy/values.hpp"

namespace optgate::consentd {

using namespace policy::syntax;

namespace {

void read_listen(const Value& v, RadiusConfig& c, Diagnostics& d) {
    const MapReader m(v, "'radius.listen'", {"address", "port"}, d);
    if (!m.is_map()) return;
    if (const auto a = m.get("address"))
        if (const auto text = as_text(*a, d)) {
            if (IpAddr::parse(*text))
                c.address = *text;
            else
                d.error(a->at, "'address' must be an IPv4 or IPv6 address, not '" + *text + "'");
        }
    if (const auto p = m.get("port"))
        if (const auto n = as_integer(*p, d, 0, 65535)) c.port = uint16_t(*n);
}

void read_clients(const Value& v, RadiusConfig& c, Diagnostics& d) {
    const auto items = as_list(v, d);
    if (!items) return;
    for (const auto& item : *items) {
        const MapReader m(item, item.name, {"name", "address", "secret"}, d);
        if (!m.is_map()) continue;
        RadiusClient client;
        bool ok = true;
        if (const auto n = m.require("name")) {
            const auto text = as_text(*n, d);
            if (text && (!is_subscriber_id(*text) || text->size() > 64)) {
                d.error(n->at, "client name '" + *text + "' must be 1..64 characters of [A-Za-z0-9._:@-]");
                ok = false;
            } else if (text) {
                for (const auto& other : c.clients)
                    if (other.name == *text) {
                        d.error(n->at, "duplicate RADIUS client name '" + *text + "'");
                        ok = false;
                    }
                client.name = *text;
            } else {
                ok = false;
            }
        } else {
            ok = false;
        }
        if (const auto a = m.require("address")) {
            std::string error;
            const auto text = as_text(*a, d);
            const auto p = text ? Prefix::parse(*text, &error) : std::nullopt;
            if (text && !p) d.error(a->at, "'address' must be an address or a prefix: " + error);
            if (p) {
                for (const auto& other : c.clients)
                    if (other.from == *p)
                        d.error(a->at, "client '" + client.name + "' has the same address as client '" + other.name +
                                           "': which secret would apply?");
                client.from = *p;
            }
            ok = ok && p;
        } else {
            ok = false;
        }
        if (const auto s = m.require("secret")) {
            const auto text = as_text(*s, d);
            // RFC 2865 §3: the secret SHOULD be at least 16 octets; shorter
            // ones are guessed offline from one captured packet.
            if (text && text->size() < 16)
                d.error(s->at, "the secret of client '" + client.name +
                                   "' is shorter than 16 characters (RFC 2865 §3): use e.g. openssl rand -hex 16");
            else if (text)
                client.secret = *text;
            ok = ok && text && text->size() >= 16;
        } else {
            ok = false;
        }
        if (ok) c.clients.push_back(std::move(client));
    }
}

void read_subscriber(const Value& v, RadiusConfig& c, Diagnostics& d) {
    const MapReader m(v, "'radius.subscriber'", {"attribute", "vendor", "vendor_type", "rewrite"}, d);
    if (!m.is_map()) return;
    RadiusSubscriberRule& r = c.subscriber;
    bool vendor = false;
    if (const auto a = m.get("attribute"))
        if (const auto t = as_text(*a, d)) {
            if (*t == "User-Name")
                r.attribute = 1;
            else if (*t == "Class")
                r.attribute = 25;
            else if (*t == "Calling-Station-Id")
                r.attribute = 31;
            else if (*t == "Vendor-Specific")
                r.attribute = 26, vendor = true;
            else
                d.error(a->at, "'attribute' must be User-Name, Class, Calling-Station-Id or Vendor-Specific, not '" +
                                   *t + "'");
        }
    const auto vid = m.get("vendor");
    const auto vtype = m.get("vendor_type");
    if (vendor) {
        if (const auto x = m.require("vendor"))
            if (const auto n = as_integer(*x, d, 1, 0xffffff)) r.vendor = uint32_t(*n);
        if (const auto x = m.require("vendor_type"))
            if (const auto n = as_integer(*x, d, 1, 255)) r.vendor_type = uint8_t(*n);
    } else if (vid || vtype) {
        d.error((vid ? vid : vtype)->at, "'vendor' and 'vendor_type' go with attribute: Vendor-Specific");
    }
    if (const auto x = m.get("rewrite")) {
        const MapReader rw(*x, "'radius.subscriber.rewrite'", {"match", "replace"}, d);
        if (!rw.is_map()) return;
        const auto mt = rw.require("match");
        const auto rp = rw.require("replace");
        const auto match = mt ? as_text(*mt, d) : std::nullopt;
        const auto replace = rp ? as_text(*rp, d, true) : std::nullopt;
        if (!match || !replace) return;
        try {
            r.match = std::make_shared<const std::regex>(*match, std::regex::ECMAScript);
            r.match_text = *match;
            r.replace = *replace;
        } catch (const std::regex_error& e) {
            d.error(mt->at, "'match' is not a valid regular expression: " + std::string(e.what()));
        }
    }
}

}  // namespace

const RadiusClient* RadiusConfig::client_for(const IpAddr& from) const noexcept {
    IpAddr a = from;
    static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (a.family == Family::v6 && std::equal(kMapped, kMapped + 12, a.bytes.begin()))
        a = IpAddr::from_v4(from.bytes.data() + 12);
    const RadiusClient* best = nullptr;
    for (const auto& c : clients)
        if (c.from.addr.family == a.family && c.from.contains(a) && (!best || c.from.len > best->from.len)) best = &c;
    return best;
}

void read_radius_config(const Value& v, std::optional<RadiusConfig>& out, Diagnostics& d) {
    const MapReader m(v, "'radius'",
                      {"listen", "clients", "subscriber", "max_delegated_keys", "retransmit_window", "retransmit_cache",
                       "max_pending"},
                      d);
    if (!m.is_map()) return;
    RadiusConfig c;
    using std::chrono::milliseconds;
    if (const auto x = m.get("listen")) read_listen(*x, c, d);
    if (const auto x = m.require("clients")) read_clients(*x, c, d);
    if (const auto x = m.get("subscriber")) read_subscriber(*x, c, d);
    if (const auto x = m.get("max_delegated_keys"))
        if (const auto n = as_integer(*x, d, 1, 65536)) c.max_delegated_keys = *n;
    if (const auto x = m.get("retransmit_window"))
        if (const auto t = as_duration(*x, d, milliseconds(1), milliseconds(3600000))) c.retransmit_window = *t;
    if (const auto x = m.get("retransmit_cache"))
        if (const auto n = as_integer(*x, d, 1, 16u << 20)) c.retransmit_cache = *n;
    if (const auto x = m.get("max_pending"))
        if (const auto n = as_integer(*x, d, 1, 16u << 20)) c.max_pending = *n;
    if (c.clients.empty() && d.error_count() == 0)
        d.error(m.value().at, "'radius' has no clients: every accounting request would be dropped");
    out = std::move(c);
}

}  // namespace optgate::consentd
