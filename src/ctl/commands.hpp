// optgatectl subcommands. Each lives in its own file and is listed in
// main.cpp's table. A command returns the process exit status.
#pragma once

namespace optgate::ctl {

// check FILE: validate a policy (exit 0 valid, 1 invalid).
int check(int argc, char** argv);

}  // namespace optgate::ctl
