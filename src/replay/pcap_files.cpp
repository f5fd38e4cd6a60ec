#include "replay/pcap_files.hpp"

#include <unistd.h>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace optgate::replay {
namespace {

constexpr uint32_t kMagicNano = 0xa1b23c4d;
constexpr uint32_t kMagicNanoSwapped = 0x4d3cb2a1;

// libpcap converts on request but does not say what the file holds; the
// magic number does.
bool file_is_nanosecond(const std::string& path) {
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) return false;
    uint32_t magic = 0;
    const bool ok = std::fread(&magic, sizeof magic, 1, f) == 1;
    std::fclose(f);
    return ok && (magic == kMagicNano || magic == kMagicNanoSwapped);
}

}  // namespace

PcapReader::PcapReader(const std::string& path) : path_(path), nano_(file_is_nanosecond(path)) {
    char err[PCAP_ERRBUF_SIZE] = {};
    handle_ = pcap_open_offline_with_tstamp_precision(
        path.c_str(), nano_ ? PCAP_TSTAMP_PRECISION_NANO : PCAP_TSTAMP_PRECISION_MICRO, err);
    if (!handle_) throw FileError(path + ": cannot read as pcap: " + err);
}

PcapReader::~PcapReader() {
    if (handle_) pcap_close(handle_);
}

bool PcapReader::next(const uint8_t*& data, uint32_t& caplen, uint32_t& origlen, uint64_t& ts_ns) {
    pcap_pkthdr* hdr = nullptr;
    const u_char* bytes = nullptr;
    const int rc = pcap_next_ex(handle_, &hdr, &bytes);
    if (rc == PCAP_ERROR_BREAK) return false;
    if (rc != 1) throw FileError(path_ + ": " + pcap_geterr(handle_));
    data = bytes;
    caplen = hdr->caplen;
    origlen = hdr->len;
    ts_ns = uint64_t(hdr->ts.tv_sec) * 1000000000ull + uint64_t(hdr->ts.tv_usec) * (nano_ ? 1 : 1000);
    return true;
}

PcapWriter::PcapWriter(const std::string& path, int linktype, int snaplen, bool nanosecond)
    : path_(path), temp_path_(path + ".partial"),
      dead_(pcap_open_dead_with_tstamp_precision(
          linktype, snaplen, nanosecond ? PCAP_TSTAMP_PRECISION_NANO : PCAP_TSTAMP_PRECISION_MICRO)),
      nano_(nanosecond) {
    if (!dead_) throw FileError(path + ": cannot create a pcap writer");
    dumper_ = pcap_dump_open(dead_, temp_path_.c_str());
    if (!dumper_) {
        const std::string msg = pcap_geterr(dead_);
        pcap_close(dead_);
        dead_ = nullptr;
        throw FileError(path + ": cannot write: " + msg);
    }
}

PcapWriter::~PcapWriter() {
    if (dumper_) pcap_dump_close(dumper_);
    if (dead_) pcap_close(dead_);
    if (!committed_) ::unlink(temp_path_.c_str());
}

void PcapWriter::write(const uint8_t* data, uint32_t caplen, uint32_t origlen, uint64_t ts_ns) {
    pcap_pkthdr hdr{};
    hdr.ts.tv_sec = time_t(ts_ns / 1000000000ull);
    const uint64_t frac = ts_ns % 1000000000ull;
    hdr.ts.tv_usec = suseconds_t(nano_ ? frac : frac / 1000);
    hdr.caplen = caplen;
    hdr.len = origlen;
    pcap_dump(reinterpret_cast<u_char*>(dumper_), &hdr, data);
}

void PcapWriter::commit() {
    if (pcap_dump_flush(dumper_) != 0) throw FileError(path_ + ": write failed: " + std::strerror(errno));
    FILE* f = pcap_dump_file(dumper_);
    if (f && (std::fflush(f) != 0 || ::fsync(fileno(f)) != 0))
        throw FileError(path_ + ": write failed: " + std::strerror(errno));
    pcap_dump_close(dumper_);
    dumper_ = nullptr;
    if (std::rename(temp_path_.c_str(), path_.c_str()) != 0)
        throw FileError(path_ + ": cannot rename " + temp_path_ + " into place: " + std::strerror(errno));
    committed_ = true;
}

}  // namespace optgate::replay
