// fuzz_policy: the fuzz bytes as policy YAML (src/policy/loader.hpp).
//
// Invariants: load_policy_text either returns a policy or throws
// PolicyError (any other exception escapes and is a crash); a policy it
// returns keeps the documented limits (docs/policy.md), compiles
// (Runtime::compile), and is enforced: through a worker with an empty
// consent table, an HTTP request from a subscriber carrying every HTTP
// identifier of the policy leaves with every value overwritten by the
// policy's filler, and a DNS query carrying every identifier option leaves
// without them.
#include <algorithm>
#include <set>

#include "core/enforcement.hpp"
#include "core/pipeline.hpp"
#include "dns_builder.hpp"
#include "packet_builder.hpp"
#include "policy/loader.hpp"
#include "support/fuzz_check.hpp"
#include "support/reference.hpp"

using namespace optgate;
using namespace optgate::fuzz;

namespace {

bool tchar(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

void check_limits(const Policy& p) {
    FUZZ_CHECK(p.purposes.size() <= kMaxPurposes, std::to_string(p.purposes.size()) + " purposes");
    std::set<std::string> names;
    for (const auto& pu : p.purposes) FUZZ_CHECK(names.insert(pu.name).second, "purpose '" + pu.name + "' twice");
    for (const auto& c : p.collectors) {
        FUZZ_CHECK(c.purpose < p.purposes.size(), "collector '" + c.name + "' has no purpose");
        FUZZ_CHECK(!c.match.prefixes.empty() || !c.match.hosts.empty(), "collector '" + c.name + "' matches anything");
    }
    for (const auto& id : p.identifiers) {
        if (id.kind == Identifier::Kind::http_header)
            FUZZ_CHECK(!id.header.empty() && std::all_of(id.header.begin(), id.header.end(), tchar),
                       "identifier header '" + id.header + "' is not an HTTP token");
        else
            FUZZ_CHECK(id.option_code >= 1 && id.option_code <= 65534, "option code " + std::to_string(id.option_code));
    }
    for (const auto* ports : {&p.http_ports, &p.dns_ports})
        for (const auto& r : *ports) FUZZ_CHECK(r.first >= 1 && r.first <= r.last, "bad port range");
    FUZZ_CHECK(p.ipv6_key_length >= 1 && p.ipv6_key_length <= 128, "ipv6_key_length out of range");
    FUZZ_CHECK(tchar(p.strip_filler), "the strip filler is not a header-name character");
    FUZZ_CHECK(p.staleness_limit.count() > 0, "staleness limit not positive");
    for (const auto& t : {p.tagging.passed, p.tagging.stripped, p.tagging.exempt})
        FUZZ_CHECK(!t || *t <= 63, "DSCP > 63");
}

// A destination of `family` in no exemption prefix, or nullopt.
std::optional<IpAddr> free_destination(const Policy& p, Family family) {
    const char* candidates[] = {
        "203.0.113.7",    "198.51.100.7",     "198.18.0.7",       "100.64.1.1", "10.1.2.3", "255.255.255.254",
        "2001:db8:ad::7", "2001:db8:1000::7", "2001:db8:cafe::7", "3fff::7",    "::1"};
    for (const char* c : candidates) {
        const IpAddr a = *IpAddr::parse(c);
        if (a.family != family) continue;
        if (std::none_of(p.exemptions.begin(), p.exemptions.end(), [&](const Exemption& e) {
                return std::any_of(e.match.prefixes.begin(), e.match.prefixes.end(),
                                   [&](const Prefix& x) { return x.contains(a); });
            }))
            return a;
    }
    return std::nullopt;
}

void check_enforced(const std::shared_ptr<const Runtime>& rt) {
    const Policy& p = rt->policy();
    if (p.subscriber_prefixes.empty() || p.http_ports.empty() || p.dns_ports.empty()) return;
    const IpAddr src = p.subscriber_prefixes[0].addr;
    const auto dst = free_destination(p, src.family);
    if (!dst) return;
    const bool v6 = src.family == Family::v6;

    std::vector<std::string> names;
    std::string request = "GET /fuzz HTTP/1.1\r\n";
    std::vector<uint16_t> codes;
    std::vector<test::EdnsOption> options;
    for (const auto& id : p.identifiers) {
        if (id.kind == Identifier::Kind::http_header) {
            names.push_back(ascii_lower(id.header));
            request += id.header + ": SECRET-VALUE\r\n";
        } else {
            codes.push_back(id.option_code);
            options.push_back({id.option_code, {1, 2, 3, 4}});
        }
        if (names.size() + options.size() == 16) break;
    }
    request += "\r\n";

    Enforcement enforcement(Enforcement::Mode::static_table);
    enforcement.install(rt, enforcement.make_table());
    HttpStageConfig small;
    small.flow_capacity = 16;
    small.host_buffers = 2;
    Worker worker(enforcement, small);

    test::PacketBuilder b;
    if (v6)
        b.ipv6(src.to_string(), dst->to_string());
    else
        b.ipv4(src.to_string(), dst->to_string());
    Bytes http = test::PacketBuilder(b)
                     .tcp(40000, p.http_ports[0].first, {.seq = 7, .flags = test::SYN})
                     .payload(request)
                     .build();
    const Bytes query = test::dns_query({.qname = "example.com", .edns_udp_size = 1232, .options = options});
    Bytes dns = test::PacketBuilder(b).udp(40000, p.dns_ports[0].first).payload(query).build();
    const size_t dns_in = dns.size();

    PacketRef refs[2] = {{http.data(), uint32_t(http.size()), 1'000'000'000, Action::forward},
                         {dns.data(), uint32_t(dns.size()), 1'000'000'000, Action::forward}};
    worker.process_burst(refs, 2, monotonic_ns());
    FUZZ_CHECK(refs[0].action == Action::forward && refs[1].action == Action::forward, "a probe packet was dropped");

    const FrameView hv = read_frame(http);
    const std::string_view sent(request);
    for (const ValueRange& r : http_identifier_values(sent, names, false))
        for (size_t k = r.begin; k < r.end; ++k)
            FUZZ_CHECK(sent[k] == '\r' || http[hv.payload + k] == uint8_t(p.strip_filler),
                       "identifier value left in the probe request at " + show_bytes(sent, k) + "\nas sent:\n" +
                           std::string(sent));

    dns.resize(refs[1].len);
    const FrameView dv = read_frame(dns);
    FUZZ_CHECK(dv.l4 && dns.size() == dns_in, "the DNS probe no longer reads as UDP or changed length");
    const DnsQueryView q = read_dns_query(query.data(), query.size());
    FUZZ_CHECK(q.well_formed, "the builder's DNS query is not well formed");
    const Bytes want = dns_options_padded(query.data(), query.size(), q, codes);
    FUZZ_CHECK(Bytes(&dns[dv.payload], &dns[dv.payload_end]) == want,
               "the DNS probe's identifier options were not made Padding");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    policy::LoadedPolicy loaded;
    try {
        loaded = policy::load_policy_text(text, "fuzz.yaml");
    } catch (const policy::PolicyError& e) {
        FUZZ_CHECK(!e.diagnostics().empty(), "PolicyError without a diagnostic");
        return 0;
    }
    check_limits(loaded.policy);
    std::string error;
    auto rt = Runtime::compile(loaded.policy, &error);
    FUZZ_CHECK(rt, "a policy the loader accepted does not compile: " + error);
    check_enforced(rt);
    return 0;
}
