// The derived consent table: masks, binding moves, deltas per change, and
// recomputation when the policy changes.
#include <doctest/doctest.h>

#include <map>

#include "consentd/binding_address.hpp"
#include "consentd/consent_state.hpp"
#include "fixture.hpp"

using namespace optgate;
using namespace optgate::consentd;
using optgate::consentd::test::P;
using optgate::consentd::test::sample_policy;
using optgate::consentd::test::shared_policy;
using optgate::proto::TableChange;

namespace {

SubscriberKey K(const char* addr) { return SubscriberKey{*IpAddr::parse(addr)}; }

std::map<std::string, PurposeMask> table(const ConsentState& s) {
    std::map<std::string, PurposeMask> t;
    s.for_each_entry([&](const SubscriberKey& k, PurposeMask m) { t[k.addr.to_string()] = m; });
    return t;
}

TableChange up(const char* addr, PurposeMask m) { return {TableChange::Op::upsert, K(addr), m}; }
TableChange del(const char* addr) { return {TableChange::Op::erase, K(addr), 0}; }

}  // namespace

TEST_CASE("grants set bits in policy order on every bound key") {
    ConsentState s(shared_policy());
    std::vector<TableChange> d;
    s.bind(P("100.64.0.1/32"), "sub-1", &d);
    s.bind(P("2001:db8:1000:1::/64"), "sub-1", &d);
    CHECK(d == std::vector<TableChange>{up("100.64.0.1", 0), up("2001:db8:1000:1::", 0)});
    d.clear();
    CHECK(s.set_consent("sub-1", "analytics", true, &d));
    CHECK(d == std::vector<TableChange>{up("100.64.0.1", 2), up("2001:db8:1000:1::", 2)});
    d.clear();
    CHECK_FALSE(s.set_consent("sub-1", "analytics", true, &d));  // a repeat: no change, no delta
    CHECK(d.empty());
    CHECK(s.set_consent("sub-1", "carrier-marketing", true, &d));
    CHECK(table(s) == std::map<std::string, PurposeMask>{{"100.64.0.1", 6}, {"2001:db8:1000:1::", 6}});
    CHECK(s.lookup(K("100.64.0.1")) == PurposeMask(6));
    CHECK_FALSE(s.lookup(K("100.64.0.2")));
    CHECK(s.table_size() == 2);
}

TEST_CASE("a moved address takes the new holder's mask at once") {
    ConsentState s(shared_policy());
    s.set_consent("old", "advertising", true, nullptr);
    s.bind(P("100.64.0.1/32"), "old", nullptr);
    CHECK(s.lookup(K("100.64.0.1")) == PurposeMask(1));
    std::vector<TableChange> d;
    s.bind(P("100.64.0.1/32"), "new", &d);
    CHECK(d == std::vector<TableChange>{up("100.64.0.1", 0)});  // the new holder consented to nothing
    CHECK(*s.holder(P("100.64.0.1/32")) == "new");
    // The old holder's later grants no longer reach the address.
    d.clear();
    s.set_consent("old", "analytics", true, &d);
    CHECK(d.empty());
    CHECK(s.lookup(K("100.64.0.1")) == PurposeMask(0));
    d.clear();
    s.unbind(P("100.64.0.1/32"), &d);
    CHECK(d == std::vector<TableChange>{del("100.64.0.1")});
    CHECK(s.table_size() == 0);
    CHECK(s.holder(P("100.64.0.1/32")) == nullptr);
}

TEST_CASE("policy changes recompute masks and active bindings") {
    ConsentState s(shared_policy());
    s.set_consent("sub-1", "analytics", true, nullptr);
    s.set_consent("sub-1", "carrier-marketing", true, nullptr);
    s.bind(P("100.64.0.1/32"), "sub-1", nullptr);
    s.bind(P("2001:db8:1000:1::/64"), "sub-1", nullptr);
    CHECK(s.lookup(K("100.64.0.1")) == PurposeMask(6));
    const std::string v1 = s.table_version();

    // Same meaning (only descriptions differ): no resync.
    Policy same = sample_policy();
    same.purposes[0].description = "reworded";
    CHECK_FALSE(s.set_policy(std::make_shared<const Policy>(same)));
    CHECK(s.table_version() == v1);

    // Drop "analytics": carrier-marketing moves to bit 1; the analytics grant
    // is kept but sets no bit.
    Policy fewer = sample_policy();
    fewer.purposes.erase(fewer.purposes.begin() + 1);
    CHECK(s.set_policy(std::make_shared<const Policy>(fewer)));
    CHECK(s.lookup(K("100.64.0.1")) == PurposeMask(2));
    CHECK(s.granted("sub-1", "analytics"));
    // Bring it back (appended): its grant applies again, at its new bit.
    Policy back = fewer;
    back.purposes.push_back(sample_policy().purposes[1]);
    CHECK(s.set_policy(std::make_shared<const Policy>(back)));
    CHECK(s.lookup(K("100.64.0.1")) == PurposeMask(0b110));

    // A /56 key length: the /64 binding is inactive (kept, out of the table).
    Policy wide = sample_policy();
    wide.ipv6_key_length = 56;
    CHECK(s.set_policy(std::make_shared<const Policy>(wide)));
    CHECK(s.table_size() == 1);
    CHECK(s.binding_count() == 2);
    CHECK(table(s) == std::map<std::string, PurposeMask>{{"100.64.0.1", 6}});
    // Unbinding the inactive binding produces no table delta.
    std::vector<TableChange> d;
    s.unbind(P("2001:db8:1000:1::/64"), &d);
    CHECK(d.empty());
    CHECK(s.binding_count() == 1);
}

