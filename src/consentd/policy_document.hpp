// The policy file consentd runs (docs/consentd.md, "Policy reload"): read,
// compiled by the policy loader, and checked against the data-plane config.
// The one loader for both paths: at start (main.cpp) and on every reload
// (policy_reloader.hpp), so that a file consentd refuses to reload is one it
// would refuse to start with, and the other way round. Throws nothing: what
// is wrong comes back in the result, for each caller to report its own way
// (stderr at start; the log and a 422 answer on reload).
//
// The text is kept as read: data planes load that very text
// (docs/protocol.md), and the policy history records it (receipts).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "consentd/dataplane_config.hpp"
#include "core/policy.hpp"
#include "policy/loader.hpp"

namespace optgate::consentd {

struct PolicyDocument {
    enum class Status : uint8_t {
        ok,
        invalid,   // the file cannot be read or is not a valid policy: `errors`
        unusable,  // valid, but not with this config: `unusable`
    };
    Status status = Status::invalid;
    std::shared_ptr<const Policy> policy;  // set when ok
    std::string text;                      // as read
    std::vector<policy::Diagnostic> warnings;
    std::vector<policy::Diagnostic> errors;
    // Why a valid policy cannot run with `dataplanes` (its staleness limit
    // under three heartbeats: data planes would go stale between them).
    std::string unusable;
};

PolicyDocument load_policy_document(const std::string& path, const DataPlaneConfig& dataplanes);

}  // namespace optgate::consentd
