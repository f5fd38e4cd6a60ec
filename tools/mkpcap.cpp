// optgate-mkpcap [--encapsulated] OUT.pcap: writes the demo's sample traffic
// (sample_traffic.hpp), or the same mixed with encapsulations.
#include <cstdio>
#include <exception>
#include <string_view>

#include "sample_traffic.hpp"

int main(int argc, char** argv) {
    const bool encapsulated = argc == 3 && std::string_view(argv[1]) == "--encapsulated";
    if (argc != 2 && !encapsulated) {
        std::fprintf(stderr, "usage: optgate-mkpcap [--encapsulated] OUT.pcap\n");
        return 2;
    }
    try {
        optgate::test::write_pcap(
            argv[argc - 1], encapsulated ? optgate::tools::encapsulated_traffic() : optgate::tools::sample_traffic());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "optgate-mkpcap: %s\n", e.what());
        return 2;
    }
    return 0;
}
