#include "common/report.hpp"

#include <boost/json.hpp>
#include <sstream>

namespace optgate::report {

namespace json = boost::json;

json::object to_json(const WorkerCounters& c, const Runtime& rt) {
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
            o["header"] = id.header;
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
