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
    PolicyDocument doc = load_policy_document(config_.policy, config_.dataplanes);
    if (doc.status == PolicyDocument::Status::invalid) {
        PolicyReload r;
        r.status = PolicyReload::Status::invalid;
        for (const auto& d : doc.errors) {
            r.details.push_back(d.to_string());
            log_error("policy reload: " + d.to_string());
        }
        log_error("policy reload refused: the running policy is kept");
        metrics_.count_reload(false);
        finish(r);
        return;
    }
    if (doc.status == PolicyDocument::Status::unusable) {
        log_error("policy reload refused: " + doc.unusable + "; the running policy is kept");
        metrics_.count_reload(false);
        PolicyReload r;
        r.status = PolicyReload::Status::unusable;
        r.details.push_back(config_.policy + ": " + doc.unusable);
        finish(r);
        return;
    }
    std::vector<std::string> warnings;
    for (const auto& w : doc.warnings) warnings.push_back(w.to_string());
    for (const auto& w : warnings) log_warning("policy reload: " + w);
    // Data planes load the very text consentd loaded.
    if (publisher_) publisher_->add_policy_document(doc.policy, config_.policy, doc.text);
    const size_t purposes = doc.policy->purposes.size();
    service_.submit(PolicyChange{doc.policy, std::move(doc.text)}, "",
                    [this, warnings = std::move(warnings), purposes, done = std::move(done)](Outcome o) mutable {
                        boost::asio::post(ioc_, [this, o = std::move(o), warnings = std::move(warnings), purposes,
                                                 done = std::move(done)]() mutable {
                            PolicyReload r;
                            r.warnings = std::move(warnings);
                            r.purposes = purposes;
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
