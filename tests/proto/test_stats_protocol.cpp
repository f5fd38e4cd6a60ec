// Stats reports over the real protocol: data planes built on the client
// library report to consentd's publisher, which exports them in GET /metrics
// (Prometheus text: each family together under one TYPE line) and
// /v1/dataplanes; malformed reports close the connection; a data plane that
// goes away stays visible (up 0) for stats_retention. Also a client talking
// to a consentd that predates the stats frame.
#include <doctest/doctest.h>

#include <atomic>
#include <set>

#include "older_consentd.hpp"
#include "proto/stats.hpp"
#include "publisher_rig.hpp"
#include "raw_client.hpp"

using namespace optgate;
using namespace optgate::test_proto;
using proto::Goodbye;
using proto::StatEntry;
using proto::StatKind;

namespace {

bool has_line(const std::string& text, const std::string& line) {
    return ("\n" + text).find("\n" + line + "\n") != std::string::npos;
}

// The text format's grouping rule: every sample follows the one TYPE line
// of its family, with no other family in between; no family typed twice.
void check_exposition(const std::string& text) {
    std::set<std::string> typed;
    std::string current;
    size_t samples = 0;
    size_t at = 0;
    while (at < text.size()) {
        const size_t end = text.find('\n', at);
        REQUIRE(end != std::string::npos);  // every line ends with a newline
        const std::string line = text.substr(at, end - at);
        at = end + 1;
        if (line.rfind("# TYPE ", 0) == 0) {
            const std::string name = line.substr(7, line.find(' ', 7) - 7);
            CHECK_MESSAGE(typed.insert(name).second, "TYPE twice for " << name);
            current = name;
            continue;
        }
        if (line.empty() || line[0] == '#') continue;
        std::string family = line.substr(0, line.find_first_of("{ "));
        for (const char* suffix : {"_bucket", "_sum", "_count"})
            if (!typed.count(family) && family.ends_with(suffix)) family.resize(family.size() - strlen(suffix));
        CHECK_MESSAGE(family == current, "sample of " << family << " under the TYPE of " << current << ": " << line);
        ++samples;
    }
    CHECK(samples > 0);
}

// A data plane with a stats source the test controls.
struct Reporter {
    std::atomic<uint64_t> rx{0};  // before dp: outlives the client's thread
    DataPlane dp;
    Reporter(Rig& rig, const std::string& name, std::chrono::milliseconds interval = 50ms) : dp(rig.endpoint(), name) {
        dp.client.set_stats_source(
            [this](std::vector<StatEntry>& out) {
                out.push_back({"rx_packets", rx.load(std::memory_order_relaxed), StatKind::counter, "port", "0"});
                out.push_back({"rx_packets", 2 * rx.load(std::memory_order_relaxed), StatKind::counter, "port", "1"});
                out.push_back({"workers", 2, StatKind::gauge, "", ""});
            },
            interval);
    }
};

}  // namespace

