#include "golden_support.hpp"

#include <doctest/doctest.h>

#include <stdexcept>

namespace optgate::golden {

using test::env;
using test::slurp;

std::string source_path(const std::string& relative) { return env("OPTGATE_SOURCE_ROOT") + "/" + relative; }
std::string example_policy() { return source_path("config/policy.example.yaml"); }
std::string example_consent() { return source_path("config/consent.example.yaml"); }

RunResult run_replay(const std::vector<std::string>& args) {
    std::vector<std::string> argv{env("OPTGATE_REPLAY")};
    argv.insert(argv.end(), args.begin(), args.end());
    return test::run(argv);
}

uint64_t Replay::counter(const std::string& name) const {
    const auto& counters = report.at("counters").as_object();
    const auto* v = counters.if_contains(name);
    if (!v) throw std::runtime_error("no counter '" + name + "' in the report");
    return v->to_number<uint64_t>();
}

namespace {
uint64_t destination_field(const boost::json::object& report, const std::string& name, const char* field) {
    for (const auto& d : report.at("destinations").as_array())
        if (d.at("name").as_string() == name) return d.at(field).to_number<uint64_t>();
    throw std::runtime_error("no destination '" + name + "' in the report");
}
}  // namespace

uint64_t Replay::stripped_to(const std::string& d) const {
    return destination_field(report, d, "identifiers_stripped");
}
uint64_t Replay::passed_to(const std::string& d) const { return destination_field(report, d, "identifiers_passed"); }

Replay replay(const std::vector<test::Bytes>& frames, const std::string& policy, const std::string& consent,
              const std::vector<std::string>& extra_args) {
    TempDir tmp;
    Replay r;
    uint64_t ts = 1'700'000'000'000'000'000ull;
    for (const auto& f : frames) {
        r.input.push_back({ts, f});
        ts += 1'000'000;
    }
    test::write_pcap(tmp.file("in.pcap"), r.input);
    std::vector<std::string> args{"--policy", policy, "--consent", consent, "--report", tmp.file("report.json")};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    args.push_back(tmp.file("in.pcap"));
    args.push_back(tmp.file("out.pcap"));
    r.run = run_replay(args);
    INFO("optgate-replay said:\n" << r.run.output);
    REQUIRE(r.run.exit_code == 0);
    r.output = test::read_pcap(tmp.file("out.pcap"));
    r.report = boost::json::parse(slurp(tmp.file("report.json"))).as_object();
    return r;
}

}  // namespace optgate::golden
