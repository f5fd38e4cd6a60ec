// Reloading the policy (docs/consentd.md, "Policy reload"): the daemon's one
// way, whether asked by SIGHUP (main.cpp) or by POST /v1/policy/reload
// (api.cpp, which turns the result into its answer). Re-reads the config
// file's API tokens and the policy file (policy_document.hpp); when both are
// valid the tokens replace the running ones at once (a removed token stops
// working with the next request) and the policy goes to the publisher (its
// text, for data planes) and then to the ledger service, which installs it
// in commit order; otherwise the running tokens and policy stay. Either way
// the outcome is logged and counted (consentd_policy_reloads_total) here, so
// both callers report it alike.
//
// Runs on the io thread; `done` is called there: at once for a file that is
// refused, after the ledger service installed (or failed to install) it
// otherwise.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "consentd/auth.hpp"
#include "consentd/config.hpp"
#include "consentd/ledger_service.hpp"
#include "consentd/metrics.hpp"

namespace optgate::consentd {

class Publisher;

struct PolicyReload {
    enum class Status : uint8_t {
        reloaded,
        invalid,   // not a valid policy or config file: `details` has each error
        unusable,  // valid, not with this config: `details` has "FILE: why"
        failed,    // the ledger service did not install it: `outcome` says why
    };
    Status status = Status::invalid;
    std::string file;  // invalid, unusable: the file refused (the config's or the policy)
    std::vector<std::string> details;
    std::vector<std::string> warnings;  // reloaded (and failed): the loader's warnings
    size_t purposes = 0;                // reloaded: the new policy's
    size_t tokens = 0;                  // reloaded, failed: the API tokens now in force
    Outcome outcome;                    // reloaded, failed: the ledger service's (table_resync)
};

class PolicyReloader {
public:
    // `publisher`: gets the policy text for data planes; may be null.
    PolicyReloader(boost::asio::io_context& ioc, LedgerService& service, Metrics& metrics, const Config& config,
                   Publisher* publisher)
        : ioc_(ioc), service_(service), metrics_(metrics), config_(config), publisher_(publisher),
          tokens_(std::make_shared<const TokenTable>(config.tokens)) {}

    using Done = std::function<void(const PolicyReload&)>;
    // Re-reads config.policy and installs it if valid, else keeps the running
    // one. `done` (if set) is called once, on the io thread.
    void reload(Done done = {});

    // The API tokens in force: the config's at start, then each reload's.
    // Callers keep the pointer for as long as they use a Token from it.
    std::shared_ptr<const TokenTable> tokens() const noexcept { return tokens_; }

private:
    boost::asio::io_context& ioc_;
    LedgerService& service_;
    Metrics& metrics_;
    const Config& config_;
    Publisher* publisher_;
    std::shared_ptr<const TokenTable> tokens_;
};

}  // namespace optgate::consentd
