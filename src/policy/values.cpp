#include "policy/values.hpp"

#include <algorithm>
#include <array>
#include <charconv>

#include "core/chars.hpp"

namespace optgate::policy::syntax {

namespace {

bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }
bool is_lower(char c) noexcept { return c >= 'a' && c <= 'z'; }
bool is_upper(char c) noexcept { return c >= 'A' && c <= 'Z'; }
bool is_alnum(char c) noexcept { return is_digit(c) || is_lower(c) || is_upper(c); }

std::string quoted(std::string_view s) { return "'" + std::string(s) + "'"; }

}  // namespace

std::optional<uint64_t> parse_decimal(std::string_view text) {
    if (text.empty() || text.size() > 19 || !std::all_of(text.begin(), text.end(), is_digit)) return std::nullopt;
    uint64_t v = 0;
    std::from_chars(text.data(), text.data() + text.size(), v);
    return v;
}

std::optional<PortRange> parse_port_range(std::string_view text, std::string& error) {
    auto one = [&](std::string_view t) -> std::optional<uint16_t> {
        const auto v = parse_decimal(t);
        if (!v) {
            error = quoted(text) + " is not a port: write a number 1..65535 or a range like \"8000-8099\"";
            return std::nullopt;
        }
        if (*v < 1 || *v > 65535) {
            error = "port " + std::string(t) + " is out of range: ports are 1..65535";
            return std::nullopt;
        }
        return uint16_t(*v);
    };
    const auto dash = text.find('-');
    if (dash == std::string_view::npos) {
        const auto p = one(text);
        if (!p) return std::nullopt;
        return PortRange{*p, *p};
    }
    const auto first = one(text.substr(0, dash));
    if (!first) return std::nullopt;
    const auto last = one(text.substr(dash + 1));
    if (!last) return std::nullopt;
    if (*first > *last) {
        error = "port range " + quoted(text) + " is backwards: write the lower port first";
        return std::nullopt;
    }
    return PortRange{*first, *last};
}

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text, std::string& error) {
    size_t digits = 0;
    while (digits < text.size() && is_digit(text[digits])) ++digits;
    const auto number = parse_decimal(text.substr(0, digits));
    const std::string_view unit = text.substr(digits);
    const bool unit_is_word = !unit.empty() && std::all_of(unit.begin(), unit.end(), is_lower);
    if (!number || !unit_is_word) {
        error = quoted(text) + " is not a duration: write a whole number and a unit, e.g. 30s, 500ms, 2m, 1h";
        return std::nullopt;
    }
    uint64_t ms_per_unit = 0;
    if (unit == "ms")
        ms_per_unit = 1;
    else if (unit == "s")
        ms_per_unit = 1000;
    else if (unit == "m")
        ms_per_unit = uint64_t{60} * 1000;
    else if (unit == "h")
        ms_per_unit = uint64_t{3600} * 1000;
    else {
        error = "unknown unit " + quoted(unit) + " in duration " + quoted(text) + ": units are ms, s, m, h";
        return std::nullopt;
    }
    constexpr uint64_t kMaxMs = 24ull * 3600 * 1000;
    if (*number == 0) {
        error = "duration " + quoted(text) + " must be greater than zero";
        return std::nullopt;
    }
    if (*number > kMaxMs / ms_per_unit) {
        error = "duration " + quoted(text) + " is longer than the maximum of 24h";
        return std::nullopt;
    }
    return std::chrono::milliseconds(*number * ms_per_unit);
}

std::optional<unsigned> parse_days(std::string_view text, unsigned min, unsigned max, std::string& error) {
    const bool has_unit = !text.empty() && text.back() == 'd';
    const auto number = has_unit ? parse_decimal(text.substr(0, text.size() - 1)) : std::nullopt;
    if (!number) {
        error = quoted(text) + " is not a number of days: write e.g. 30d";
        return std::nullopt;
    }
    if (*number < min || *number > max) {
        error = quoted(text) + " is out of range: from " + std::to_string(min) + "d to " + std::to_string(max) + "d";
        return std::nullopt;
    }
    return unsigned(*number);
}

std::optional<uint8_t> parse_dscp(std::string_view text, std::string& error) {
    if (const auto v = parse_decimal(text)) {
        if (*v > 63) {
            error = "DSCP " + std::string(text) + " is out of range: DSCP values are 0..63";
            return std::nullopt;
        }
        return uint8_t(*v);
    }
    struct Named {
        std::string_view name;
        uint8_t value;
    };
    // RFC 2474 (class selectors), RFC 2597 (AF), RFC 3246 (EF),
    // RFC 5865 (voice-admit), RFC 8622 (lower effort).
    static constexpr std::array<Named, 24> kNames{{
        {"be", 0},    {"default", 0}, {"cs0", 0},   {"cs1", 8},   {"cs2", 16},  {"cs3", 24},
        {"cs4", 32},  {"cs5", 40},    {"cs6", 48},  {"cs7", 56},  {"af11", 10}, {"af12", 12},
        {"af13", 14}, {"af21", 18},   {"af22", 20}, {"af23", 22}, {"af31", 26}, {"af32", 28},
        {"af33", 30}, {"af41", 34},   {"af42", 36}, {"af43", 38}, {"ef", 46},   {"le", 1},
    }};
    const std::string lower = ascii_lower(text);
    if (lower == "va" || lower == "voice-admit") return uint8_t(44);
    for (const auto& n : kNames)
        if (n.name == lower) return n.value;
    error = quoted(text) + " is not a DSCP value: write 0..63 or a name (cs0-cs7, af11-af43, ef, va, le, be)";
    return std::nullopt;
}

