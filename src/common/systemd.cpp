#include "common/systemd.hpp"

#include <systemd/sd-daemon.h>

#include <string>

namespace optgate::systemd {

bool notify(std::string_view state) { return sd_notify(0, std::string(state).c_str()) > 0; }

std::chrono::microseconds watchdog_interval() {
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) <= 0) return std::chrono::microseconds(0);
    return std::chrono::microseconds(usec / 2);
}

bool ProgressCheck::advanced(std::span<const uint64_t> counts, size_t& stalled) {
    last_.resize(counts.size(), 0);
    bool all = true;
    for (size_t i = 0; i < counts.size(); ++i) {
        if (counts[i] == last_[i] && all) {
            all = false;
            stalled = i;
        }
        last_[i] = counts[i];
    }
    return all;
}

}  // namespace optgate::systemd
