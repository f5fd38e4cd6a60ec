// End to end, what was shared about each subscriber (docs/transparency.md):
// optgate-replay --control counts identifiers per subscriber key, reports
// them to consentd, consentd attributes them through its binding history,
// and GET /v1/subscribers/{id}/disclosures (and optgatectl disclosures)
// must say exactly what the replay's --report counted for that
// subscriber's keys: nothing lost, nothing doubled, nothing given to the
// wrong subscriber.
//
// Policy below: advertising to example-adnet 203.0.113.0/25, analytics to
// web-analytics 198.51.100.0/24; the EDNS0 client subnet option is the
// identifier. DNS to anywhere else goes to "(none)" and is stripped.
#include <doctest/doctest.h>
#include <signal.h>

#include <map>
#include <sstream>
#include <thread>

#include "e2e_support.hpp"

using namespace optgate;
using namespace optgate::e2e;

namespace {

// A staleness limit long enough that a consentd restart does not turn the
// replay's verdicts to "stale" (the counts would still agree, but the
// tests below also check what was passed).
const std::string kDisclosurePolicy = ecs_policy_yaml("60s");

// A small clock margin, so that consentd acknowledges reports soon after
// their interval ends (end + margin + 1 s).
constexpr auto kMargin = 200ms;
const std::string kDisclosuresYaml = "disclosures: {clock_margin: 200ms}\n";
const std::string kHeartbeats = "  heartbeat_interval: 100ms\n";

const char* const kAdnetAddress = "203.0.113.53";
const char* const kAnalyticsAddress = "198.51.100.53";
const char* const kNowhere = "198.18.0.53";
const std::string kEcsName = "EDNS client subnet";

// (destination, identifier) -> (passed, stripped)
using Counts = std::map<std::pair<std::string, std::string>, std::pair<uint64_t, uint64_t>>;

std::string show(const Counts& c) {
    std::ostringstream o;
    for (const auto& [k, v] : c) o << k.first << " / " << k.second << ": " << v.first << " " << v.second << "\n";
    return o.str();
}

// The report's "disclosures", per key. With --control no subscriber is named.
std::map<std::string, Counts> report_by_key(const Replay& r) {
    std::map<std::string, Counts> out;
    for (const auto& row : r.report.at("disclosures").as_array()) {
        CHECK(row.at("subscriber").is_null());
        auto& c = out[std::string(row.at("key").as_string())]
                     [{std::string(row.at("destination").as_string()), std::string(row.at("identifier").as_string())}];
        c.first += row.at("passed").to_number<uint64_t>();
        c.second += row.at("stripped").to_number<uint64_t>();
    }
    CHECK(r.report.at("disclosures_overflowed").to_number<uint64_t>() == 0);
    return out;
}

// The API's answer for `sub`, summed over its days (the default range, the
// 30 days up to today, holds today's and yesterday's rows).
Counts api_counts(Consentd& c, const std::string& sub) {
    const auto r = c.request("GET", "/v1/subscribers/" + sub + "/disclosures");
    INFO(r.body);
    REQUIRE(r.status == 200);
    const auto body = r.json().as_object();
    CHECK(body.at("subscriber").as_string() == sub);
    Counts out;
    uint64_t passed = 0, stripped = 0;
    for (const auto& d : body.at("days").as_array())
        for (const auto& col : d.at("collectors").as_array())
            for (const auto& id : col.at("identifiers").as_array()) {
                auto& x = out[{std::string(col.at("name").as_string()), std::string(id.at("name").as_string())}];
                x.first += id.at("passed").to_number<uint64_t>();
                x.second += id.at("stripped").to_number<uint64_t>();
                passed += id.at("passed").to_number<uint64_t>();
                stripped += id.at("stripped").to_number<uint64_t>();
            }
    CHECK(body.at("passed").to_number<uint64_t>() == passed);
    CHECK(body.at("stripped").to_number<uint64_t>() == stripped);
    return out;
}

// optgatectl disclosures SUB's table: DAY COLLECTOR PURPOSE IDENTIFIER... PASSED STRIPPED.
Counts ctl_counts(Consentd& c, const std::string& sub) {
    const auto r = run({env("OPTGATECTL"), "disclosures", sub, "--server", c.url(), "--token", Consentd::kToken});
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    Counts out;
    std::istringstream in(r.output);
    for (std::string line; std::getline(in, line);) {
        std::istringstream l(line);
        std::vector<std::string> w;
        for (std::string x; l >> x;) w.push_back(x);
        // A day's row: "YYYY-MM-DD" first, at least one word of identifier.
        if (w.size() < 6 || w[0].size() != 10 || w[0][4] != '-' || w[0][7] != '-') continue;
        std::string identifier = w[3];
        for (size_t i = 4; i + 2 < w.size(); ++i) identifier += " " + w[i];
        auto& x = out[{w[1], identifier}];
        x.first += std::stoull(w[w.size() - 2]);
        x.second += std::stoull(w[w.size() - 1]);
    }
    return out;
}

// A metric line's value, 0 when absent.
uint64_t metric_value(Consentd& c, const std::string& line_start) {
    const auto body = "\n" + c.request("GET", "/metrics").body;
    const auto at = body.find("\n" + line_start + " ");
    return at == std::string::npos ? 0 : uint64_t(std::stod(body.substr(at + line_start.size() + 2)));
}
uint64_t entries_attributed(Consentd& c, const char* attribution) {
    return metric_value(c, std::string("consentd_disclosure_entries_total{attribution=\"") + attribution + "\"}");
}

// The binding history's time stamps are consentd's clock at the event; a
// report's interval is widened by the margin. Waiting this long after the
// last binding before a data plane starts counting keeps its first interval
// clear of the binding (a wait for time itself to pass, not for an event).
void let_bindings_settle() { std::this_thread::sleep_for(kMargin * 5); }

// One value from the ledger database (sqlite3 -readonly; consentd holds it
// in WAL mode, so reading beside it is safe).
std::string sql(Consentd& c, const std::string& query) {
    const auto r = run({"/usr/bin/sqlite3", "-readonly", c.database(), query});
    INFO(query << "\n" << r.output);
    REQUIRE(r.exit_code == 0);
    return r.output;
}

}  // namespace

