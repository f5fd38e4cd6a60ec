// Golden replay tests: frames built with the test packet builder are written
// to a pcap, `optgate-replay` runs on it as a separate process (the real
// binary, the real config files), and the output pcap and JSON report are
// compared with what the test expects.
//
// Environment (set by tests/replay/meson.build):
//   OPTGATE_REPLAY       path of the optgate-replay binary
//   OPTGATE_SOURCE_ROOT  the source tree (for config/*.yaml)
#pragma once

#include <boost/json.hpp>
#include <filesystem>
#include <string>
#include <vector>

#include "pcap_io.hpp"
#include "subprocess.hpp"

namespace optgate::golden {

using test::RunResult;
using test::TempDir;

std::string source_path(const std::string& relative);  // OPTGATE_SOURCE_ROOT / relative
std::string example_policy();                          // config/policy.example.yaml
std::string example_consent();                         // config/consent.example.yaml

// Runs optgate-replay with `args` (no shell involved).
RunResult run_replay(const std::vector<std::string>& args);

// Replays `frames` (timestamps 1 ms apart from a fixed start) with the given
// policy and consent files; returns the forwarded records and the report.
struct Replay {
    RunResult run;
    std::vector<test::PcapRecord> input;
    std::vector<test::PcapRecord> output;
    boost::json::object report;
    uint64_t counter(const std::string& name) const;
    // identifiers stripped / passed for a destination (collector, exemption, "(none)")
    uint64_t stripped_to(const std::string& destination) const;
    uint64_t passed_to(const std::string& destination) const;
};
// `extra_args` go before the pcaps (e.g. --pseudonym-keys FILE).
Replay replay(const std::vector<test::Bytes>& frames, const std::string& policy = example_policy(),
              const std::string& consent = example_consent(), const std::vector<std::string>& extra_args = {});

}  // namespace optgate::golden