TEST_CASE("coalesce keeps the last change per key in first-change order") {
    const auto out = coalesce(
        {up("100.64.0.1", 1), up("100.64.0.2", 1), del("100.64.0.1"), up("100.64.0.3", 2), up("100.64.0.2", 3)});
    CHECK(out == std::vector<TableChange>{del("100.64.0.1"), up("100.64.0.2", 3), up("100.64.0.3", 2)});
}

TEST_CASE("binding addresses") {
    const Policy policy = sample_policy();
    auto bind = [&](const char* text, AddressProblem* problem_out = nullptr) -> std::string {
        std::string error;
        const auto a = parse_address_text(text, error);
        if (!a) return "syntax: " + error;
        AddressProblem problem = AddressProblem::none;
        const auto b = binding_for_bind(*a, policy, problem, error);
        if (problem_out) *problem_out = problem;
        return b ? binding_text(*b) : "error: " + error;
    };
    CHECK(bind("100.64.0.1") == "100.64.0.1");
    CHECK(bind("100.64.0.1/32") == "100.64.0.1");
    CHECK(bind("2001:db8:1000:1::/64") == "2001:db8:1000:1::/64");
    CHECK(bind("2001:db8:1000:1:aaaa::5") == "2001:db8:1000:1::/64");  // a bare address: its /64
    CHECK(bind("2001:db8:1000:100::/56").find("error: ") == 0);
    CHECK(bind("2001:db8:1000:1::5/64").find("syntax: ") == 0);  // host bits
    CHECK(bind("100.64.0.0/24").find("error: ") == 0);
    CHECK(bind("100.64.0.256").find("syntax: ") == 0);
    CHECK(bind("not-an-address").find("syntax: ") == 0);
    AddressProblem problem = AddressProblem::none;
    CHECK(bind("203.0.113.7", &problem).find("error: ") == 0);
    CHECK(problem == AddressProblem::not_subscriber);
    CHECK(bind("2001:db8:2000::1", &problem).find("error: ") == 0);
    CHECK(problem == AddressProblem::not_subscriber);

    CHECK(parse_binding_text("100.64.0.1"));
    CHECK(parse_binding_text("2001:db8:1000:1::/64"));
    CHECK_FALSE(parse_binding_text("100.64.0.1/32"));      // not the stored form
    CHECK_FALSE(parse_binding_text("2001:db8:1000:1::"));  // IPv6 is stored with its length
    CHECK_FALSE(parse_binding_text("2001:DB8:1000:1::/64"));
}

TEST_CASE("undo puts a failed batch's changes back: masks, holders, moves, new subscribers") {
    ConsentState s(shared_policy());
    s.bind(P("100.64.0.1/32"), "sub-1", nullptr);
    s.bind(P("100.64.0.2/32"), "sub-2", nullptr);
    s.set_consent("sub-1", "analytics", true, nullptr);
    s.set_consent("sub-2", "advertising", true, nullptr);
    const auto before = table(s);
    const auto subscribers = s.subscriber_count();
    const auto bindings = s.binding_count();

    s.begin_undo();
    std::vector<TableChange> d;
    s.set_consent("sub-1", "analytics", false, &d);         // a revoke
    s.set_consent("sub-1", "carrier-marketing", true, &d);  // a grant
    s.bind(P("100.64.0.2/32"), "sub-1", &d);                // a move from sub-2
    s.unbind(P("100.64.0.1/32"), &d);                       // an unbind
    s.bind(P("100.64.0.9/32"), "sub-new", &d);              // a new subscriber and binding
    s.set_consent("sub-new", "analytics", true, &d);
    s.set_consent("sub-new", "analytics", false, &d);  // and back, within the batch
    s.bind(P("100.64.0.9/32"), "sub-2", &d);           // moved on again
    REQUIRE(table(s) != before);
    d.clear();
    s.undo();
    CHECK(d.empty());  // nothing reported: nobody heard of the batch
    CHECK(table(s) == before);
    CHECK(s.subscriber_count() == subscribers);
    CHECK(s.binding_count() == bindings);
    CHECK(*s.holder(P("100.64.0.2/32")) == "sub-2");
    CHECK(s.granted("sub-1", "analytics"));
    CHECK_FALSE(s.granted("sub-1", "carrier-marketing"));
    CHECK(s.holder(P("100.64.0.9/32")) == nullptr);

    // After end_undo() the changes stay, and a later undo() does not reach back.
    s.begin_undo();
    s.set_consent("sub-1", "carrier-marketing", true, nullptr);
    s.end_undo();
    s.begin_undo();
    s.undo();
    CHECK(s.granted("sub-1", "carrier-marketing"));
}
