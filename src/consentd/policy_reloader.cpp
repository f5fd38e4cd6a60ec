#include "consentd/policy_reloader.hpp"

#include <boost/asio/post.hpp>

#include "consentd/log.hpp"
#include "consentd/policy_document.hpp"
#include "consentd/publisher.hpp"

namespace optgate::consentd {

void PolicyReloader::reload(Done done) {
    const auto finish = [&done](const PolicyReload& r) {
        if (done) done(r);
    };
    // The tokens first: a config file that does not load changes nothing.
    // Only its tokens are taken; every other setting needs a restart.
    std::vector<Token> tokens;
    std::vector<std::string> errors;
    std::string refused = config_.file;
    try {
        tokens = load_config_file(config_.file).config.tokens;
    } catch (const policy::PolicyError& e) {
        for (const auto& d : e.diagnostics()) errors.push_back(d.to_string());
    } catch (const std::exception& e) {
        errors.push_back(config_.file + ": " + e.what());
    }
    PolicyDocument doc;
    if (errors.empty()) {
        refused = config_.policy;
        doc = load_policy_document(config_.policy, config_.dataplanes);
        if (doc.status == PolicyDocument::Status::invalid)
            for (const auto& d : doc.errors) errors.push_back(d.to_string());
    }
    if (!errors.empty()) {
        PolicyReload r;
        r.status = PolicyReload::Status::invalid;
        r.file = refused;
        for (auto& d : errors) {
            log_error("policy reload: " + d);
            r.details.push_back(std::move(d));
        }
        log_error("policy reload refused: the running policy and tokens are kept");
        metrics_.count_reload(false);
        finish(r);
        return;
    }
    if (doc.status == PolicyDocument::Status::unusable) {
        log_error("policy reload refused: " + doc.unusable + "; the running policy and tokens are kept");
        metrics_.count_reload(false);
        PolicyReload r;
        r.status = PolicyReload::Status::unusable;
        r.file = config_.policy;
        r.details.push_back(config_.policy + ": " + doc.unusable);
        finish(r);
        return;
    }
    const size_t token_count = tokens.size();
    if (tokens != tokens_->tokens())
        log_info("API tokens reloaded from " + config_.file + ": " + std::to_string(token_count) + " tokens");
    tokens_ = std::make_shared<const TokenTable>(std::move(tokens));
    std::vector<std::string> warnings;
    for (const auto& w : doc.warnings) warnings.push_back(w.to_string());
    for (const auto& w : warnings) log_warning("policy reload: " + w);
    // Data planes load the very text consentd loaded.
    if (publisher_) publisher_->add_policy_document(doc.policy, config_.policy, doc.text);
    const size_t purposes = doc.policy->purposes.size();
    service_.submit(
        PolicyChange{doc.policy, std::move(doc.text)}, "",
        [this, warnings = std::move(warnings), purposes, token_count, done = std::move(done)](Outcome o) mutable {
            boost::asio::post(ioc_, [this, o = std::move(o), warnings = std::move(warnings), purposes, token_count,
                                     done = std::move(done)]() mutable {
                PolicyReload r;
                r.warnings = std::move(warnings);
                r.purposes = purposes;
                r.tokens = token_count;
                if (o.status != Outcome::Status::ok) {
                    r.status = PolicyReload::Status::failed;
                    r.outcome = std::move(o);
                    if (done) done(r);
                    return;
                }
                metrics_.count_reload(true);
                log_info("policy reloaded from " + config_.policy +
                         (o.table_resync ? ": the consent table changed meaning (full resync)" : ""));
                r.status = PolicyReload::Status::reloaded;
                r.outcome = std::move(o);
                if (done) done(r);
            });
        });
}

}  // namespace optgate::consentd
