#include <doctest/doctest.h>

#include "core/verdict.hpp"

using namespace optgate;

namespace {

const Destination kCollector{Destination::Kind::collector, 0, 0};
const Destination kExemption{Destination::Kind::exemption, 0, 1};
const Destination kNone{Destination::Kind::none, 0, 2};

Verdict run(TableHealth h, bool sub, Destination d, ConsentLookup c, unsigned purpose = 3, bool oos = false) {
    int lookups = 0;
    const Verdict v = decide(VerdictInputs{h, sub, d, oos}, purpose, [&] {
        ++lookups;
        return c;
    });
    // The table is consulted only when a collector decides.
    CHECK(lookups ==
          (v == Verdict::pass_consent || v == Verdict::strip_no_consent || v == Verdict::strip_unknown_subscriber ? 1
                                                                                                                  : 0));
    return v;
}

}  // namespace

TEST_CASE("identifiers pass only with consent for the collector's purpose") {
    const ConsentLookup has_purpose{true, 1u << 3};
    const ConsentLookup other_purpose{true, 1u << 2};
    CHECK(run(TableHealth::fresh, true, kCollector, has_purpose) == Verdict::pass_consent);
    CHECK(run(TableHealth::fresh, true, kCollector, other_purpose) == Verdict::strip_no_consent);
    CHECK(run(TableHealth::fresh, true, kCollector, {true, 0}) == Verdict::strip_no_consent);
    CHECK(run(TableHealth::fresh, true, kCollector, {false, 0}) == Verdict::strip_unknown_subscriber);
    CHECK(run(TableHealth::fresh, true, kCollector, {true, 0xffffffffu}, 31) == Verdict::pass_consent);
    CHECK(run(TableHealth::fresh, true, kCollector, {true, 0x7fffffffu}, 31) == Verdict::strip_no_consent);
}

TEST_CASE("everything else strips") {
    const ConsentLookup all{true, 0xffffffffu};
    CHECK(run(TableHealth::fresh, false, kCollector, all) == Verdict::strip_not_subscriber);
    CHECK(run(TableHealth::fresh, true, kNone, all) == Verdict::strip_no_collector);
    CHECK(run(TableHealth::fresh, true, kNone, all, 3, true) == Verdict::strip_out_of_sync);
    CHECK(run(TableHealth::not_received, true, kCollector, all) == Verdict::strip_table_not_received);
    CHECK(run(TableHealth::stale, true, kCollector, all) == Verdict::strip_table_stale);
}

TEST_CASE("exemptions pass without consent, but not on a stale or missing table") {
    CHECK(run(TableHealth::fresh, true, kExemption, {false, 0}) == Verdict::pass_exempt);
    CHECK(run(TableHealth::stale, true, kExemption, {false, 0}) == Verdict::strip_table_stale);
    CHECK(run(TableHealth::not_received, true, kExemption, {false, 0}) == Verdict::strip_table_not_received);
    CHECK(run(TableHealth::fresh, false, kExemption, {false, 0}) == Verdict::strip_not_subscriber);
}

TEST_CASE("only the two pass verdicts pass, and each verdict has its own counter") {
    int passing = 0;
    for (unsigned v = 0; v <= unsigned(Verdict::strip_out_of_sync); ++v) {
        passing += passes(Verdict(v));
        CHECK(counter_name(verdict_counter(Verdict(v))).starts_with("verdict_"));
    }
    CHECK(passing == 2);
    CHECK(counter_name(verdict_counter(Verdict::pass_exempt)) == "verdict_pass_exempt");
    CHECK(counter_name(verdict_counter(Verdict::strip_table_stale)) == "verdict_strip_table_stale");
}
