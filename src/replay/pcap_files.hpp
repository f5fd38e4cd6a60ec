// pcap input and output for optgate-replay, through libpcap.
//
// The output keeps the input's timestamp precision (micro or nano), link
// type and snap length. It is written to a temporary file next to the target
// and renamed into place only by commit(), so a failed run never leaves a
// partial file that looks complete.
#pragma once

#include <pcap/pcap.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace optgate::replay {

// Thrown with a message that names the file; main() prints it and exits 2.
struct FileError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

class PcapReader {
public:
    explicit PcapReader(const std::string& path);  // throws FileError
    ~PcapReader();
    PcapReader(const PcapReader&) = delete;
    PcapReader& operator=(const PcapReader&) = delete;

    // Next packet; false at end of file. Throws FileError on a read error.
    // `data` stays valid until the next call.
    bool next(const uint8_t*& data, uint32_t& caplen, uint32_t& origlen, uint64_t& ts_ns);

    int linktype() const { return pcap_datalink(handle_); }
    int snaplen() const { return pcap_snapshot(handle_); }
    bool nanosecond() const { return nano_; }

private:
    std::string path_;
    pcap_t* handle_ = nullptr;
    bool nano_ = false;
};

class PcapWriter {
public:
    PcapWriter(const std::string& path, int linktype, int snaplen, bool nanosecond);  // throws FileError
    ~PcapWriter();  // removes the temporary file unless committed
    PcapWriter(const PcapWriter&) = delete;
    PcapWriter& operator=(const PcapWriter&) = delete;

    void write(const uint8_t* data, uint32_t caplen, uint32_t origlen, uint64_t ts_ns);
    void commit();  // flush, close, rename into place; throws FileError

private:
    std::string path_, temp_path_;
    pcap_t* dead_ = nullptr;
    pcap_dumper_t* dumper_ = nullptr;
    bool nano_ = false;
    bool committed_ = false;
};

}  // namespace optgate::replay
