#include "proto/endpoint.hpp"

#include "core/addr.hpp"

namespace optgate::proto {

std::optional<Endpoint> Endpoint::parse(std::string_view text, std::string& error) {
    Endpoint e;
    const bool explicit_unix = text.starts_with("unix:");
    if (explicit_unix) text.remove_prefix(5);
    if (explicit_unix || text.find('/') != std::string_view::npos) {
        e.kind = Kind::unix_socket;
        e.path = std::string(text);
        if (e.path.empty()) {
            error = "empty Unix socket path";
            return std::nullopt;
        }
        return e;
    }
    e.kind = Kind::tcp;
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos || colon + 1 == text.size()) {
        error = "'" + std::string(text) + "' is neither a Unix socket path (with a '/') nor HOST:PORT";
        return std::nullopt;
    }
    std::string_view host = text.substr(0, colon);
    const std::string_view port = text.substr(colon + 1);
    if (host.starts_with('[') && host.ends_with(']')) {
        host = host.substr(1, host.size() - 2);
    } else if (host.find(':') != std::string_view::npos) {
        error = "write an IPv6 address in brackets: [" + std::string(host) + "]:" + std::string(port);
        return std::nullopt;
    }
    if (host.empty()) {
        error = "missing host in '" + std::string(text) + "'";
        return std::nullopt;
    }
    unsigned value = 0;
    for (char c : port) {
        if (c < '0' || c > '9' || value > 65535) {
            error = "port '" + std::string(port) + "' is not a number 1..65535";
            return std::nullopt;
        }
        value = value * 10 + unsigned(c - '0');
    }
    if (value == 0 || value > 65535) {
        error = "port '" + std::string(port) + "' is not a number 1..65535";
        return std::nullopt;
    }
    e.host = std::string(host);
    e.port = uint16_t(value);
    return e;
}

std::vector<std::string_view> split_comma_list(std::string_view text) {
    std::vector<std::string_view> items;
    for (;;) {
        const size_t comma = text.find(',');
        std::string_view item = text.substr(0, comma);
        while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
        while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
        items.push_back(item);
        if (comma == std::string_view::npos) return items;
        text.remove_prefix(comma + 1);
    }
}

std::optional<std::vector<Endpoint>> Endpoint::parse_list(std::string_view text, std::string& error) {
    const auto items = split_comma_list(text);
    if (items.size() > kMaxList) {
        error = "more than " + std::to_string(kMaxList) + " endpoints";
        return std::nullopt;
    }
    std::vector<Endpoint> list;
    for (const auto item : items) {
        if (item.empty()) {
            error = items.size() == 1 ? "no endpoint" : "an empty endpoint in the list";
            return std::nullopt;
        }
        auto e = parse(item, error);
        if (!e) return std::nullopt;
        for (const auto& seen : list)
            if (seen == *e) {
                error = "'" + e->to_string() + "' is in the list twice";
                return std::nullopt;
            }
        list.push_back(std::move(*e));
    }
    return list;
}

std::string Endpoint::to_string(const std::vector<Endpoint>& list) {
    std::string s;
    for (const auto& e : list) {
        if (!s.empty()) s += ',';
        s += e.to_string();
    }
    return s;
}

std::string Endpoint::to_string() const {
    if (kind == Kind::unix_socket) return path;
    if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
    return host + ":" + std::to_string(port);
}

bool Endpoint::is_loopback() const {
    if (kind != Kind::tcp) return false;
    if (host == "localhost") return true;
    const auto a = IpAddr::parse(host);
    if (!a) return false;
    return a->family == Family::v4 ? a->bytes[0] == 127 : *a == *IpAddr::parse("::1");
}

}  // namespace optgate::proto
