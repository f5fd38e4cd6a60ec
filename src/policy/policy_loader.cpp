// The policy file (docs/policy.md): YAML -> validated optgate::Policy.
// Reads every section even after an error so that one run reports all of
// them; cross-rule checks (overlap.hpp) run on the rules that were valid.
#include <algorithm>

#include "core/chars.hpp"
#include "core/counters.hpp"
#include "core/disclosure_report.hpp"
#include "core/runtime.hpp"
#include "policy/loader.hpp"
#include "policy/overlap.hpp"
#include "policy/values.hpp"
#include "policy/yaml_reader.hpp"

namespace optgate::policy {

namespace {

using namespace syntax;

std::string line_of(Location at) { return "line " + std::to_string(at.line); }

// How messages name the n-th collector or exemption: by its name when it
// has a text one, else by position.
std::string rule_label(std::string_view kind, size_t n, const Value& item) {
    if (const auto name = text_under(item.node, "name")) return std::string(kind) + " '" + *name + "'";
    return std::string(kind) + " " + std::to_string(n);
}

class PolicyReader {
public:
    explicit PolicyReader(Diagnostics& d) : d_(d) {}

    Policy read(const YAML::Node& root);

private:
    void read_purposes(const Value& v);
    void read_identifiers(const Value& v);
    void read_http_headers(const Value& v);
    void read_dns_options(const Value& v);
    void read_collectors(const Value& v);
    void read_exemptions(const Value& v);
    void read_delivery(const MapReader& m, const std::string& owner, Collector& c);
    void warn_pseudonym_dns();
    std::string identifier_name(const Value& at, std::string name);
    size_t pseudonym_collectors_ = 0;
    // Checks and records a collector or exemption name.
    std::optional<std::string> rule_name(const MapReader& m, std::string_view kind);
    std::optional<DestinationMatch> read_match(const Value& v, const std::string& owner, RuleOrigin& origin);
    std::optional<std::vector<PortRange>> read_ports(const Value& v, bool allow_empty);
    void read_subscribers(const Value& v);
    void read_protocol(const Value& v, const std::string& owner, std::vector<PortRange>& ports);
    void read_enforcement(const Value& v);
    void read_tagging(const Value& v);
    void read_encapsulations(const Value& v);
    bool count_destination_rule(Location at);

    Diagnostics& d_;
    Policy p_;
    void check_header_prefixes();

    struct HeaderSeen {
        std::string lower;  // the header name or prefix, lowercase
        Location at;
        bool prefix = false;
        size_t identifier = 0;  // index into p_.identifiers, once accepted
    };
    // A prefix shorter than this covers too many unrelated headers ("X-").
    static constexpr size_t kShortHeaderPrefix = 4;

