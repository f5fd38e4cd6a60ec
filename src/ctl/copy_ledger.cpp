// optgatectl copy-ledger FROM TO: a consentd ledger copied into another
// store, typically an SQLite file into a PostgreSQL database
// (docs/scale-out.md, "Moving a ledger to PostgreSQL"). FROM is verified
// first, every event's hash is computed again on arrival, and TO is
// verified at the end; exit 0 and one line when TO ends at FROM's head, 1
// and the reason otherwise (nothing is committed to TO then).
#include <cstdio>
#include <cstring>

#include "consentd/copy_ledger.hpp"
#include "consentd/database.hpp"
#include "ctl/commands.hpp"

namespace optgate::ctl {

int copy_ledger(int argc, char** argv) {
    const char* from = nullptr;
    const char* to = nullptr;
    bool usage = false, help = false;
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "-h") || !std::strcmp(argv[i], "--help"))
            help = true;
        else if (argv[i][0] != '-' && !from)
            from = argv[i];
        else if (argv[i][0] != '-' && !to)
            to = argv[i];
        else
            usage = true;
    }
    if (help || usage || !from || !to) {
        std::fprintf(help ? stdout : stderr,
                     "usage: optgatectl copy-ledger FROM TO\n"
                     "  FROM, TO: an SQLite ledger file, or a PostgreSQL database as\n"
                     "  postgresql://HOST/DB or 'postgresql:host=/run/postgresql dbname=optgate'.\n"
                     "  TO must be new or empty; no consentd may run on either.\n");
        return help ? 0 : 2;
    }
    const auto r = consentd::copy_ledger(from, to);
    const std::string to_name = consentd::printable_locator(to);
    if (!r.ok) {
        std::fprintf(stderr, "optgatectl copy-ledger: %s\n", r.problem.c_str());
        return 1;
    }
    std::string side;
    for (const auto& [table, n] : r.rows)
        if (n) side += ", " + std::to_string(n) + " " + table + " rows";
    std::printf("%s: ok: %llu events copied, head %s, verified%s\n", to_name.c_str(),
                static_cast<unsigned long long>(r.events), r.head_hash.c_str(), side.c_str());
    return 0;
}

}  // namespace optgate::ctl
