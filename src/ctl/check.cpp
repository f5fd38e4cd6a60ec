// optgatectl check FILE [--consent CONSENT_FILE]
//
// Validates a policy (and optionally a consent file against it) with the
// same loader every program uses. Valid: warnings on stderr, one summary
// line per file on stdout, exit 0. Invalid or unreadable: every diagnostic
// on stderr as FILE:LINE:COLUMN: message, exit 1. Usage errors: exit 2.
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

#include "ctl/commands.hpp"
#include "policy/loader.hpp"
#include "policy/usability.hpp"

namespace optgate::ctl {

namespace {

constexpr std::string_view kUsage = "usage: optgatectl check POLICY_FILE [--consent CONSENT_FILE]\n";

int usage_error(const std::string& why) {
    std::fprintf(stderr, "optgatectl check: %s\n%.*s", why.c_str(), int(kUsage.size()), kUsage.data());
    return 2;
}

std::string count(size_t n, std::string_view one, std::string_view many) {
    return std::to_string(n) + " " + std::string(n == 1 ? one : many);
}

void print(const std::vector<policy::Diagnostic>& ds) {
    for (const auto& d : ds) std::fprintf(stderr, "%s\n", d.to_string().c_str());
}

std::string policy_summary(const Policy& p) {
    size_t headers = 0;
    for (const auto& id : p.identifiers) headers += id.kind == Identifier::Kind::http_header;
    const size_t options = p.identifiers.size() - headers;
    return count(p.purposes.size(), "purpose", "purposes") + ", " +
           count(p.identifiers.size(), "identifier", "identifiers") + " (" +
           count(headers, "HTTP header", "HTTP headers") + ", " + count(options, "DNS option", "DNS options") + "), " +
           count(p.collectors.size(), "collector", "collectors") + ", " +
           count(p.exemptions.size(), "exemption", "exemptions") + ", " +
           count(p.subscriber_prefixes.size(), "subscriber prefix", "subscriber prefixes");
}

std::string consent_summary(const std::vector<policy::ConsentRecord>& records) {
    size_t v4 = 0, v6 = 0, consenting = 0;
    for (const auto& r : records) {
        for (const auto& k : r.keys) (k.addr.family == Family::v4 ? v4 : v6)++;
        consenting += r.purposes != 0;
    }
    return count(records.size(), "subscriber", "subscribers") + " (" + std::to_string(consenting) + " with consent), " +
           count(v4 + v6, "subscriber key", "subscriber keys") + " (" + std::to_string(v4) + " IPv4, " +
           std::to_string(v6) + " IPv6)";
}

}  // namespace

int check(int argc, char** argv) {
    std::optional<std::string> policy_path, consent_path;
    bool options_done = false;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (!options_done && (arg == "-h" || arg == "--help")) {
            std::fwrite(kUsage.data(), 1, kUsage.size(), stdout);
            return 0;
        }
        if (!options_done && arg == "--") {
            options_done = true;
        } else if (!options_done && arg == "--consent") {
            if (i + 1 >= argc) return usage_error("--consent needs a file");
            if (consent_path) return usage_error("--consent given twice");
            consent_path = argv[++i];
        } else if (!options_done && arg.starts_with("--consent=")) {
            if (consent_path) return usage_error("--consent given twice");
            consent_path = std::string(arg.substr(10));
        } else if (!options_done && arg.starts_with("-") && arg != "-") {
            return usage_error("unknown option '" + std::string(arg) + "'");
        } else if (policy_path) {
            return usage_error("one policy file at a time ('" + *policy_path + "' and '" + std::string(arg) + "')");
        } else {
            policy_path = std::string(arg);
        }
    }
    if (!policy_path) return usage_error("no policy file given");
    if (policy_path->empty() || (consent_path && consent_path->empty())) return usage_error("empty file name");

    policy::LoadedPolicy loaded;
    try {
        loaded = policy::load_policy_file(*policy_path);
    } catch (const policy::PolicyError& e) {
        print(e.diagnostics());
        if (consent_path)
            std::fprintf(stderr, "%s: not checked: the policy it refers to is invalid\n", consent_path->c_str());
        return 1;
    }
    print(loaded.warnings);
    // Valid, but some of it can never take effect: warned about, exit 0.
    for (const std::string& w : policy::usability_warnings(loaded.policy))
        std::fprintf(stderr, "%s: warning: %s\n", policy_path->c_str(), w.c_str());
    std::printf("%s: OK: %s\n", policy_path->c_str(), policy_summary(loaded.policy).c_str());

    if (consent_path) {
        try {
            const auto records = policy::load_consent_file(*consent_path, loaded.policy);
            std::printf("%s: OK: %s\n", consent_path->c_str(), consent_summary(records).c_str());
        } catch (const policy::PolicyError& e) {
            print(e.diagnostics());
            return 1;
        }
    }
    return 0;
}

}  // namespace optgate::ctl
