// optgatectl disclosures SUB [--from D] [--to D] [--json]: what was shared
// about a subscriber, per day, collector and identifier (GET
// /v1/subscribers/{id}/disclosures, docs/transparency.md).
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/program_options.hpp>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "ctl/api_client.hpp"
#include "ctl/commands.hpp"

namespace optgate::ctl {

namespace po = boost::program_options;
namespace json = boost::json;

namespace {

std::string str(const json::value& v) { return v.is_string() ? std::string(v.as_string()) : "-"; }

}  // namespace

int disclosures(int argc, char** argv) {
    po::options_description opts;
    opts.add_options()("from", po::value<std::string>(), "first day, YYYY-MM-DD (UTC; default: 29 days before --to)")(
        "to", po::value<std::string>(), "last day, YYYY-MM-DD (UTC; default: today)")(
        "json", "print consentd's answer as JSON")("subscriber", po::value<std::string>(), "");
    add_client_options(opts);
    po::positional_options_description pos;
    pos.add("subscriber", 1);
    po::variables_map vm;
    const std::string_view usage = "disclosures SUBSCRIBER [--from YYYY-MM-DD] [--to YYYY-MM-DD] [--json]";
    if (auto stop = parse_command(argc, argv, opts, pos, usage, vm)) return *stop;
    if (!vm.count("subscriber")) {
        std::fprintf(stderr, "optgatectl disclosures: missing subscriber\nusage: optgatectl %.*s\n", int(usage.size()),
                     usage.data());
        return 2;
    }
    const auto target = api_target(vm);
    if (!target) return 2;
    std::string path = "/v1/subscribers/" + encode_segment(vm["subscriber"].as<std::string>()) + "/disclosures";
    std::string sep = "?";
    for (const char* name : {"from", "to"})
        if (vm.count(name)) {
            path += sep + name + "=" + encode_segment(vm[name].as<std::string>());
            sep = "&";
        }
    ApiResult r;
    try {
        r = api_request(*target, boost::beast::http::verb::get, path);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "optgatectl disclosures: %s\n", e.what());
        return 1;
    }
    if (vm.count("json") || r.status != 200) return print_result("disclosures", r);
    try {
        const json::value body = json::parse(r.body);
        const auto& days = body.at("days").as_array();
        std::printf("%s: identifiers passed and stripped, %s to %s (UTC days)\n", str(body.at("subscriber")).c_str(),
                    str(body.at("from")).c_str(), str(body.at("to")).c_str());
        if (days.empty()) {
            std::printf("none recorded in these days\n");
            return 0;
        }
        // Columns as wide as their longest value (names come from the policy).
        int wc = 9, wp = 7, wi = 10;  // "COLLECTOR", "PURPOSE", "IDENTIFIER"
        for (const auto& d : days)
            for (const auto& c : d.at("collectors").as_array()) {
                wc = std::max(wc, int(str(c.at("name")).size()));
                wp = std::max(wp, int(str(c.at("purpose")).size()));
                for (const auto& id : c.at("identifiers").as_array()) wi = std::max(wi, int(str(id.at("name")).size()));
            }
        const auto row = [&](const std::string& day, const std::string& collector, const std::string& purpose,
                             const std::string& identifier, const std::string& passed, const std::string& stripped) {
            std::printf("%-10s  %-*s  %-*s  %-*s  %10s %10s\n", day.c_str(), wc, collector.c_str(), wp, purpose.c_str(),
                        wi, identifier.c_str(), passed.c_str(), stripped.c_str());
        };
        const auto number = [](const json::value& v) { return std::to_string(v.to_number<uint64_t>()); };
        row("DAY", "COLLECTOR", "PURPOSE", "IDENTIFIER", "PASSED", "STRIPPED");
        for (const auto& d : days)
            for (const auto& c : d.at("collectors").as_array())
                for (const auto& id : c.at("identifiers").as_array())
                    row(str(d.at("day")), str(c.at("name")), str(c.at("purpose")), str(id.at("name")),
                        number(id.at("passed")), number(id.at("stripped")));
        row("total", "", "", "", number(body.at("passed")), number(body.at("stripped")));
        // Who each collector is: once, below the table.
        std::vector<std::string> described;
        for (const auto& d : days)
            for (const auto& c : d.at("collectors").as_array()) {
                const std::string name = str(c.at("name"));
                if (!c.at("description").is_string() ||
                    std::find(described.begin(), described.end(), name) != described.end())
                    continue;
                described.push_back(name);
                std::printf("  %s: %s\n", name.c_str(), str(c.at("description")).c_str());
            }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "optgatectl disclosures: unexpected answer from consentd: %s\n", e.what());
        return 1;
    }
    return 0;
}

}  // namespace optgate::ctl
