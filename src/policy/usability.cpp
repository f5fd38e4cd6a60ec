#include "policy/usability.hpp"

#include <algorithm>

namespace optgate::policy {
namespace {

bool overlaps(const PortRange& a, const std::vector<PortRange>& set) {
    return std::any_of(set.begin(), set.end(),
                       [&](const PortRange& b) { return a.first <= b.last && b.first <= a.last; });
}

bool inside(const PortRange& a, const std::vector<PortRange>& set) {
    return std::any_of(set.begin(), set.end(),
                       [&](const PortRange& b) { return b.first <= a.first && a.last <= b.last; });
}

std::string ports_text(const std::vector<PortRange>& ports) {
    std::string s;
    for (const auto& r : ports) {
        if (!s.empty()) s += ", ";
        s += std::to_string(r.first);
        if (r.last != r.first) s += "-" + std::to_string(r.last);
    }
    return s;
}

// The checks shared by collectors and exemptions; `what` is "collector 'x'".
void check_destination(const std::string& what, const DestinationMatch& m, const Policy& p,
                       std::vector<std::string>& out) {
    if (m.ports.empty()) return;  // any port
    const bool parsed = std::any_of(m.ports.begin(), m.ports.end(), [&](const PortRange& r) {
        return overlaps(r, p.http_ports) || overlaps(r, p.dns_ports);
    });
    if (!parsed) {
        out.push_back(what + " matches only port(s) " + ports_text(m.ports) +
                      ", which optgate never parses (http.ports and dns.ports): no identifier is ever read there");
        return;
    }
    // DNS carries no host name: a host-name match on DNS ports only never matches.
    const bool dns_only = std::all_of(m.ports.begin(), m.ports.end(), [&](const PortRange& r) {
        return inside(r, p.dns_ports) && !overlaps(r, p.http_ports);
    });
    if (!m.hosts.empty() && dns_only)
        out.push_back(what + " matches host names but only DNS port(s) " + ports_text(m.ports) +
                      ": DNS queries carry no HTTP host, so it never matches");
}

}  // namespace

std::string staleness_limit_problem(std::chrono::milliseconds staleness_limit,
                                    std::chrono::milliseconds heartbeat_interval) {
    if (heartbeat_interval * kHeartbeatsPerStalenessLimit <= staleness_limit) return {};
    return "dataplanes.heartbeat_interval (" + std::to_string(heartbeat_interval.count()) +
           "ms) must be at most a third of the policy's staleness_limit (" + std::to_string(staleness_limit.count()) +
           "ms), or data planes go stale while consentd is healthy";
}

std::vector<std::string> usability_warnings(const Policy& p) {
    std::vector<std::string> out;
    const bool headers = std::any_of(p.identifiers.begin(), p.identifiers.end(),
                                     [](const Identifier& id) { return id.kind == Identifier::Kind::http_header; });
    if (headers && p.http_ports.empty())
        out.push_back(
            "the policy lists HTTP header identifiers but 'http.ports' is empty: optgate reads no HTTP, so "
            "those headers are never stripped");
    for (const auto& c : p.collectors) check_destination("collector '" + c.name + "'", c.match, p, out);
    for (const auto& e : p.exemptions) check_destination("exemption '" + e.name + "'", e.match, p, out);
    if (staleness_limit_problem(p.staleness_limit, kDefaultHeartbeatInterval).empty()) return out;
    if (!staleness_limit_problem(p.staleness_limit, kMinHeartbeatInterval).empty())
        out.push_back("'staleness_limit' (" + std::to_string(p.staleness_limit.count()) +
                      "ms) is shorter than consentd accepts with any dataplanes.heartbeat_interval (at least " +
                      std::to_string((kMinHeartbeatInterval * kHeartbeatsPerStalenessLimit).count()) +
                      "ms): consentd refuses this policy");
    else
        out.push_back("consentd with its default dataplanes.heartbeat_interval refuses this policy: " +
                      staleness_limit_problem(p.staleness_limit, kDefaultHeartbeatInterval));
    return out;
}

}  // namespace optgate::policy
