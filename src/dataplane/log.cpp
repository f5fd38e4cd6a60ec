#include "dataplane/log.hpp"

#include <rte_log.h>

#include <cstdio>

namespace optgate::dataplane {

namespace {
int g_type = RTE_LOGTYPE_USER1;

uint32_t rte_level(Level l) {
    switch (l) {
    case Level::error: return RTE_LOG_ERR;
    case Level::warning: return RTE_LOG_WARNING;
    case Level::info: return RTE_LOG_INFO;
    case Level::debug: return RTE_LOG_DEBUG;
    }
    return RTE_LOG_INFO;
}

const char* tag(Level l) {
    switch (l) {
    case Level::error: return "error: ";
    case Level::warning: return "warning: ";
    default: return "";
    }
}
}  // namespace

void init_logging() {
    // EAL logs to stdout (and syslog) by default; one stream is easier to
    // collect (journald takes stderr) and keeps stdout for the summary.
    rte_openlog_stream(stderr);
    const int t = rte_log_register_type_and_pick_level("optgate", RTE_LOG_INFO);
    if (t >= 0) g_type = t;
}

bool set_log_level(const std::string& level) {
    Level l;
    if (level == "error") l = Level::error;
    else if (level == "warning") l = Level::warning;
    else if (level == "info") l = Level::info;
    else if (level == "debug") l = Level::debug;
    else return false;
    rte_log_set_level(uint32_t(g_type), rte_level(l));
    return true;
}

void log(Level level, const std::string& message) {
    rte_log(rte_level(level), uint32_t(g_type), "optgate: %s%s\n", tag(level), message.c_str());
}

}  // namespace optgate::dataplane
