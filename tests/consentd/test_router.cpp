// Routing: paths, percent-decoding, methods and query parameters.
#include <ostream>  // before doctest: Boost headers print string_views

#include <doctest/doctest.h>

#include "consentd/router.hpp"

using namespace optgate::consentd;
using boost::beast::http::verb;

TEST_CASE("routes and their parameters") {
    auto m = match_route(verb::put, "/v1/subscribers/sub-1/consents/advertising");
    CHECK(m.route == Route::consent_put);
    CHECK(m.subscriber == "sub-1");
    CHECK(m.purpose == "advertising");
    CHECK(match_route(verb::delete_, "/v1/subscribers/sub-1/consents/advertising").route == Route::consent_delete);
    CHECK(match_route(verb::get, "/v1/subscribers/a.b%40c%3Ad").subscriber == "a.b@c:d");
    CHECK(match_route(verb::get, "/v1/purposes").route == Route::purposes);
    CHECK(match_route(verb::get, "/healthz").route == Route::healthz);
    CHECK(match_route(verb::get, "/metrics").route == Route::metrics);
    CHECK(match_route(verb::post, "/v1/import?format=csv").param("format") != nullptr);
    CHECK(match_route(verb::post, "/v1/policy/reload").route == Route::policy_reload);
    CHECK(match_route(verb::get, "/v1/dataplanes?stats=true").param("stats") != nullptr);
    CHECK(match_route(verb::get, "/v1/dataplanes?verbose=1").code == "unknown_parameter");
}

TEST_CASE("an IPv6 prefix in the path, encoded or not") {
    auto a = match_route(verb::put, "/v1/bindings/2001:db8:1000:1::%2F64");
    CHECK(a.route == Route::binding_put);
    CHECK(a.address == "2001:db8:1000:1::/64");
    auto b = match_route(verb::delete_, "/v1/bindings/2001:db8:1000:1::/64");
    CHECK(b.route == Route::binding_delete);
    CHECK(b.address == "2001:db8:1000:1::/64");
    CHECK(match_route(verb::put, "/v1/bindings/100.64.0.1").address == "100.64.0.1");
    CHECK(match_route(verb::put, "/v1/bindings/a/b").status == 404);
}

TEST_CASE("who held an address: GET on the binding's path, at a time") {
    auto g = match_route(verb::get, "/v1/bindings/100.64.0.1?at=2024-05-01T12:00:00%2B02:00");
    CHECK(g.route == Route::binding_get);
    CHECK(g.address == "100.64.0.1");
    REQUIRE(g.param("at"));
    CHECK(*g.param("at") == "2024-05-01T12:00:00+02:00");
    CHECK(match_route(verb::get, "/v1/bindings/2001:db8:1000:1::/64").address == "2001:db8:1000:1::/64");
    CHECK(match_route(verb::get, "/v1/bindings/100.64.0.1?when=now").code == "unknown_parameter");
    CHECK(match_route(verb::get, "/v1/bindings/100.64.0.1%0A").code == "invalid_address");
    CHECK(match_route(verb::post, "/v1/bindings/100.64.0.1").allow == "GET, PUT, DELETE");
    CHECK(route_info(Route::binding_get).role == Role::read);
}

TEST_CASE("what does not route") {
    auto m = match_route(verb::post, "/v1/subscribers/sub-1/consents/advertising");
    CHECK(m.route == Route::none);
    CHECK(m.status == 405);
    CHECK(m.allow == "PUT, DELETE");
    CHECK(match_route(verb::get, "/v1/nothing").status == 404);
    CHECK(match_route(verb::get, "/v1/purposes/").status == 404);
    CHECK(match_route(verb::get, "not-a-path").status == 400);
    auto bad_id = match_route(verb::get, "/v1/subscribers/bad%20id");
    CHECK(bad_id.status == 400);
    CHECK(bad_id.code == "invalid_subscriber_id");
    CHECK(match_route(verb::get, "/v1/subscribers/" + std::string(129, 'a')).code == "invalid_subscriber_id");
    CHECK(match_route(verb::get, "/v1/subscribers/" + std::string(128, 'a')).route == Route::subscriber_get);
    CHECK(match_route(verb::get, "/v1/subscribers/x?histroy=3").code == "unknown_parameter");
    CHECK(match_route(verb::get, "/v1/subscribers/x?history=3&history=4").code == "duplicate_parameter");
    CHECK(match_route(verb::get, "/v1/purposes?x=1").code == "unknown_parameter");
    // Nothing unprintable reaches a message.
    CHECK(match_route(verb::get, "/v1/purposes?%FF%0A=1").message == "unknown query parameter");
    CHECK(match_route(verb::put, "/v1/subscribers/x/consents/ad%0Avertising").code == "unknown_purpose");
    CHECK(match_route(verb::put, "/v1/bindings/100.64.0.1%00").code == "invalid_address");
}

TEST_CASE("roles per route") {
    CHECK(route_info(Route::healthz).role == Role::none);
    CHECK(route_info(Route::subscriber_get).role == Role::read);
    CHECK(route_info(Route::metrics).role == Role::read);
    CHECK(route_info(Route::consent_put).role == Role::write);
    CHECK(route_info(Route::binding_delete).role == Role::write);
    CHECK(route_info(Route::import).role == Role::admin);
    CHECK(route_info(Route::policy_reload).role == Role::admin);
}

TEST_CASE("a subscriber's disclosures") {
    auto m = match_route(verb::get, "/v1/subscribers/cust-1/disclosures?from=2024-05-01&to=2024-05-30");
    CHECK(m.route == Route::disclosures_get);
    CHECK(m.subscriber == "cust-1");
    CHECK(*m.param("from") == "2024-05-01");
    CHECK(*m.param("to") == "2024-05-30");
    CHECK(route_info(Route::disclosures_get).role == Role::read);
    CHECK(match_route(verb::get, "/v1/subscribers/cust-1/disclosures?history=1").code == "unknown_parameter");
    CHECK(match_route(verb::get, "/v1/subscribers/cust-1/disclosures?to=a&to=b").code == "duplicate_parameter");
    CHECK(match_route(verb::get, "/v1/subscribers//disclosures").code == "invalid_subscriber_id");
    CHECK(match_route(verb::post, "/v1/subscribers/cust-1/disclosures").status == 405);
}
