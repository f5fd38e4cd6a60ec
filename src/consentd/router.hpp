// The API's routes: method + request target -> which endpoint, its path
// parameters (percent-decoded) and its query parameters (only those the
// endpoint defines are accepted), and the role it needs.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/beast/http/verb.hpp>

#include "consentd/auth.hpp"

namespace optgate::consentd {

enum class Route : uint8_t {
    healthz,
    metrics,
    purposes,
    subscriber_get,
    consent_put,
    consent_delete,
    binding_put,
    binding_delete,
    import,
    policy_reload,
    dataplanes,
    receipt_get,
    disclosures_get,
    portal_link,
    ledger_checkpoint,
    none,  // no route: `status` says why
};

struct RouteInfo {
    std::string_view method;
    std::string_view pattern;  // the metrics label
    Role role;                 // none: no token needed
    bool import_body;          // uses the import body limit and timeout
};
const RouteInfo& route_info(Route r) noexcept;

struct RouteMatch {
    Route route = Route::none;
    unsigned status = 0;  // when route == none: 400, 404 or 405
    std::string code, message;
    std::string allow;  // 405: the methods the path has

    std::string subscriber;  // {id}
    std::string purpose;     // {purpose}
    std::string address;     // {address}: "%2F" decoded, or two segments "addr/len" joined
    uint64_t seq = 0;        // {seq}: an event's sequence number, >= 1
    std::vector<std::pair<std::string, std::string>> query;

    const std::string* param(std::string_view name) const;
};

RouteMatch match_route(boost::beast::http::verb method, std::string_view target);

}  // namespace optgate::consentd
