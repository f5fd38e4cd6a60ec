// Pseudonym keys end to end (docs/consentd.md, "Pseudonym keys";
// docs/protocol.md, "Pseudonym keys"): consentd makes and keeps a key per
// collector that receives pseudonyms, optgate-replay --control as the data
// plane gets them and delivers pseudonyms (not the value, not a strip) to a
// consenting subscriber's collector; the same after a consentd restart;
// never a key byte in consentd's answers, metrics or log, nor in the
// replay's output; a data plane that does not ask gets no keys.
#include <doctest/doctest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <openssl/evp.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "e2e_support.hpp"
#include "packet_builder.hpp"
#include "proto/codec.hpp"

using namespace optgate;
using namespace optgate::e2e;

namespace {

const std::string kPseudonymPolicy = R"(version: 1
purposes:
  advertising:
    description: Advertising partners receive an identifier for your device.
    benefit: Ads chosen for your interests.
    data: [device identifier]
    retention: 90 days
  analytics:
    description: Analytics providers count visits.
    benefit: The sites and apps you use learn what to improve.
    data: [device identifier]
    retention: 13 months
identifiers:
  http_headers:
    - header: X-UIDH
      name: unique identifier header
collectors:
  - name: example-adnet
    purpose: advertising
    description: Example Ad Network Ltd.
    deliver: pseudonym
    rotate: 7d
    match:
      prefixes: [203.0.113.0/25]
  - name: web-analytics
    purpose: analytics
    description: Example Analytics Inc.
    deliver: pseudonym
    match:
      prefixes: [198.51.100.0/24]
  - name: raw-metrics
    purpose: analytics
    description: Example Metrics, raw values.
    match:
      prefixes: [198.18.0.0/15]
subscribers:
  prefixes: [100.64.0.0/10, "2001:db8:1000::/36"]
  ipv6_key_length: 64
enforcement:
  staleness_limit: 60s
)";

constexpr std::string_view kUidh = "0123456789abcdef0123456789abcdef0123";  // lower-case hex, 36 bytes

struct Conn {
    std::string src, dst;
    uint16_t sport;
    test::Bytes syn() const {
        return test::PacketBuilder().ipv4(src, dst).tcp(sport, 80, {.seq = 9000, .flags = test::SYN}).build();
    }
    test::Bytes request() const {
        const std::string req = "GET /p HTTP/1.1\r\nHost: www.example.org\r\nX-UIDH: " + std::string(kUidh) +
                                "\r\nAccept: */*\r\n\r\n";
        return test::PacketBuilder()
            .ipv4(src, dst)
            .tcp(sport, 80, {.seq = 9001, .ack = 1, .flags = test::PSH | test::ACK})
            .payload(req)
            .build();
    }
};

// The X-UIDH value in a frame as it left.
std::string uidh_of(const test::Bytes& frame) {
    const std::string text(frame.begin(), frame.end());
    const size_t at = text.find("X-UIDH: ");
    REQUIRE(at != std::string::npos);
    return text.substr(at + 8, kUidh.size());
}

const Conn kAnalyticsConn{"100.64.0.10", "198.51.100.7", 41001};  // consents to analytics: pseudonym
const Conn kAdnetConn{"100.64.0.10", "203.0.113.5", 41002};       // consents to advertising: pseudonym
const Conn kRaw{"100.64.0.10", "198.18.0.9", 41003};              // analytics, raw collector: the value
const Conn kNoConsent{"100.64.0.11", "198.51.100.7", 41004};      // no consent: stripped

std::vector<test::Bytes> traffic() {
    std::vector<test::Bytes> f;
    for (const Conn* c : {&kAnalyticsConn, &kAdnetConn, &kRaw, &kNoConsent}) {
        f.push_back(c->syn());
        f.push_back(c->request());
    }
    return f;
}

struct Seen {
    std::string analytics, adnet, raw, no_consent;
};

Seen replay_once(Consentd& c) {
    const Replay r = replay_control(c.socket(), traffic());
    INFO(r.run.output);
    REQUIRE(r.run.exit_code == 0);
    REQUIRE(r.output.size() == 8);
    return {uidh_of(r.output[1].data), uidh_of(r.output[3].data), uidh_of(r.output[5].data), uidh_of(r.output[7].data)};
}