TEST_CASE("disclosures: the API says per subscriber, collector and identifier what the replay counted") {
    Consentd c(kDisclosurePolicy, kHeartbeats, kDisclosuresYaml);
    c.start();
    // a: advertising only; b: analytics only; c: nothing; 100.64.0.99 unbound.
    const std::map<std::string, std::string> bindings{
        {"100.64.0.11", "sub-a"}, {"100.64.0.12", "sub-b"}, {"100.64.0.13", "sub-c"}};
    for (const auto& [address, sub] : bindings) seq_of(c.bind(address, sub));
    seq_of(c.grant("sub-a", "advertising"));
    seq_of(c.grant("sub-b", "analytics"));
    seq_of(c.bind("100.64.0.14", "sub-d"));  // bound, sends nothing
    let_bindings_settle();

    std::vector<test::Bytes> frames;
    const auto add = [&](int n, const char* src, const char* dst, bool ecs = true) {
        for (int i = 0; i < n; ++i) frames.push_back(ecs ? dns_with_ecs(src, dst) : dns_without_ecs(src, dst));
    };
    add(3, "100.64.0.11", kAdnetAddress);
    add(2, "100.64.0.11", kAnalyticsAddress);
    add(1, "100.64.0.11", kNowhere);
    add(1, "100.64.0.12", kAdnetAddress);
    add(2, "100.64.0.12", kAnalyticsAddress);
    add(1, "100.64.0.12", kAnalyticsAddress, false);  // no identifier: not counted
    add(2, "100.64.0.13", kAdnetAddress);
    add(2, "100.64.0.99", kAdnetAddress);
    add(1, "100.64.0.99", kAnalyticsAddress);
    add(1, "100.64.0.11", kAdnetAddress);  // a's again, after the others

    const auto r = replay_control(c.socket(), frames, {"--name", "e2e-disclosures"});
    const auto reported = r.report.at("control").at("disclosure_reports");
    INFO("control: " << boost::json::serialize(r.report.at("control")));
    CHECK(reported.at("pending").to_number<uint64_t>() == 0);
    CHECK(reported.at("acknowledged").to_number<uint64_t>() == reported.at("sent").to_number<uint64_t>());

    // The replay counted what the capture holds (so the comparison below is
    // over known numbers, not over two equal mistakes).
    auto by_key = report_by_key(r);
    REQUIRE(by_key.size() == 4);
    CHECK(by_key["100.64.0.11"] == Counts{{{"example-adnet", kEcsName}, {4, 0}},
                                          {{"web-analytics", kEcsName}, {0, 2}},
                                          {{"(none)", kEcsName}, {0, 1}}});
    CHECK(by_key["100.64.0.12"] ==
          Counts{{{"example-adnet", kEcsName}, {0, 1}}, {{"web-analytics", kEcsName}, {2, 0}}});
    CHECK(by_key["100.64.0.13"] == Counts{{{"example-adnet", kEcsName}, {0, 2}}});
    CHECK(by_key["100.64.0.99"] ==
          Counts{{{"example-adnet", kEcsName}, {0, 2}}, {{"web-analytics", kEcsName}, {0, 1}}});

    // Each subscriber's API answer is exactly the report's rows for the keys
    // it held; the unbound key's counts are nobody's.
    std::map<std::string, Counts> expected{{"sub-d", {}}};
    for (const auto& [address, sub] : bindings) expected[sub] = by_key[address];
    for (const auto& entry : expected) {
        const std::string& sub = entry.first;  // not a structured binding: INFO captures it
        const Counts& want = entry.second;
        INFO("subscriber " << sub);
        const auto got = api_counts(c, sub);
        INFO("API:\n" << show(got) << "report:\n" << show(want));
        CHECK(got == want);
        const auto ctl = ctl_counts(c, sub);
        INFO("optgatectl:\n" << show(ctl));
        CHECK(ctl == want);
    }
    CHECK(entries_attributed(c, "unbound") >= 2);  // 100.64.0.99's two (destination, identifier) entries
    CHECK(entries_attributed(c, "ambiguous") == 0);
    CHECK(entries_attributed(c, "subscriber") >= 6);
    // Nobody else is shown the unbound key's counts: they are kept apart.
    CHECK(sql(c,
              "SELECT reason, destination, sum(passed), sum(stripped) FROM disclosures_unattributed "
              "GROUP BY 1, 2 ORDER BY 1, 2") == "unbound|example-adnet|0|2\nunbound|web-analytics|0|1\n");
    // An unknown subscriber is a 404, not an empty answer.
    CHECK(c.request("GET", "/v1/subscribers/sub-nobody/disclosures").status == 404);
}