TEST_CASE("reports reach GET /metrics per data plane, grouped by family, and /v1/dataplanes") {
    Rig rig;
    rig.ledger.upsert("100.64.0.10", 1);
    Reporter a(rig, "edge-1"), b(rig, "edge-2");
    a.rx = 5;
    b.rx = 7;
    a.dp.client.start();
    b.dp.client.start();
    REQUIRE(a.dp.client.wait_synced(kPatience));
    REQUIRE(b.dp.client.wait_synced(kPatience));

    REQUIRE(eventually([&] {
        const auto m = rig.metrics();
        // The report right after welcome precedes the table: wait for one after it.
        return has_line(m, R"(optgate_dp_rx_packets{dataplane="edge-1",port="0"} 5)") &&
               has_line(m, R"(optgate_dp_rx_packets{dataplane="edge-2",port="1"} 14)") &&
               has_line(m, R"(optgate_dp_control_synced{dataplane="edge-1"} 1)") &&
               has_line(m, R"(optgate_dp_control_synced{dataplane="edge-2"} 1)");
    }));
    const std::string m = rig.metrics();
    INFO(m);
    check_exposition(m);
    CHECK(has_line(m, "# TYPE optgate_dp_rx_packets counter"));
    CHECK(has_line(m, "# TYPE optgate_dp_workers gauge"));
    CHECK(has_line(m, R"(optgate_dp_rx_packets{dataplane="edge-1",port="1"} 10)"));
    CHECK(has_line(m, R"(optgate_dp_workers{dataplane="edge-2"} 2)"));
    CHECK(has_line(m, R"(optgate_dataplane_up{dataplane="edge-1"} 1)"));
    CHECK(has_line(m, R"(optgate_dataplane_up{dataplane="edge-2"} 1)"));
    // The client's own state comes along, with help from the names' table.
    CHECK(has_line(m, R"(optgate_dp_control_synced{dataplane="edge-1"} 1)"));
    CHECK(has_line(m, R"(optgate_dp_table_entries{dataplane="edge-2"} 1)"));
    CHECK(has_line(m, R"(optgate_dp_table_stale{dataplane="edge-2"} 0)"));
    CHECK(has_line(m, R"(optgate_dp_control_connects{dataplane="edge-1"} 1)"));
    CHECK(has_line(m, R"(optgate_dp_control_failovers{dataplane="edge-1"} 0)"));
    CHECK(has_line(m, "# HELP optgate_dp_control_connects " + std::string(proto::stat_help("control_connects"))));
    CHECK(m.find("optgate_dataplane_stats_age_seconds{dataplane=\"edge-1\"} ") != std::string::npos);
    CHECK(rig.metric("consentd_dataplane_stats_reports_total") >= 2);

    // Values move with the source.
    a.rx = 6;
    CHECK(
        eventually([&] { return has_line(rig.metrics(), R"(optgate_dp_rx_packets{dataplane="edge-1",port="0"} 6)"); }));

    const auto dps = rig.dataplanes();
    REQUIRE(dps.size() == 2);
    for (const auto& d : dps) {
        REQUIRE(d.stats);
        CHECK(d.stats->count == 3 + 14);  // the source's and the client's own
        REQUIRE(d.stats_age_ms);
        CHECK(*d.stats_age_ms < kPatience.count());
        const auto j = consentd::to_json(d, true);
        CHECK(j.at("stats_entries").to_number<int64_t>() == 17);
        const auto& entries = j.at("stats").as_array();
        REQUIRE(entries.size() == 17);
        CHECK(entries[0].at("name").as_string() == "control_applied_seq");  // sorted
        bool labelled = false;
        for (const auto& e : entries)
            if (e.at("name").as_string() == "rx_packets" && e.at("labels").at("port").as_string() == "1" &&
                e.at("kind").as_string() == "counter")
                labelled = true;
        CHECK(labelled);
        CHECK_FALSE(consentd::to_json(d).contains("stats"));
    }
}

TEST_CASE("a data plane that goes away stays, up 0, until it comes back or stats_retention passes") {
    // A retention that a busy machine cannot outrun between the disconnect
    // and the test's look at the metrics.
    Rig rig([](consentd::DataPlaneConfig& c) { c.stats_retention = 10s; });
    {
        Reporter a(rig, "edge-1");
        a.rx = 41;
        a.dp.client.start();
        REQUIRE(eventually(
            [&] { return has_line(rig.metrics(), R"(optgate_dp_rx_packets{dataplane="edge-1",port="0"} 41)"); }));
        a.rx = 42;
        // The last counts before stopping, without waiting for the interval.
        CHECK(a.dp.client.flush_stats(kPatience));
        a.dp.client.stop();
    }
    REQUIRE(eventually([&] { return rig.dataplanes().empty(); }));
    {
        const std::string m = rig.metrics();
        INFO(m);
        CHECK(has_line(m, R"(optgate_dataplane_up{dataplane="edge-1"} 0)"));
        CHECK(has_line(m, R"(optgate_dp_rx_packets{dataplane="edge-1",port="0"} 42)"));
        check_exposition(m);
        const auto gone = rig.on_io([&] { return rig.publisher->disconnected_dataplanes(); });
        REQUIRE(gone.size() == 1);
        CHECK(gone[0].name == "edge-1");
        REQUIRE(gone[0].disconnected_at);
        const auto j = consentd::to_json(gone[0]);
        CHECK(j.contains("disconnected_at"));
        CHECK_FALSE(j.contains("synced"));
        CHECK(j.at("stats_entries").to_number<int64_t>() == 17);
    }

    // Back under the same name: up again, and only the new process's counts.
    {
        Reporter again(rig, "edge-1");
        again.rx = 3;
        again.dp.client.start();
        REQUIRE(eventually(
            [&] { return has_line(rig.metrics(), R"(optgate_dp_rx_packets{dataplane="edge-1",port="0"} 3)"); }));
        const std::string m = rig.metrics();
        CHECK(has_line(m, R"(optgate_dataplane_up{dataplane="edge-1"} 1)"));
        CHECK(m.find("optgate_dataplane_up{dataplane=\"edge-1\"} 0") == std::string::npos);
        CHECK(rig.on_io([&] { return rig.publisher->disconnected_dataplanes(); }).empty());
    }
    // Gone again: forgotten once the retention has passed.
    CHECK(eventually([&] { return has_line(rig.metrics(), R"(optgate_dataplane_up{dataplane="edge-1"} 0)"); }));
    CHECK(eventually([&] { return rig.metrics().find("dataplane=\"edge-1\"") == std::string::npos; }));
    CHECK(rig.on_io([&] { return rig.publisher->disconnected_dataplanes(); }).empty());
}

