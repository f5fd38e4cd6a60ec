// Mutual TLS between data planes and consentd over TCP (certificates:
// tls_certs.hpp). And the config rule that a non-loopback TCP listener needs
// TLS.
#include <doctest/doctest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>

#include "consentd/dataplane_config.hpp"
#include "publisher_rig.hpp"
#include "tls_certs.hpp"

using namespace optgate;
using namespace optgate::test_proto;

TEST_CASE("mutual TLS: a data plane with a certificate from the CA gets the table; others are refused") {
    const Certs certs;
    Rig rig(tls_only(certs));
    rig.ledger.upsert("100.64.0.10", 1);
    const uint16_t port = *rig.server->tcp_port();

    DataPlane good(tcp_endpoint(port), "edge-tls", 50ms, certs.client());
    good.client.start();
    REQUIRE(good.client.wait_synced(kPatience));
    CHECK(good.look("100.64.0.10").purposes == 1);
    const auto d = rig.dataplanes();
    REQUIRE(d.size() == 1);
    CHECK(d[0].address.find("tls CN=edge-tls") != std::string::npos);
    CHECK(rig.metric("consentd_dataplane_tls_failures_total") == 0);

    SUBCASE("a certificate from another CA") {
        DataPlane rogue(tcp_endpoint(port), "edge-rogue", 50ms,
                        proto::TlsFiles{certs.at("rogue.crt"), certs.at("rogue.key"), certs.at("ca.crt")});
        rogue.client.start();
        CHECK_FALSE(rogue.client.wait_synced(1500ms));
        CHECK_FALSE(rogue.client.status().last_error.empty());
        CHECK(rig.metric("consentd_dataplane_tls_failures_total") >= 1);
    }
    SUBCASE("no certificate at all") {
        namespace asio = boost::asio;
        asio::io_context io;
        asio::ssl::context ctx(asio::ssl::context::tls_client);
        ctx.load_verify_file(certs.at("ca.crt"));
        ctx.set_verify_mode(asio::ssl::verify_peer);
        asio::ssl::stream<asio::ip::tcp::socket> s(io, ctx);
        s.lowest_layer().connect({asio::ip::make_address("127.0.0.1"), port});
        boost::system::error_code ec;
        s.handshake(asio::ssl::stream_base::client, ec);
        std::string welcome;
        if (!ec) {
            // TLS 1.3 finishes the client's side before the server checks
            // the client: the refusal arrives as an alert on the first read.
            std::string h;
            proto::encode(h, proto::Hello{"edge-nocert", 0, ""});
            asio::write(s, asio::buffer(h), ec);
            char buf[256];
            const size_t n = s.read_some(asio::buffer(buf), ec);
            welcome.assign(buf, n);
        }
        CHECK(ec);  // refused, one way or the other
        CHECK(welcome.empty());
        CHECK(eventually([&] { return rig.metric("consentd_dataplane_tls_failures_total") >= 1; }));
        CHECK(rig.dataplanes().size() == 1);
    }
    SUBCASE("a data plane refuses a consentd its CA did not sign") {
        DataPlane wary(tcp_endpoint(port), "edge-wary", 50ms,
                       proto::TlsFiles{certs.at("client.crt"), certs.at("client.key"), certs.at("rogue-ca.crt")});
        wary.client.start();
        CHECK_FALSE(wary.client.wait_synced(1500ms));
        CHECK(wary.client.status().last_error.find("certificate") != std::string::npos);
    }
}

TEST_CASE("the client library refuses plain TCP beyond loopback, and TLS files that do not load") {
    Enforcement e(Enforcement::Mode::controlled);
    proto::ControlClient::Options o;
    o.name = "edge-1";
    CHECK_THROWS_WITH_AS(proto::ControlClient(e, o), doctest::Contains("1..16 consentd endpoints"),
                         std::invalid_argument);
    o.endpoints.resize(1);
    auto& ep = o.endpoints[0];
    ep.kind = proto::Endpoint::Kind::tcp;
    ep.host = "198.51.100.7";
    ep.port = 8471;
    CHECK_THROWS_AS(proto::ControlClient(e, o), std::invalid_argument);
    o.tls = proto::TlsFiles{"/nonexistent.crt", "/nonexistent.key", "/nonexistent-ca.crt"};
    CHECK_THROWS_WITH_AS(proto::ControlClient(e, o), doctest::Contains("/nonexistent.crt"), std::runtime_error);
    o.tls.reset();
    ep.host = "127.0.0.1";
    CHECK_NOTHROW(proto::ControlClient(e, o));
    // Every endpoint of a list is held to the rule, not only the first.
    std::string why;
    o.endpoints = *proto::Endpoint::parse_list("/run/optgate/consentd.sock,127.0.0.1:8471,198.51.100.7:8471", why);
    CHECK_THROWS_WITH_AS(proto::ControlClient(e, o), doctest::Contains("198.51.100.7:8471 needs mutual TLS"),
                         std::invalid_argument);
    o.endpoints.pop_back();
    CHECK_NOTHROW(proto::ControlClient(e, o));
    o.name = "bad name";
    CHECK_THROWS_AS(proto::ControlClient(e, o), std::invalid_argument);
}

