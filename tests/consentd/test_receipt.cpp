// The policy history and consent receipts: which policy each event was
// judged under, the receipt built from it (not from the policy now), events
// older than the history, and verification of a receipt against the ledger.
#include <doctest/doctest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <cstring>
#include <future>

#include "consentd/ledger_reader.hpp"
#include "consentd/ledger_service.hpp"
#include "consentd/receipt.hpp"
#include "consentd/verify.hpp"
#include "fixture.hpp"
#include "policy/loader.hpp"

using namespace optgate;
using namespace optgate::consentd;
using optgate::consentd::test::TempDir;
namespace json = boost::json;

namespace {

// Two purposes; the advertising collector's name and the advertising
// benefit vary, so that a receipt shows which version it came from.
std::string policy_text(const std::string& benefit, const std::string& collector) {
    return "version: 1\n"
           "purposes:\n"
           "  advertising: {description: Ads tailored to you, benefit: " +
           benefit +
           ", data: [device identifier, phone number], retention: 90 days}\n"
           "  analytics: {description: Measuring audiences, benefit: Better sites, data: [device identifier], "
           "retention: 13 months}\n"
           "identifiers:\n"
           "  http_headers: [{header: X-UIDH, name: UIDH}]\n"
           "  dns_options: [{code: 8, name: ECS}]\n"
           "collectors:\n"
           "  - {name: " +
           collector +
           ", purpose: advertising, description: An ad network, match: {prefixes: [203.0.113.0/25]}}\n"
           "subscribers: {prefixes: [100.64.0.0/10, \"2001:db8:1000::/36\"]}\n";
}

std::shared_ptr<const Policy> load(const std::string& text) {
    return std::make_shared<const Policy>(policy::load_policy_text(text).policy);
}

ReceiptIssuer issuer() {
    return {std::string("EU"), std::string("Example ISP Ltd."), std::string("privacy@isp.example"),
            std::string("https://isp.example/privacy")};
}

struct Service {
    TempDir dir;
    std::string path = dir.file("ledger.db");
    Metrics metrics;
    std::unique_ptr<LedgerService> service;

    void open(const std::optional<std::string>& text, ReceiptIssuer who = issuer()) {
        if (service) service->stop();
        service.reset();
        const auto policy = text ? load(*text) : test::shared_policy();
        service = std::make_unique<LedgerService>(std::make_unique<Ledger>(path), policy, metrics,
                                                  LedgerService::Options{4096, text, std::move(who)});
        service->start();
    }
    Outcome run(Change c) {
        std::promise<Outcome> p;
        auto f = p.get_future();
        service->submit(std::move(c), "portal", [&](Outcome o) { p.set_value(std::move(o)); });
        return f.get();
    }
    Outcome consent(const char* sub, const char* purpose, bool grant) {
        return run(
            ConsentChange{sub, purpose, grant, "portal", grant ? std::optional<std::string>("2024-05") : std::nullopt});
    }
    Outcome reload(const std::string& text) { return run(PolicyChange{load(text), text}); }

    // What GET /v1/subscribers/{id}/receipts/{seq} builds: from the file.
    json::object receipt_from_ledger(const std::string& sub, uint64_t seq) {
        LedgerReader reader(path);
        auto r = reader.event(sub, seq);
        REQUIRE(r.event);
        ReceiptSource s{*r.event, r.record, r.record ? load_recorded_policy(*r.record) : nullptr};
        return build_receipt(s);
    }
};

std::vector<std::shared_ptr<const PolicyRecord>> history(const std::string& path) {
    Database db(path, Database::Mode::read_only);
    std::vector<std::shared_ptr<const PolicyRecord>> out;
    for (uint64_t seq = 1; seq < 100; ++seq) {
        auto r = policy_record_at(db, seq);
        if (r && (out.empty() || out.back()->id != r->id)) out.push_back(r);
    }
    return out;
}

std::string str(const json::value& v) { return v.is_string() ? std::string(v.as_string()) : json::serialize(v); }

}  // namespace

