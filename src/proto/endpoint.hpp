// Where consentd's data-plane service listens and data planes connect:
// a Unix socket path, or a TCP host and port.
//
//   "/run/optgate/consentd.sock", "unix:relative/path.sock"   Unix socket
//   "127.0.0.1:8471", "[::1]:8471", "consentd.example:8471"   TCP
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace optgate::proto {

struct Endpoint {
    enum class Kind : uint8_t { unix_socket, tcp };
    Kind kind = Kind::unix_socket;
    std::string path;  // unix_socket
    std::string host;  // tcp: a name or an address (IPv6 without brackets)
    uint16_t port = 0;

    // On failure returns nullopt and says why in `error`.
    static std::optional<Endpoint> parse(std::string_view text, std::string& error);
    std::string to_string() const;
    // A TCP endpoint whose host is a loopback address or "localhost".
    bool is_loopback() const;
};

}  // namespace optgate::proto
