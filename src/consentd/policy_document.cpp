#include "consentd/policy_document.hpp"

#include "policy/yaml_reader.hpp"

namespace optgate::consentd {

PolicyDocument load_policy_document(const std::string& path, const DataPlaneConfig& dataplanes) {
    PolicyDocument d;
    try {
        d.text = policy::syntax::read_file(path);
        auto loaded = policy::load_policy_text(d.text, path);
        d.warnings = std::move(loaded.warnings);
        d.policy = std::make_shared<const Policy>(std::move(loaded.policy));
    } catch (const policy::PolicyError& e) {
        d.status = PolicyDocument::Status::invalid;
        d.errors = e.diagnostics();
        return d;
    }
    // Data planes would go stale between heartbeats under a tighter limit.
    d.unusable = check_heartbeat_against(dataplanes, d.policy->staleness_limit);
    if (!d.unusable.empty()) {
        d.status = PolicyDocument::Status::unusable;
        d.policy.reset();
        return d;
    }
    d.status = PolicyDocument::Status::ok;
    return d;
}

}  // namespace optgate::consentd
