// Disclosures: attribution of data-plane counts to the subscriber that held
// each key at that time, conservative around rebindings, unbound keys kept for
// nobody, a report counted once, durability across reopening, retention.
#include <doctest/doctest.h>

#include <atomic>
#include <future>
#include <map>
#include <thread>

#include "consentd/disclosures.hpp"
#include "consentd/ledger.hpp"
#include "consentd/ledger_service.hpp"
#include "fixture.hpp"

using namespace optgate;
using namespace optgate::consentd;
using namespace std::chrono;
using optgate::consentd::test::shared_policy;
using optgate::consentd::test::TempDir;

namespace {

// Two days ago (UTC): inside the retention, which the store prunes to when
// it starts, and wholly in the past.
const sys_days kDay = floor<days>(system_clock::now()) - days(2);
const std::string kDayText = day_text(kDay);

// Unix ms of kDay at h:m:s UTC.
uint64_t at(int h, int m, int s = 0) {
    return uint64_t(
        duration_cast<milliseconds>((kDay + hours(h) + minutes(m) + seconds(s)).time_since_epoch()).count());
}

std::string time_text(uint64_t ms) { return format_utc_ms(system_clock::time_point(milliseconds(ms))); }

Event binding_event(const std::string& subscriber, Action a, const std::string& address, uint64_t when) {
    Event e;
    e.time = time_text(when);
    e.subscriber = subscriber;
    e.action = a;
    e.address = address;
    e.source = "radius";
    e.credential = "test";
    return e;
}

DisclosureEntry entry(const char* address, const char* destination, const char* identifier, uint64_t passed,
                      uint64_t stripped) {
    const auto a = *IpAddr::parse(address);
    DisclosureEntry e;
    e.family = a.family;
    e.key = a.bytes;
    e.destination = destination;
    e.identifier = identifier;
    e.passed = passed;
    e.stripped = stripped;
    return e;
}

struct Harness {
    TempDir dir;
    std::string path = dir.file("ledger.db");
    Metrics metrics;
    std::unique_ptr<Ledger> ledger = std::make_unique<Ledger>(path);
    std::unique_ptr<DisclosureStore> store;
    uint64_t seq = 0;

    explicit Harness(milliseconds margin = milliseconds(5000)) { open(margin); }
    void open(milliseconds margin = milliseconds(5000)) {
        store = std::make_unique<DisclosureStore>(path, DisclosureOptions{400, margin}, metrics,
                                                  [] { return shared_policy(); });
        store->start();
    }
    // One commit, as the ledger writer makes it: every event the same time.
    void commit(std::vector<Event> events) {
        ledger->begin();
        for (auto& e : events) ledger->append(e);
        ledger->commit();
    }
    void bind(const std::string& sub, const std::string& address, uint64_t when) {
        commit({binding_event(sub, Action::bind, address, when)});
    }
    void move(const std::string& from, const std::string& to, const std::string& address, uint64_t when) {
        commit({binding_event(from, Action::unbind, address, when), binding_event(to, Action::bind, address, when)});
    }
    bool report(uint64_t start, uint64_t end, std::vector<DisclosureEntry> entries, uint64_t id = 0,
                const char* dataplane = "edge-1") {
        DisclosureReport r;
        r.dataplane = dataplane;
        r.reporter = 0xfeedbeefcafe1234ull;
        r.seq = id ? id : ++seq;
        r.batch.start_unix_ms = start;
        r.batch.end_unix_ms = end;
        r.batch.entries = std::move(entries);
        std::promise<bool> p;
        auto f = p.get_future();
        store->submit(std::move(r), [&](bool ok) { p.set_value(ok); });
        return f.get();
    }
    // subscriber -> "destination/purpose/identifier" -> (passed, stripped) on kDay
    std::map<std::string, std::pair<uint64_t, uint64_t>> rows(const std::string& sub) {
        DisclosureReader reader(path);
        std::map<std::string, std::pair<uint64_t, uint64_t>> m;
        const auto r = reader.subscriber(sub, kDayText, kDayText);
        REQUIRE(r);
        for (const auto& row : *r)
            m[row.destination + "/" + row.purpose + "/" + row.identifier] = {row.passed, row.stripped};
        return m;
    }
    // reason -> (passed, stripped) summed over destinations and identifiers
    std::map<std::string, std::pair<uint64_t, uint64_t>> unattributed() {
        Database db(path, Database::Mode::read_only);
        auto st = db.prepare("SELECT reason, sum(passed), sum(stripped) FROM disclosures_unattributed GROUP BY reason");
        std::map<std::string, std::pair<uint64_t, uint64_t>> m;
        while (st.step()) m[std::string(st.text(0))] = {uint64_t(st.int64(1)), uint64_t(st.int64(2))};
        return m;
    }
    std::string metrics_line(const std::string& prefix) {
        const std::string text = metrics.render();
        const auto i = text.find("\n" + prefix);
        if (i == std::string::npos) return "";
        return text.substr(i + 1, text.find('\n', i + 1) - i - 1);
    }
};

using Counts = std::map<std::string, std::pair<uint64_t, uint64_t>>;

}  // namespace

