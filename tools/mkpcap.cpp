// optgate-mkpcap OUT.pcap: writes the demo's sample traffic (sample_traffic.hpp).
#include <cstdio>
#include <exception>

#include "sample_traffic.hpp"

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: optgate-mkpcap OUT.pcap\n");
        return 2;
    }
    try {
        optgate::test::write_pcap(argv[1], optgate::tools::sample_traffic());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "optgate-mkpcap: %s\n", e.what());
        return 2;
    }
    return 0;
}
