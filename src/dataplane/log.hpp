// The data plane's log: one stream (stderr) for optgate's lines and EAL's,
// through DPDK's logging so that levels work the same for both
// (`--log-level=optgate:debug`, or log_level in the config).
#pragma once

#include <string>

namespace optgate::dataplane {

enum class Level { error, warning, info, debug };

// Before rte_eal_init: routes EAL's log to stderr, registers "optgate".
void init_logging();
// "error", "warning", "info", "debug"; false for anything else.
bool set_log_level(const std::string& level);
void log(Level level, const std::string& message);

}  // namespace optgate::dataplane