TEST_CASE("counts go to the subscriber that held each key, with the collector's purpose") {
    Harness h;
    h.bind("sub-1", "100.64.0.1", at(10, 0));
    h.bind("sub-2", "100.64.0.2", at(10, 0));
    REQUIRE(h.report(at(11, 0), at(11, 1),
                     {entry("100.64.0.1", "adnet", "UIDH", 3, 1), entry("100.64.0.1", "billing", "UIDH", 2, 0),
                      entry("100.64.0.1", "(none)", "UIDH", 0, 4), entry("100.64.0.2", "metrics", "ECS", 0, 5),
                      entry("100.64.0.2", "gone-collector", "ECS", 1, 0)}));
    CHECK(h.rows("sub-1") == Counts{{"adnet/advertising/UIDH", {3, 1}},
                                    {"billing/(exempt)/UIDH", {2, 0}},
                                    {"(none)/(none)/UIDH", {0, 4}}});
    CHECK(h.rows("sub-2") == Counts{{"metrics/analytics/ECS", {0, 5}}, {"gone-collector/(unknown)/ECS", {1, 0}}});
    CHECK(h.unattributed().empty());
    CHECK(h.metrics_line("consentd_disclosure_entries_total{attribution=\"subscriber\"}").ends_with(" 5"));

    // A second report adds to the same day's rows.
    REQUIRE(h.report(at(11, 1), at(11, 2), {entry("100.64.0.1", "adnet", "UIDH", 10, 0)}));
    CHECK(h.rows("sub-1").at("adnet/advertising/UIDH") == std::pair<uint64_t, uint64_t>{13, 1});
}

TEST_CASE("a binding moved between two reports: each report's counts land on its holder") {
    Harness h;
    h.bind("sub-a", "100.64.0.9", at(10, 0));
    REQUIRE(h.report(at(11, 0), at(11, 1), {entry("100.64.0.9", "adnet", "UIDH", 2, 0)}));
    h.move("sub-a", "sub-b", "100.64.0.9", at(11, 30));
    REQUIRE(h.report(at(12, 0), at(12, 1), {entry("100.64.0.9", "adnet", "UIDH", 7, 0)}));
    CHECK(h.rows("sub-a") == Counts{{"adnet/advertising/UIDH", {2, 0}}});
    CHECK(h.rows("sub-b") == Counts{{"adnet/advertising/UIDH", {7, 0}}});
    CHECK(h.unattributed().empty());
}

TEST_CASE("a rebinding inside an interval, or within the clock margin of it, gives nobody its counts") {
    Harness h(milliseconds(5000));
    h.bind("sub-a", "100.64.1.1", at(10, 0));
    h.bind("sub-a", "100.64.1.2", at(10, 0));
    h.bind("sub-a", "100.64.1.3", at(10, 0));
    h.bind("sub-a", "100.64.1.4", at(10, 0));
    h.move("sub-a", "sub-b", "100.64.1.1", at(11, 0, 30));   // inside the interval
    h.move("sub-a", "sub-b", "100.64.1.2", at(11, 1, 3));    // 3 s after its end: inside the margin
    h.move("sub-a", "sub-b", "100.64.1.3", at(10, 59, 57));  // 3 s before its start: inside the margin
    h.move("sub-a", "sub-b", "100.64.1.4", at(11, 1, 10));   // 10 s after: outside, sub-a held it throughout
    REQUIRE(h.report(at(11, 0), at(11, 1),
                     {entry("100.64.1.1", "adnet", "UIDH", 1, 0), entry("100.64.1.2", "adnet", "UIDH", 10, 0),
                      entry("100.64.1.3", "adnet", "UIDH", 100, 0), entry("100.64.1.4", "adnet", "UIDH", 1000, 0)}));
    CHECK(h.rows("sub-a") == Counts{{"adnet/advertising/UIDH", {1000, 0}}});
    CHECK(h.rows("sub-b").empty());
    CHECK(h.unattributed() == Counts{{"ambiguous", {111, 0}}});
    CHECK(h.metrics_line("consentd_disclosure_entries_total{attribution=\"ambiguous\"}").ends_with(" 3"));

    // Unbound and bound again by the same subscriber within the window: it
    // was nobody's for a while, so still not attributable.
    h.bind("sub-c", "100.64.1.5", at(10, 0));
    h.commit({binding_event("sub-c", Action::unbind, "100.64.1.5", at(12, 0, 20))});
    h.bind("sub-c", "100.64.1.5", at(12, 0, 40));
    REQUIRE(h.report(at(12, 0), at(12, 1), {entry("100.64.1.5", "adnet", "UIDH", 5, 0)}));
    CHECK(h.rows("sub-c").empty());
    // A repeated bind by the holder changes nothing.
    h.bind("sub-c", "100.64.1.5", at(13, 0, 30));
    REQUIRE(h.report(at(13, 0), at(13, 1), {entry("100.64.1.5", "adnet", "UIDH", 6, 0)}));
    CHECK(h.rows("sub-c") == Counts{{"adnet/advertising/UIDH", {6, 0}}});
}

