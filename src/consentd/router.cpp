#include "consentd/router.hpp"

#include <boost/url/parse.hpp>

#include <algorithm>

#include "core/chars.hpp"
#include "policy/values.hpp"

namespace optgate::consentd {

namespace http = boost::beast::http;

namespace {

constexpr RouteInfo kRoutes[] = {
    {"GET", "/healthz", Role::none, false},
    {"GET", "/metrics", Role::read, false},
    {"GET", "/v1/purposes", Role::read, false},
    {"GET", "/v1/subscribers/{id}", Role::read, false},
    {"PUT", "/v1/subscribers/{id}/consents/{purpose}", Role::write, false},
    {"DELETE", "/v1/subscribers/{id}/consents/{purpose}", Role::write, false},
    {"PUT", "/v1/bindings/{address}", Role::write, false},
    {"DELETE", "/v1/bindings/{address}", Role::write, false},
    {"POST", "/v1/import", Role::admin, true},
    {"POST", "/v1/policy/reload", Role::admin, false},
    {"GET", "/v1/dataplanes", Role::read, false},
    {"GET", "/v1/subscribers/{id}/receipts/{seq}", Role::read, false},
    {"GET", "/v1/subscribers/{id}/disclosures", Role::read, false},
    {"POST", "/v1/subscribers/{id}/portal-links", Role::write, false},
    {"GET", "/v1/bindings/{address}", Role::read, false},
    {"GET", "/v1/ledger/checkpoint", Role::read, false},
    {"", "unmatched", Role::none, false},
};

// Query parameters each route accepts.
std::vector<std::string_view> allowed_params(Route r) {
    switch (r) {
    case Route::subscriber_get: return {"history", "before"};
    // Every write may wait until data planes enforce it (docs/consentd.md).
    case Route::consent_put:
    case Route::consent_delete:
    case Route::binding_put:
    case Route::binding_delete: return {"wait", "timeout"};
    case Route::import: return {"format", "wait", "timeout"};
    case Route::dataplanes: return {"stats"};
    case Route::disclosures_get: return {"from", "to"};
    case Route::binding_get: return {"at"};
    default: return {};
    }
}

RouteMatch no_route(unsigned status, std::string code, std::string message, std::string allow = {}) {
    RouteMatch m;
    m.status = status;
    m.code = std::move(code);
    m.message = std::move(message);
    m.allow = std::move(allow);
    return m;
}

bool all_visible(std::string_view s) { return std::all_of(s.begin(), s.end(), ascii::is_visible); }

bool all_digits(std::string_view s) {
    return !s.empty() && s.size() <= 3 && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

static_assert(std::size(kRoutes) == size_t(Route::none) + 1, "one kRoutes entry per Route, in order");

const RouteInfo& route_info(Route r) noexcept { return kRoutes[unsigned(r)]; }

const std::string* RouteMatch::param(std::string_view name) const {
    for (const auto& [k, v] : query)
        if (k == name) return &v;
    return nullptr;
}

RouteMatch match_route(http::verb method, std::string_view target) {
    const auto url = boost::urls::parse_origin_form(target);
    if (!url) return no_route(400, "invalid_target", "the request target is not a valid path");
    std::vector<std::string> seg;
    for (auto s : url->encoded_segments()) seg.push_back(s.decode());

    // Which path, with its methods: [GET, PUT, DELETE, POST] routes.
    Route by_method[4] = {Route::none, Route::none, Route::none, Route::none};
    RouteMatch m;
    std::string_view seq;
    const size_t n = seg.size();
    auto is = [&](size_t i, std::string_view s) { return i < n && seg[i] == s; };
    if (n == 1 && is(0, "healthz")) {
        by_method[0] = Route::healthz;
    } else if (n == 1 && is(0, "metrics")) {
        by_method[0] = Route::metrics;
    } else if (n == 2 && is(0, "v1") && is(1, "purposes")) {
        by_method[0] = Route::purposes;
    } else if (n == 3 && is(0, "v1") && is(1, "subscribers")) {
        by_method[0] = Route::subscriber_get;
        m.subscriber = seg[2];
    } else if (n == 4 && is(0, "v1") && is(1, "subscribers") && is(3, "disclosures")) {
        by_method[0] = Route::disclosures_get;
        m.subscriber = seg[2];
    } else if (n == 5 && is(0, "v1") && is(1, "subscribers") && is(3, "consents")) {
        by_method[1] = Route::consent_put;
        by_method[2] = Route::consent_delete;
        m.subscriber = seg[2];
        m.purpose = seg[4];
    } else if (n == 5 && is(0, "v1") && is(1, "subscribers") && is(3, "receipts")) {
        by_method[0] = Route::receipt_get;
        m.subscriber = seg[2];
        seq = seg[4];
    } else if ((n == 3 || (n == 4 && all_digits(seg[3]))) && is(0, "v1") && is(1, "bindings")) {
        // An IPv6 prefix's "/" may arrive encoded (%2F, one segment) or
        // not (two segments); both mean the same binding.
        by_method[0] = Route::binding_get;
        by_method[1] = Route::binding_put;
        by_method[2] = Route::binding_delete;
        m.address = n == 3 ? seg[2] : seg[2] + "/" + seg[3];
    } else if (n == 2 && is(0, "v1") && is(1, "import")) {
        by_method[3] = Route::import;
    } else if (n == 3 && is(0, "v1") && is(1, "policy") && is(2, "reload")) {
        by_method[3] = Route::policy_reload;
    } else if (n == 2 && is(0, "v1") && is(1, "dataplanes")) {
        by_method[0] = Route::dataplanes;
    } else if (n == 3 && is(0, "v1") && is(1, "ledger") && is(2, "checkpoint")) {
        by_method[0] = Route::ledger_checkpoint;
    } else if (n == 4 && is(0, "v1") && is(1, "subscribers") && is(3, "portal-links")) {
        by_method[3] = Route::portal_link;
        m.subscriber = seg[2];
    } else {
        return no_route(404, "not_found", "no such endpoint: " + std::string(url->encoded_path()));
    }

    int slot = -1;
    switch (method) {
    case http::verb::get: slot = 0; break;
    case http::verb::put: slot = 1; break;
    case http::verb::delete_: slot = 2; break;
    case http::verb::post: slot = 3; break;
    default: break;
    }
    if (slot < 0 || by_method[slot] == Route::none) {
        std::string allow;
        for (Route r : by_method)
            if (r != Route::none) allow += (allow.empty() ? "" : ", ") + std::string(route_info(r).method);
        return no_route(405, "method_not_allowed", "this endpoint allows " + allow, allow);
    }
    m.route = by_method[slot];

    if (!m.subscriber.empty() || m.route == Route::subscriber_get || m.route == Route::consent_put ||
        m.route == Route::consent_delete || m.route == Route::receipt_get || m.route == Route::disclosures_get ||
        m.route == Route::portal_link) {
        if (!policy::syntax::is_subscriber_id(m.subscriber))
            return no_route(400, "invalid_subscriber_id", "subscriber ids are 1..128 characters of [A-Za-z0-9._:@-]");
    }
    // Path text may be echoed in messages: only printable ASCII gets that far.
    if ((m.route == Route::consent_put || m.route == Route::consent_delete) &&
        (m.purpose.empty() || m.purpose.size() > 64 || !all_visible(m.purpose)))
        return no_route(404, "unknown_purpose", "no such purpose (GET /v1/purposes lists them)");
    if (m.route == Route::receipt_get) {
        const auto n_seq = seq.size() <= 19 ? policy::syntax::parse_decimal(seq) : std::nullopt;
        if (!n_seq || *n_seq == 0 || *n_seq > uint64_t(INT64_MAX))
            return no_route(400, "invalid_seq", "{seq} is an event's sequence number: 1, 2, 3...");
        m.seq = *n_seq;
    }
    if ((m.route == Route::binding_get || m.route == Route::binding_put || m.route == Route::binding_delete) &&
        (m.address.empty() || m.address.size() > 64 || !all_visible(m.address)))
        return no_route(400, "invalid_address", "not an IP address or prefix");

    const auto allowed = allowed_params(m.route);
    for (auto p : url->params()) {
        const std::string key(p.key);
        if (std::find(allowed.begin(), allowed.end(), key) == allowed.end())
            return no_route(400, "unknown_parameter",
                            all_visible(key) && key.size() <= 64 ? "unknown query parameter '" + key + "'"
                                                                 : std::string("unknown query parameter"));
        if (m.param(key)) return no_route(400, "duplicate_parameter", "query parameter '" + key + "' is repeated");
        m.query.emplace_back(key, std::string(p.value));
    }
    return m;
}

}  // namespace optgate::consentd
