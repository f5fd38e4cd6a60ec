#include "common/report.hpp"

#include <algorithm>
#include <boost/json.hpp>
#include <map>
#include <optional>
#include <sstream>
#include <tuple>

namespace optgate::report {

namespace json = boost::json;

json::object counters_to_json(const WorkerCounters& c) {
    json::object out;
    out["packets"] = json::object{
        {"in", c.get(Counter::packets)},
        {"out", c.get(Counter::forwarded)},
        {"dropped", c.get(Counter::dropped)},
        {"rewritten", c.get(Counter::rewritten)},
    };
    json::object counters;
    for (size_t i = 0; i < kCounterCount; ++i) counters[counter_name(Counter(i))] = c.value[i];
    out["counters"] = std::move(counters);
    return out;
}

json::object to_json(const WorkerCounters& c, const Runtime& rt) {
    json::object out = counters_to_json(c);
    const Policy& p = rt.policy();
    json::array destinations;
    for (size_t slot = 0; slot < rt.destination_slots(); ++slot) {
        json::object d;
        d["name"] = rt.destination_name(slot);
        if (slot < p.collectors.size()) {
            d["kind"] = "collector";
            d["purpose"] = p.purposes[p.collectors[slot].purpose].name;
        } else if (slot < p.collectors.size() + p.exemptions.size()) {
            d["kind"] = "exemption";
        } else {
            d["kind"] = "none";
        }
        d["identifiers_stripped"] = c.destination_stripped[slot];
        d["identifiers_passed"] = c.destination_passed[slot];
        destinations.push_back(std::move(d));
    }
    out["destinations"] = std::move(destinations);

    json::array identifiers;
    for (size_t i = 0; i < p.identifiers.size(); ++i) {
        const Identifier& id = p.identifiers[i];
        json::object o;
        o["name"] = id.name;
        if (id.kind == Identifier::Kind::http_header) {
            o["kind"] = "http_header";
            o[id.header_prefix ? "header_prefix" : "header"] = id.header;
        } else {
            o["kind"] = "dns_option";
            o["code"] = id.option_code;
        }
        o["stripped"] = c.identifier_stripped[i];
        o["passed"] = c.identifier_passed[i];
        identifiers.push_back(std::move(o));
    }
    out["identifiers"] = std::move(identifiers);
    return out;
}

json::array disclosures_to_json(const std::vector<DisclosureEntry>& entries,
                                const std::vector<std::pair<SubscriberKey, std::string>>& bindings,
                                unsigned ipv6_key_length) {
    std::map<std::pair<Family, std::array<uint8_t, 16>>, const std::string*> ids;
    for (const auto& [key, id] : bindings) ids.emplace(std::pair{key.addr.family, key.addr.bytes}, &id);
    struct Row {
        const std::string* subscriber;  // null: unbound
        const DisclosureEntry* entry;
    };
    std::vector<Row> rows;
    rows.reserve(entries.size());
    for (const auto& e : entries) {
        const auto it = ids.find({e.family, e.key});
        rows.push_back({it == ids.end() ? nullptr : it->second, &e});
    }
    auto order = [](const Row& r) {
        return std::tuple(r.subscriber == nullptr, r.subscriber ? std::string_view(*r.subscriber) : std::string_view(),
                          r.entry->family, r.entry->key, std::string_view(r.entry->destination),
                          std::string_view(r.entry->identifier));
    };
    std::sort(rows.begin(), rows.end(), [&](const Row& a, const Row& b) { return order(a) < order(b); });
    json::array out;
    for (const Row& r : rows) {
        IpAddr a;
        a.family = r.entry->family;
        a.bytes = r.entry->key;
        std::string key = a.to_string();
        if (a.family == Family::v6) key += "/" + std::to_string(ipv6_key_length);
        json::object o;
        o["subscriber"] = r.subscriber ? json::value(*r.subscriber) : json::value(nullptr);
        o["key"] = key;
        o["destination"] = r.entry->destination;
        o["identifier"] = r.entry->identifier;
        o["passed"] = r.entry->passed;
        o["stripped"] = r.entry->stripped;
        out.push_back(std::move(o));
    }
    return out;
}

std::string human_summary(const WorkerCounters& c, const Runtime& rt) {
    std::ostringstream s;
    s << "packets: " << c.get(Counter::packets) << " in, " << c.get(Counter::forwarded) << " out ("
      << c.get(Counter::rewritten) << " rewritten, " << c.get(Counter::dropped) << " dropped)\n";
    s << "DNS queries from subscribers: " << c.get(Counter::dns_queries) << " (" << c.get(Counter::dns_with_identifiers)
      << " with identifier options, " << c.get(Counter::dns_rewritten) << " rewritten)\n";
    s << "HTTP requests from subscribers: " << c.get(Counter::http_requests) << " ("
      << c.get(Counter::http_requests_with_identifiers) << " with identifier headers, "
      << c.get(Counter::http_rewritten) << " segments rewritten)\n";
    s << "identifiers by destination:       stripped    passed\n";
    for (size_t slot = 0; slot < rt.destination_slots(); ++slot) {
        const uint64_t stripped = c.destination_stripped[slot], passed = c.destination_passed[slot];
        std::string name(rt.destination_name(slot));
        if (slot >= rt.policy().collectors.size() && slot < rt.no_collector_slot()) name += " (exemption)";
        if (slot == rt.no_collector_slot()) name = "(not a collector)";
        char line[160];
        std::snprintf(line, sizeof line, "  %-30s %9llu %9llu\n", name.c_str(), (unsigned long long)stripped,
                      (unsigned long long)passed);
        s << line;
    }
    return s.str();
}

}  // namespace optgate::report
