// The hash chain's canonical encoding and hashes, against values computed by
// an independent implementation (the Python snippet in docs/consentd.md).
#include <doctest/doctest.h>

#include "consentd/event.hpp"
#include "consentd/sha256.hpp"

using namespace optgate::consentd;

namespace {

Event grant_event() {
    Event e;
    e.seq = 1;
    e.time = "2024-05-01T12:00:00.123Z";
    e.subscriber = "sub-1";
    e.action = Action::grant;
    e.purpose = "advertising";
    e.source = "portal";
    e.notice_version = "v3";
    e.credential = "portal-token";
    return e;
}

}  // namespace

TEST_CASE("event hashes match the documented construction") {
    const Digest genesis{};
    const Event e1 = grant_event();
    const Digest h1 = event_hash(genesis, e1);
    CHECK(to_hex(h1) == "27c3450da1719f660c808ff595f8ce8c8f4274976d98f1e4b71d84b2f699c0e2");

    Event e2;
    e2.seq = 2;
    e2.time = "2024-05-01T12:00:01.000Z";
    e2.subscriber = "sub-1";
    e2.action = Action::bind;
    e2.address = "2001:db8:1000:1::/64";
    e2.source = "radius";
    e2.credential = "radius";
    CHECK(to_hex(event_hash(h1, e2)) == "323d8450bd9959190e3892761f8f763c5811e32a743c7c37e636b8b52699910c");
}

TEST_CASE("every field is covered by the hash, and NULL differs from empty") {
    const Digest prev{};
    const Event base = grant_event();
    const Digest h = event_hash(prev, base);
    auto differs = [&](auto mutate) {
        Event e = base;
        mutate(e);
        return event_hash(prev, e) != h;
    };
    CHECK(differs([](Event& e) { e.seq = 2; }));
    CHECK(differs([](Event& e) { e.time = "2024-05-01T12:00:00.124Z"; }));
    CHECK(differs([](Event& e) { e.subscriber = "sub-2"; }));
    CHECK(differs([](Event& e) { e.action = Action::revoke; }));
    CHECK(differs([](Event& e) { e.purpose = "analytics"; }));
    CHECK(differs([](Event& e) { e.address = "100.64.0.1"; }));
    CHECK(differs([](Event& e) { e.source = "portal2"; }));
    CHECK(differs([](Event& e) { e.notice_version = std::nullopt; }));
    CHECK(differs([](Event& e) { e.notice_version = ""; }));
    CHECK(differs([](Event& e) { e.credential = "other"; }));
    // Moving bytes between adjacent fields changes the encoding (length prefixes).
    CHECK(differs([](Event& e) {
        e.subscriber = "sub-1p";
        e.source = "ortal";
    }));
    // The previous hash is covered too.
    Digest other{};
    other[31] = 1;
    CHECK(event_hash(other, base) != h);
}

TEST_CASE("shape rules per action") {
    Event e = grant_event();
    CHECK(shape_error(e).empty());
    e.address = "100.64.0.1";
    CHECK_FALSE(shape_error(e).empty());
    e = grant_event();
    e.purpose.reset();
    CHECK_FALSE(shape_error(e).empty());
    e.action = Action::bind;
    e.notice_version.reset();
    CHECK_FALSE(shape_error(e).empty());  // bind without address
    e.address = "100.64.0.1";
    CHECK(shape_error(e).empty());
    e.notice_version = "v3";
    CHECK(shape_error(e) == "is a bind with a notice_version");
    e.notice_version.reset();
    e.credential.clear();
    CHECK_FALSE(shape_error(e).empty());
    e = grant_event();
    e.notice_version.reset();
    CHECK(shape_error(e) == "is a grant without a notice_version");
    e.action = Action::revoke;
    CHECK(shape_error(e).empty());
}

TEST_CASE("times are UTC RFC 3339 with milliseconds") {
    using namespace std::chrono;
    const system_clock::time_point t{milliseconds(1714564800123)};  // 2024-05-01T12:00:00.123Z
    CHECK(format_utc_ms(t) == "2024-05-01T12:00:00.123Z");
    CHECK(format_utc_ms(system_clock::time_point{milliseconds(5)}) == "1970-01-01T00:00:00.005Z");
}

TEST_CASE("hex round trip and constant-time equality") {
    const Digest d = sha256("s3cret-token");
    CHECK(to_hex(d) == "a81e611a041b13f078bf8ebe5dab4d4fd63fcc5594661c918bec093a2f416a7e");
    CHECK(digest_from_hex(to_hex(d)) == d);
    CHECK(digest_from_hex("A81E611A041B13F078BF8EBE5DAB4D4FD63FCC5594661C918BEC093A2F416A7E") == d);
    CHECK_FALSE(digest_from_hex("a81e"));
    CHECK_FALSE(digest_from_hex(std::string(63, 'a') + "g"));
    Digest e = d;
    CHECK(digest_equal(d, e));
    e[0] ^= 1;
    CHECK_FALSE(digest_equal(d, e));
}

TEST_CASE("RFC 3339 times, with their zone, to the ledger's UTC milliseconds") {
    std::string why;
    const auto utc = [&why](std::string_view t) {
        const auto p = parse_rfc3339(t, why);
        return p ? format_utc_ms(*p) : "error: " + why;
    };
    CHECK(utc("2024-05-01T12:00:00Z") == "2024-05-01T12:00:00.000Z");
    CHECK(utc("2024-05-01T14:00:00.25+02:00") == "2024-05-01T12:00:00.250Z");
    CHECK(utc("2024-05-01t06:29:59.1239-05:30") == "2024-05-01T11:59:59.123Z");  // finer than ms: dropped
    CHECK(utc("2024-05-01 00:30:00+01:00") == "2024-04-30T23:30:00.000Z");
    CHECK(utc("2024-02-29T23:59:59z") == "2024-02-29T23:59:59.000Z");
    for (const char* bad :
         {"", "2024-05-01", "2024-05-01T12:00:00", "2024-05-01T12:00Z", "2024-5-01T12:00:00Z", "2024-05-01T12:00:00.Z",
          "2024-05-01T12:00:00Z ", "2024-05-01T12:00:00+0200", "yesterday"}) {
        INFO(bad);
        CHECK_FALSE(parse_rfc3339(bad, why));
        CHECK(why.find("RFC 3339") != std::string::npos);
    }
    for (const char* impossible : {"2023-02-29T12:00:00Z", "2024-13-01T12:00:00Z", "2024-05-01T24:00:00Z",
                                   "2024-05-01T12:60:00Z", "2024-05-01T12:00:60Z"}) {
        INFO(impossible);
        CHECK_FALSE(parse_rfc3339(impossible, why));
        CHECK(why == "is not a date and time that exists");
    }
    CHECK_FALSE(parse_rfc3339("2024-05-01T12:00:00+24:00", why));
    CHECK(why == "has a zone offset out of range");
}
