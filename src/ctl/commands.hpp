// optgatectl subcommands. Each lives in its own file and is listed in
// main.cpp's table. A command returns the process exit status.
#pragma once

namespace optgate::ctl {

// check FILE [--consent C]: validate a policy and optionally a consent file
// against it (exit 0 valid, 1 invalid or unreadable, 2 usage; check.cpp).
int check(int argc, char** argv);

}  // namespace optgate::ctl
