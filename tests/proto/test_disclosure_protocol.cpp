// Disclosure reports over the real protocol: data planes built on the client
// library report to consentd's sessions, which hand them to a sink (here a
// fake that records them and says when they are stored); acknowledgements
// only after the sink's done(true); resends with the same ids after a
// reconnect; the client's bounded queue; flush_disclosures; a consentd
// without a sink, and consentds that predate the frame.
#include <doctest/doctest.h>

#include <atomic>
#include <deque>

#include "older_consentd.hpp"
#include "publisher_rig.hpp"

using namespace optgate;
using namespace optgate::test_proto;
using proto::Goodbye;

namespace {

constexpr auto kWait = 30000ms;

// Records every report; stores at once, or holds each until release().
class FakeSink : public consentd::DisclosureSink {
public:
    explicit FakeSink(bool hold = false) : hold_(hold) {}
    void submit(consentd::DisclosureReport report, std::function<void(bool)> done) override {
        std::lock_guard lk(mu_);
        reports_.push_back(report);
        if (hold_) {
            held_.push_back(std::move(done));
        } else {
            // From another thread, as a real store answers from its own.
            std::thread([d = std::move(done)] { d(true); }).detach();
        }
    }
    // Answers the oldest held report.
    bool release(bool stored) {
        std::function<void(bool)> d;
        {
            std::lock_guard lk(mu_);
            if (held_.empty()) return false;
            d = std::move(held_.front());
            held_.pop_front();
        }
        d(stored);
        return true;
    }
    size_t held() {
        std::lock_guard lk(mu_);
        return held_.size();
    }
    std::vector<consentd::DisclosureReport> reports() {
        std::lock_guard lk(mu_);
        return reports_;
    }
    size_t count() {
        std::lock_guard lk(mu_);
        return reports_.size();
    }

private:
    bool hold_;
    std::mutex mu_;
    std::vector<consentd::DisclosureReport> reports_;
    std::deque<std::function<void(bool)>> held_;
};

DisclosureEntry entry(const char* addr, const char* destination, const char* identifier, uint64_t passed,
                      uint64_t stripped) {
    const IpAddr a = *IpAddr::parse(addr);
    DisclosureEntry e;
    e.family = a.family;
    std::copy(a.bytes.begin(), a.bytes.begin() + (a.family == Family::v4 ? 4 : 16), e.key.begin());
    e.destination = destination;
    e.identifier = identifier;
    e.passed = passed;
    e.stripped = stripped;
    return e;
}

// A source that hands out `batches` batches (one entry each, passed = its
// number), then nothing.
struct Source {
    std::atomic<uint64_t> made{0};
    uint64_t batches = 1;
    explicit Source(uint64_t n) : batches(n) {}
    void operator()(DisclosureBatch& b) {
        if (made >= batches) return;
        const uint64_t n = ++made;
        b.start_unix_ms = 1700000000000 + n * 60000;
        b.end_unix_ms = b.start_unix_ms + 60000;
        b.entries.push_back(entry("100.64.0.10", "example-adnet", "X-UIDH", n, 2 * n));
    }
};

struct Client {
    Source source;
    DataPlane dp;
    Client(const proto::Endpoint& ep, uint64_t batches, std::chrono::milliseconds interval,
           const std::function<void(proto::ControlClient::Options&)>& tune = {})
        : source(batches), dp(ep, "edge-1", 50ms, std::nullopt, tune) {
        dp.client.set_disclosure_source([this](DisclosureBatch& b) { source(b); }, interval);
    }
};

bool logged(DataPlane& d, const char* text) { return d.logged().find(text) != std::string::npos; }

}  // namespace

TEST_CASE("a report reaches the sink with the hello name; it is acknowledged only after done(true)") {
    FakeSink sink(true);
    Rig rig([](consentd::DataPlaneConfig&) {}, &sink);
    Client c(rig.endpoint(), 1, 50ms);
    c.dp.client.start();
    REQUIRE(eventually([&] { return sink.count() == 1; }, kWait));
    const auto r = sink.reports()[0];
    CHECK(r.dataplane == "edge-1");
    CHECK(r.reporter != 0);
    CHECK(r.seq == 1);
    CHECK(r.batch.start_unix_ms == 1700000060000);
    CHECK(r.batch.end_unix_ms == 1700000120000);
    REQUIRE(r.batch.entries.size() == 1);
    CHECK(r.batch.entries[0] == entry("100.64.0.10", "example-adnet", "X-UIDH", 1, 2));
    // Held by the sink: not acknowledged, still kept.
    auto s = c.dp.client.status();
    CHECK(s.disclosures_acked == 0);
    CHECK(s.disclosures_pending == 1);
    CHECK(s.disclosures_sent == 1);
    REQUIRE(sink.release(true));
    REQUIRE(eventually([&] { return c.dp.client.status().disclosures_acked == 1; }, kWait));
    s = c.dp.client.status();
    CHECK(s.disclosures_pending == 0);
    CHECK(rig.metrics().find("consentd_dataplane_disclosure_reports_total{result=\"stored\"} 1") != std::string::npos);
    // The client's own stats say so too.
    REQUIRE(eventually(
        [&] {
            return rig.metrics().find("optgate_dp_disclosure_reports_acked{dataplane=\"edge-1\"} 1") !=
                   std::string::npos;
        },
        kWait));
    CHECK(sink.count() == 1);
}

