// consentd's log: one line per message on stderr (journald under systemd,
// which reads the "<N>" priority prefix sd-daemon(3) defines).
#pragma once

#include <string_view>

namespace optgate::consentd {

enum class LogLevel { error = 3, warning = 4, info = 6 };

void log(LogLevel level, std::string_view message);
inline void log_error(std::string_view m) { log(LogLevel::error, m); }
inline void log_warning(std::string_view m) { log(LogLevel::warning, m); }
inline void log_info(std::string_view m) { log(LogLevel::info, m); }

}  // namespace optgate::consentd
