// The pipeline as the packet fuzz targets drive it: the unit tests' sample
// policy (tests/support/policy_fixture.hpp) with DSCP tagging and every
// encapsulation on, installed
// with a consent table where some subscribers consent and some do not:
//   100.64.0.10            advertising + analytics (every collector passes)
//   100.64.0.11            analytics only
//   100.64.0.12            known, no consent
//   2001:db8:1000:1::/64   advertising (every collector but "metrics")
//   any other subscriber   not in the table
// Identifiers: HTTP X-UIDH and X-MSISDN, DNS options 8 (ECS) and 65001.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/enforcement.hpp"
#include "core/pipeline.hpp"
#include "reference.hpp"

namespace optgate::fuzz {

class PacketRig {
public:
    PacketRig();

    // A worker with its own (small) flow tables, disclosure counts and
    // fragment store: a new one per input keeps runs independent of each
    // other. Small, because an input is at most a few frames: with the data
    // plane's defaults, making and freeing the disclosure tables (65,536
    // slots) and the fragment store (4 MiB) was over 90 % of each run's time
    // under ASan, about 20 runs a second; then the fragment decisions (8,192)
    // and the DNS-over-TCP flows (16,384) were 60 % (tests/fuzz/README.md).
    std::unique_ptr<Worker> worker() {
        return std::make_unique<Worker>(enforcement_, small_http(), small_disclosures(), small_fragments(),
                                        small_dns_tcp());
    }
    static HttpStageConfig small_http();
    static DisclosureConfig small_disclosures();
    static ReassemblyConfig small_fragments();
    static DnsTcpStageConfig small_dns_tcp();

    // True when the verdict rule must strip identifiers on a packet from
    // `src` to `dst` (address bytes; 4 or 16): a subscriber without any
    // consent in the table, to anything but the exemption. Written from the
    // table above, not from the core.
    static bool must_strip(bool v6, const uint8_t* src, const uint8_t* dst);
    // True when identifiers must pass: 100.64.0.10 to the collectors at
    // 203.0.113.0/25 and 198.51.100.0/24, 2001:db8:1000:1::/64 to
    // 2001:db8:ad::/48 (every collector there has a purpose it consents to).
    static bool must_pass(bool v6, const uint8_t* src, const uint8_t* dst);

    const std::vector<std::string>& http_names() const { return http_names_; }  // lowercase
    const std::vector<uint16_t>& dns_codes() const { return dns_codes_; }
    char filler() const { return filler_; }
    uint64_t now() const;

private:
    Enforcement enforcement_{Enforcement::Mode::static_table};
    std::vector<std::string> http_names_;
    std::vector<uint16_t> dns_codes_;
    char filler_ = 'x';
};

// One frame through `w` as a burst of one; returns whether it was forwarded
// and leaves `frame` at its forwarded length.
bool run_one(Worker& w, Bytes& frame, uint64_t now, uint64_t ts_ns = 1'000'000'000);

}  // namespace optgate::fuzz