TEST_CASE("the first report goes right after welcome; reports need no source; interval 0 turns them off") {
    Rig rig;
    SUBCASE("an hour's interval: only the report after welcome, then what flush_stats sends") {
        Reporter a(rig, "edge-1", std::chrono::hours(1));
        a.rx = 1;
        a.dp.client.start();
        REQUIRE(eventually(
            [&] { return has_line(rig.metrics(), R"(optgate_dp_rx_packets{dataplane="edge-1",port="0"} 1)"); }));
        a.rx = 2;
        std::this_thread::sleep_for(200ms);
        CHECK(has_line(rig.metrics(), R"(optgate_dp_rx_packets{dataplane="edge-1",port="0"} 1)"));
        CHECK(a.dp.client.flush_stats(kPatience));
        // flush_stats waits until the report is written; consentd reads it
        // on its own thread, a moment later.
        CHECK(eventually(
            [&] { return has_line(rig.metrics(), R"(optgate_dp_rx_packets{dataplane="edge-1",port="0"} 2)"); }));
    }
    SUBCASE("without a source, the client's own state") {
        DataPlane d(rig.endpoint(), "edge-3");
        d.client.start();
        REQUIRE(
            eventually([&] { return has_line(rig.metrics(), R"(optgate_dp_control_synced{dataplane="edge-3"} 1)"); }));
    }
    SUBCASE("interval 0: no reports, and flush_stats says so") {
        DataPlane d(rig.endpoint(), "edge-4");
        d.client.set_stats_source(nullptr, 0ms);
        d.client.start();
        REQUIRE(d.client.wait_synced(kPatience));
        CHECK_FALSE(d.client.flush_stats(300ms));
        CHECK(rig.metric("consentd_dataplane_stats_reports_total") == 0);
        CHECK(has_line(rig.metrics(), R"(optgate_dataplane_up{dataplane="edge-4"} 1)"));
    }
}

TEST_CASE("a bad stats source costs its entries, never the connection") {
    Rig rig;
    std::atomic<bool> fail{false};
    DataPlane d(rig.endpoint(), "edge-1");
    d.client.set_stats_source(
        [&](std::vector<StatEntry>& out) {
            if (fail) throw std::runtime_error("port 1 went away");
            out.push_back({"Rx-Packets", 1, StatKind::counter, "", ""});  // invalid name: dropped
            out.push_back({"rx_packets", 9, StatKind::counter, "", ""});
            out.push_back({"rx_packets", 10, StatKind::counter, "", ""});  // repeated: dropped
        },
        50ms);
    d.client.start();
    REQUIRE(eventually([&] { return has_line(rig.metrics(), R"(optgate_dp_rx_packets{dataplane="edge-1"} 9)"); }));
    const auto logged = [&](const char* text) { return d.logged().find(text) != std::string::npos; };
    CHECK(eventually([&] { return logged("stats: 2 entries dropped: invalid entry 'Rx-Packets'"); }));
    fail = true;
    CHECK(eventually([&] { return logged("the stats source failed: port 1 went away"); }));
    CHECK(eventually([&] { return !has_line(rig.metrics(), R"(optgate_dp_rx_packets{dataplane="edge-1"} 9)"); }));
    CHECK(has_line(rig.metrics(), R"(optgate_dp_control_synced{dataplane="edge-1"} 1)"));
    CHECK(d.client.status().connects == 1);
    CHECK(rig.metric("consentd_dataplane_protocol_errors_total") == 0);
}