// The keys in consentd's store, as the text forms a leak would take: hex
// (both cases) and base64 of the 16 bytes.
std::vector<std::string> key_texts(const std::string& store) {
    std::ifstream in(store);
    std::vector<std::string> out;
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#') continue;
        std::istringstream f(line);
        std::string rotate, period, hex;
        f >> rotate >> period >> hex;
        REQUIRE(hex.size() == 32);
        out.push_back(hex);
        std::string upper = hex;
        for (char& ch : upper) ch = char(std::toupper(static_cast<unsigned char>(ch)));
        out.push_back(upper);
        unsigned char bytes[16];
        for (size_t i = 0; i < 16; ++i) bytes[i] = uint8_t(std::stoul(hex.substr(2 * i, 2), nullptr, 16));
        unsigned char b64[32] = {};
        EVP_EncodeBlock(b64, bytes, 16);
        out.push_back(std::string(reinterpret_cast<char*>(b64)).substr(0, 21));  // without the padding's effect
    }
    return out;
}

bool all_hex(std::string_view s) { return s.find_first_not_of("0123456789abcdef") == std::string_view::npos; }

// A bare data plane on the Unix socket.
struct FramePeer {
    int fd = -1;
    explicit FramePeer(const std::string& path) : fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
        REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    }
    ~FramePeer() { ::close(fd); }
    FramePeer(const FramePeer&) = delete;
    FramePeer& operator=(const FramePeer&) = delete;
    void write(const std::string& s) { (void)!::send(fd, s.data(), s.size(), MSG_NOSIGNAL); }
    // Reads frames until `stop` says so for one of them; the frame types seen.
    template <class Stop>
    std::vector<proto::FrameType> read_until(Stop stop) {
        std::vector<proto::FrameType> types;
        const auto end = std::chrono::steady_clock::now() + kPatience;
        while (std::chrono::steady_clock::now() < end) {
            for (;;) {
                const auto r = proto::decode({reinterpret_cast<const uint8_t*>(in.data()), in.size()},
                                             proto::Direction::to_client);
                if (r.status == proto::DecodeStatus::error) FAIL("bad frame from consentd");
                if (r.status != proto::DecodeStatus::frame) break;
                types.push_back(r.type);
                // Heartbeats answered, or consentd drops a silent peer.
                if (std::holds_alternative<proto::Heartbeat>(r.frame)) {
                    std::string ack;
                    proto::encode(ack, proto::Ack{0});
                    write(ack);
                }
                const bool done = stop(r.frame);
                in.erase(0, r.consumed);
                if (done) return types;
            }
            pollfd p{fd, POLLIN, 0};
            if (::poll(&p, 1, 50) <= 0) continue;
            char buf[65536];
            const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
            if (n <= 0) break;
            in.append(buf, size_t(n));
        }
        FAIL("consentd did not send what was waited for");
        return types;
    }
    std::string in;
};

void grant_all(Consentd& c) {
    REQUIRE(c.grant("sub-1", "analytics").status == 200);
    REQUIRE(c.grant("sub-1", "advertising").status == 200);
    REQUIRE(c.bind("100.64.0.10", "sub-1").status == 200);
    REQUIRE(c.bind("100.64.0.11", "sub-2").status == 200);
}

}  // namespace

TEST_CASE(
    "consentd's pseudonym keys: a consenting pass leaves as a pseudonym, per collector, the same after a restart") {
    Consentd c(kPseudonymPolicy);
    c.start();
    grant_all(c);
    const Seen first = replay_once(c);
    // Not the value, not a strip: a pseudonym of the same class and length.
    CHECK(first.analytics != kUidh);
    CHECK(first.analytics != std::string(kUidh.size(), 'x'));
    CHECK(first.analytics.size() == kUidh.size());
    CHECK(all_hex(first.analytics));
    CHECK(first.adnet != kUidh);
    CHECK(all_hex(first.adnet));
    // Two collectors, two keys: they cannot link the subscriber through it.
    CHECK(first.adnet != first.analytics);
    // A raw collector gets the value; no consent, no value.
    CHECK(first.raw == kUidh);
    CHECK(first.no_consent == std::string(kUidh.size(), 'x'));

    const std::string store = c.database() + ".pseudonym-keys";
    const auto keys = key_texts(store);
    CHECK(keys.size() == 4 * 3);  // two collectors, current and next period; three spellings each

    // A restart within the period: the same keys, the same pseudonyms.
    c.kill(SIGTERM);
    REQUIRE(c.wait() == 0);
    const std::string first_log = c.log();
    c.start();
    const Seen second = replay_once(c);
    CHECK(second.analytics == first.analytics);
    CHECK(second.adnet == first.adnet);

    // No key material anywhere an operator or a collector reads.
    std::vector<std::pair<std::string, std::string>> places = {
        {"log before the restart", first_log},
        {"log", c.log()},
        {"/metrics", c.request("GET", "/metrics").body},
        {"/v1/dataplanes", c.request("GET", "/v1/dataplanes").body},
        {"/v1/policy", c.request("GET", "/v1/policy").body},
        {"/v1/subscribers/sub-1", c.request("GET", "/v1/subscribers/sub-1").body},
    };
    const Replay r = replay_control(c.socket(), traffic());
    places.push_back({"replay output", r.run.output});
    places.push_back({"replay report", boost::json::serialize(r.report)});
    std::string frames;
    for (const auto& rec : r.output) frames.append(rec.data.begin(), rec.data.end());
    places.push_back({"replayed packets", frames});
    for (const auto& place : places) {
        // Not a structured binding: clang 14 cannot capture one (INFO does).
        const std::string& where = place.first;
        const std::string& text = place.second;
        INFO(where);
        CHECK(text.size() > 0);
        for (const auto& k : keys) CHECK(text.find(k) == std::string::npos);
    }
}