TEST_CASE("a report the sink could not store is sent again on the same connection, with the same ids") {
    FakeSink sink(true);
    Rig rig([](consentd::DataPlaneConfig&) {}, &sink);
    Client c(rig.endpoint(), 1, 50ms, [](proto::ControlClient::Options& o) { o.disclosure_resend_after = 200ms; });
    c.dp.client.start();
    REQUIRE(eventually([&] { return sink.held() == 1; }, kWait));
    REQUIRE(sink.release(false));
    REQUIRE(eventually([&] { return sink.held() == 1 && sink.count() == 2; }, kWait));
    REQUIRE(sink.release(true));
    REQUIRE(eventually([&] { return c.dp.client.status().disclosures_acked == 1; }, kWait));
    const auto reports = sink.reports();
    CHECK(reports[0].reporter == reports[1].reporter);
    CHECK(reports[0].seq == reports[1].seq);
    CHECK(reports[0].batch.entries == reports[1].batch.entries);
    CHECK(c.dp.client.status().connects == 1);
    CHECK(rig.metrics().find("consentd_dataplane_disclosure_reports_total{result=\"failed\"} 1") != std::string::npos);
}

TEST_CASE("a connection dropped before the ack: the report goes again after the reconnect, same reporter and seq") {
    FakeSink sink(true);
    Rig rig([](consentd::DataPlaneConfig&) {}, &sink);
    Client c(rig.endpoint(), 2, 50ms);
    c.dp.client.start();
    REQUIRE(eventually([&] { return sink.held() == 2; }, kWait));
    REQUIRE(rig.on_io([&] { return rig.publisher->disconnect("edge-1", "test"); }));
    REQUIRE(eventually([&] { return c.dp.client.status().connects >= 2 && sink.count() >= 4; }, kWait));
    // The first connection's session is gone: its done(true) must be harmless.
    REQUIRE(sink.release(true));
    REQUIRE(sink.release(true));
    // The resends, in order, then stored and acknowledged.
    while (sink.release(true)) {
    }
    REQUIRE(eventually([&] { return c.dp.client.status().disclosures_acked == 2; }, kWait));
    const auto reports = sink.reports();
    REQUIRE(reports.size() == 4);
    CHECK(reports[2].reporter == reports[0].reporter);
    CHECK(reports[2].seq == 1);
    CHECK(reports[3].seq == 2);
    CHECK(reports[2].batch.entries == reports[0].batch.entries);
    CHECK(c.dp.client.status().disclosures_pending == 0);
}

TEST_CASE("the client's queue is bounded: the oldest reports are dropped and counted, the newest sent in order") {
    TempDir dir;
    proto::Endpoint ep;
    ep.kind = proto::Endpoint::Kind::unix_socket;
    ep.path = dir.file("later.sock");
    // One report is 94 bytes: room for three.
    Client c(ep, 10, 20ms, [](proto::ControlClient::Options& o) { o.disclosure_queue_bytes = 350; });
    c.dp.client.start();
    REQUIRE(eventually([&] { return c.source.made == 10; }, kWait));
    REQUIRE(eventually([&] { return c.dp.client.status().disclosures_dropped == 7; }, kWait));
    CHECK(c.dp.client.status().disclosures_pending == 3);
    CHECK(logged(c.dp, "queue of unacknowledged reports is full"));

    FakeSink sink;
    Rig rig([&](consentd::DataPlaneConfig& cfg) { cfg.socket = ep.path; }, &sink);
    REQUIRE(eventually([&] { return c.dp.client.status().disclosures_acked == 3; }, kWait));
    const auto reports = sink.reports();
    REQUIRE(reports.size() == 3);
    for (size_t i = 0; i < 3; ++i) {
        CHECK(reports[i].seq == 8 + i);
        CHECK(reports[i].batch.entries[0].passed == 8 + i);
    }
    CHECK(c.dp.client.status().disclosures_dropped == 7);
}

TEST_CASE("flush_disclosures drains once more and waits for the acknowledgements") {
    SUBCASE("stored") {
        FakeSink sink;
        Rig rig([](consentd::DataPlaneConfig&) {}, &sink);
        Client c(rig.endpoint(), 1, 0ms);  // only flushes drain
        c.dp.client.start();
        REQUIRE(c.dp.client.wait_synced(kWait));
        CHECK(sink.count() == 0);
        CHECK(c.dp.client.flush_disclosures(kWait));
        CHECK(sink.count() == 1);
        CHECK(c.dp.client.status().disclosures_acked == 1);
        CHECK(c.source.made == 1);
    }
    SUBCASE("not stored in time") {
        FakeSink sink(true);
        Rig rig([](consentd::DataPlaneConfig&) {}, &sink);
        Client c(rig.endpoint(), 1, 0ms);
        c.dp.client.start();
        REQUIRE(c.dp.client.wait_synced(kWait));
        CHECK_FALSE(c.dp.client.flush_disclosures(300ms));
        CHECK(sink.count() == 1);
        CHECK(c.dp.client.status().disclosures_pending == 1);
    }
}