std::optional<HostPattern> parse_host_pattern(std::string_view text, std::string& error) {
    auto fail = [&](const std::string& why) -> std::optional<HostPattern> {
        error = quoted(text) + " is not a host name: " + why;
        return std::nullopt;
    };
    HostPattern h;
    std::string_view name = text;
    if (name.starts_with("*.")) {
        h.wildcard = true;
        name.remove_prefix(2);
    }
    if (name.ends_with('.')) name.remove_suffix(1);
    if (name.find("://") != std::string_view::npos) return fail("write the host alone, without a scheme");
    if (name.find(':') != std::string_view::npos || name.find('/') != std::string_view::npos)
        return fail("write the host alone, without a port or path (use 'ports' for ports)");
    if (name.find('*') != std::string_view::npos)
        return fail("a wildcard is only allowed as a leading \"*.\" (e.g. \"*.tracker.example\")");
    if (name.empty()) return fail(h.wildcard ? "\"*.\" needs a domain after it" : "it is empty");
    if (name.size() > 253) return fail("it is longer than 253 characters");
    size_t label = 0;
    for (size_t i = 0; i <= name.size(); ++i) {
        if (i == name.size() || name[i] == '.') {
            if (label == 0) return fail("it has an empty label");
            if (label > 63) return fail("a label is longer than 63 characters");
            label = 0;
            continue;
        }
        const char c = name[i];
        if (!is_alnum(c) && c != '-' && c != '_')
            return fail("'" + std::string(1, c) + "' is not allowed in host names");
        ++label;
    }
    h.name = ascii_lower(name);
    return h;
}

bool is_http_token(std::string_view s) noexcept {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return http_chars::is_tchar(uint8_t(c)); });
}

bool is_purpose_name(std::string_view s) noexcept {
    if (s.empty() || s.size() > 32 || !is_lower(s[0])) return false;
    return std::all_of(s.begin(), s.end(), [](char c) { return is_lower(c) || is_digit(c) || c == '_' || c == '-'; });
}

bool is_rule_name(std::string_view s) noexcept {
    if (s.empty() || s.size() > 64 || !is_alnum(s[0])) return false;
    return std::all_of(s.begin(), s.end(), [](char c) { return is_alnum(c) || c == '.' || c == '_' || c == '-'; });
}

bool is_subscriber_id(std::string_view s) noexcept {
    if (s.empty() || s.size() > 128) return false;
    constexpr std::string_view kSpecials = "._:@-";
    return std::all_of(s.begin(), s.end(),
                       [&](char c) { return is_alnum(c) || kSpecials.find(c) != std::string_view::npos; });
}

namespace {
constexpr std::string_view kProtectedHeaders[] = {"host", "content-length", "transfer-encoding", "connection",
                                                  "upgrade"};
}

bool is_protected_header(std::string_view n) noexcept {
    return std::find(std::begin(kProtectedHeaders), std::end(kProtectedHeaders), n) != std::end(kProtectedHeaders);
}

std::string_view protected_header_with_prefix(std::string_view prefix) noexcept {
    for (std::string_view h : kProtectedHeaders)
        if (h.starts_with(prefix)) return h;
    return {};
}

size_t edit_distance(std::string_view a, std::string_view b) {
    // Rows i-2, i-1 and i of the usual dynamic programme.
    std::vector<size_t> prev2(b.size() + 1), prev(b.size() + 1), cur(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
        cur[0] = i;
        for (size_t j = 1; j <= b.size(); ++j) {
            const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost});
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                cur[j] = std::min(cur[j], prev2[j - 2] + 1);
        }
        prev2.swap(prev);
        prev.swap(cur);
    }
    return prev[b.size()];
}

std::optional<std::string_view> closest_match(std::string_view word, const std::vector<std::string_view>& candidates) {
    const std::string lower = ascii_lower(word);
    std::optional<std::string_view> best;
    size_t best_distance = 0;
    // Allow about one typo per three letters, and at least one.
    const size_t limit = std::max<size_t>(1, lower.size() / 3);
    for (const auto c : candidates) {
        const size_t d = edit_distance(lower, ascii_lower(c));
        if (d <= limit && (!best || d < best_distance)) {
            best = c;
            best_distance = d;
        }
    }
    if (best) return best;
    // A truncated key ("staleness" for "staleness_limit").
    if (lower.size() >= 4)
        for (const auto c : candidates)
            if (ascii_lower(c).starts_with(lower)) return c;
    return std::nullopt;
}

bool hosts_overlap(const HostPattern& a, const HostPattern& b) noexcept {
    if (!a.wildcard && !b.wildcard) return a.name == b.name;
    if (a.wildcard && !b.wildcard) return a.matches(b.name);
    if (!a.wildcard && b.wildcard) return b.matches(a.name);
    // Two wildcards share names when one suffix is the other or lies under it.
    return a.name == b.name || HostPattern{b.name, true}.matches(a.name) || HostPattern{a.name, true}.matches(b.name);
}

bool ports_overlap(const std::vector<PortRange>& a, const std::vector<PortRange>& b) noexcept {
    if (a.empty() || b.empty()) return true;
    for (const auto& x : a)
        for (const auto& y : b)
            if (x.first <= y.last && y.first <= x.last) return true;
    return false;
}

}  // namespace optgate::policy::syntax
