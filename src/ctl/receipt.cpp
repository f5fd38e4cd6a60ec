// optgatectl receipt SUBSCRIBER SEQ [--json]: the consent receipt of one
// grant or revoke (GET /v1/subscribers/{id}/receipts/{seq},
// docs/receipts.md), readable or as consentd's JSON, which
// `optgatectl verify-ledger DB --receipt FILE` checks against a ledger.
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

std::string recorded(const json::value& v) {
    if (v.is_string()) return std::string(v.as_string());
    if (v.is_null()) return "(not recorded)";
    return json::serialize(v);
}

void line(const char* label, const std::string& value) { std::printf("  %-18s %s\n", label, value.c_str()); }

void print_receipt(const json::object& r) {
    const auto& controller = r.at("controller").as_object();
    const auto& purpose = r.at("purpose").as_object();
    const auto& ledger = r.at("ledger").as_object();
    const bool in = r.at("action") == "opt-in";
    std::printf("Consent receipt %s\n", recorded(r.at("receipt_id")).c_str());
    line("version", recorded(r.at("version")));
    line("controller", recorded(controller.at("name")) + ", " + recorded(controller.at("contact")));
    line("jurisdiction", recorded(r.at("jurisdiction")));
    line("privacy policy", recorded(r.at("policy_url")));
    line("subscriber", recorded(r.at("subscriber")));
    line("action", recorded(r.at("action")) + (in ? " (consent given)" : " (consent withdrawn)"));
    line("time", recorded(r.at("timestamp")));
    line("collected through", recorded(r.at("collection_method")));
    line("notice version", r.at("notice_version").is_null() ? "-" : recorded(r.at("notice_version")));
    line("purpose",
         recorded(purpose.at("name")) + (purpose.at("in_policy") == false ? " (not in the policy then)" : ""));
    line("what it means", recorded(purpose.at("description")));
    line("your benefit", recorded(purpose.at("benefit")));
    std::string data;
    if (const auto& d = r.at("data_categories"); d.is_array())
        for (const auto& c : d.as_array()) data += (data.empty() ? "" : ", ") + recorded(c);
    line("data shared", r.at("data_categories").is_null() ? recorded(nullptr) : data);
    std::string ids;
    if (const auto& d = r.at("identifiers"); d.is_array())
        for (const auto& i : d.as_array()) {
            const auto& o = i.as_object();
            const json::value* header = o.if_contains("http_header");
            ids += (ids.empty() ? "" : ", ") + recorded(o.at("name")) + " (" +
                   (header ? "HTTP " + recorded(*header) : "EDNS0 option " + recorded(o.at("edns0_option"))) + ")";
        }
    line("identifiers", r.at("identifiers").is_null() ? recorded(nullptr) : ids.empty() ? "none" : ids);
    line("retention", recorded(r.at("retention")));
    if (const auto& t = r.at("third_parties"); t.is_array()) {
        if (t.as_array().empty()) line("third parties", "none");
        for (const auto& c : t.as_array())
            line("third party", recorded(c.at("name")) + ": " + recorded(c.at("description")));
    } else {
        line("third parties", recorded(nullptr));
    }
    line("ledger", "event " + recorded(ledger.at("seq")) + ", recorded by " + recorded(ledger.at("credential")) +
                       ", previous hash " + recorded(ledger.at("prev_hash")));
    const auto& policy = r.at("policy");
    line("policy", policy.is_null()
                       ? "not recorded: the event is older than the ledger's policy history"
                       : "record " + recorded(policy.at("record")) + ", in force from event " +
                             recorded(policy.at("from_seq")) + ", sha256 " + recorded(policy.at("sha256")));
}

}  // namespace

int receipt(int argc, char** argv) {
    po::options_description opts;
    opts.add_options()("json", "print consentd's JSON (what verify-ledger --receipt checks)");
    add_client_options(opts);
    opts.add_options()("subscriber", po::value<std::string>(), "")("seq", po::value<std::string>(), "");
    po::positional_options_description pos;
    pos.add("subscriber", 1).add("seq", 1);
    po::variables_map vm;
    const std::string_view usage = "receipt SUBSCRIBER SEQ [--json]";
    if (auto stop = parse_command(argc, argv, opts, pos, usage, vm)) return *stop;
    if (!vm.count("subscriber") || !vm.count("seq")) {
        std::fprintf(stderr, "optgatectl receipt: usage: optgatectl %.*s\n", int(usage.size()), usage.data());
        return 2;
    }
    const auto target = api_target(vm);
    if (!target) return 2;
    ApiResult r;
    try {
        r = api_request(*target, boost::beast::http::verb::get,
                        "/v1/subscribers/" + encode_segment(vm["subscriber"].as<std::string>()) + "/receipts/" +
                            encode_segment(vm["seq"].as<std::string>()));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "optgatectl receipt: %s\n", e.what());
        return 1;
    }
    if (r.status != 200) return print_result("receipt", r);
    if (vm.count("json")) {
        std::printf("%s", r.body.c_str());  // as consentd answered: one line, ready to verify
        return 0;
    }
    try {
        print_receipt(json::parse(r.body).as_object());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "optgatectl receipt: unexpected answer from consentd: %s\n", e.what());
        return 1;
    }
    return 0;
}

}  // namespace optgate::ctl
