// consentd's data-plane listeners under attack (issue 17, items 1 and 5;
// docs/protocol.md, "Limits before hello"): connections that never begin a
// TLS handshake, frames before hello, a hello with another data plane's name.
// Each attack is bounded in count, loopback only (attackers bind their own
// 127.0.0.x source addresses), and every wait is for an event.
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/read.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>

#include <arpa/inet.h>
#include <filesystem>

#include "proto/codec.hpp"
#include "publisher_rig.hpp"
#include "raw_client.hpp"
#include "tls_certs.hpp"

using namespace optgate;
using namespace optgate::test_proto;
using proto::Goodbye;

namespace {

size_t open_descriptors() {
    size_t n = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
    return n;
}

// A TCP connection to 127.0.0.1:port from `source` that never sends a byte.
class Silent {
public:
    Silent(const char* source, uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
        REQUIRE(fd_ >= 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        ::inet_pton(AF_INET, source, &a.sin_addr);
        REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        a.sin_port = htons(port);
        ::inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
        REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    }
    ~Silent() { ::close(fd_); }
    Silent(const Silent&) = delete;
    Silent& operator=(const Silent&) = delete;
    // consentd closed it (end of stream or reset), without waiting.
    bool closed_by_peer() const {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, 0) <= 0) return false;
        char c = 0;
        return ::recv(fd_, &c, 1, MSG_DONTWAIT) <= 0;
    }

private:
    int fd_;
};

// Lowers the soft descriptor limit for a while (the data-plane server raised
// it to the hard one at start).
class DescriptorLimit {
public:
    explicit DescriptorLimit(size_t soft) {
        REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved_) == 0);
        rlimit l = saved_;
        l.rlim_cur = soft;
        REQUIRE(::setrlimit(RLIMIT_NOFILE, &l) == 0);
    }
    ~DescriptorLimit() { ::setrlimit(RLIMIT_NOFILE, &saved_); }
    DescriptorLimit(const DescriptorLimit&) = delete;
    DescriptorLimit& operator=(const DescriptorLimit&) = delete;

private:
    rlimit saved_{};
};

// The first frame consentd sends a TLS client (certificate `tls`) after its
// hello with `name`; goodbye's message in `message`.
std::optional<proto::FrameType> answer_to_hello(uint16_t port, const proto::TlsFiles& tls, const std::string& name,
                                                std::string* message = nullptr) {
    namespace asio = boost::asio;
    asio::io_context io;
    asio::ssl::context ctx(asio::ssl::context::tls_client);
    ctx.load_verify_file(tls.ca);
    ctx.use_certificate_chain_file(tls.certificate);
    ctx.use_private_key_file(tls.private_key, asio::ssl::context::pem);
    ctx.set_verify_mode(asio::ssl::verify_peer);
    asio::ssl::stream<asio::ip::tcp::socket> s(io, ctx);
    s.lowest_layer().connect({asio::ip::make_address("127.0.0.1"), port});
    boost::system::error_code ec;
    s.handshake(asio::ssl::stream_base::client, ec);
    if (ec) return std::nullopt;
    asio::write(s, asio::buffer(hello(name)), ec);
    std::vector<uint8_t> buf;
    for (;;) {
        const auto r = proto::decode(buf, proto::Direction::to_client);
        if (r.status == proto::DecodeStatus::frame) {
            if (const auto* g = std::get_if<Goodbye>(&r.frame); g && message) *message = std::string(g->message);
            return proto::FrameType(buf[3]);
        }
        if (r.status == proto::DecodeStatus::error) return std::nullopt;
        uint8_t chunk[4096];
        const size_t n = s.read_some(asio::buffer(chunk), ec);
        if (ec) return std::nullopt;
        buf.insert(buf.end(), chunk, chunk + n);
    }
}

std::string refused(const std::string& reason) {
    return "consentd_dataplane_connections_refused_total{reason=\"" + reason + "\"}";
}

}  // namespace

