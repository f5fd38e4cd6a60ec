// Why a control connection ended, as the control client's connection loop
// records it (control_client.cpp): one typed value instead of exception
// text, read by the backoff, the log line and the reporters (an older
// consentd that refuses a frame the client sent).
#pragma once

#include <cstdint>
#include <string>

#include "proto/wire.hpp"

namespace optgate::proto {

struct ConnectionEnd {
    enum class Kind : uint8_t {
        stopped,         // stop() was called
        connect_failed,  // resolving, connecting or the TLS handshake failed (before consentd's welcome)
        io_error,        // the connection broke after the welcome (read or write error, closed by the peer)
        timeout,         // no welcome within connect_timeout, or nothing heard for three heartbeat intervals
        peer_goodbye,    // consentd said goodbye (`code`)
        frame_refused,   // consentd refused a frame it does not know or take (an older or limited consentd)
        protocol_error,  // we refused what consentd sent and said goodbye (`code`: protocol error, policy rejected)
    };
    Kind kind = Kind::io_error;
    Goodbye::Code code = Goodbye::Code::shutdown;  // peer_goodbye, frame_refused, protocol_error
    std::string message;                           // what happened, for the log
};

// Whether a goodbye says that the peer refused a frame type it does not
// know (every consentd answers one with protocol error "malformed frame:
// unknown frame type") or does not take (code unsupported). The one place
// the client reads a peer's goodbye text: an older consentd has no other
// way to say it.
bool refuses_frame(const Goodbye& g) noexcept;

}  // namespace optgate::proto
