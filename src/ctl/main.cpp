// optgatectl: the operator's command line (docs/optgatectl.md).
#include <cstdio>
#include <cstring>
#include <string_view>

#include "ctl/commands.hpp"

namespace {

struct Command {
    std::string_view name;
    std::string_view usage;             // arguments, as in "grant SUB PURPOSE ..."
    std::string_view summary;           // what it does
    int (*run)(int argc, char** argv);  // argv[0] is the command name
};

constexpr Command kCommands[] = {
    {"check", "check FILE [--consent C]", "validate a policy (and a consent file)", optgate::ctl::check},
    {"grant", "grant SUB PURPOSE --source S --notice-version V [--wait[=T]]", "record an opt-in", optgate::ctl::grant},
    {"revoke", "revoke SUB PURPOSE --source S [--wait[=T]]", "record a withdrawal", optgate::ctl::revoke},
    {"show", "show SUB [--history N] [--utc] [--json]",
     "a subscriber's consents (opted in since when), addresses, history", optgate::ctl::show},
    {"bind", "bind ADDRESS SUB [--source S] [--wait[=T]]", "assign an address or IPv6 prefix", optgate::ctl::bind},
    {"unbind", "unbind ADDRESS [--subscriber SUB] [--source S] [--wait[=T]]", "release an address",
     optgate::ctl::unbind},
    {"binding", "binding ADDRESS [--at TIME] [--utc] [--json]", "who held an address, now or at a time",
     optgate::ctl::binding},
    {"import", "import FILE [--format ndjson|csv]", "bulk-load subscribers", optgate::ctl::import_file},
    {"reload", "reload", "make consentd re-read its policy", optgate::ctl::reload},
    {"dataplanes", "dataplanes [--json]", "data planes connected to consentd, applied seq, lag",
     optgate::ctl::dataplanes},
    {"disclosures", "disclosures SUB [--from YYYY-MM-DD] [--to YYYY-MM-DD] [--json]",
     "identifiers passed and stripped about a subscriber, per day and collector", optgate::ctl::disclosures},
    {"verify-ledger", "verify-ledger DB [--receipt FILE]",
     "check a consentd ledger (SQLite file or PostgreSQL database), or a receipt, offline",
     optgate::ctl::verify_ledger},
    {"copy-ledger", "copy-ledger FROM TO", "copy a ledger into another store (SQLite to PostgreSQL), verified",
     optgate::ctl::copy_ledger},
    {"receipt", "receipt SUB SEQ [--json]", "the consent receipt of a grant or revoke", optgate::ctl::receipt},
};

void usage(FILE* out) {
    std::fprintf(out, "usage: optgatectl COMMAND [ARGS]\n\ncommands:\n");
    for (const auto& c : kCommands)
        std::fprintf(out, "  %.*s\n      %.*s\n", int(c.usage.size()), c.usage.data(), int(c.summary.size()),
                     c.summary.data());
    std::fprintf(out, "\n'optgatectl COMMAND --help' for a command's options; docs/optgatectl.md\n");
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2 || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (const auto& c : kCommands)
        if (c.name == argv[1]) return c.run(argc - 1, argv + 1);
    std::fprintf(stderr, "optgatectl: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
