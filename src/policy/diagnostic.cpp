#include "policy/loader.hpp"

namespace optgate::policy {

namespace {

std::string join(const std::vector<Diagnostic>& ds) {
    std::string out;
    for (const auto& d : ds) {
        if (!out.empty()) out += '\n';
        out += d.to_string();
    }
    return out;
}

}  // namespace

std::string Diagnostic::to_string() const {
    std::string out = file;
    if (line > 0) out += ":" + std::to_string(line) + ":" + std::to_string(column);
    out += ": ";
    if (severity == Severity::warning) out += "warning: ";
    return out + message;
}

PolicyError::PolicyError(std::vector<Diagnostic> diagnostics)
    : std::runtime_error(join(diagnostics)), diagnostics_(std::move(diagnostics)) {}

}  // namespace optgate::policy