TEST_CASE("disclosures: an address rebound between reports; each subscriber gets its own counts") {
    Consentd c(kDisclosurePolicy, kHeartbeats, kDisclosuresYaml);
    c.start();
    const char* const address = "100.64.0.20";
    seq_of(c.bind(address, "sub-1"));
    seq_of(c.grant("sub-1", "advertising"));  // sub-2 has not: its packet is stripped
    let_bindings_settle();

    // Frame 1 at once, frame 2 kGap later; a report every second. The test
    // rebinds once frame 1's report is stored, which normally leaves frame
    // 2's interval clear of the rebinding: frame 2 is sub-2's. On a machine
    // slow enough to take nearly kGap for that, frame 2's interval may hold
    // the rebinding (nobody's) or end before it (sub-1's); the database says
    // which, and each outcome is asserted exactly (all three were seen with
    // shorter gaps).
    constexpr auto kGap = 12000ms;
    const auto frame = dns_with_ecs(address, kAdnetAddress);
    PacedReplay p(c.socket(), {frame, frame}, kGap, "e2e-rebind", {"--disclosure-interval", "1s"});
    REQUIRE(eventually([&] { return api_counts(c, "sub-1") == Counts{{{"example-adnet", kEcsName}, {1, 0}}}; }));
    const uint64_t rebound = seq_of(c.bind(address, "sub-2"));
    const auto r = p.finish(kGap + kPatience);

    // Frame 1 passed (sub-1's consent); frame 2 was stripped, or passed on
    // a machine so slow that it went out before the rebinding.
    auto by_key = report_by_key(r);
    const auto total = by_key[address];
    REQUIRE(total.size() == 1);
    const auto [passed, stripped] = total.at({"example-adnet", kEcsName});
    REQUIRE(passed + stripped == 2);
    REQUIRE(passed >= 1);
    const Counts first{{{"example-adnet", kEcsName}, {1, 0}}};
    const Counts second{{{"example-adnet", kEcsName}, {passed - 1, stripped}}};
    CHECK(r.report.at("control").at("disclosure_reports").at("pending").to_number<uint64_t>() == 0);

    // Frame 2's report (the second with entries) and when the rebinding was
    // recorded, in milliseconds since the epoch, decide where frame 2's count
    // belongs: its holder throughout the widened interval, else nobody.
    const auto reports = sql(c, "SELECT start_ms, end_ms FROM disclosure_reports WHERE entries > 0 ORDER BY start_ms");
    std::istringstream rs(reports);
    uint64_t first_start = 0, first_end = 0, second_start = 0, second_end = 0;
    char sep = 0;
    const bool two = bool(rs >> first_start >> sep >> first_end >> second_start >> sep >> second_end);
    INFO("reports with entries (start_ms|end_ms):\n" << reports);
    REQUIRE(two);
    const uint64_t rebound_ms = std::stoull(
        sql(c, "SELECT CAST(round((julianday(time) - 2440587.5) * 86400000) AS INTEGER) FROM events WHERE seq = " +
                   std::to_string(rebound)));
    const uint64_t margin = uint64_t(kMargin.count());
    INFO("rebound at " << rebound_ms << " ms");
    REQUIRE(first_end + margin < rebound_ms);  // frame 1's report was stored before
    const bool to_second = rebound_ms + margin < second_start;
    const bool to_first = rebound_ms > second_end + margin;

    if (to_second) {
        CHECK(api_counts(c, "sub-1") == first);
        CHECK(api_counts(c, "sub-2") == second);
    } else if (to_first) {
        MESSAGE("frame 2's interval ended before the rebinding (a slow machine): its count is sub-1's");
        CHECK(api_counts(c, "sub-1") == Counts{{{"example-adnet", kEcsName}, {passed, stripped}}});
        CHECK(api_counts(c, "sub-2").empty());
    } else {
        MESSAGE("the rebinding fell within frame 2's widened interval (a slow machine): its count is nobody's");
        CHECK(api_counts(c, "sub-1") == first);
        CHECK(api_counts(c, "sub-2").empty());
        CHECK(sql(c,
                  "SELECT reason, destination, sum(passed), sum(stripped) FROM disclosures_unattributed "
                  "GROUP BY 1, 2") ==
              "ambiguous|example-adnet|" + std::to_string(passed - 1) + "|" + std::to_string(stripped) + "\n");
    }
    CHECK(entries_attributed(c, "ambiguous") == (to_second || to_first ? 0 : 1));
    CHECK(entries_attributed(c, "subscriber") == (to_second || to_first ? 2 : 1));
    CHECK(entries_attributed(c, "unbound") == 0);
}

