// optgatectl dataplanes [--json]: the data planes connected to consentd,
// what they have applied, how far behind they are, the ledger checkpoint
// they hold and how old their last stats report is, then those that disconnected recently (GET
// /v1/dataplanes, docs/protocol.md).
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/program_options.hpp>

#include <cstdio>
#include <string>

#include "ctl/api_client.hpp"
#include "ctl/commands.hpp"

namespace optgate::ctl {

namespace po = boost::program_options;
namespace json = boost::json;

namespace {

// A stats report's age: "-" before the first, "850ms", "12.3s".
std::string age(const json::value& ms) {
    if (!ms.is_number()) return "-";
    const uint64_t v = ms.to_number<uint64_t>();
    if (v < 1000) return std::to_string(v) + "ms";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1fs", double(v) / 1000);
    return buf;
}

}  // namespace

int dataplanes(int argc, char** argv) {
    po::options_description opts;
    opts.add_options()("json", "print consentd's answer as JSON");
    add_client_options(opts);
    po::variables_map vm;
    const std::string_view usage = "dataplanes [--json]";
    if (auto stop = parse_command(argc, argv, opts, {}, usage, vm)) return *stop;
    const auto target = api_target(vm);
    if (!target) return 2;
    ApiResult r;
    try {
        r = api_request(*target, boost::beast::http::verb::get, "/v1/dataplanes");
    } catch (const std::exception& e) {
        std::fprintf(stderr, "optgatectl dataplanes: %s\n", e.what());
        return 1;
    }
    if (vm.count("json") || r.status != 200) return print_result("dataplanes", r);
    json::value body;
    try {
        body = json::parse(r.body);
        const auto& list = body.at("dataplanes").as_array();
        std::printf("consentd head seq %s, %zu data plane%s connected\n", cell(body.at("head_seq")).c_str(),
                    list.size(), list.size() == 1 ? "" : "s");
        if (!list.empty()) {
            std::printf("%-20s %-7s %10s %8s %10s  %-24s %-9s %-24s %s\n", "NAME", "SYNCED", "APPLIED", "LAG",
                        "CHECKPOINT", "LAST ACK", "STATS AGE", "CONNECTED SINCE", "ADDRESS");
            for (const auto& d : list) {
                const json::value* stats_age = d.as_object().if_contains("stats_age_ms");
                // The ledger checkpoint it holds (consentd before checkpoints: absent).
                const json::value* checkpoint = d.as_object().if_contains("checkpoint_seq");
                std::printf("%-20s %-7s %10s %8s %10s  %-24s %-9s %-24s %s\n", cell(d.at("name")).c_str(),
                            cell(d.at("synced")).c_str(), cell(d.at("applied_seq")).c_str(), cell(d.at("lag")).c_str(),
                            checkpoint ? cell(*checkpoint).c_str() : "-", cell(d.at("last_ack")).c_str(),
                            stats_age ? age(*stats_age).c_str() : "-", cell(d.at("connected_since")).c_str(),
                            cell(d.at("address")).c_str());
            }
        }
        // Gone within consentd's stats_retention (consentd before stats: absent).
        const json::value* gone = body.as_object().if_contains("disconnected");
        if (gone && !gone->as_array().empty()) {
            std::printf("recently disconnected (GET /metrics keeps their last stats, optgate_dataplane_up 0):\n");
            std::printf("%-20s %-24s %-9s %s\n", "NAME", "DISCONNECTED AT", "STATS AGE", "ADDRESS");
            for (const auto& d : gone->as_array())
                std::printf("%-20s %-24s %-9s %s\n", cell(d.at("name")).c_str(), cell(d.at("disconnected_at")).c_str(),
                            age(d.at("stats_age_ms")).c_str(), cell(d.at("address")).c_str());
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "optgatectl dataplanes: unexpected answer from consentd: %s\n", e.what());
        return 1;
    }
    return 0;
}

}  // namespace optgate::ctl
