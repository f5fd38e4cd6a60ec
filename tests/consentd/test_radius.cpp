// The RADIUS accounting decoder and authenticators (radius_packet.hpp), and
// the `radius:` config section. The packet vectors were made with Python's
// hashlib and hmac (an implementation apart from OpenSSL's EVP calls here):
//   Accounting-Request, Identifier 9, secret "testing123-secret-0123":
//   Acct-Status-Type Start, User-Name "cust-1@isp.example", Acct-Session-Id
//   "s-1", Framed-IP-Address 100.64.1.1, Delegated-IPv6-Prefix
//   2001:db8:1000:600::/56 (7 prefix octets), Vendor-Specific 3561/1 "line-7";
//   the same with Identifier 10 and a Message-Authenticator.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "consentd/config.hpp"
#include "consentd/radius_packet.hpp"

using namespace optgate;
using namespace optgate::consentd;

namespace {

constexpr std::string_view kRadiusSecret = "testing123-secret-0123";

std::vector<uint8_t> hex(std::string_view h) {
    std::vector<uint8_t> out;
    for (size_t i = 0; i + 1 < h.size(); i += 2)
        out.push_back(uint8_t(std::stoul(std::string(h.substr(i, 2)), nullptr, 16)));
    return out;
}

const auto kPlain = hex(
    "04090052c1dd78a239d95f4a90213774ce84f0222806000000010114637573742d31406973702e6578616d706c652c05732d3108066440"
    "01017b0b003820010db81000061a0e00000de901086c696e652d37");
const auto kResponse = hex("050900144fa2114bf9cb28a643c8beb13e34eed3");
const auto kWithMa = hex(
    "040a0064fcf6952f270f8df57aee51976dd348712806000000010114637573742d31406973702e6578616d706c652c05732d3108066440"
    "01017b0b003820010db81000061a0e00000de901086c696e652d375012ab4c3afecd1a60c1b1d7f18013122dbb");

radius::Malformed why_of(const std::vector<uint8_t>& d) {
    radius::Malformed why{};
    radius::decode(d, why);
    return why;
}

std::vector<std::string> radius_config_errors(const std::string& yaml) {
    try {
        load_config_text(yaml, "c.yaml", "/etc/optgate");
    } catch (const policy::PolicyError& e) {
        std::vector<std::string> out;
        for (const auto& d : e.diagnostics()) out.push_back(d.to_string());
        return out;
    }
    return {};
}

const std::string kBase =
    "database: l.db\npolicy: p.yaml\ntokens:\n  - {name: portal, role: write, sha256: "
    "a81e611a041b13f078bf8ebe5dab4d4fd63fcc5594661c918bec093a2f416a7e}\n";

}  // namespace

TEST_CASE("radius: a valid Accounting-Request decodes, authenticates and is answered") {
    radius::Malformed why{};
    const auto p = radius::decode(kPlain, why);
    REQUIRE(p);
    CHECK(p->code() == radius::kAccountingRequest);
    CHECK(p->identifier() == 9);
    CHECK(radius::integer(*p->find(radius::acct_status_type)) == radius::start);
    CHECK(radius::text(*p->find(radius::user_name)) == "cust-1@isp.example");
    CHECK(radius::ipv4_address(*p->find(radius::framed_ip_address))->to_string() == "100.64.1.1");
    CHECK(radius::ipv6_prefix(*p->find(radius::delegated_ipv6_prefix))->to_string() == "2001:db8:1000:600::/56");
    CHECK(radius::text(*p->find_vendor(3561, 1)) == "line-7");
    CHECK_FALSE(p->find_vendor(3561, 2));
    CHECK_FALSE(p->find_vendor(9, 1));
    CHECK(p->message_authenticator_at() == 0);
    CHECK(radius::request_authenticator_ok(*p, kRadiusSecret));
    CHECK(radius::message_authenticator_ok(*p, kRadiusSecret));  // none
    CHECK_FALSE(radius::request_authenticator_ok(*p, "testing123-secret-0124"));
    const auto answer = radius::accounting_response(*p, kRadiusSecret);
    CHECK(std::vector<uint8_t>(answer.begin(), answer.end()) == kResponse);

    // Padding after Length is ignored (RFC 2865 §3).
    auto padded = kPlain;
    padded.insert(padded.end(), 5, 0xee);
    const auto q = radius::decode(padded, why);
    REQUIRE(q);
    CHECK(q->bytes().size() == kPlain.size());
    CHECK(radius::request_authenticator_ok(*q, kRadiusSecret));
}

TEST_CASE("radius: the Message-Authenticator is checked") {
    radius::Malformed why{};
    const auto p = radius::decode(kWithMa, why);
    REQUIRE(p);
    CHECK(p->message_authenticator_at() == kWithMa.size() - 16);
    CHECK(radius::request_authenticator_ok(*p, kRadiusSecret));
    CHECK(radius::message_authenticator_ok(*p, kRadiusSecret));
    CHECK_FALSE(radius::message_authenticator_ok(*p, "testing123-secret-0124"));
    auto bad = kWithMa;
    bad.back() ^= 1;
    CHECK_FALSE(radius::message_authenticator_ok(*radius::decode(bad, why), kRadiusSecret));
}

