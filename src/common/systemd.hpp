// systemd's service notifications (sd_notify(3)): readiness (Type=notify)
// and the service watchdog (WatchdogSec=, sd_watchdog_enabled(3)), shared by
// optgate and consentd. Through libsystemd rather than the datagram protocol
// by hand: sd_watchdog_enabled() also honours WATCHDOG_PID (a watchdog meant
// for another process of the unit is not ours) and sd_notify() knows every
// form of $NOTIFY_SOCKET systemd uses (paths, abstract names, vsock).
// Everything here does nothing when not started by systemd.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace optgate::systemd {

// Sends e.g. "READY=1", "STOPPING=1" or "WATCHDOG=1" (several as lines);
// returns whether a message was sent.
bool notify(std::string_view state);

// How often to send WATCHDOG=1: half of the unit's WatchdogSec= (so one
// late ping is not yet a restart), or zero when this process has no watchdog.
std::chrono::microseconds watchdog_interval();

// The data plane's watchdog condition (docs/deploy.md#watchdog): every
// worker advances its progress count on each loop iteration, busy or idle;
// the control thread pings systemd only if each count moved since its last
// look, so a worker caught in a loop or a driver call gets the unit
// restarted even though the process is alive.
class ProgressCheck {
public:
    // Whether every count moved since the previous call (the first call:
    // since zero). Returns the index of the first count that did not in
    // `stalled`.
    bool advanced(std::span<const uint64_t> counts, size_t& stalled);

private:
    std::vector<uint64_t> last_;
};

}  // namespace optgate::systemd
