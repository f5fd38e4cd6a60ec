// Helpers for the policy loader tests: load YAML text, collect what the
// loader reported, and look for one diagnostic at an exact location.
#pragma once

#include <doctest/doctest.h>

#include <regex>
#include <string>
#include <string_view>
#include <vector>

#include "policy/loader.hpp"

namespace optgate::policy::testing {

using Severity = Diagnostic::Severity;

inline constexpr const char* kFile = "p.yaml";

// Required sections that a test's YAML leaves out are appended after it, so
// the lines of the test's own text keep their numbers from 1.
inline std::string with_defaults(std::string_view yaml) {
    std::string text(yaml);
    auto has = [&](const char* key) { return std::regex_search(text, std::regex(std::string("(^|\n)") + key + ":")); };
    std::string tail;
    if (!has("version")) tail += "version: 1\n";
    if (!has("purposes"))
        tail +=
            "purposes:\n"
            "  advertising: {description: Ads chosen for you., benefit: Fewer irrelevant ads., data: [device "
            "identifier], retention: 90 days}\n"
            "  analytics: {description: Counting visits., benefit: Better sites., data: [device identifier], "
            "retention: 13 months}\n";
    if (!has("identifiers")) tail += "identifiers:\n  dns_options: [{code: 8, name: ECS}]\n";
    if (!has("collectors")) tail += "collectors: []\n";
    if (!has("subscribers")) tail += "subscribers:\n  prefixes: [100.64.0.0/10, \"2001:db8:1000::/36\"]\n";
    if (!text.empty() && text.back() != '\n') text += '\n';
    return text + tail;
}

// Everything the loader reported for `yaml` as is (errors and warnings);
// empty when it loaded without a word.
inline std::vector<Diagnostic> diagnostics_raw(std::string_view yaml) {
    try {
        return load_policy_text(yaml, kFile).warnings;
    } catch (const PolicyError& e) {
        return e.diagnostics();
    }
}

inline std::vector<Diagnostic> diagnostics(std::string_view yaml) { return diagnostics_raw(with_defaults(yaml)); }

inline LoadedPolicy load(std::string_view yaml) { return load_policy_text(with_defaults(yaml), kFile); }

inline std::string joined(const std::vector<Diagnostic>& ds) {
    std::string out;
    for (const auto& d : ds) out += d.to_string() + "\n";
    return out.empty() ? "(no diagnostics)" : out;
}

inline size_t count(const std::vector<Diagnostic>& ds, Severity s) {
    size_t n = 0;
    for (const auto& d : ds) n += d.severity == s;
    return n;
}

// True when some diagnostic is exactly at line:column, has severity `s`, and
// its message contains every one of `parts`.
inline bool has(const std::vector<Diagnostic>& ds, int line, int column, const std::vector<std::string_view>& parts,
                Severity s = Severity::error) {
    for (const auto& d : ds) {
        if (d.line != line || d.column != column || d.severity != s || d.file != kFile) continue;
        bool all = true;
        for (auto p : parts) all = all && d.message.find(p) != std::string::npos;
        if (all) return true;
    }
    return false;
}

}  // namespace optgate::policy::testing

// Checks one diagnostic, printing all of them when it is missing.
#define CHECK_DIAG(ds, line, column, ...)                                           \
    CHECK_MESSAGE(::optgate::policy::testing::has(ds, line, column, {__VA_ARGS__}), \
                  ::optgate::policy::testing::joined(ds))
#define CHECK_WARNING(ds, line, column, ...)                                                      \
    CHECK_MESSAGE(::optgate::policy::testing::has(ds, line, column, {__VA_ARGS__},                \
                                                  ::optgate::policy::testing::Severity::warning), \
                  ::optgate::policy::testing::joined(ds))
