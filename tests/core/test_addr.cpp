#include <arpa/inet.h>
#include <doctest/doctest.h>

#include "core/addr.hpp"

using namespace optgate;

TEST_CASE("IpAddr parses IPv4 and IPv6 text and prints it back") {
    auto a = IpAddr::parse("100.64.0.10");
    REQUIRE(a);
    CHECK(a->family == Family::v4);
    CHECK(a->v4_host_order() == 0x6440000a);
    CHECK(a->to_string() == "100.64.0.10");

    auto b = IpAddr::parse("2001:db8:1000:0:0:0:0:1");
    REQUIRE(b);
    CHECK(b->family == Family::v6);
    CHECK(b->bytes[0] == 0x20);
    CHECK(b->bytes[15] == 0x01);
    CHECK(b->to_string() == "2001:db8:1000::1");

    CHECK_FALSE(IpAddr::parse(""));
    CHECK_FALSE(IpAddr::parse("100.64.0"));
    CHECK_FALSE(IpAddr::parse("100.64.0.256"));
    CHECK_FALSE(IpAddr::parse("2001:db8::1::2"));
    CHECK_FALSE(IpAddr::parse("not an address"));
}

TEST_CASE("IPv4 text is inet_ntop's, for every byte value in every position") {
    // to_string formats IPv4 by hand; inet_ntop is the reference.
    for (unsigned pos = 0; pos < 4; ++pos) {
        for (unsigned v = 0; v < 256; ++v) {
            uint32_t host = 0x0a09ff63;  // 10.9.255.99: one-, two- and three-digit neighbours
            host &= ~(0xffu << (8 * pos));
            host |= v << (8 * pos);
            const IpAddr a = IpAddr::from_v4_host(host);
            char ref[INET_ADDRSTRLEN];
            REQUIRE(inet_ntop(AF_INET, a.bytes.data(), ref, sizeof ref));
            CHECK(a.to_string() == ref);
        }
    }
    CHECK(IpAddr::from_v4_host(0).to_string() == "0.0.0.0");
    CHECK(IpAddr::from_v4_host(0xffffffff).to_string() == "255.255.255.255");
}

TEST_CASE("masking keeps exactly the first N bits") {
    auto a = *IpAddr::parse("2001:db8:1000:abcd:1234:5678:9abc:def0");
    CHECK(a.masked(64).to_string() == "2001:db8:1000:abcd::");
    CHECK(a.masked(56).to_string() == "2001:db8:1000:ab00::");
    CHECK(a.masked(36).to_string() == "2001:db8:1000::");
    CHECK(a.masked(128) == a);
    CHECK(a.masked(0).to_string() == "::");
    auto v4 = *IpAddr::parse("100.127.255.255");
    CHECK(v4.masked(10).to_string() == "100.64.0.0");
    CHECK(v4.masked(31).to_string() == "100.127.255.254");
}

TEST_CASE("Prefix parsing rejects what an operator could mistype") {
    std::string err;
    auto p = Prefix::parse("100.64.0.0/10", &err);
    REQUIRE(p);
    CHECK(p->len == 10);
    CHECK(p->to_string() == "100.64.0.0/10");

    CHECK_FALSE(Prefix::parse("100.64.0.1/10", &err));
    CHECK(err.find("host bits set") != std::string::npos);
    CHECK(err.find("100.64.0.0/10") != std::string::npos);  // the suggestion

    CHECK_FALSE(Prefix::parse("100.64.0.0/33", &err));
    CHECK(err.find("longer than 32 bits") != std::string::npos);
    CHECK_FALSE(Prefix::parse("2001:db8::/129", &err));
    CHECK_FALSE(Prefix::parse("100.64.0.0/", &err));
    CHECK_FALSE(Prefix::parse("100.64.0.0/1x", &err));
    CHECK(err.find("not a number") != std::string::npos);
    CHECK_FALSE(Prefix::parse("100.64.0.0/-1", &err));

    auto bare = Prefix::parse("203.0.113.7");
    REQUIRE(bare);
    CHECK(bare->len == 32);
    auto loose = Prefix::parse("100.64.0.1/10", nullptr, true);
    REQUIRE(loose);
    CHECK(loose->to_string() == "100.64.0.0/10");
}

TEST_CASE("Prefix containment and overlap") {
    auto p = *Prefix::parse("100.64.0.0/10");
    CHECK(p.contains(*IpAddr::parse("100.64.0.10")));
    CHECK(p.contains(*IpAddr::parse("100.127.255.255")));
    CHECK_FALSE(p.contains(*IpAddr::parse("100.128.0.0")));
    CHECK_FALSE(p.contains(*IpAddr::parse("2001:db8:1000::1")));

    CHECK(p.overlaps(*Prefix::parse("100.100.0.0/16")));
    CHECK(Prefix::parse("100.100.0.0/16")->overlaps(p));
    CHECK_FALSE(p.overlaps(*Prefix::parse("100.128.0.0/9")));
    CHECK_FALSE(p.overlaps(*Prefix::parse("2001:db8::/32")));
    CHECK(Prefix::parse("::/0")->overlaps(*Prefix::parse("2001:db8:ad::/48")));
}
