// fuzz_consent: the fuzz bytes as a consent file (docs/consent-file.md),
// once as YAML and once as NDJSON, each loaded against the unit tests'
// sample policy (purposes advertising and analytics; subscribers
// 100.64.0.0/10 and 2001:db8:1000::/36, IPv6 keys /64).
//
// Invariants, for each format: load_consent_text either returns records or
// throws PolicyError (anything else is a crash); records it returns keep the
// documented rules: ids of 1..128 of [A-Za-z0-9._:@-], unique; keys inside
// the subscriber prefixes, IPv6 keys masked to /64, no key twice in the
// file; purposes only of the policy; and a table filled from them looks up
// every key to its record's purposes. Records accepted from NDJSON, written
// back as YAML, load to the same records (one checker for both formats).
#include <algorithm>
#include <set>

#include "core/consent_table.hpp"
#include "policy/loader.hpp"
#include "policy_fixture.hpp"
#include "support/fuzz_check.hpp"

using namespace optgate;

namespace {

bool id_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::string_view("._:@-").find(c) != std::string_view::npos;
}

// Records the loader accepted keep the documented rules.
void check_records(const std::vector<policy::ConsentRecord>& records, const Policy& policy) {
    static const Prefix v4 = *Prefix::parse("100.64.0.0/10"), v6 = *Prefix::parse("2001:db8:1000::/36");
    std::set<std::string> ids;
    std::vector<SubscriberKey> keys;
    for (const auto& r : records) {
        FUZZ_CHECK(!r.subscriber_id.empty() && r.subscriber_id.size() <= 128 &&
                       std::all_of(r.subscriber_id.begin(), r.subscriber_id.end(), id_char),
                   "subscriber id '" + r.subscriber_id + "'");
        FUZZ_CHECK(ids.insert(r.subscriber_id).second, "subscriber '" + r.subscriber_id + "' twice");
        FUZZ_CHECK(!r.keys.empty(), "subscriber '" + r.subscriber_id + "' without addresses");
        FUZZ_CHECK((r.purposes >> policy.purposes.size()) == 0, "purpose bits beyond the policy's purposes");
        for (const auto& k : r.keys) {
            const IpAddr& a = k.addr;
            if (a.family == Family::v4)
                FUZZ_CHECK(v4.contains(a), a.to_string() + " is not a subscriber address");
            else
                FUZZ_CHECK(v6.contains(a) && a.masked(64) == a, a.to_string() + " is not a /64 subscriber key");
            FUZZ_CHECK(std::find(keys.begin(), keys.end(), k) == keys.end(), a.to_string() + " twice in the file");
            keys.push_back(k);
        }
    }
    QsbrDomain rcu;
    {
        ConsentTable table(rcu);
        for (const auto& r : records)
            for (const auto& k : r.keys)
                FUZZ_CHECK(table.upsert(k, r.purposes), "the table refused " + k.addr.to_string());
        FUZZ_CHECK(table.size() == keys.size(), "table size " + std::to_string(table.size()));
        for (const auto& r : records)
            for (const auto& k : r.keys) {
                const ConsentLookup c = table.lookup(k);
                FUZZ_CHECK(c.found && c.purposes == r.purposes, "lookup of " + k.addr.to_string());
            }
    }
    rcu.synchronize();
}

// The records as a YAML consent file (ids are YAML-safe: [A-Za-z0-9._:@-]
// quoted; keys as /32 and /64 prefixes; purposes by name).
std::string as_yaml(const std::vector<policy::ConsentRecord>& records, const Policy& policy) {
    std::string y = "subscribers:\n";
    for (const auto& r : records) {
        y += "  - id: \"" + r.subscriber_id + "\"\n    addresses: [";
        for (size_t i = 0; i < r.keys.size(); ++i)
            y += (i ? ", \"" : "\"") + r.keys[i].addr.to_string() +
                 (r.keys[i].addr.family == Family::v4 ? "\"" : "/64\"");
        y += "]\n    consents: [";
        bool first = true;
        for (size_t p = 0; p < policy.purposes.size(); ++p)
            if (r.purposes >> p & 1) {
                y += (first ? "" : ", ") + std::string(policy.purposes[p].name);
                first = false;
            }
        y += "]\n";
    }
    return y;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const Policy policy = test::sample_policy();
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    for (const auto format : {policy::ConsentFormat::yaml, policy::ConsentFormat::ndjson}) {
        std::vector<policy::ConsentRecord> records;
        try {
            records = policy::load_consent_text(text, policy, "fuzz-consent", format);
        } catch (const policy::PolicyError& e) {
            FUZZ_CHECK(!e.diagnostics().empty(), "PolicyError without a diagnostic");
            continue;
        }
        check_records(records, policy);
        if (format != policy::ConsentFormat::ndjson || records.empty()) continue;
        std::vector<policy::ConsentRecord> again;
        try {
            again = policy::load_consent_text(as_yaml(records, policy), policy, "fuzz-consent.yaml");
        } catch (const policy::PolicyError& e) {
            FUZZ_CHECK(false, "NDJSON records refused as YAML: " + std::string(e.what()));
        }
        FUZZ_CHECK(again.size() == records.size(), "NDJSON and YAML disagree on the number of subscribers");
        for (size_t i = 0; i < records.size(); ++i)
            FUZZ_CHECK(again[i].subscriber_id == records[i].subscriber_id && again[i].keys == records[i].keys &&
                           again[i].purposes == records[i].purposes,
                       "NDJSON and YAML disagree on subscriber '" + records[i].subscriber_id + "'");
    }
    return 0;
}
