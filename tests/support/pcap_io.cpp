#include "pcap_io.hpp"

#include <pcap/pcap.h>

#include <memory>
#include <stdexcept>

namespace optgate::test {
namespace {

constexpr int kSnaplen = 262144;  // libpcap's MAXIMUM_SNAPLEN

struct PcapCloser {
    void operator()(pcap_t* p) const { pcap_close(p); }
};
using PcapHandle = std::unique_ptr<pcap_t, PcapCloser>;

}  // namespace

void write_pcap(const std::string& path, const std::vector<PcapRecord>& records, int linktype) {
    PcapHandle dead(pcap_open_dead_with_tstamp_precision(linktype, kSnaplen, PCAP_TSTAMP_PRECISION_MICRO));
    if (!dead) throw std::runtime_error(path + ": pcap_open_dead failed");
    pcap_dumper_t* dumper = pcap_dump_open(dead.get(), path.c_str());
    if (!dumper) throw std::runtime_error(path + ": " + pcap_geterr(dead.get()));
    for (const auto& r : records) {
        if (r.data.size() > size_t(kSnaplen)) {
            pcap_dump_close(dumper);
            throw std::runtime_error(path + ": record of " + std::to_string(r.data.size()) +
                                     " bytes exceeds the snaplen");
        }
        uint64_t us = (r.ts_ns + 500) / 1000;
        pcap_pkthdr h{};
        h.ts.tv_sec = time_t(us / 1000000);
        h.ts.tv_usec = suseconds_t(us % 1000000);
        h.caplen = h.len = bpf_u_int32(r.data.size());
        pcap_dump(reinterpret_cast<u_char*>(dumper), &h, r.data.data());
    }
    // pcap_dump() reports nothing: check the stream once at the end.
    bool failed = pcap_dump_flush(dumper) != 0 || ferror(pcap_dump_file(dumper));
    pcap_dump_close(dumper);
    if (failed) throw std::runtime_error(path + ": write failed");
}

std::vector<PcapRecord> read_pcap(const std::string& path, int* linktype) {
    char err[PCAP_ERRBUF_SIZE] = {};
    PcapHandle p(pcap_open_offline_with_tstamp_precision(path.c_str(), PCAP_TSTAMP_PRECISION_NANO, err));
    if (!p) throw std::runtime_error(path + ": " + err);
    if (linktype) *linktype = pcap_datalink(p.get());
    std::vector<PcapRecord> out;
    pcap_pkthdr* h = nullptr;
    const u_char* data = nullptr;
    int rc = 0;
    while ((rc = pcap_next_ex(p.get(), &h, &data)) == 1)
        out.push_back({uint64_t(h->ts.tv_sec) * 1000000000u + uint64_t(h->ts.tv_usec), Bytes(data, data + h->caplen)});
    if (rc != PCAP_ERROR_BREAK) throw std::runtime_error(path + ": " + pcap_geterr(p.get()));
    return out;
}

}  // namespace optgate::test