TEST_CASE("disclosures: consentd killed and restarted between reports; no count lost, none doubled") {
    Consentd c(kDisclosurePolicy, kHeartbeats, kDisclosuresYaml);
    c.start();
    const char* const address = "100.64.0.30";
    seq_of(c.bind(address, "sub-k"));
    seq_of(c.grant("sub-k", "advertising"));
    let_bindings_settle();

    constexpr auto kGap = 6000ms;
    const auto to_adnet = dns_with_ecs(address, kAdnetAddress);
    const auto to_analytics = dns_with_ecs(address, kAnalyticsAddress);
    PacedReplay p(c.socket(), {to_adnet, to_analytics, to_adnet}, kGap, "e2e-restart", {"--disclosure-interval", "1s"});
    // The first report is stored; once the second packet is counted (its
    // report is then most likely on its way, unacknowledged), kill consentd
    // with no chance to tidy up, and start it again on the same database and
    // socket.
    REQUIRE(eventually([&] { return !api_counts(c, "sub-k").empty(); }));
    REQUIRE(eventually([&] { return metric_value(c, "optgate_dp_packets{dataplane=\"e2e-restart\"}") >= 2; }));
    c.kill(SIGKILL);
    c.wait();
    c.start();
    const auto r = p.finish(3 * kGap + kPatience);
    INFO("replay control: " << boost::json::serialize(r.report.at("control")));
    CHECK(r.report.at("control").at("connects").to_number<uint64_t>() >= 2);
    CHECK(r.report.at("control").at("disclosure_reports").at("pending").to_number<uint64_t>() == 0);

    auto by_key = report_by_key(r);
    REQUIRE(by_key.size() == 1);
    const auto& want = by_key[address];
    CHECK(want == Counts{{{"example-adnet", kEcsName}, {2, 0}}, {{"web-analytics", kEcsName}, {0, 1}}});
    const auto got = api_counts(c, "sub-k");
    INFO("API:\n" << show(got) << "report:\n" << show(want));
    CHECK(got == want);
    CHECK(ctl_counts(c, "sub-k") == want);
}