    std::vector<HeaderSeen> header_seen_;  // accepted headers and prefixes
    std::vector<std::pair<uint16_t, Location>> code_seen_;
    size_t identifiers_ = 0;
    std::vector<std::pair<std::string, Location>> rule_names_;
    size_t rules_ = 0;
    std::vector<RuleOrigin> collector_origins_, exemption_origins_;
};

Policy PolicyReader::read(const YAML::Node& root) {
    const Value top{root, location_of(root), "the policy"};
    const MapReader m(top, "the policy",
                      {"version", "purposes", "identifiers", "collectors", "exemptions", "subscribers", "http", "dns",
                       "enforcement", "tagging", "encapsulations"},
                      d_);
    if (!m.is_map()) return p_;

    if (const auto v = m.get("version")) {
        const auto text = as_text(*v, d_);
        if (text && *text != "1") {
            // Anything else is written for another optgate: the rest of the
            // file would only produce misleading errors.
            d_.error(v->at, "unsupported policy version '" + *text + "': this optgate reads version 1");
            return p_;
        }
    } else {
        d_.error(top.at, "the policy is missing 'version: 1' (the format version, first line of the file)");
    }

    if (const auto v = m.require("purposes")) read_purposes(*v);
    if (const auto v = m.require("identifiers")) read_identifiers(*v);
    const size_t errors_before_rules = d_.error_count();
    if (const auto v = m.require("collectors")) read_collectors(*v);
    if (const auto v = m.get("exemptions")) read_exemptions(*v);
    const bool rules_ok = d_.error_count() == errors_before_rules;
    if (const auto v = m.require("subscribers")) read_subscribers(*v);
    if (const auto v = m.get("http")) read_protocol(*v, "'http'", p_.http_ports);
    if (const auto v = m.get("dns")) read_protocol(*v, "'dns'", p_.dns_ports);
    if (const auto v = m.get("enforcement")) read_enforcement(*v);
    if (const auto v = m.get("tagging")) read_tagging(*v);
    if (const auto v = m.get("encapsulations")) read_encapsulations(*v);

    // Overlaps only mean something once every rule read cleanly.
    if (rules_ok) check_overlaps(p_, collector_origins_, exemption_origins_, d_);
    if (rules_ok) warn_pseudonym_dns();
    return p_;
}

void PolicyReader::read_purposes(const Value& v) {
    const auto entries = named_entries(v, d_);
    for (const auto& e : entries) {
        if (p_.purposes.size() == kMaxPurposes) {
            d_.error(e.name_at, "more than " + std::to_string(kMaxPurposes) +
                                    " purposes: consent is one bit per purpose, so at most " +
                                    std::to_string(kMaxPurposes) + " can be defined");
            break;
        }
        if (!is_purpose_name(e.name))
            d_.error(e.name_at, "purpose name '" + e.name +
                                    "' is not valid: use a lowercase letter, then lowercase letters, digits, "
                                    "'_' or '-' (at most 32 characters)");
        Purpose purpose;
        purpose.name = e.name;
        const std::string owner = "purpose '" + e.name + "'";
        const MapReader m(e.value, owner, {"description", "benefit", "data", "retention", "honour_gpc"}, d_);
        if (const auto x = m.require("description"))
            if (auto t = as_text(*x, d_)) purpose.description = std::move(*t);
        // A company that cannot say what the subscriber gains should not ask.
        if (const auto x = m.get("benefit")) {
            if (auto t = as_text(*x, d_)) purpose.benefit = std::move(*t);
        } else if (m.is_map()) {
            d_.error(e.value.at, owner +
                                     " has no 'benefit': every purpose must say what the subscriber gains by "
                                     "opting in (shown beside 'description' wherever they are asked)");
        }
        if (const auto x = m.require("data"))
            if (auto t = as_text_list(*x, d_, false)) purpose.data = std::move(*t);
        if (const auto x = m.require("retention"))
            if (auto t = as_text(*x, d_)) purpose.retention = std::move(*t);
        // Global Privacy Control is a legal opt-out in California and
        // Colorado: honoured unless the policy says otherwise, visibly.
        if (const auto x = m.get("honour_gpc"))
            if (auto b = as_bool(*x, d_)) purpose.honour_gpc = *b;
        // Kept even when incomplete, so that collectors naming it do not
        // report a second, misleading error.
        p_.purposes.push_back(std::move(purpose));
    }
}

void PolicyReader::read_identifiers(const Value& v) {
    const MapReader m(v, "'identifiers'", {"http_headers", "dns_options"}, d_);
    if (!m.is_map()) return;
    if (const auto x = m.get("http_headers")) read_http_headers(*x);
    if (const auto x = m.get("dns_options")) read_dns_options(*x);
    if (identifiers_ == 0)
        d_.warning(v.at, "'identifiers' lists no HTTP header and no DNS option: optgate will strip nothing");
}

void PolicyReader::read_http_headers(const Value& v) {
    const auto items = as_list(v, d_);
    if (!items) return;
    for (const auto& item : *items) {
        if (++identifiers_ > kMaxIdentifiers) {
            d_.error(item.at, "more than " + std::to_string(kMaxIdentifiers) +
                                  " identifiers (HTTP headers and DNS "
                                  "options together): optgate counts each one separately");
            return;
        }
        const MapReader m(item, "the HTTP header identifier", {"header", "header_prefix", "name"}, d_);
        if (!m.is_map()) continue;
        Identifier id;
        id.kind = Identifier::Kind::http_header;
        bool ok = true;
        const auto exact = m.get("header");
        const auto prefix = m.get("header_prefix");
        if (exact && prefix) {
            d_.error(prefix->at,
                     "an HTTP header identifier has either 'header' (one name) or 'header_prefix' (every name "
                     "starting with it), not both");
            ok = false;
        } else if (!exact && !prefix) {
            d_.error(item.at,
                     "the HTTP header identifier is missing the required key 'header' (the header name; or "
                     "'header_prefix' for a family of headers)");
            ok = false;
        } else if (auto t = as_text(exact ? *exact : *prefix, d_)) {
            const Location at = (exact ? *exact : *prefix).at;
            id.header_prefix = prefix.has_value();
            const std::string what = id.header_prefix ? "header prefix" : "HTTP header";
            const std::string lower = ascii_lower(*t);
            const auto seen = std::find_if(header_seen_.begin(), header_seen_.end(),
                                           [&](const HeaderSeen& s) { return s.lower == lower; });
            const std::string_view covered = id.header_prefix ? protected_header_with_prefix(lower) : "";
            if (!is_http_token(*t)) {
                d_.error(at, "'" + *t + "' is not a valid " +
                                 (id.header_prefix ? "header name prefix" : "HTTP header name") +
                                 ": header names are RFC 9110 tokens (letters, digits and !#$%&'*+-.^_`|~, no "
                                 "spaces or ':')");
                ok = false;
            } else if (lower == "sec-gpc" || (id.header_prefix && std::string_view("sec-gpc").starts_with(lower))) {
                d_.error(at, "'" + *t +
                                 "' cannot be an identifier: Sec-GPC is the subscriber's Global Privacy Control "
                                 "signal, which optgate reads and forwards (docs/http.md#global-privacy-control)");
                ok = false;
            } else if (!id.header_prefix && is_protected_header(lower)) {
                d_.error(at, "'" + *t +
                                 "' cannot be an identifier: HTTP needs it to frame or route the "
                                 "request, and stripping it would break the connection");
                ok = false;
            } else if (!covered.empty()) {
                d_.error(at, "header prefix '" + *t + "' covers '" + std::string(covered) +
                                 "', which HTTP needs to frame or route the request: stripping it would break the "
                                 "connection (make the prefix longer)");
                ok = false;
            } else if (seen != header_seen_.end()) {
                d_.error(at, what + " '" + *t + "' is listed twice (first at " + line_of(seen->at) +
                                 "; header names are case-insensitive)");
                ok = false;
            } else {
                header_seen_.push_back({lower, at, id.header_prefix, 0});
            }
            id.header = std::move(*t);
        } else {
            ok = false;
        }
        if (const auto x = m.require("name")) {
            if (auto t = as_text(*x, d_)) id.name = identifier_name(*x, std::move(*t));
        }
        if (ok) {
            header_seen_.back().identifier = p_.identifiers.size();
            p_.identifiers.push_back(std::move(id));
        }
    }
    check_header_prefixes();
}

// A prefix stands for every header starting with it: say when that is more
// than the operator may have meant. Exact names and longer prefixes win over
// a prefix (docs/policy.md), so nothing here is ambiguous, only surprising.
void PolicyReader::check_header_prefixes() {
    for (const HeaderSeen& pre : header_seen_) {
        if (!pre.prefix) continue;
        const std::string& text = p_.identifiers[pre.identifier].header;
        if (pre.lower.size() < kShortHeaderPrefix)
            d_.warning(pre.at, "header prefix '" + text + "' is short (under " + std::to_string(kShortHeaderPrefix) +
                                   " characters): every header whose name starts with it is an identifier, common "
                                   "headers unrelated to subscribers included, and is stripped without consent");
        for (const HeaderSeen& other : header_seen_) {
            if (&other == &pre || !other.lower.starts_with(pre.lower)) continue;
            const Identifier& o = p_.identifiers[other.identifier];
            d_.warning(other.at, std::string(other.prefix ? "header prefix '" : "header '") + o.header +
                                     "' is also covered by the header prefix '" + text + "' (" + line_of(pre.at) +
                                     "): it counts as '" + o.name + "', not as '" +
                                     p_.identifiers[pre.identifier].name + "' (the longest match wins)");
        }
    }
}

void PolicyReader::read_dns_options(const Value& v) {
    const auto items = as_list(v, d_);
    if (!items) return;
    for (const auto& item : *items) {
        if (++identifiers_ > kMaxIdentifiers) {
            d_.error(item.at, "more than " + std::to_string(kMaxIdentifiers) +
                                  " identifiers (HTTP headers and DNS "
                                  "options together): optgate counts each one separately");
            return;
        }
        const MapReader m(item, "the DNS option identifier", {"code", "name"}, d_);
        if (!m.is_map()) continue;
        Identifier id;
        id.kind = Identifier::Kind::dns_option;
        bool ok = false;
        if (const auto x = m.require("code")) {
            if (const auto t = as_text(*x, d_)) {
                const auto code = parse_decimal(*t);
                if (!code) {
                    d_.error(x->at, "EDNS0 option code '" + *t +
                                        "' is not a number: write the decimal code, "
                                        "e.g. 8 for client subnet");
                } else if (*code == 0 || *code == 65535) {
                    d_.error(x->at, "EDNS0 option code " + *t + " is reserved (RFC 6891): codes are 1..65534");
                } else if (*code > 65535) {
                    d_.error(x->at, "EDNS0 option code " + *t + " is out of range: codes are 1..65534");
                } else {
                    const auto seen = std::find_if(code_seen_.begin(), code_seen_.end(),
                                                   [&](const auto& s) { return s.first == *code; });
                    if (seen != code_seen_.end()) {
                        d_.error(x->at, "EDNS0 option code " + *t + " is listed twice (first at " +
                                            line_of(seen->second) + ")");
                    } else {
                        code_seen_.emplace_back(uint16_t(*code), x->at);
                        id.option_code = uint16_t(*code);
                        ok = true;
                    }
                }
            }
        }
        if (const auto x = m.require("name")) {
            if (auto t = as_text(*x, d_)) id.name = identifier_name(*x, std::move(*t));
        }
        if (ok) p_.identifiers.push_back(std::move(id));
    }
}

bool PolicyReader::count_destination_rule(Location at) {
    if (++rules_ == kMaxCollectors + 1)
        d_.error(at, "more than " + std::to_string(kMaxCollectors) +
                         " collectors and exemptions together: optgate counts each one separately");
    return rules_ <= kMaxCollectors;
}

std::optional<std::string> PolicyReader::rule_name(const MapReader& m, std::string_view kind) {
    const auto x = m.require("name");
    if (!x) return std::nullopt;
    auto t = as_text(*x, d_);
    if (!t) return std::nullopt;
    if (!is_rule_name(*t)) {
        d_.error(x->at, std::string(kind) + " name '" + *t +
                            "' is not valid: use letters, digits, '.', '_' or '-', starting with a letter or "
                            "digit (at most 64 characters)");
        return std::nullopt;
    }
    const auto seen = std::find_if(rule_names_.begin(), rule_names_.end(),
                                   [&](const auto& s) { return s.first == *t; });
    if (seen != rule_names_.end()) {
        d_.error(x->at, "the name '" + *t + "' is already used at " + line_of(seen->second) +
                            ": collector and exemption names must be unique (they name counters)");
        return std::nullopt;
    }
    rule_names_.emplace_back(*t, x->at);
    return t;
}

void PolicyReader::read_collectors(const Value& v) {
    const auto items = as_list(v, d_);
    if (!items) return;
    size_t n = 0;
    for (const auto& item : *items) {
        ++n;
        if (!count_destination_rule(item.at)) return;
        const MapReader m(item, rule_label("collector", n, item),
                          {"name", "purpose", "description", "match", "deliver", "rotate"}, d_);
        if (!m.is_map()) continue;
        const size_t errors = d_.error_count();
        Collector c;
        RuleOrigin origin{item.at, {}, {}};
        if (const auto name = rule_name(m, "collector")) c.name = *name;
        if (const auto x = m.get("name")) origin.name_at = x->at;
        const std::string owner = rule_label("collector", n, item);
        if (const auto x = m.require("purpose")) {
            if (const auto t = as_text(*x, d_)) {
                if (const auto idx = p_.purpose_index(*t)) {
                    c.purpose = *idx;
                } else {
                    std::vector<std::string_view> names;
                    for (const auto& p : p_.purposes) names.push_back(p.name);
                    std::string msg = owner + " names purpose '" + *t + "', which is not defined under 'purposes'";
                    if (const auto near = closest_match(*t, names))
                        msg += " (did you mean '" + std::string(*near) + "'?)";
                    d_.error(x->at, std::move(msg));
                }
            }
        }
        if (const auto x = m.require("description"))
            if (auto t = as_text(*x, d_)) c.description = std::move(*t);
        if (const auto x = m.require("match"))
            if (auto match = read_match(*x, owner, origin)) c.match = std::move(*match);
        read_delivery(m, owner, c);
        if (d_.error_count() != errors) continue;
        p_.collectors.push_back(std::move(c));
        collector_origins_.push_back(std::move(origin));
    }
}

// `deliver: raw | pseudonym` and `rotate: <days>d` (docs/policy.md#pseudonyms).
void PolicyReader::read_delivery(const MapReader& m, const std::string& owner, Collector& c) {
    if (const auto x = m.get("deliver")) {
        if (const auto t = as_text(*x, d_)) {
            if (*t == "raw") {
                c.deliver = Collector::Delivery::raw;
            } else if (*t == "pseudonym") {
                c.deliver = Collector::Delivery::pseudonym;
                if (++pseudonym_collectors_ > Runtime::kMaxPseudonymCollectors)
                    d_.error(x->at, owner + ": more than " + std::to_string(Runtime::kMaxPseudonymCollectors) +
                                        " collectors receive pseudonyms (a flow records which key wrote a value "
                                        "in four bits)");
            } else {
                d_.error(x->at, owner + ": 'deliver' is '" + *t + "': write raw (the default) or pseudonym");
            }
        }
    }
    const auto x = m.get("rotate");
    if (!x) return;
    if (c.deliver != Collector::Delivery::pseudonym)
        d_.error(x->at, owner + ": 'rotate' is the pseudonym key's period: it needs 'deliver: pseudonym'");
    const auto t = as_text(*x, d_);
    if (!t) return;
    std::string why;
    const auto days = parse_days(*t, Collector::kMinRotateDays, Collector::kMaxRotateDays, why);
    if (days)
        c.rotate_days = *days;
    else
        d_.error(x->at, owner + ": 'rotate': " + why);
}

// DNS options have no pseudonym (docs/http.md#pseudonyms): say so where a
// pseudonym collector can receive DNS queries and the policy strips options.
void PolicyReader::warn_pseudonym_dns() {
    const bool dns_identifiers = std::any_of(p_.identifiers.begin(), p_.identifiers.end(), [](const Identifier& id) {
        return id.kind == Identifier::Kind::dns_option;
    });
    if (!dns_identifiers) return;
    for (size_t i = 0; i < p_.collectors.size(); ++i) {
        const Collector& c = p_.collectors[i];
        if (c.deliver != Collector::Delivery::pseudonym || !c.match.hosts.empty()) continue;  // hosts: HTTP only
        bool dns = c.match.ports.empty();
        for (const auto& r : c.match.ports)
            for (const auto& d : p_.dns_ports) dns = dns || (r.first <= d.last && d.first <= r.last);
        if (dns)
            d_.warning(collector_origins_[i].name_at,
                       "collector '" + c.name +
                           "' receives pseudonyms, which only HTTP headers can carry: DNS options to it are always "
                           "stripped (limit its ports to HTTP to silence this)");
    }
}

// Identifier names are shown to subscribers; the pseudonym rows' suffix
// must stay unambiguous.
std::string PolicyReader::identifier_name(const Value& at, std::string name) {
    if (std::string_view(name).ends_with(kPseudonymSuffix))
        d_.error(at.at, "identifier name '" + name + "' ends with '" + kPseudonymSuffix +
                            "', which marks values passed as pseudonyms in the disclosures");
    return name;
}

void PolicyReader::read_exemptions(const Value& v) {
    const auto items = as_list(v, d_);
    if (!items) return;
    size_t n = 0;
    for (const auto& item : *items) {
        ++n;
        if (!count_destination_rule(item.at)) return;
        const MapReader m(item, rule_label("exemption", n, item), {"name", "reason", "match"}, d_);
        if (!m.is_map()) continue;
        const size_t errors = d_.error_count();
        Exemption e;
        RuleOrigin origin{item.at, {}, {}};
        if (const auto name = rule_name(m, "exemption")) e.name = *name;
        if (const auto x = m.get("name")) origin.name_at = x->at;
        const std::string owner = rule_label("exemption", n, item);
        if (const auto x = m.get("reason")) {
            if (auto t = as_text(*x, d_)) e.reason = std::move(*t);
        } else {
            d_.error(item.at, owner +
                                  " has no 'reason': every exemption must say why identifiers pass there "
                                  "without consent (e.g. a service the subscriber requested, or a legal duty)");
        }
        if (const auto x = m.require("match"))
            if (auto match = read_match(*x, owner, origin)) e.match = std::move(*match);
        if (d_.error_count() != errors) continue;
        p_.exemptions.push_back(std::move(e));
        exemption_origins_.push_back(std::move(origin));
    }
}

std::optional<DestinationMatch> PolicyReader::read_match(const Value& v, const std::string& owner, RuleOrigin& origin) {
    const MapReader m(v, "'match' of " + owner, {"prefixes", "ports", "hosts"}, d_);
    if (!m.is_map()) return std::nullopt;
    const size_t errors = d_.error_count();
    DestinationMatch match;
    const auto prefixes = m.get("prefixes");
    const auto hosts = m.get("hosts");
    if (!prefixes && !hosts)
        d_.error(v.at, "'match' of " + owner +
                           " needs 'prefixes' or 'hosts' (or both): with neither it would match "
                           "every destination");
    if (prefixes) {
        if (const auto items = as_list(*prefixes, d_)) {
            if (items->empty()) d_.error(prefixes->at, "'prefixes' is empty: list at least one or remove the key");
            for (const auto& item : *items) {
                const auto t = as_text(item, d_);
                if (!t) continue;
                std::string why;
                if (const auto p = Prefix::parse(*t, &why)) {
                    match.prefixes.push_back(*p);
                    origin.prefix_at.push_back(item.at);
                } else {
                    d_.error(item.at, why);
                }
            }
        }
    }
    if (const auto x = m.get("ports"))
        if (auto ports = read_ports(*x, false)) match.ports = std::move(*ports);
    if (hosts) {
        if (const auto items = as_list(*hosts, d_)) {
            if (items->empty()) d_.error(hosts->at, "'hosts' is empty: list at least one or remove the key");
            for (const auto& item : *items) {
                const auto t = as_text(item, d_);
                if (!t) continue;
                std::string why;
                if (const auto h = parse_host_pattern(*t, why)) {
                    match.hosts.push_back(*h);
                    origin.host_at.push_back(item.at);
                } else {
                    d_.error(item.at, why);
                }
            }
        }
    }
    if (d_.error_count() != errors) return std::nullopt;
    return match;
}

std::optional<std::vector<PortRange>> PolicyReader::read_ports(const Value& v, bool allow_empty) {
    const auto items = as_list(v, d_);
    if (!items) return std::nullopt;
    if (items->empty() && !allow_empty) {
        d_.error(v.at, "'ports' is empty: list at least one or remove the key (no 'ports' means any port)");
        return std::nullopt;
    }
    std::vector<PortRange> out;
    bool ok = true;
    for (const auto& item : *items) {
        const auto t = as_text(item, d_);
        if (!t) {
            ok = false;
            continue;
        }
        std::string why;
        if (const auto r = parse_port_range(*t, why)) {
            out.push_back(*r);
        } else {
            d_.error(item.at, why);
            ok = false;
        }
    }
    if (!ok) return std::nullopt;
    return out;
}

void PolicyReader::read_subscribers(const Value& v) {
    const MapReader m(v, "'subscribers'", {"prefixes", "ipv6_key_length"}, d_);
    if (!m.is_map()) return;
    if (const auto x = m.require("prefixes")) {
        if (const auto items = as_list(*x, d_)) {
            if (items->empty())
                d_.error(x->at, "'prefixes' of 'subscribers' is empty: list the source prefixes of your subscribers");
            for (const auto& item : *items) {
                const auto t = as_text(item, d_);
                if (!t) continue;
                std::string why;
                if (const auto p = Prefix::parse(*t, &why))
                    p_.subscriber_prefixes.push_back(*p);
                else
                    d_.error(item.at, why);
            }
        }
    }
    if (const auto x = m.get("ipv6_key_length"))
        if (const auto n = as_integer(*x, d_, 1, 128)) p_.ipv6_key_length = uint8_t(*n);
}

void PolicyReader::read_protocol(const Value& v, const std::string& owner, std::vector<PortRange>& ports) {
    const MapReader m(v, owner, {"ports"}, d_);
    if (const auto x = m.get("ports"))
        if (auto list = read_ports(*x, true)) ports = std::move(*list);
}

void PolicyReader::read_enforcement(const Value& v) {
    const MapReader m(v, "'enforcement'", {"staleness_limit", "strip_filler"}, d_);
    if (const auto x = m.get("staleness_limit")) {
        if (const auto t = as_text(*x, d_)) {
            std::string why;
            if (const auto ms = parse_duration(*t, why))
                p_.staleness_limit = *ms;
            else
                d_.error(x->at, "'staleness_limit': " + why);
        }
    }
    if (const auto x = m.get("strip_filler")) {
        if (const auto t = as_text(*x, d_, true)) {
            if (t->size() == 1 && http_chars::is_tchar(uint8_t((*t)[0])))
                p_.strip_filler = (*t)[0];
            else
                d_.error(x->at,
                         "'strip_filler' must be one character allowed in an HTTP header name (a letter, "
                         "digit or one of !#$%&'*+-.^_`|~), not '" +
                             *t + "'");
        }
    }
}

void PolicyReader::read_tagging(const Value& v) {
    const MapReader m(v, "'tagging'", {"passed", "stripped", "exempt"}, d_);
    auto one = [&](std::string_view key, std::optional<uint8_t>& out) {
        const auto x = m.get(key);
        if (!x) return;
        const auto t = as_text(*x, d_);
        if (!t) return;
        std::string why;
        if (const auto dscp = parse_dscp(*t, why))
            out = *dscp;
        else
            d_.error(x->at, "'" + std::string(key) + "': " + why);
    };
    one("passed", p_.tagging.passed);
    one("stripped", p_.tagging.stripped);
    one("exempt", p_.tagging.exempt);
}

void PolicyReader::read_encapsulations(const Value& v) {
    const auto items = as_list(v, d_);
    if (!items) return;
    EncapsulationSet set = 0;
    for (const auto& item : *items) {
        const auto t = as_text(item, d_);
        if (!t) continue;
        const auto e = encapsulation_from_name(*t);
        if (!e) {
            std::string known;
            for (unsigned i = 0; i < kEncapsulationCount; ++i)
                known += std::string(i ? ", " : "") + std::string(encapsulation_name(Encapsulation(i)));
            d_.error(item.at, "unknown encapsulation '" + *t + "': use " + known);
            continue;
        }
        if (set & encapsulation_bit(*e)) d_.error(item.at, "encapsulation '" + *t + "' is listed twice");
        set = EncapsulationSet(set | encapsulation_bit(*e));
    }
    p_.encapsulations = set;
}

LoadedPolicy load(std::string_view text, const std::string& name) {
    Diagnostics d(name);
    LoadedPolicy out;
    if (const auto root = parse_document(text, d)) out.policy = PolicyReader(d).read(*root);
    d.throw_if_errors();
    // A validated policy always compiles; if it does not, the validator has
    // missed a rule of the core, and the program must not start with it.
    std::string why;
    if (!Runtime::compile(out.policy, &why)) {
        d.error({}, "internal error: the validated policy does not compile (" + why + ")");
        d.throw_if_errors();
    }
    out.warnings = d.warnings();
    return out;
}

}  // namespace

LoadedPolicy load_policy_text(std::string_view yaml, const std::string& name) { return load(yaml, name); }

LoadedPolicy load_policy_file(const std::string& path) { return load(read_file(path), path); }

}  // namespace optgate::policy