TEST_CASE("a data plane that does not ask for keys gets none; one that asks gets the current and next per collector") {
    // Heartbeats 2 s apart: the test reads a few of them to know nothing
    // else came, and consentd drops a peer only after 20 s of silence.
    Consentd c(kPseudonymPolicy, "  heartbeat_interval: 2s\n");
    c.start();
    FramePeer old(c.socket());
    std::string hello;
    proto::encode(hello, proto::Hello{"old-edge", 0, ""});
    old.write(hello);
    // Welcome, the snapshot, then heartbeats: never a key.
    int heartbeats = 0;
    const auto types = old.read_until(
        [&](const proto::Frame& f) { return std::holds_alternative<proto::Heartbeat>(f) && ++heartbeats == 2; });
    CHECK(std::count(types.begin(), types.end(), proto::FrameType::pseudonym_keys) == 0);
    CHECK(std::count(types.begin(), types.end(), proto::FrameType::snapshot_end) == 1);

    FramePeer fresh(c.socket());
    std::string out;
    proto::encode(out, proto::Hello{"new-edge", 0, ""});
    proto::encode(out, proto::Features{proto::Features::kPseudonymKeys});
    fresh.write(out);
    std::vector<std::string> collectors;
    const auto now = uint64_t(std::time(nullptr));
    fresh.read_until([&](const proto::Frame& f) {
        const auto* k = std::get_if<proto::PseudonymKeys>(&f);
        if (!k) return false;
        proto::for_each_pseudonym_key(*k, [&](const proto::PseudonymKeyView& v) {
            collectors.emplace_back(v.collector);
            // Periods are whole rotations of the unix clock.
            const uint64_t len = v.collector == "example-adnet" ? 7 * 86400 : 30 * 86400;
            CHECK(v.not_after_unix_s - v.not_before_unix_s == len);
            CHECK(v.not_before_unix_s % len == 0);
            CHECK(v.not_before_unix_s <= now + len);
            CHECK(now < v.not_after_unix_s);
        });
        return true;
    });
    std::sort(collectors.begin(), collectors.end());
    CHECK(collectors == std::vector<std::string>{"example-adnet", "example-adnet", "web-analytics", "web-analytics"});

    // A reload that makes raw-metrics a pseudonym collector: its keys come,
    // before the policy that needs them; the old peer still gets none.
    std::string reloaded = kPseudonymPolicy;
    const std::string anchor = "    description: Example Metrics, raw values.\n";
    reloaded.insert(reloaded.find(anchor) + anchor.size(), "    deliver: pseudonym\n    rotate: 1d\n");
    c.dir.write("policy.yaml", reloaded);
    const auto reload = c.request("POST", "/v1/policy/reload");
    INFO(reload.body);
    REQUIRE(reload.status == 200);
    size_t keys_now = 0;
    const auto after = fresh.read_until([&](const proto::Frame& f) {
        if (const auto* k = std::get_if<proto::PseudonymKeys>(&f)) keys_now = k->count;
        return std::holds_alternative<proto::PolicyUpdate>(f) || std::holds_alternative<proto::SnapshotBegin>(f);
    });
    CHECK(keys_now == 6);
    CHECK(std::count(after.begin(), after.end(), proto::FrameType::pseudonym_keys) == 1);
    heartbeats = 0;
    const auto old_after = old.read_until(
        [&](const proto::Frame& f) { return std::holds_alternative<proto::Heartbeat>(f) && ++heartbeats == 2; });
    CHECK(std::count(old_after.begin(), old_after.end(), proto::FrameType::pseudonym_keys) == 0);
    // The store holds the new collector's keys too.
    CHECK(key_texts(c.database() + ".pseudonym-keys").size() == 6 * 3);
}
