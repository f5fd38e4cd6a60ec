// systemd readiness (Type=notify): one datagram to $NOTIFY_SOCKET, as
// sd_notify(3) specifies. Written here rather than linking libsystemd for
// these few lines; the protocol is stable and documented as such. Does
// nothing when not started by systemd.
#pragma once

#include <string_view>

namespace optgate::consentd {

// Sends e.g. "READY=1" or "STOPPING=1"; returns whether a message was sent.
bool sd_notify_state(std::string_view state);

}  // namespace optgate::consentd
