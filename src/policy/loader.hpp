// Policy and consent files: YAML (or NDJSON) text -> validated, immutable data.
//
// This is the only layer allowed to throw. Loading is parse -> validate ->
// Policy (core/policy.hpp); the core then compiles that into its runtime
// form. Every error is collected (not just the first) with its location.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "core/consent_table.hpp"
#include "core/policy.hpp"

namespace optgate::policy {

struct Diagnostic {
    enum class Severity { error, warning };
    Severity severity = Severity::error;
    std::string file;
    int line = 0;    // 1-based; 0 when the problem has no single location
    int column = 0;  // 1-based
    std::string message;

    // "FILE:LINE:COLUMN: message" (warnings: "FILE:LINE:COLUMN: warning: message").
    std::string to_string() const;
};

// Thrown with every error found; what() is all of them, one per line.
class PolicyError : public std::runtime_error {
public:
    explicit PolicyError(std::vector<Diagnostic> diagnostics);
    const std::vector<Diagnostic>& diagnostics() const noexcept { return diagnostics_; }

private:
    std::vector<Diagnostic> diagnostics_;
};

struct LoadedPolicy {
    Policy policy;
    std::vector<Diagnostic> warnings;  // e.g. overlapping collectors with different purposes
};

// `name` is what diagnostics call the file.
LoadedPolicy load_policy_file(const std::string& path);
LoadedPolicy load_policy_text(std::string_view yaml, const std::string& name = "<policy>");

// One subscriber from the replay tool's consent file (docs/consent-file.md).
struct ConsentRecord {
    std::string subscriber_id;
    std::vector<SubscriberKey> keys;  // IPv4 addresses; IPv6 prefixes at the policy's key length
    PurposeMask purposes = 0;
};

// YAML for files written by hand; NDJSON (one subscriber per line, the same
// keys) for large ones: it is read a line at a time.
enum class ConsentFormat { yaml, ndjson };
// A name ending ".ndjson" or ".jsonl" is NDJSON; any other, YAML.
ConsentFormat consent_format_of(const std::string& path);

std::vector<ConsentRecord> load_consent_file(const std::string& path, const Policy& policy);
std::vector<ConsentRecord> load_consent_text(std::string_view text, const Policy& policy,
                                             const std::string& name = "<consent>",
                                             ConsentFormat format = ConsentFormat::yaml);

// Pseudonym keys (docs/replay.md#--pseudonym-keys): one line per collector
// that receives pseudonyms, "COLLECTOR-NAME HEX" with 32 hex digits (the
// 16-byte key), '#' comments and blank lines ignored. Sets
// Collector::pseudonym_key; every error (unknown collector, one without
// `deliver: pseudonym`, a bad or repeated key) throws PolicyError. A
// pseudonym collector left without a key has its identifiers stripped.
void apply_pseudonym_keys_file(const std::string& path, Policy& policy);
void apply_pseudonym_keys_text(std::string_view text, Policy& policy, const std::string& name = "<keys>");

}  // namespace optgate::policy
