// The demo's sample traffic, matching config/policy.example.yaml and
// config/consent.example.yaml: DNS queries with and without identifier
// options, HTTP requests with carrier-inserted headers, to collectors, an
// exemption and ordinary servers, over IPv4 and IPv6, plus background
// traffic that optgate must leave alone. Deterministic.
#pragma once

#include <vector>

#include "pcap_io.hpp"

namespace optgate::tools {

std::vector<test::PcapRecord> sample_traffic();

}  // namespace optgate::tools
