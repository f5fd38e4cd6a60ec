// Policy + consent files -> an installed, always-fresh Enforcement: how
// optgate-replay and the data plane run without consentd. Throws
// policy::PolicyError (with every diagnostic) or std::runtime_error.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "core/enforcement.hpp"

namespace optgate {

struct StaticLoadResult {
    size_t subscribers = 0;
    size_t keys = 0;
    // Every key with its subscriber's id, in file order: who a key's
    // disclosure counts belong to (optgate-replay --report).
    std::vector<std::pair<SubscriberKey, std::string>> bindings;
};

// Loads both files, prints policy warnings to stderr, compiles the policy
// and installs it with the consent table. `enforcement` must be in
// Mode::static_table. `pseudonym_keys_path`: a key file for the collectors
// that receive pseudonyms (policy/loader.hpp), or empty (they strip).
StaticLoadResult install_static_consent(Enforcement& enforcement, const std::string& policy_path,
                                        const std::string& consent_path, const std::string& pseudonym_keys_path = {});

}  // namespace optgate
