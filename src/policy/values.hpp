// The scalar grammars of the policy language, independent of YAML: ports,
// durations, DSCP values, host patterns, names, HTTP tokens. Each parser
// returns nullopt and sets `error` to a message fragment that says what is
// wrong and what is expected ("port 0 is out of range: ports are 1..65535").
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/policy.hpp"

// policy::syntax (here and yaml_reader.hpp): the language of optgate's
// configuration files, shared by every program that reads one (policy and
// consent files, consentd's and optgate's configuration, API inputs).
namespace optgate::policy::syntax {

// Decimal digits only (no sign, no "0x", no exponent).
std::optional<uint64_t> parse_decimal(std::string_view text);

// "80" or "8000-8099" (1..65535, first <= last).
std::optional<PortRange> parse_port_range(std::string_view text, std::string& error);

// "<n>ms", "<n>s", "<n>m" or "<n>h"; > 0 and <= 24h.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text, std::string& error);
// "30d": a whole number of days within [min, max] (pseudonym key periods).
std::optional<unsigned> parse_days(std::string_view text, unsigned min, unsigned max, std::string& error);

// 0..63 or a standard name (cs0-cs7, af11-af43, ef, va/voice-admit, le,
// be/default), case-insensitive.
std::optional<uint8_t> parse_dscp(std::string_view text, std::string& error);

// "ads.example.net" or "*.tracker.example": DNS labels of [a-z0-9_-],
// lowercased, without a trailing dot, no port.
std::optional<HostPattern> parse_host_pattern(std::string_view text, std::string& error);

// RFC 9110 token (header field names): tchar (core/chars.hpp) only.
bool is_http_token(std::string_view s) noexcept;

// Purpose names: [a-z][a-z0-9_-]*, at most 32 characters.
bool is_purpose_name(std::string_view s) noexcept;
// Collector and exemption names: [A-Za-z0-9][A-Za-z0-9._-]*, at most 64.
bool is_rule_name(std::string_view s) noexcept;
// Subscriber ids in the consent file: 1..128 of [A-Za-z0-9._:@-].
bool is_subscriber_id(std::string_view s) noexcept;

// Headers the HTTP stage relies on to frame or route a request; stripping
// them would break the connection, so they cannot be identifiers.
bool is_protected_header(std::string_view lowercase_name) noexcept;
// The first such header whose name starts with `lowercase_prefix`, or "".
std::string_view protected_header_with_prefix(std::string_view lowercase_prefix) noexcept;

// Optimal string alignment distance (an adjacent swap counts as one edit).
size_t edit_distance(std::string_view a, std::string_view b);

// The candidate an operator most likely meant when typing `word`: close in
// edit distance (case-insensitive), or a candidate that `word` starts.
std::optional<std::string_view> closest_match(std::string_view word, const std::vector<std::string_view>& candidates);

// Two host patterns overlap when some host name matches both.
bool hosts_overlap(const HostPattern& a, const HostPattern& b) noexcept;
// Port lists overlap when either is empty (any port) or two ranges intersect.
bool ports_overlap(const std::vector<PortRange>& a, const std::vector<PortRange>& b) noexcept;

}  // namespace optgate::policy::syntax