TEST_CASE("endpoint lists: comma-separated, each parsed, none twice, at most 16") {
    std::string why;
    const auto l = proto::Endpoint::parse_list(" /run/a.sock , [::1]:8471,consentd-2.example:8471", why);
    REQUIRE(l);
    REQUIRE(l->size() == 3);
    CHECK((*l)[0].kind == proto::Endpoint::Kind::unix_socket);
    CHECK((*l)[0].path == "/run/a.sock");
    CHECK((*l)[1].host == "::1");
    CHECK((*l)[2].port == 8471);
    CHECK(proto::Endpoint::to_string(*l) == "/run/a.sock,[::1]:8471,consentd-2.example:8471");
    CHECK(proto::Endpoint::parse_list("127.0.0.1:1", why)->size() == 1);
    CHECK(proto::split_comma_list(" a , b,") == std::vector<std::string_view>{"a", "b", ""});
    CHECK(proto::split_comma_list("") == std::vector<std::string_view>{""});

    CHECK_FALSE(proto::Endpoint::parse_list("", why));
    CHECK(why == "no endpoint");
    CHECK_FALSE(proto::Endpoint::parse_list("127.0.0.1:1,", why));
    CHECK(why == "an empty endpoint in the list");
    CHECK_FALSE(proto::Endpoint::parse_list("127.0.0.1:1,,127.0.0.1:2", why));
    CHECK(why == "an empty endpoint in the list");
    CHECK_FALSE(proto::Endpoint::parse_list("127.0.0.1:1,127.0.0.1:1", why));
    CHECK(why == "'127.0.0.1:1' is in the list twice");
    CHECK_FALSE(proto::Endpoint::parse_list("127.0.0.1:1,::1:2", why));
    CHECK(why.find("brackets") != std::string::npos);
    std::string many;
    for (int i = 1; i <= 17; ++i) many += (i > 1 ? "," : "") + std::string("127.0.0.1:") + std::to_string(i);
    CHECK_FALSE(proto::Endpoint::parse_list(many, why));
    CHECK(why == "more than 16 endpoints");
    many.resize(many.rfind(','));
    CHECK(proto::Endpoint::parse_list(many, why)->size() == 16);
}

TEST_CASE("config: a TCP listener beyond loopback needs TLS; socket modes; heartbeat vs staleness") {
    using namespace policy::syntax;
    auto read = [](const std::string& yaml, consentd::DataPlaneConfig& c) {
        Diagnostics d("consentd.yaml");
        const auto root = parse_document(yaml, d);
        REQUIRE(root);
        consentd::read_dataplane_config(Value{*root, location_of(*root), "'dataplanes'"}, c, d, "/etc/optgate");
        std::string errors;
        try {
            d.throw_if_errors();
        } catch (const policy::PolicyError& e) {
            errors = e.what();
        }
        return errors;
    };
    consentd::DataPlaneConfig c;
    CHECK(read("tcp: {address: 0.0.0.0, port: 8471}\n", c).find("needs 'tls'") != std::string::npos);
    CHECK_FALSE(c.tcp);

    c = {};
    CHECK(read("tcp: {address: 127.0.0.1, port: 8471}\n", c).empty());
    REQUIRE(c.tcp);
    CHECK_FALSE(c.tcp->tls);

    c = {};
    CHECK(read("socket: run/consentd.sock\nsocket_mode: \"0600\"\nheartbeat_interval: 250ms\n"
               "tcp:\n  address: \"::\"\n  port: 9000\n  tls: {certificate: a.crt, private_key: a.key, client_ca: "
               "ca.crt}\n",
               c)
              .empty());
    CHECK(c.socket == "/etc/optgate/run/consentd.sock");
    CHECK(c.socket_mode == 0600);
    CHECK(c.heartbeat_interval == std::chrono::milliseconds(250));
    REQUIRE(c.tcp);
    REQUIRE(c.tcp->tls);
    CHECK(c.tcp->tls->ca == "/etc/optgate/ca.crt");
    CHECK(c.tcp->port == 9000);

    c = {};
    CHECK(read("socket_mode: \"0666\"\n", c).find("any local user") != std::string::npos);
    c = {};
    CHECK(read("socket: \"\"\n", c).find("neither") != std::string::npos);
    c = {};
    CHECK(read("heartbeat: 1s\n", c).find("heartbeat_interval") != std::string::npos);  // did you mean
    c = {};
    CHECK(c.stats_retention == std::chrono::minutes(10));
    CHECK(read("stats_retention: 90s\n", c).empty());
    CHECK(c.stats_retention == std::chrono::seconds(90));
    CHECK_FALSE(read("stats_retention: 0s\n", c).empty());

    c = {};
    c.heartbeat_interval = std::chrono::milliseconds(1000);
    CHECK(consentd::check_heartbeat_against(c, std::chrono::milliseconds(30000)).empty());
    CHECK_FALSE(consentd::check_heartbeat_against(c, std::chrono::milliseconds(2000)).empty());
}
