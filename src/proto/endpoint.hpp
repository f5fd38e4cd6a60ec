// Where consentd's data-plane service listens and data planes connect:
// a Unix socket path, or a TCP host and port.
//
//   "/run/optgate/consentd.sock", "unix:relative/path.sock"   Unix socket
//   "127.0.0.1:8471", "[::1]:8471", "consentd.example:8471"   TCP
//
// A data plane may name several consentd instances, comma-separated
// ("/run/optgate/consentd.sock,10.0.0.2:8471"): parse_list.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace optgate::proto {

struct Endpoint {
    enum class Kind : uint8_t { unix_socket, tcp };
    Kind kind = Kind::unix_socket;
    std::string path;  // unix_socket
    std::string host;  // tcp: a name or an address (IPv6 without brackets)
    uint16_t port = 0;

    // On failure returns nullopt and says why in `error`.
    static std::optional<Endpoint> parse(std::string_view text, std::string& error);
    // A comma-separated list of 1..kMaxList endpoints, none twice (so a
    // Unix socket path cannot contain a comma). Spaces around each are
    // ignored. On failure returns nullopt and says why in `error`.
    static constexpr size_t kMaxList = 16;
    static std::optional<std::vector<Endpoint>> parse_list(std::string_view text, std::string& error);
    static std::string to_string(const std::vector<Endpoint>& list);  // comma-separated

    std::string to_string() const;
    bool operator==(const Endpoint&) const = default;
    // A TCP endpoint whose host is a loopback address or "localhost".
    bool is_loopback() const;
};

// The items of a comma-separated list, spaces around each removed; an
// empty item stays (as ""), for the caller to refuse. "" is one empty item.
// Shared by the endpoint lists and optgatectl's list of consentd URLs.
std::vector<std::string_view> split_comma_list(std::string_view text);

}  // namespace optgate::proto
