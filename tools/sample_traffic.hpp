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

// The same traffic with most IP frames wrapped, in turn, in each
// encapsulation (PPPoE, MPLS, GRE with checksum, GRE bridging Ethernet,
// L2TP, VXLAN, Geneve, GTP-U; outer IPv4 and IPv6), the rest left native: a
// mixed capture for the data-plane agreement test
// (docs/pipeline.md#encapsulations). A flow's frames change encapsulation
// from one to the next; only the inner flow must hold them together.
std::vector<test::PcapRecord> encapsulated_traffic();

// The same traffic with every IP datagram of more than 56 bytes of payload
// cut into fragments (IPv4 48 bytes, IPv6 64), some datagrams' fragments
// reversed, some fragments sent twice: the data plane's agreement test for
// reassembly (docs/pipeline.md#fragments). Deterministic.
std::vector<test::PcapRecord> fragmented_traffic();

}  // namespace optgate::tools