TEST_CASE("unbound keys are kept for nobody") {
    Harness h;
    h.bind("sub-1", "100.64.2.1", at(9, 0));
    h.commit({binding_event("sub-1", Action::unbind, "100.64.2.1", at(10, 0))});
    REQUIRE(h.report(at(11, 0), at(11, 1),
                     {entry("100.64.2.1", "adnet", "UIDH", 1, 2),      // unbound before the interval
                      entry("100.64.2.2", "metrics", "ECS", 3, 4)}));  // never bound
    CHECK(h.rows("sub-1").empty());
    CHECK(h.unattributed() == Counts{{"unbound", {4, 6}}});
    CHECK(h.metrics_line("consentd_disclosure_entries_total{attribution=\"unbound\"}").ends_with(" 2"));
    // A key bound only after the interval was nobody's then.
    h.bind("sub-1", "100.64.2.3", at(12, 0));
    REQUIRE(h.report(at(11, 1), at(11, 2), {entry("100.64.2.3", "adnet", "UIDH", 1, 0)}));
    CHECK(h.rows("sub-1").empty());
}

TEST_CASE("a repeated report is counted once, also after reopening the database") {
    Harness h;
    h.bind("sub-1", "100.64.3.1", at(10, 0));
    const auto report = [&](uint64_t id, const char* dp = "edge-1") {
        return h.report(at(11, 0), at(11, 1), {entry("100.64.3.1", "adnet", "UIDH", 4, 1)}, id, dp);
    };
    CHECK(report(7));
    CHECK(report(7));  // acknowledged again: it is stored
    CHECK(h.rows("sub-1") == Counts{{"adnet/advertising/UIDH", {4, 1}}});
    CHECK(h.metrics_line("consentd_disclosure_reports_total{result=\"duplicate\"}").ends_with(" 1"));
    CHECK(report(7, "edge-2"));  // another data plane's report 7 is another report
    CHECK(h.rows("sub-1") == Counts{{"adnet/advertising/UIDH", {8, 2}}});

    // Closed and reopened (as after a restart): what was acknowledged is
    // there, and a resend of it is still recognised.
    h.store.reset();
    h.ledger = std::make_unique<Ledger>(h.path);
    h.open();
    CHECK(h.rows("sub-1") == Counts{{"adnet/advertising/UIDH", {8, 2}}});
    CHECK(report(7));
    CHECK(report(8));
    CHECK(h.rows("sub-1") == Counts{{"adnet/advertising/UIDH", {12, 3}}});
}

TEST_CASE("IPv6 keys are attributed through their /64 binding") {
    Harness h;
    h.bind("sub-6", "2001:db8:1000:42::/64", at(10, 0));
    REQUIRE(h.report(
        at(11, 0), at(11, 1),
        {entry("2001:db8:1000:42::", "adnet", "UIDH", 2, 0),
         // host bits beyond the key length are ignored
         entry("2001:db8:1000:42::abcd", "adnet", "UIDH", 3, 0), entry("2001:db8:1000:43::", "adnet", "UIDH", 9, 9)}));
    CHECK(h.rows("sub-6") == Counts{{"adnet/advertising/UIDH", {5, 0}}});
    CHECK(h.unattributed() == Counts{{"unbound", {9, 9}}});
}

