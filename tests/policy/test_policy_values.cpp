// The scalar grammars of the policy language (src/policy/values.hpp).
#include <doctest/doctest.h>

#include "policy/values.hpp"

using namespace optgate;
using namespace optgate::policy::syntax;
using namespace std::chrono_literals;

TEST_SUITE("policy values") {

TEST_CASE("ports and port ranges") {
    std::string why;
    CHECK(parse_port_range("80", why) == PortRange{80, 80});
    CHECK(parse_port_range("1", why) == PortRange{1, 1});
    CHECK(parse_port_range("65535", why) == PortRange{65535, 65535});
    CHECK(parse_port_range("8000-8099", why) == PortRange{8000, 8099});
    CHECK(parse_port_range("443-443", why) == PortRange{443, 443});

    CHECK_FALSE(parse_port_range("0", why));
    CHECK(why == "port 0 is out of range: ports are 1..65535");
    CHECK_FALSE(parse_port_range("65536", why));
    CHECK_FALSE(parse_port_range("99999999999999999999999", why));
    CHECK(why.find("is not a port") != std::string::npos);
    CHECK_FALSE(parse_port_range("8099-8000", why));
    CHECK(why.find("backwards") != std::string::npos);
    for (const char* bad : {"", "-", "80-", "-80", "8o", "+80", "0x50", "80 ", "1-2-3", "80.0"})
        CHECK_MESSAGE(!parse_port_range(bad, why), bad);
}

TEST_CASE("durations") {
    std::string why;
    CHECK(parse_duration("30s", why) == 30s);
    CHECK(parse_duration("500ms", why) == 500ms);
    CHECK(parse_duration("2m", why) == 2min);
    CHECK(parse_duration("1h", why) == 1h);
    CHECK(parse_duration("24h", why) == 24h);
    CHECK(parse_duration("86400000ms", why) == 24h);

    CHECK_FALSE(parse_duration("0s", why));
    CHECK(why.find("greater than zero") != std::string::npos);
    CHECK_FALSE(parse_duration("86400001ms", why));
    CHECK(why.find("24h") != std::string::npos);
    CHECK_FALSE(parse_duration("25h", why));
    CHECK_FALSE(parse_duration("30d", why));
    CHECK(why.find("unknown unit 'd'") != std::string::npos);
    for (const char* bad : {"30", "s", "", "1.5s", "-1s", "30 s", "30S", "1m30s"})
        CHECK_MESSAGE(!parse_duration(bad, why), bad);
}

TEST_CASE("DSCP numbers and names") {
    std::string why;
    CHECK(parse_dscp("0", why) == 0);
    CHECK(parse_dscp("63", why) == 63);
    CHECK(parse_dscp("be", why) == 0);
    CHECK(parse_dscp("cs1", why) == 8);
    CHECK(parse_dscp("CS7", why) == 56);
    CHECK(parse_dscp("af11", why) == 10);
    CHECK(parse_dscp("af21", why) == 18);
    CHECK(parse_dscp("af43", why) == 38);
    CHECK(parse_dscp("ef", why) == 46);
    CHECK(parse_dscp("va", why) == 44);
    CHECK(parse_dscp("voice-admit", why) == 44);
    CHECK(parse_dscp("le", why) == 1);
    CHECK_FALSE(parse_dscp("64", why));
    CHECK_FALSE(parse_dscp("af14", why));
    CHECK_FALSE(parse_dscp("cs8", why));
    CHECK_FALSE(parse_dscp("-1", why));
    CHECK_FALSE(parse_dscp("", why));
}

TEST_CASE("host patterns are lowercased, lose a trailing dot, and allow only a leading wildcard") {
    std::string why;
    auto h = parse_host_pattern("Ads.Example.NET.", why);
    REQUIRE(h);
    CHECK(h->name == "ads.example.net");
    CHECK_FALSE(h->wildcard);
    h = parse_host_pattern("*.Tracker.example", why);
    REQUIRE(h);
    CHECK(h->name == "tracker.example");
    CHECK(h->wildcard);
    CHECK(h->to_string() == "*.tracker.example");
    CHECK(parse_host_pattern("_dmarc.example", why));
    CHECK(parse_host_pattern("localhost", why));
    CHECK(parse_host_pattern(std::string(63, 'a') + ".example", why));

    for (const char* bad : {"", "*", "*.", "**.example", "a.*.example", "ads.example:80", "ads.example/path",
                            "http://ads.example", "a..example", ".example", "ads example", "ads.exämple"})
        CHECK_MESSAGE(!parse_host_pattern(bad, why), bad);
    CHECK_FALSE(parse_host_pattern(std::string(64, 'a') + ".example", why));
    CHECK(why.find("longer than 63") != std::string::npos);
}

TEST_CASE("host pattern and port overlaps") {
    auto host = [](const char* t) {
        std::string why;
        return *parse_host_pattern(t, why);
    };
    CHECK(hosts_overlap(host("a.example"), host("a.example")));
    CHECK_FALSE(hosts_overlap(host("a.example"), host("b.example")));
    CHECK(hosts_overlap(host("*.example"), host("a.example")));
    CHECK(hosts_overlap(host("a.b.example"), host("*.example")));
    CHECK_FALSE(hosts_overlap(host("*.example"), host("example")));  // "*." needs a label in front
    CHECK(hosts_overlap(host("*.example"), host("*.b.example")));
    CHECK(hosts_overlap(host("*.b.example"), host("*.example")));
    CHECK(hosts_overlap(host("*.example"), host("*.example")));
    CHECK_FALSE(hosts_overlap(host("*.a.example"), host("*.b.example")));
    CHECK_FALSE(hosts_overlap(host("*.ample"), host("*.example")));  // suffix by label, not by letter

    CHECK(ports_overlap({}, {{80, 80}}));
    CHECK(ports_overlap({{80, 80}}, {}));
    CHECK(ports_overlap({{8000, 8099}}, {{8080, 8080}}));
    CHECK(ports_overlap({{1, 10}, {20, 30}}, {{30, 40}}));
    CHECK_FALSE(ports_overlap({{1, 10}, {20, 29}}, {{11, 19}, {30, 40}}));
}

TEST_CASE("names and tokens") {
    CHECK(is_http_token("X-UIDH"));
    CHECK(is_http_token("x-up-calling-line-id"));
    CHECK(is_http_token("!#$%&'*+-.^_`|~09azAZ"));
    for (const char* bad : {"", "X UIDH", "X-UIDH:", "X(UIDH)", "X/UIDH", "X\"", "X,Y", "X@Y", "\x7f"})
        CHECK_MESSAGE(!is_http_token(bad), bad);

    CHECK(is_purpose_name("advertising"));
    CHECK(is_purpose_name("carrier-marketing_2"));
    CHECK(is_purpose_name(std::string(32, 'a')));
    for (const char* bad : {"", "Ads", "2ads", "-ads", "ads.x", "ads x"}) CHECK_MESSAGE(!is_purpose_name(bad), bad);
    CHECK_FALSE(is_purpose_name(std::string(33, 'a')));

    CHECK(is_rule_name("Example-AdNet.v2_east"));
    CHECK(is_rule_name("1st-party"));
    CHECK_FALSE(is_rule_name("-adnet"));
    CHECK_FALSE(is_rule_name("ad net"));
    CHECK_FALSE(is_rule_name(std::string(65, 'a')));

    CHECK(is_subscriber_id("sub-1001"));
    CHECK(is_subscriber_id("alice@example.net"));
    CHECK(is_subscriber_id("imsi:001010123456789"));
    CHECK(is_subscriber_id(std::string(128, 'a')));
    CHECK_FALSE(is_subscriber_id(std::string(129, 'a')));
    CHECK_FALSE(is_subscriber_id(""));
    CHECK_FALSE(is_subscriber_id("sub 1"));
    CHECK_FALSE(is_subscriber_id("sub/1"));
}

TEST_CASE("suggestions for near misses") {
    CHECK(edit_distance("", "") == 0);
    CHECK(edit_distance("abc", "") == 3);
    CHECK(edit_distance("purpse", "purpose") == 1);
    CHECK(edit_distance("prupose", "purpose") == 1);  // a swap is one edit
    CHECK(edit_distance("kitten", "sitting") == 3);

    const std::vector<std::string_view> keys{"name", "purpose", "description", "match"};
    CHECK(closest_match("purpse", keys) == "purpose");
    CHECK(closest_match("Purpose", keys) == "purpose");
    CHECK(closest_match("descripton", keys) == "description");
    CHECK(closest_match("desc", keys) == "description");  // truncated
    CHECK(closest_match("nmae", keys) == "name");
    CHECK_FALSE(closest_match("colour", keys));
    CHECK_FALSE(closest_match("x", keys));
    const std::vector<std::string_view> top{"prefixes", "ports", "hosts"};
    CHECK(closest_match("prefix", top) == "prefixes");
    CHECK(closest_match("port", top) == "ports");
    CHECK(closest_match("host", top) == "hosts");
}

}  // TEST_SUITE("policy values")
