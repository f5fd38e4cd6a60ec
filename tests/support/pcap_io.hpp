// Reading and writing pcap files through libpcap, for tests, tools and bench.
// Files are written with microsecond timestamps (ts_ns rounded to the
// nearest microsecond), so the same records always give the same bytes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "packet_builder.hpp"

namespace optgate::test {

inline constexpr int kLinktypeEthernet = 1;  // DLT_EN10MB

struct PcapRecord {
    uint64_t ts_ns = 0;
    Bytes data;
};

// Throws std::runtime_error naming the file on any failure.
void write_pcap(const std::string& path, const std::vector<PcapRecord>& records, int linktype = kLinktypeEthernet);

// Reads every record (nanosecond and microsecond files alike); the file's
// link type goes to *linktype when given. Throws std::runtime_error naming the file.
std::vector<PcapRecord> read_pcap(const std::string& path, int* linktype = nullptr);

}  // namespace optgate::test