TEST_CASE("malformed stats close that connection with a protocol error; the largest report is taken") {
    Rig rig;
    bool closed = false;
    std::string msg;
    auto raw_stats = [](uint8_t kind, const std::string& name, const std::string& label, const std::string& value) {
        std::string p = {0, 0, 0, 1, char(kind), char(name.size())};
        p += name;
        p += std::string(8, '\0');
        p += char(label.size()) + label + char(value.size()) + value;
        std::string f = {
            char(proto::kMagic0), char(proto::kMagic1), char(proto::kVersion), char(proto::FrameType::stats), 0, 0, 0,
            char(p.size())};
        return f + p;
    };
    SUBCASE("a bad name") {
        RawClient raw(rig.config.socket);
        raw.write(hello("raw"));
        raw.read_at_least(1, kPatience);
        raw.write(raw_stats(1, "rx packets", "", ""));
        CHECK(goodbye_in(raw.read_all(kPatience, closed), &msg) == Goodbye::Code::protocol_error);
        CHECK(closed);
        CHECK(msg == "malformed frame: " + std::string(proto::to_string(proto::DecodeError::bad_stat)));
    }
    SUBCASE("a label value with a quote") {
        RawClient raw(rig.config.socket);
        raw.write(hello("raw"));
        raw.write(raw_stats(1, "rx", "port", "0\""));
        CHECK(goodbye_in(raw.read_all(kPatience, closed), &msg) == Goodbye::Code::protocol_error);
        CHECK(msg.find("label value") != std::string::npos);
    }
    SUBCASE("stats before hello") {
        std::string s;
        REQUIRE(proto::encode_stats(s, std::vector<StatEntry>{{"rx", 1, StatKind::counter, "", ""}}));
        RawClient raw(rig.config.socket);
        raw.write(s);
        CHECK(goodbye_in(raw.read_all(kPatience, closed), &msg) == Goodbye::Code::protocol_error);
        CHECK(msg == "stats before hello");
    }
    SUBCASE("4096 entries of the longest names: about 700 KB, read whole") {
        std::vector<StatEntry> big;
        for (uint32_t i = 0; i < proto::kMaxStatsEntries; ++i) {
            char name[80];
            std::snprintf(name, sizeof name, "%s%05u", std::string(59, 'n').c_str(), i);
            big.push_back({name, i, StatKind::gauge, "l" + std::string(31, 'a'), std::string(64, 'v')});
        }
        std::string s;
        REQUIRE(proto::encode_stats(s, big));
        CHECK(s.size() == proto::kHeaderSize + proto::max_payload(proto::FrameType::stats));
        RawClient raw(rig.config.socket);
        raw.write(hello("big") + s);
        const std::string last = "optgate_dp_" + big.back().name + "{dataplane=\"big\"," + big.back().label_name +
                                 "=\"" + big.back().label_value + "\"} 4095";
        CHECK(eventually([&] { return has_line(rig.metrics(), last); }));
        // Still connected: a heartbeat-sized ack goes through.
        std::string ack;
        proto::encode(ack, proto::Ack{0});
        CHECK(raw.write(ack));
        CHECK(rig.dataplanes().size() == 1);
        CHECK(rig.metric("consentd_dataplane_protocol_errors_total") == 0);
    }
}

TEST_CASE("data planes that disagree on a kind: the family is untyped") {
    Rig rig;
    DataPlane a(rig.endpoint(), "edge-1"), b(rig.endpoint(), "edge-2");
    a.client.set_stats_source([](auto& out) { out.push_back({"queue_depth", 1, StatKind::counter, "", ""}); }, 50ms);
    b.client.set_stats_source([](auto& out) { out.push_back({"queue_depth", 2, StatKind::gauge, "", ""}); }, 50ms);
    a.client.start();
    b.client.start();
    REQUIRE(eventually([&] {
        const auto m = rig.metrics();
        return has_line(m, R"(optgate_dp_queue_depth{dataplane="edge-1"} 1)") &&
               has_line(m, R"(optgate_dp_queue_depth{dataplane="edge-2"} 2)");
    }));
    const auto m = rig.metrics();
    CHECK(has_line(m, "# TYPE optgate_dp_queue_depth untyped"));
    check_exposition(m);
}

TEST_CASE("a consentd that predates stats refuses the frame once; the client stops reporting, not syncing") {
    TempDir dir;
    OlderConsentd old(dir.file("old.sock"),
                      {proto::FrameType::stats, proto::FrameType::disclosure, proto::FrameType::features});
    DataPlane d(old.endpoint(), "edge-1");
    d.client.set_stats_source([](auto& out) { out.push_back({"rx_packets", 1, StatKind::counter, "", ""}); }, 50ms);
    d.client.start();
    REQUIRE(d.client.wait_synced(kPatience));
    CHECK(eventually([&] { return d.logged().find("does not know the stats frame") != std::string::npos; }));
    // Back in sync on the next connection, acknowledging heartbeats, and
    // never a stats frame again.
    CHECK(eventually([&] { return old.connections >= 2 && old.acks_after_refusal >= 5; }));
    CHECK(old.refused(proto::FrameType::stats) == 1);
    CHECK(old.refused(proto::FrameType::features) == 1);
    // A busy machine may cost a connection to the idle limit: connected
    // again soon, still without stats or features.
    CHECK(eventually([&] { return d.client.status().connected && d.client.status().synced; }));
    CHECK_FALSE(d.client.flush_stats(200ms));
}
