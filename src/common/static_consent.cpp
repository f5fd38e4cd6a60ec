#include "common/static_consent.hpp"

#include <iostream>
#include <stdexcept>

#include "policy/loader.hpp"

namespace optgate {

StaticLoadResult install_static_consent(Enforcement& enforcement, const std::string& policy_path,
                                        const std::string& consent_path, const std::string& pseudonym_keys_path) {
    auto loaded = policy::load_policy_file(policy_path);
    for (const auto& w : loaded.warnings) std::cerr << w.to_string() << "\n";
    if (!pseudonym_keys_path.empty()) policy::apply_pseudonym_keys_file(pseudonym_keys_path, loaded.policy);
    auto records = policy::load_consent_file(consent_path, loaded.policy);
    std::string error;
    auto runtime = Runtime::compile(std::move(loaded.policy), &error);
    if (!runtime) throw std::runtime_error(policy_path + ": " + error);
    StaticLoadResult result;
    for (const auto& r : records) result.keys += r.keys.size();
    result.subscribers = records.size();
    result.bindings.reserve(result.keys);  // 1M subscribers: no copy of a growing vector
    auto table = enforcement.make_table(records.size());
    for (auto& r : records) {
        for (size_t i = 0; i < r.keys.size(); ++i) {
            table->upsert(r.keys[i], r.purposes);
            result.bindings.emplace_back(r.keys[i],
                                         i + 1 == r.keys.size() ? std::move(r.subscriber_id) : r.subscriber_id);
        }
    }
    enforcement.install(std::move(runtime), std::move(table));
    return result;
}

}  // namespace optgate
