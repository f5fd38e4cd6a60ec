// Pseudonym keys as text (loader.hpp): what optgate-replay reads with
// --pseudonym-keys, so that tests and operators can replay a capture with
// the keys a data plane had.
#include <set>

#include "core/chars.hpp"
#include "policy/loader.hpp"
#include "policy/yaml_reader.hpp"

namespace optgate::policy {

namespace {}  // namespace

void apply_pseudonym_keys_text(std::string_view text, Policy& policy, const std::string& name) {
    std::vector<Diagnostic> errors;
    std::set<std::string> seen;
    int line_no = 0;
    auto error = [&](std::string message) {
        errors.push_back({Diagnostic::Severity::error, name, line_no, 1, std::move(message)});
    };
    while (!text.empty()) {
        ++line_no;
        const size_t eol = text.find('\n');
        std::string_view line = text.substr(0, eol);
        text = eol == std::string_view::npos ? std::string_view{} : text.substr(eol + 1);
        if (const size_t hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
        const size_t a = line.find_first_not_of(" \t\r");
        if (a == std::string_view::npos) continue;
        line = line.substr(a, line.find_last_not_of(" \t\r") - a + 1);
        const size_t gap = line.find_first_of(" \t");
        const std::string collector(line.substr(0, gap));
        const std::string_view hex = gap == std::string_view::npos ? std::string_view{}
                                                                   : line.substr(line.find_first_not_of(" \t", gap));
        Collector* c = nullptr;
        for (auto& x : policy.collectors)
            if (x.name == collector) c = &x;
        if (!c) {
            error("no collector named '" + collector + "' in the policy");
            continue;
        }
        if (c->deliver != Collector::Delivery::pseudonym) {
            error("collector '" + collector + "' does not receive pseudonyms ('deliver: pseudonym')");
            continue;
        }
        if (!seen.insert(collector).second) {
            error("a second key for collector '" + collector + "'");
            continue;
        }
        PseudonymKey key{};
        bool ok = hex.size() == 2 * key.size();
        for (size_t i = 0; ok && i < key.size(); ++i) {
            const int hi = hex_chars::value(hex[2 * i]), lo = hex_chars::value(hex[2 * i + 1]);
            ok = hi >= 0 && lo >= 0;
            key[i] = uint8_t(hi << 4 | lo);
        }
        if (!ok) {
            // The line is not repeated: it holds (part of) a key.
            error("collector '" + collector + "': the key must be 32 hex digits (16 bytes)");
            continue;
        }
        c->pseudonym_key = key;
    }
    if (!errors.empty()) throw PolicyError(std::move(errors));
}

void apply_pseudonym_keys_file(const std::string& path, Policy& policy) {
    apply_pseudonym_keys_text(syntax::read_file(path), policy, path);
}

}  // namespace optgate::policy
