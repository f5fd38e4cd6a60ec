#include "consentd/log.hpp"

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>

namespace optgate::consentd {

void log(LogLevel level, std::string_view message) {
    // Under systemd (JOURNAL_STREAM set) the journal takes the priority from
    // the prefix; on a terminal a word reads better.
    static const bool journal = std::getenv("JOURNAL_STREAM") != nullptr;
    static std::mutex mu;
    std::string line;
    if (journal) {
        line = "<" + std::to_string(int(level)) + ">";
    } else {
        line = level == LogLevel::error     ? "consentd: error: "
               : level == LogLevel::warning ? "consentd: warning: "
                                            : "consentd: ";
    }
    line.append(message);
    line.push_back('\n');
    std::lock_guard lk(mu);
    std::fwrite(line.data(), 1, line.size(), stderr);
    std::fflush(stderr);
}

}  // namespace optgate::consentd