TEST_CASE("retention prunes whole days past it") {
    Harness h;
    h.bind("sub-1", "100.64.4.1", at(10, 0));
    REQUIRE(h.report(at(11, 0), at(11, 1),
                     {entry("100.64.4.1", "adnet", "UIDH", 1, 0), entry("100.64.4.2", "adnet", "UIDH", 1, 0)}));
    h.store->stop();                               // prune() from this thread, as the writer would
    CHECK(h.store->prune(kDay + days(400)) == 0);  // 400 days old: kept
    CHECK(h.rows("sub-1").size() == 1);
    CHECK(h.store->prune(kDay + days(401)) == 3);  // the subscriber's row, the unbound one, the report id
    CHECK(h.rows("sub-1").empty());
    CHECK(h.unattributed().empty());
}

TEST_CASE("a report is acknowledged only once its window has closed; stopping before fails it") {
    Harness h(milliseconds(60000));
    const uint64_t now = uint64_t(duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count());
    DisclosureReport r;
    r.dataplane = "edge-1";
    r.reporter = 1;
    r.seq = 1;
    r.batch.start_unix_ms = now - 1000;
    r.batch.end_unix_ms = now;
    std::promise<bool> p;
    auto f = p.get_future();
    h.store->submit(std::move(r), [&](bool ok) { p.set_value(ok); });
    h.store->stop();  // long before now + 60 s: not attributable yet
    CHECK_FALSE(f.get());
    Database db(h.path, Database::Mode::read_only);
    auto st = db.prepare("SELECT count(*) FROM disclosure_reports");
    REQUIRE(st.step());
    CHECK(st.int64(0) == 0);
}

TEST_CASE("days") {
    CHECK(utc_day(at(23, 59, 59)) == kDayText);
    CHECK(utc_day(at(23, 59, 59) + 1000) == day_text(kDay + days(1)));
    CHECK(parse_day("2024-02-29"));
    CHECK_FALSE(parse_day("2023-02-29"));
    CHECK_FALSE(parse_day("2024-5-01"));
    CHECK_FALSE(parse_day("2024-05-01x"));
    CHECK_FALSE(parse_day("1969-12-31"));
    CHECK(day_text(*parse_day("2024-12-31") + days(1)) == "2025-01-01");
}

TEST_CASE("the store and the ledger writer share the database: both commit everything") {
    TempDir dir;
    const std::string path = dir.file("ledger.db");
    Metrics metrics;
    LedgerService service(std::make_unique<Ledger>(path), shared_policy(), metrics, LedgerService::Options{});
    service.start();
    DisclosureStore store(path, DisclosureOptions{400, milliseconds(1)}, metrics, [&] { return service.policy(); });
    store.start();

    // Binds through the writer while reports arrive: neither is refused for
    // the other's transactions.
    constexpr int kBinds = 200, kReports = 50;
    std::atomic<int> binds_ok{0}, reports_ok{0}, answered{0};
    for (int i = 0; i < kBinds; ++i) {
        std::string e;
        const std::string address = "100.64.5." + std::to_string(i);
        service.submit(BindChange{*parse_address_text(address, e), "sub-" + std::to_string(i), "radius"}, "test",
                       [&](const Outcome& o) {
                           if (o.status == Outcome::Status::ok) ++binds_ok;
                           ++answered;
                       });
        if (i % 4 == 0) {
            DisclosureReport r;
            r.dataplane = "edge-1";
            r.reporter = 9;
            r.seq = uint64_t(i) / 4 + 1;
            r.batch.start_unix_ms = at(1, 0);
            r.batch.end_unix_ms = at(1, 1);
            r.batch.entries = {entry("100.64.6.1", "adnet", "UIDH", 1, 0)};
            store.submit(std::move(r), [&](bool ok) {
                if (ok) ++reports_ok;
                ++answered;
            });
        }
    }
    const auto deadline = steady_clock::now() + seconds(60);
    while (answered < kBinds + kReports && steady_clock::now() < deadline) std::this_thread::sleep_for(milliseconds(5));
    CHECK(binds_ok == kBinds);
    CHECK(reports_ok == kReports);
    store.stop();
    service.stop();
    Database db(path, Database::Mode::read_only);
    auto st = db.prepare("SELECT sum(passed) FROM disclosures_unattributed");
    REQUIRE(st.step());
    CHECK(st.int64(0) == kReports);
}
