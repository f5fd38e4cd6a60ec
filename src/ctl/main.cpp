// optgatectl: the operator's command line (docs/optgatectl.md).
#include <cstdio>
#include <cstring>
#include <string_view>

#include "ctl/commands.hpp"

namespace {

struct Command {
    std::string_view name;
    std::string_view usage;
    int (*run)(int argc, char** argv);  // argv[0] is the command name
};

constexpr Command kCommands[] = {
    {"check", "check FILE [--consent C]   validate a policy (and a consent file)", optgate::ctl::check},
};

void usage(FILE* out) {
    std::fprintf(out, "usage: optgatectl COMMAND [ARGS]\n\ncommands:\n");
    for (const auto& c : kCommands) std::fprintf(out, "  %.*s\n", int(c.usage.size()), c.usage.data());
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