TEST_CASE("a consentd without a disclosure store says goodbye (unsupported); the client keeps its reports and sync") {
    Rig rig;
    Client c(rig.endpoint(), 1, 50ms);
    c.dp.client.start();
    REQUIRE(eventually([&] { return logged(c.dp, "does not take disclosure reports"); }, kWait));
    REQUIRE(eventually([&] { return c.dp.client.status().connects >= 2 && c.dp.client.status().connected; }, kWait));
    const uint64_t seq = rig.ledger.upsert("100.64.0.10", 1);
    REQUIRE(eventually([&] { return c.dp.client.status().applied_seq >= seq; }, kWait));
    CHECK(c.dp.client.status().disclosures_pending == 1);
    CHECK(c.dp.client.status().disclosures_sent == 1);
    CHECK(rig.metric("consentd_dataplane_protocol_errors_total") == 0);
    CHECK(rig.metrics().find("consentd_dataplane_disclosure_reports_total{result=\"refused\"} 1") != std::string::npos);
    // Still reporting stats.
    CHECK_FALSE(logged(c.dp, "does not know the stats frame"));
    CHECK(c.dp.client.flush_stats(kWait));
}

TEST_CASE("a newer consentd serves a data plane without disclosures as before") {
    FakeSink sink;
    Rig rig([](consentd::DataPlaneConfig&) {}, &sink);
    DataPlane d(rig.endpoint(), "edge-2");
    d.client.start();
    REQUIRE(d.client.wait_synced(kWait));
    const uint64_t seq = rig.ledger.upsert("100.64.0.10", 1);
    REQUIRE(eventually([&] { return d.client.status().applied_seq >= seq; }, kWait));
    CHECK(sink.count() == 0);
    CHECK(d.client.status().disclosures_sent == 0);
    CHECK(rig.metric("consentd_dataplane_protocol_errors_total") == 0);
    CHECK(rig.metrics().find("optgate_dp_disclosure_reports") == std::string::npos);
}

TEST_CASE("a consentd that knows stats but not disclosures refuses one report; the client keeps reports and sync") {
    TempDir dir;
    OlderConsentd old(dir.file("old.sock"), {proto::FrameType::disclosure, proto::FrameType::features});
    Client c(old.endpoint(), 3, 50ms);
    c.dp.client.set_stats_source(
        [](auto& out) {
            out.push_back({"rx_packets", 1, proto::StatKind::counter, "", ""});
        },
        100ms);
    c.dp.client.start();
    REQUIRE(eventually([&] { return logged(c.dp, "does not take disclosure reports"); }, kWait));
    // Back in sync on the next connection, stats still flowing, no report again.
    const int stats_before = old.taken(proto::FrameType::stats);
    REQUIRE(eventually(
        [&] {
            return old.connections >= 2 && old.acks_after_refusal >= 5 &&
                   old.taken(proto::FrameType::stats) > stats_before + 2;
        },
        kWait));
    REQUIRE(eventually([&] { return c.source.made == 3; }, kWait));
    // Features, then the report, refused once each (however many
    // connections a busy machine costs besides).
    CHECK(old.refused(proto::FrameType::disclosure) == 1);
    CHECK(old.refused(proto::FrameType::features) == 1);
    CHECK(old.refused_total() == 2);
    CHECK_FALSE(logged(c.dp, "does not know the stats frame"));
    REQUIRE(eventually([&] { return c.dp.client.status().connected && c.dp.client.status().synced; }, kWait));
    const auto s = c.dp.client.status();
    CHECK(s.disclosures_pending == 3);  // kept, bounded
    CHECK(s.disclosures_acked == 0);
}

TEST_CASE("a consentd older than stats: both refused in turn, the client stays in sync") {
    TempDir dir;
    OlderConsentd old(dir.file("old.sock"),
                      {proto::FrameType::stats, proto::FrameType::disclosure, proto::FrameType::features});
    Client c(old.endpoint(), 1, 50ms);
    c.dp.client.start();
    // In either order, each refusal ends one connection; the next one lasts.
    REQUIRE(eventually(
        [&] { return logged(c.dp, "does not know the stats frame") && logged(c.dp, "does not take disclosure"); },
        kWait));
    REQUIRE(eventually([&] { return c.dp.client.status().connected; }, kWait));
    const int refused = old.refused_total();
    const int acks = old.acks_after_refusal;
    REQUIRE(eventually([&] { return old.acks_after_refusal >= acks + 5; }, kWait));
    CHECK(old.refused_total() == refused);  // nothing more asked of it
    CHECK(old.refused(proto::FrameType::features) == 1);
    CHECK(old.refused_total() <= 4);
    CHECK(old.refused(proto::FrameType::disclosure) <= 1);
    CHECK(eventually([&] { return c.dp.client.status().synced; }, kWait));
}
