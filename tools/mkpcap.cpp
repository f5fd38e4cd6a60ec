// optgate-mkpcap [--encapsulated | --fragmented] OUT.pcap: writes the demo's
// sample traffic (sample_traffic.hpp), the same mixed with encapsulations, or
// the same cut into IP fragments.
#include <cstdio>
#include <exception>
#include <string_view>

#include "sample_traffic.hpp"

int main(int argc, char** argv) {
    const std::string_view option = argc == 3 ? std::string_view(argv[1]) : std::string_view();
    const bool encapsulated = option == "--encapsulated", fragmented = option == "--fragmented";
    if (argc != 2 && !encapsulated && !fragmented) {
        std::fprintf(stderr, "usage: optgate-mkpcap [--encapsulated | --fragmented] OUT.pcap\n");
        return 2;
    }
    try {
        optgate::test::write_pcap(argv[argc - 1], encapsulated ? optgate::tools::encapsulated_traffic()
                                                  : fragmented ? optgate::tools::fragmented_traffic()
                                                               : optgate::tools::sample_traffic());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "optgate-mkpcap: %s\n", e.what());
        return 2;
    }
    return 0;
}
