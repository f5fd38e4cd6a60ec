#include "policy/overlap.hpp"

#include "policy/values.hpp"

namespace optgate::policy {

using namespace syntax;

std::optional<std::string> match_overlap(const DestinationMatch& a, const DestinationMatch& b,
                                         const RuleOrigin& b_origin, Location* where_in_b) {
    // Prefix rules are always tried before host-only rules (runtime.hpp), so
    // a prefix rule and a host-only rule never compete for a packet.
    if (a.prefixes.empty() != b.prefixes.empty()) return std::nullopt;
    if (!ports_overlap(a.ports, b.ports)) return std::nullopt;

    std::optional<std::pair<size_t, size_t>> host_pair;  // set when both list hosts
    if (!a.hosts.empty() && !b.hosts.empty()) {
        for (size_t i = 0; i < a.hosts.size() && !host_pair; ++i)
            for (size_t j = 0; j < b.hosts.size() && !host_pair; ++j)
                if (hosts_overlap(a.hosts[i], b.hosts[j])) host_pair = std::pair{i, j};
        if (!host_pair) return std::nullopt;
    }

    if (b.prefixes.empty()) {
        // Both host-only: validation guarantees both list hosts.
        if (!host_pair) return std::nullopt;
        const auto [i, j] = *host_pair;
        if (where_in_b) *where_in_b = b_origin.host_at[j];
        const std::string bh = b.hosts[j].to_string(), ah = a.hosts[i].to_string();
        return bh == ah ? "both match host '" + bh + "'" : "host '" + bh + "' overlaps '" + ah + "'";
    }
    for (size_t j = 0; j < b.prefixes.size(); ++j)
        for (const auto& pa : a.prefixes) {
            if (!b.prefixes[j].overlaps(pa)) continue;
            if (where_in_b) *where_in_b = b_origin.prefix_at[j];
            const std::string bp = b.prefixes[j].to_string(), ap = pa.to_string();
            std::string why;
            if (bp == ap)
                why = "both match " + bp;
            else
                why.append(bp).append(" overlaps ").append(ap);
            if (host_pair) why += " for host '" + b.hosts[host_pair->second].to_string() + "'";
            return why;
        }
    return std::nullopt;
}

void check_overlaps(const Policy& policy, const std::vector<RuleOrigin>& collectors,
                    const std::vector<RuleOrigin>& exemptions, Diagnostics& d) {
    for (size_t e = 0; e < policy.exemptions.size(); ++e) {
        const Exemption& ex = policy.exemptions[e];
        for (size_t c = 0; c < policy.collectors.size(); ++c) {
            const Collector& co = policy.collectors[c];
            Location at = exemptions[e].name_at;
            const auto why = match_overlap(co.match, ex.match, exemptions[e], &at);
            if (!why) continue;
            d.error(at, "exemption '" + ex.name + "' overlaps collector '" + co.name + "' (line " +
                            std::to_string(collectors[c].name_at.line) + "): " + *why +
                            "; a destination must be either a collector or an exemption, so narrow one of "
                            "them with 'prefixes', 'ports' or 'hosts'");
        }
    }
    for (size_t b = 0; b < policy.collectors.size(); ++b) {
        const Collector& cb = policy.collectors[b];
        for (size_t a = 0; a < b; ++a) {
            const Collector& ca = policy.collectors[a];
            if (ca.purpose == cb.purpose) continue;
            Location at = collectors[b].name_at;
            const auto why = match_overlap(ca.match, cb.match, collectors[b], &at);
            if (!why) continue;
            d.warning(at, "collector '" + cb.name + "' (purpose " + policy.purposes[cb.purpose].name +
                              ") overlaps collector '" + ca.name + "' (purpose " + policy.purposes[ca.purpose].name +
                              ", line " + std::to_string(collectors[a].name_at.line) + "): " + *why +
                              (cb.match.prefixes.empty()
                                   ? "; where both match, the one listed first wins"
                                   : "; where both match, the more specific prefix wins, then the one listed first"));
        }
    }
}

}  // namespace optgate::policy