TEST_CASE("every policy consentd runs is recorded from the first event judged under it") {
    Service s;
    const std::string a = policy_text("Cheaper plan", "adnet");
    const std::string b = policy_text("Two euros off", "adnet-2");
    s.open(a);
    CHECK(s.consent("sub-1", "advertising", true).last_seq == 1);
    CHECK(s.consent("sub-1", "analytics", true).last_seq == 2);
    CHECK(s.reload(b).status == Outcome::Status::ok);
    CHECK(s.reload(b).status == Outcome::Status::ok);  // the same again: no new record
    CHECK(s.consent("sub-1", "advertising", true).last_seq == 3);
    s.open(b);  // a restart with the same policy and issuer: no new record
    s.open(a);  // with another one: recorded
    ReceiptIssuer other = issuer();
    other.controller_contact = "dpo@isp.example";
    s.open(a, other);  // the same policy under another issuer: recorded
    s.service->stop();

    const auto h = history(s.path);
    REQUIRE(h.size() == 3);  // the history from event 1..3; the last two records are in force from event 4
    CHECK(h[0]->id == 1);
    CHECK(h[0]->from_seq == 1);
    CHECK(h[0]->text == a);
    CHECK(h[0]->sha256 == to_hex(sha256(a)));
    CHECK(h[0]->issuer == issuer());
    CHECK(h[1]->id == 2);
    CHECK(h[1]->from_seq == 3);
    CHECK(h[1]->text == b);
    CHECK(h[2]->id == 4);  // records 3 (a) and 4 (a, other issuer) both begin at event 4: the later one holds
    CHECK(h[2]->from_seq == 4);
    CHECK(h[2]->issuer.controller_contact == std::string("dpo@isp.example"));

    const auto v = verify_ledger(s.path);
    CHECK_MESSAGE(v.ok, v.problem);
    CHECK(v.policies == 4);
}

TEST_CASE("a receipt says what the policy said at its event, across a reload") {
    Service s;
    s.open(policy_text("Cheaper plan", "adnet"));
    const auto g = s.consent("cust-1", "advertising", true);
    REQUIRE(g.receipt);
    const json::object first = build_receipt(*g.receipt);
    CHECK(str(first.at("receipt_id")) == g.receipt->event.hash);
    CHECK(str(first.at("version")) == "optgate-receipt-1");
    CHECK(str(first.at("jurisdiction")) == "EU");
    CHECK(str(first.at("controller").at("name")) == "Example ISP Ltd.");
    CHECK(str(first.at("controller").at("contact")) == "privacy@isp.example");
    CHECK(str(first.at("policy_url")) == "https://isp.example/privacy");
    CHECK(str(first.at("timestamp")) == g.time);
    CHECK(str(first.at("collection_method")) == "portal");
    CHECK(str(first.at("subscriber")) == "cust-1");
    CHECK(str(first.at("notice_version")) == "2024-05");
    CHECK(str(first.at("action")) == "opt-in");
    CHECK(str(first.at("purpose").at("name")) == "advertising");
    CHECK(str(first.at("purpose").at("description")) == "Ads tailored to you");
    CHECK(str(first.at("purpose").at("benefit")) == "Cheaper plan");
    CHECK(json::serialize(first.at("data_categories")) == R"(["device identifier","phone number"])");
    CHECK(str(first.at("retention")) == "90 days");
    CHECK(json::serialize(first.at("third_parties")) == R"([{"name":"adnet","description":"An ad network"}])");
    CHECK(json::serialize(first.at("identifiers")) ==
          R"([{"name":"UIDH","http_header":"X-UIDH"},{"name":"ECS","edns0_option":8}])");
    CHECK(first.at("ledger").at("seq") == 1);
    CHECK(first.at("policy").at("record") == 1);

    // The policy changes what it says about advertising.
    REQUIRE(s.reload(policy_text("Two euros off", "adnet-2")).status == Outcome::Status::ok);
    const auto r = s.consent("cust-1", "advertising", false);
    REQUIRE(r.receipt);
    const json::object second = build_receipt(*r.receipt);
    CHECK(str(second.at("action")) == "opt-out");
    CHECK(second.at("notice_version").is_null());
    CHECK(str(second.at("purpose").at("benefit")) == "Two euros off");
    CHECK(str(second.at("third_parties").at(0).at("name")) == "adnet-2");
    CHECK(second.at("policy").at("record") == 2);

    // Read back from the file, each is what the answer said: event 1 under
    // the first policy, not the one in force now.
    CHECK(json::serialize(s.receipt_from_ledger("cust-1", 1)) == json::serialize(first));
    CHECK(json::serialize(s.receipt_from_ledger("cust-1", 2)) == json::serialize(second));

    // And each verifies against the ledger.
    for (const auto* receipt : {&first, &second}) {
        const auto c = verify_receipt(s.path, json::serialize(*receipt));
        CHECK_MESSAGE(c.ok, c.problem);
    }
}

