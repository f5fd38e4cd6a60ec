// Test helper: stores disclosure reports into a ledger database through
// DisclosureStore, as a data plane's reports would be (the API tests use it
// to give a running consentd something to answer; the data-plane path is
// tested end to end elsewhere).
//
//   disclosure-seed DATABASE POLICY < reports.ndjson
//
// One report per line: {"dataplane": "edge-1", "reporter": 1, "seq": 1,
// "start_ms": ..., "end_ms": ..., "entries": [{"key": "100.64.0.1",
// "destination": "example-adnet", "identifier": "...", "passed": 1,
// "stripped": 0}]}. Clock margin 1 ms. Prints "stored" per report; exit 1 if
// one was not stored.
#include <boost/json/parse.hpp>

#include <cstdio>
#include <future>
#include <iostream>
#include <string>

#include "consentd/disclosures.hpp"
#include "policy/loader.hpp"
#include "policy/yaml_reader.hpp"

using namespace optgate;
using namespace optgate::consentd;
namespace json = boost::json;

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: disclosure-seed DATABASE POLICY < reports.ndjson\n");
        return 2;
    }
    try {
        auto policy = std::make_shared<const Policy>(
            policy::load_policy_text(policy::syntax::read_file(argv[2]), argv[2]).policy);
        Metrics metrics;
        DisclosureStore store(argv[1], DisclosureOptions{400, std::chrono::milliseconds(1)}, metrics,
                              [&] { return policy; });
        store.start();
        std::string line;
        while (std::getline(std::cin, line)) {
            if (line.empty()) continue;
            const auto v = json::parse(line).as_object();
            DisclosureReport r;
            r.dataplane = std::string(v.at("dataplane").as_string());
            r.reporter = v.at("reporter").to_number<uint64_t>();
            r.seq = v.at("seq").to_number<uint64_t>();
            r.batch.start_unix_ms = v.at("start_ms").to_number<uint64_t>();
            r.batch.end_unix_ms = v.at("end_ms").to_number<uint64_t>();
            for (const auto& e : v.at("entries").as_array()) {
                const auto& o = e.as_object();
                const auto a = IpAddr::parse(std::string(o.at("key").as_string()));
                if (!a) throw std::runtime_error("bad key in: " + line);
                DisclosureEntry d;
                d.family = a->family;
                d.key = a->bytes;
                d.destination = std::string(o.at("destination").as_string());
                d.identifier = std::string(o.at("identifier").as_string());
                d.passed = o.at("passed").to_number<uint64_t>();
                d.stripped = o.at("stripped").to_number<uint64_t>();
                r.batch.entries.push_back(std::move(d));
            }
            std::promise<bool> p;
            auto f = p.get_future();
            store.submit(std::move(r), [&](bool ok) { p.set_value(ok); });
            if (!f.get()) {
                std::fprintf(stderr, "disclosure-seed: not stored: %s\n", line.c_str());
                return 1;
            }
            std::printf("stored\n");
        }
        store.stop();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "disclosure-seed: %s\n", e.what());
        return 1;
    }
    return 0;
}
