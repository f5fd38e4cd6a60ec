#include "dataplane/log.hpp"

#include <rte_log.h>

#include <cstdio>
#include <optional>

namespace optgate::dataplane {

namespace {
// The "optgate" log type, registered once (EAL's own types are registered
// by constructors the same way).
int log_type() {
    static const int type = [] {
        const int t = rte_log_register_type_and_pick_level("optgate", RTE_LOG_INFO);
        return t >= 0 ? t : int(RTE_LOGTYPE_USER1);
    }();
    return type;
}

std::optional<Level> parse_level(const std::string& level) {
    if (level == "error") return Level::error;
    if (level == "warning") return Level::warning;
    if (level == "info") return Level::info;
    if (level == "debug") return Level::debug;
    return std::nullopt;
}

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
    (void)log_type();
}

bool set_log_level(const std::string& level) {
    const auto l = parse_level(level);
    if (!l) return false;
    rte_log_set_level(uint32_t(log_type()), rte_level(*l));
    return true;
}

void log(Level level, const std::string& message) {
    rte_log(rte_level(level), uint32_t(log_type()), "optgate: %s%s\n", tag(level), message.c_str());
}

}  // namespace optgate::dataplane
