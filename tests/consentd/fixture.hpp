// Shared by consentd's unit tests: a policy built in code and a temporary
// directory for ledger files.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "core/policy.hpp"

namespace optgate::consentd::test {

inline Prefix P(const char* text) { return *Prefix::parse(text); }

// purposes: 0 advertising, 1 analytics, 2 carrier-marketing
// subscribers: 100.64.0.0/10, 2001:db8:1000::/36, IPv6 key /64
inline Policy sample_policy() {
    Policy p;
    p.purposes = {{"advertising", "Ads tailored to you", {"device identifier"}, "90 days"},
                  {"analytics", "Measuring audiences", {"device identifier"}, "13 months"},
                  {"carrier-marketing", "Our own offers", {"phone number"}, "while a customer"}};
    p.collectors = {{"adnet", 0, {{P("203.0.113.0/25")}, {}, {}}, "An ad network"},
                    {"metrics", 1, {{P("198.51.100.0/24")}, {}, {}}, "Audience metrics"}};
    p.exemptions = {{"billing", {{P("203.0.113.200/29")}, {}, {}}, "Billing and fraud prevention"}};
    p.subscriber_prefixes = {P("100.64.0.0/10"), P("2001:db8:1000::/36")};
    p.ipv6_key_length = 64;
    return p;
}

inline std::shared_ptr<const Policy> shared_policy() { return std::make_shared<const Policy>(sample_policy()); }

// A fresh directory under $TMPDIR, removed with everything in it.
class TempDir {
public:
    TempDir() {
        std::string t = (std::filesystem::temp_directory_path() / "consentd-test-XXXXXX").string();
        if (!mkdtemp(t.data())) std::abort();
        path_ = t;
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    std::string file(const std::string& name) const { return (path_ / name).string(); }

private:
    std::filesystem::path path_;
};

}  // namespace optgate::consentd::test
