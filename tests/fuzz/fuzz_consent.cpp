// fuzz_consent: the fuzz bytes as a consent file (docs/consent-file.md),
// loaded against the unit tests' sample policy (purposes advertising and
// analytics; subscribers 100.64.0.0/10 and 2001:db8:1000::/36, IPv6 keys /64).
//
// Invariants: load_consent_text either returns records or throws
// PolicyError (anything else is a crash); records it returns keep the
// documented rules: ids of 1..128 of [A-Za-z0-9._:@-], unique; keys inside
// the subscriber prefixes, IPv6 keys masked to /64, no key twice in the
// file; purposes only of the policy; and a table filled from them looks up
// every key to its record's purposes.
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

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const Policy policy = test::sample_policy();
    static const Prefix v4 = *Prefix::parse("100.64.0.0/10"), v6 = *Prefix::parse("2001:db8:1000::/36");
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    std::vector<policy::ConsentRecord> records;
    try {
        records = policy::load_consent_text(text, policy, "fuzz-consent.yaml");
    } catch (const policy::PolicyError& e) {
        FUZZ_CHECK(!e.diagnostics().empty(), "PolicyError without a diagnostic");
        return 0;
    }
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
    return 0;
}
