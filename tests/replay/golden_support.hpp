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

#include "packet_builder.hpp"
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

// One TCP connection to port 80 in the golden tests' captures: its SYN, its
// data segments by offset, and an answer from the server.
struct Conn {
    std::string src, dst;
    uint16_t sport;
    int vlans = 0;  // 0, 1 (802.1Q) or 2 (QinQ)
    uint32_t isn = 7000;

    test::PacketBuilder base() const { return frame(src, dst); }
    test::Bytes syn() const { return base().tcp(sport, 80, {.seq = isn, .flags = test::SYN}).build(); }
    test::Bytes data(size_t offset, std::string_view payload) const {
        return base()
            .tcp(sport, 80, {.seq = uint32_t(isn + 1 + offset), .ack = 1, .flags = test::PSH | test::ACK})
            .payload(payload)
            .build();
    }
    test::Bytes response(std::string_view payload) const {
        return frame(dst, src)
            .tcp(80, sport, {.seq = 1, .ack = isn + 1, .flags = test::PSH | test::ACK})
            .payload(payload)
            .build();
    }

private:
    test::PacketBuilder frame(const std::string& from, const std::string& to) const {
        test::PacketBuilder b;
        if (vlans == 1) b.vlan(100);
        if (vlans == 2) b.vlan(10, test::kTpid8021ad).vlan(20);
        if (from.find(':') != std::string::npos)
            b.ipv6(from, to);
        else
            b.ipv4(from, to);
        return b;
    }
};

}  // namespace optgate::golden