TEST_CASE("a changed field fails verification, naming the field") {
    Service s;
    s.open(policy_text("Cheaper plan", "adnet"));
    s.consent("cust-2", "analytics", true);
    const auto g = s.consent("cust-2", "advertising", true);
    s.consent("cust-3", "advertising", true);  // the chain goes on after it
    const std::string good = json::serialize(build_receipt(*g.receipt));
    CHECK(verify_receipt(s.path, good).ok);
    // A grant's whole answer holds its receipt, and verifies as well.
    CHECK(verify_receipt(s.path, R"({"subscriber": "cust-2", "receipt": )" + good + "}").ok);

    struct Edit {
        const char* from;
        const char* to;
        const char* problem;
    };
    const Edit edits[] = {
        {"\"Cheaper plan\"", "\"Free phone\"", "field 'purpose.benefit'"},
        {"\"Ads tailored to you\"", "\"Nothing shared\"", "field 'purpose.description'"},
        {"\"opt-in\"", "\"opt-out\"", "field 'action'"},
        {"\"cust-2\"", "\"cust-3\"", "field 'subscriber'"},
        {"\"90 days\"", "\"1 day\"", "field 'retention'"},
        {"\"An ad network\"", "\"A charity\"", "field 'third_parties[0].description'"},
        {"\"Example ISP Ltd.\"", "\"Other Ltd.\"", "field 'controller.name'"},
        {"\"EU\"", "\"US\"", "field 'jurisdiction'"},
        {"\"2024-05\"", "\"2025-01\"", "field 'notice_version'"},
        {"\"phone number\"", "\"nothing\"", "field 'data_categories[1]'"},
        {"\"portal\"", "\"app\"", "field 'collection_method'"},
        {"\"seq\":2", "\"seq\":1", "receipt_id"},  // another event's seq: its hash is not this receipt's id
        {"\"receipt_id\":\"", "\"receipt_id\":\"0", "receipt_id"},
        {"\"seq\":2", "\"seq\":9", "no event 9"},
        {"\"version\"", "\"versions\"", "field 'version' is missing"},
    };
    for (const auto& e : edits) {
        std::string bad = good;
        const auto at = bad.find(e.from);
        REQUIRE_MESSAGE(at != std::string::npos, e.from);
        bad.replace(at, std::strlen(e.from), e.to);
        const auto c = verify_receipt(s.path, bad);
        CHECK_FALSE_MESSAGE(c.ok, e.from);
        CHECK_MESSAGE(c.problem.find(e.problem) != std::string::npos, c.problem);
    }
    // The timestamp: one millisecond later.
    std::string bad = good;
    const std::string time = g.time;
    bad.replace(bad.find(time), time.size(),
                time.substr(0, time.size() - 2) + (time[time.size() - 2] == '9' ? "0Z" : "9Z"));
    CHECK(verify_receipt(s.path, bad).problem.find("field 'timestamp'") != std::string::npos);
    CHECK(verify_receipt(s.path, "not json").problem.find("not a JSON object") != std::string::npos);
}