TEST_CASE("connections that never begin a TLS handshake: one address holds a few; a data plane still connects") {
    const Certs certs;
    Rig rig(tls_only(certs, [](consentd::DataPlaneConfig& c) {
        c.max_pending = 16;
        c.max_pending_per_address = 4;
        // Held as long as the test runs, unless refused at accept.
        c.handshake_timeout = std::chrono::minutes(10);
        c.hello_timeout = std::chrono::minutes(10);
    }));
    rig.ledger.upsert("100.64.0.10", 1);
    const uint16_t port = *rig.server->tcp_port();
    // 300 attackers may hold 300 descriptors here, consentd's side 4 (or,
    // without the cap, 300 more: past this limit, accept fails EMFILE).
    constexpr size_t kAttackers = 300;
    const DescriptorLimit limit(open_descriptors() + kAttackers + 100);

    std::vector<std::unique_ptr<Silent>> attack;
    for (size_t i = 0; i < kAttackers; ++i) attack.push_back(std::make_unique<Silent>("127.0.0.2", port));
    CHECK(eventually([&] { return rig.metric(refused("address_cap")) == kAttackers - 4; }));
    CHECK(rig.metric("consentd_dataplane_pending_connections") == 4);
    // The excess was closed at accept, the first four are held.
    CHECK(eventually([&] {
        return std::all_of(attack.begin() + 4, attack.end(), [](const auto& a) { return a->closed_by_peer(); });
    }));
    CHECK_FALSE(std::any_of(attack.begin(), attack.begin() + 4, [](const auto& a) { return a->closed_by_peer(); }));

    // While they hold: a data plane with a certificate connects.
    DataPlane good(tcp_endpoint(port), "edge-tls", 50ms, certs.client());
    good.client.start();
    REQUIRE(good.client.wait_synced(kPatience));
    CHECK(good.look("100.64.0.10").purposes == 1);
    CHECK(rig.metric("consentd_dataplane_pending_connections") == 4);
    CHECK(rig.dataplanes().size() == 1);
}

TEST_CASE("at max_pending the listener stops accepting: the rest wait in the backlog, and are closed in turn") {
    const Certs certs;
    Rig rig(tls_only(certs, [](consentd::DataPlaneConfig& c) {
        c.max_pending = 8;
        c.max_pending_per_address = 8;
        c.handshake_timeout = 500ms;
        c.hello_timeout = std::chrono::minutes(10);
    }));
    const uint16_t port = *rig.server->tcp_port();
    const size_t before = open_descriptors();
    // Four addresses, eight each: every one within its address's cap.
    std::vector<std::unique_ptr<Silent>> attack;
    for (const char* source : {"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"})
        for (int i = 0; i < 8; ++i) attack.push_back(std::make_unique<Silent>(source, port));
    // Until the last is closed, consentd holds at most 8 of them: the
    // attackers' 32 descriptors, 8 accepted, and a few closing (sampled
    // while the rounds of handshake timeouts go on).
    size_t most = 0;
    CHECK(eventually([&] {
        most = std::max(most, open_descriptors() - before);
        return std::all_of(attack.begin(), attack.end(), [](const auto& a) { return a->closed_by_peer(); });
    }));
    CHECK(most <= attack.size() + 8 + 4);
    CHECK(rig.metric("consentd_dataplane_accept_pauses_total") >= 1);
    CHECK(rig.metric(refused("handshake_timeout")) == attack.size());
    CHECK(rig.metric(refused("address_cap")) == 0);
    CHECK(eventually([&] { return rig.metric("consentd_dataplane_pending_connections") == 0; }));

    DataPlane good(tcp_endpoint(port), "edge-tls", 50ms, certs.client());
    good.client.start();
    CHECK(good.client.wait_synced(kPatience));
}

