// optgatectl verify-ledger DB: offline check of a consentd ledger file (the
// hash chain and the derived tables); exit 0 and one line when consistent,
// exit 1 and the first inconsistency otherwise.
#include <cstdio>
#include <cstring>

#include "consentd/verify.hpp"
#include "ctl/commands.hpp"

namespace optgate::ctl {

int verify_ledger(int argc, char** argv) {
    if (argc != 2 || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "--help")) {
        std::fprintf(argc == 2 ? stdout : stderr, "usage: optgatectl verify-ledger DB\n");
        return argc == 2 ? 0 : 2;
    }
    const auto r = consentd::verify_ledger(argv[1]);
    if (!r.ok) {
        std::fprintf(stderr, "%s: INCONSISTENT: %s\n", argv[1], r.problem.c_str());
        return 1;
    }
    std::printf("%s: ok: %llu events, head %s, %llu consents, %llu bindings, %llu subscribers\n", argv[1],
                static_cast<unsigned long long>(r.events), r.head_hash.c_str(),
                static_cast<unsigned long long>(r.consents), static_cast<unsigned long long>(r.bindings),
                static_cast<unsigned long long>(r.subscribers));
    return 0;
}

}  // namespace optgate::ctl