TEST_CASE("events older than the policy history, and purposes the policy dropped") {
    Service s;
    // A ledger written by a consentd that kept no history (null text).
    s.open(std::nullopt);
    s.consent("old-1", "advertising", true);
    s.service->stop();
    s.service.reset();
    {
        // Before the history existed at all: events, no record.
        Database db(s.path, Database::Mode::read_write);
        db.exec("DROP TRIGGER policies_append_only_delete");
        db.exec("DELETE FROM policies");
    }
    s.open(policy_text("Cheaper plan", "adnet"));
    const auto old = s.receipt_from_ledger("old-1", 1);
    CHECK(old.at("policy").is_null());
    CHECK(old.at("controller").at("name").is_null());
    CHECK(old.at("jurisdiction").is_null());
    CHECK(old.at("purpose").at("benefit").is_null());
    CHECK(old.at("purpose").at("in_policy").is_null());
    CHECK(old.at("third_parties").is_null());
    CHECK(str(old.at("purpose").at("name")) == "advertising");  // what the event itself says stays
    CHECK(str(old.at("action")) == "opt-in");
    CHECK(verify_receipt(s.path, json::serialize(old)).ok);

    // Revoking a purpose the policy no longer defines: in_policy false,
    // nobody receives anything for it.
    std::string fewer = policy_text("Cheaper plan", "adnet");
    fewer.erase(fewer.find("  analytics:"), fewer.find("identifiers:") - fewer.find("  analytics:"));
    s.consent("old-1", "analytics", true);
    REQUIRE(s.reload(fewer).status == Outcome::Status::ok);
    const auto r = s.consent("old-1", "analytics", false);
    REQUIRE(r.status == Outcome::Status::ok);
    const auto dropped = build_receipt(*r.receipt);
    CHECK(dropped.at("purpose").at("in_policy") == false);
    CHECK(dropped.at("purpose").at("description").is_null());
    CHECK(dropped.at("data_categories").is_null());
    CHECK(dropped.at("third_parties").as_array().empty());
    CHECK(dropped.at("identifiers").as_array().empty());
    CHECK(json::serialize(s.receipt_from_ledger("old-1", r.last_seq)) == json::serialize(dropped));
    CHECK(verify_receipt(s.path, json::serialize(dropped)).ok);

    // A bind has no receipt.
    std::string why;
    REQUIRE(s.run(BindChange{*parse_address_text("100.64.0.9", why), "old-1", "radius"}).status == Outcome::Status::ok);
    s.service->stop();
    std::string bind_receipt = json::serialize(dropped);
    const std::string seq = "\"seq\":" + std::to_string(r.last_seq);
    bind_receipt.replace(bind_receipt.find(seq), seq.size(), "\"seq\":" + std::to_string(r.last_seq + 1));
    CHECK(verify_receipt(s.path, bind_receipt).problem.find("is a bind, not a consent event") != std::string::npos);
}

TEST_CASE("a tampered policy history fails verification") {
    Service s;
    s.open(policy_text("Cheaper plan", "adnet"));
    const auto g = s.consent("cust-4", "advertising", true);
    s.service->stop();
    {
        // Edited with the trigger out of the way, then put back as it was.
        Database db(s.path, Database::Mode::read_write);
        auto st = db.prepare("SELECT sql FROM sqlite_schema WHERE name = 'policies_append_only_update'");
        REQUIRE(st.step());
        const std::string trigger(st.text(0));
        st.reset();
        db.exec("DROP TRIGGER policies_append_only_update");
        db.exec("UPDATE policies SET text = replace(text, 'Cheaper plan', 'Free phone')");
        db.exec(trigger);
    }
    const auto v = verify_ledger(s.path);
    CHECK_FALSE(v.ok);
    CHECK(v.problem.find("policies row 1 has sha256") != std::string::npos);
    // The receipt names the text's digest: the edited text gives another receipt.
    const auto c = verify_receipt(s.path, json::serialize(build_receipt(*g.receipt)));
    CHECK_FALSE(c.ok);
    CHECK(c.problem.find("field 'purpose.benefit'") != std::string::npos);
}