TEST_CASE("radius: malformed packets are refused by name, never read out of bounds") {
    using M = radius::Malformed;
    CHECK(why_of({}) == M::too_short);
    CHECK(why_of(std::vector<uint8_t>(kPlain.begin(), kPlain.begin() + 19)) == M::too_short);
    auto v = kPlain;
    v[2] = 0x10, v[3] = 0x01;  // 4097
    CHECK(why_of(v) == M::bad_length);
    v = kPlain;
    v[2] = 0, v[3] = 19;
    CHECK(why_of(v) == M::bad_length);
    CHECK(why_of(std::vector<uint8_t>(kPlain.begin(), kPlain.end() - 1)) == M::truncated);
    // The last attribute (Vendor-Specific, 14 bytes) claims one more byte.
    v = kPlain;
    v[v.size() - 14 + 1] = 15;
    CHECK(why_of(v) == M::attribute_overrun);
    for (uint8_t len : {0, 1}) {
        v = kPlain;
        v[v.size() - 14 + 1] = len;
        CHECK(why_of(v) == M::attribute_too_short);
    }
    // A lone type octet at the end.
    v = kPlain;
    v.push_back(1);
    v[3] = uint8_t(v.size());
    CHECK(why_of(v) == M::attribute_overrun);
    // A Message-Authenticator of 17 bytes, and two of them.
    v = kPlain;
    for (uint8_t b : {80, 19}) v.push_back(b);
    v.insert(v.end(), 17, 0);
    v[3] = uint8_t(v.size());
    CHECK(why_of(v) == M::bad_message_authenticator_length);
    v = kWithMa;
    v.insert(v.end(), kWithMa.end() - 18, kWithMa.end());
    v[3] = uint8_t(v.size());
    CHECK(why_of(v) == M::bad_message_authenticator_length);
    // An empty value is valid on the wire but treated as absent.
    v = kPlain;
    for (uint8_t b : {31, 2}) v.push_back(b);
    v[3] = uint8_t(v.size());
    radius::Malformed why{};
    const auto p = radius::decode(v, why);
    REQUIRE(p);
    CHECK_FALSE(p->find(radius::calling_station_id));
}

TEST_CASE("radius: typed values") {
    const std::vector<uint8_t> p56 = {0, 56, 0x20, 0x01, 0x0d, 0xb8, 0x10, 0x00, 0x06};
    CHECK(radius::ipv6_prefix(p56)->to_string() == "2001:db8:1000:600::/56");
    const std::vector<uint8_t> host_bits = {0, 60, 0x20, 0x01, 0x0d, 0xb8, 0x10, 0x00, 0x06, 0xff};
    CHECK(radius::ipv6_prefix(host_bits)->to_string() == "2001:db8:1000:6f0::/60");
    CHECK_FALSE(radius::ipv6_prefix(std::vector<uint8_t>{0, 56, 0x20, 0x01}));  // fewer octets than the length needs
    CHECK_FALSE(radius::ipv6_prefix(std::vector<uint8_t>{0, 129, 0, 0}));
    CHECK_FALSE(radius::ipv6_prefix(std::vector<uint8_t>(19, 0)));
    CHECK(radius::ipv6_prefix(std::vector<uint8_t>{0, 0})->to_string() == "::/0");
    CHECK_FALSE(radius::integer(std::vector<uint8_t>{0, 0, 1}));
    CHECK_FALSE(radius::ipv4_address(std::vector<uint8_t>{100, 64, 1}));
}

TEST_CASE("radius config: clients, subscriber rule, and every error") {
    const auto c = load_config_text(kBase + R"(radius:
  listen: {address: "::", port: 11813}
  clients:
    - {name: bng-1, address: 203.0.113.10, secret: "0123456789abcdef"}
    - {name: pool, address: 203.0.113.0/24, secret: "fedcba9876543210"}
  subscriber:
    attribute: Vendor-Specific
    vendor: 3561
    vendor_type: 1
    rewrite: {match: '^([^@]+)@.*$', replace: '$1'}
)",
                                    "c.yaml", "/etc/optgate")
                       .config;
    REQUIRE(c.radius);
    CHECK(c.radius->address == "::");
    CHECK(c.radius->port == 11813);
    CHECK(c.radius->subscriber.attribute == radius::vendor_specific);
    CHECK(c.radius->subscriber.vendor == 3561);
    CHECK(c.radius->client_for(*IpAddr::parse("203.0.113.10"))->name == "bng-1");  // longest prefix
    CHECK(c.radius->client_for(*IpAddr::parse("203.0.113.11"))->name == "pool");
    CHECK(c.radius->client_for(*IpAddr::parse("::ffff:203.0.113.10"))->name == "bng-1");  // a dual-stack socket
    CHECK_FALSE(c.radius->client_for(*IpAddr::parse("198.51.100.1")));
    CHECK_FALSE(load_config_text(kBase, "c.yaml", "/etc").config.radius);  // off by default

    const auto errors = radius_config_errors(kBase + R"(radius:
  clients:
    - {name: weak, address: 203.0.113.9, secret: short}
    - {name: bng-1, address: 203.0.113.10, secret: "0123456789abcdef"}
    - {name: bng-1, address: 203.0.113.11, secret: "0123456789abcdef"}
    - {name: "b ad", address: 203.0.113.300, secret: "0123456789abcdef"}
  subscriber: {attribute: Framed-IP-Address, vendor: 3, rewrite: {match: '(', replace: x}}
  max_pending: 0
  colour: red
)");
    auto has = [&](std::string_view s) {
        for (const auto& e : errors)
            if (e.find(s) != std::string::npos) return true;
        return false;
    };
    CHECK(has("shorter than 16 characters"));
    CHECK(has("duplicate RADIUS client name 'bng-1'"));
    CHECK(has("client name 'b ad'"));
    CHECK(has("'address' must be an address or a prefix"));
    CHECK(has("'attribute' must be User-Name"));
    CHECK(has("'vendor' and 'vendor_type' go with attribute: Vendor-Specific"));
    CHECK(has("not a valid regular expression"));
    CHECK(has("colour"));
    CHECK(has("max_pending"));
    CHECK(radius_config_errors(kBase + "radius:\n  clients: []\n").size() == 1);  // no clients
}