TEST_CASE("before hello: no data-plane slot, and no frame but a hello") {
    Rig rig([](consentd::DataPlaneConfig& c) {
        c.max_dataplanes = 2;
        c.hello_timeout = std::chrono::minutes(10);
    });
    rig.ledger.upsert("100.64.0.10", 1);
    // A stats header announcing 700 KB, its payload never sent (issue 17:
    // 300 of these filled every slot and 173 MiB).
    std::string stats_header = {char(proto::kMagic0), char(proto::kMagic1), char(proto::kVersion),
                                char(proto::FrameType::stats)};
    const uint32_t len = 700000;
    for (int shift = 24; shift >= 0; shift -= 8) stats_header.push_back(char((len >> shift) & 0xff));
    std::string ack;
    proto::encode(ack, proto::Ack{0});

    std::vector<std::unique_ptr<RawClient>> idle;  // say nothing at all
    idle.reserve(5);
    for (int i = 0; i < 5; ++i) idle.push_back(std::make_unique<RawClient>(rig.config.socket));
    for (int i = 0; i < 10; ++i) {
        RawClient raw(rig.config.socket);
        raw.write(i % 2 ? stats_header : ack);
        bool closed = false;
        const std::string got = raw.read_all(kPatience, closed);
        CHECK(closed);
        std::string msg;
        const auto r = proto::decode({reinterpret_cast<const uint8_t*>(got.data()), got.size()},
                                     proto::Direction::to_client);
        REQUIRE(r.status == proto::DecodeStatus::frame);
        const auto* g = std::get_if<Goodbye>(&r.frame);
        REQUIRE(g);
        CHECK(g->code == Goodbye::Code::protocol_error);
        CHECK(g->message.find(i % 2 ? "a stats frame of 700008 bytes before hello" : "ack before hello") !=
              std::string_view::npos);
    }
    CHECK(rig.metric(refused("before_hello")) == 10);

    // Five connections without hello hold no slot: two data planes connect.
    DataPlane a(rig.endpoint(), "edge-a");
    DataPlane b(rig.endpoint(), "edge-b");
    a.client.start();
    b.client.start();
    REQUIRE(a.client.wait_synced(kPatience));
    REQUIRE(b.client.wait_synced(kPatience));
    CHECK(rig.dataplanes().size() == 2);
    CHECK(rig.metric("consentd_dataplanes_connected") == 2);
    // A third is refused, and counted.
    RawClient third(rig.config.socket);
    third.write(hello("edge-c"));
    bool closed = false;
    third.read_all(kPatience, closed);
    CHECK(closed);
    CHECK(rig.metric(refused("too_many_dataplanes")) == 1);
}

TEST_CASE("a data plane's name is its certificate's, and no other identity takes it over") {
    const Certs certs({{"other", "edge-other", ""},
                       {"twin", "edge-tls", ""},  // the same name, another key
                       {"multi", "edge-cn", "subjectAltName=DNS:edge-san,IP:127.0.0.9"}});
    Rig rig(tls_only(certs));
    rig.ledger.upsert("100.64.0.10", 1);
    const uint16_t port = *rig.server->tcp_port();
    DataPlane good(tcp_endpoint(port), "edge-tls", 50ms, certs.client());
    good.client.start();
    REQUIRE(good.client.wait_synced(kPatience));
    const auto first = rig.dataplanes();
    REQUIRE(first.size() == 1);

    std::string msg;
    // A valid certificate of another name, claiming edge-tls.
    CHECK(answer_to_hello(port, certs.leaf("other"), "edge-tls", &msg) == proto::FrameType::goodbye);
    CHECK(msg.find("neither the certificate's CN nor one of its DNS names") != std::string::npos);
    CHECK(rig.metric(refused("name_not_in_certificate")) == 1);
    // A certificate for edge-tls too, but not the one connected.
    CHECK(answer_to_hello(port, certs.leaf("twin"), "edge-tls", &msg) == proto::FrameType::goodbye);
    CHECK(msg.find("connected with another certificate") != std::string::npos);
    CHECK(rig.metric(refused("identity_conflict")) == 1);
    // The original kept its slot throughout, and acknowledges what commits.
    const auto now = rig.dataplanes();
    REQUIRE(now.size() == 1);
    CHECK(now[0].id == first[0].id);
    const uint64_t seq = rig.ledger.upsert("100.64.0.11", 2);
    CHECK(eventually([&] { return rig.dataplanes().at(0).applied_seq >= seq; }));
    CHECK(rig.dataplanes().at(0).id == first[0].id);

    // A DNS name among the subject alternative names will do; an IP will not.
    CHECK(answer_to_hello(port, certs.leaf("multi"), "edge-san") == proto::FrameType::welcome);
    CHECK(answer_to_hello(port, certs.leaf("multi"), "edge-cn") == proto::FrameType::welcome);
    CHECK(answer_to_hello(port, certs.leaf("multi"), "127.0.0.9") == proto::FrameType::goodbye);
    // The same certificate again: a reconnect after a half-open connection
    // takes the name over.
    CHECK(answer_to_hello(port, certs.client(), "edge-tls") == proto::FrameType::welcome);
    CHECK(rig.metric(refused("identity_conflict")) == 1);
    CHECK(rig.metric(refused("name_not_in_certificate")) == 2);
}
