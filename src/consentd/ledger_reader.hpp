// Read side of the ledger for the API: one subscriber's current consents,
// bindings and history. A separate SQLite connection (WAL readers never wait
// for the writer), used by one thread; each call reads one consistent
// snapshot.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "consentd/event.hpp"
#include "consentd/fold.hpp"
#include "consentd/policy_history.hpp"
#include "consentd/sqlite.hpp"

namespace optgate::consentd {

struct SubscriberRecord {
    std::vector<ConsentRow> consents;  // by purpose name
    std::vector<BindingRow> bindings;  // by address
    std::vector<Event> history;        // the latest events (before the cursor), oldest first
    uint64_t event_count = 0;          // all of this subscriber's events
    bool older = false;                // events before the oldest in `history` exist
};

// What a receipt of event `seq` is built from (receipt.hpp), read in one
// snapshot.
struct EventRecord {
    bool subscriber_known = false;               // some event names the subscriber
    std::optional<Event> event;                  // event `seq`, whoever it names
    std::shared_ptr<const PolicyRecord> record;  // the policy history's record in force at it
};

class LedgerReader {
public:
    explicit LedgerReader(const std::string& path);

    // nullopt when the ledger has no event for `subscriber`. `history`: the
    // latest `history_limit` events with a seq below `before` (a page cursor).
    std::optional<SubscriberRecord> subscriber(const std::string& subscriber, size_t history_limit,
                                               uint64_t before = uint64_t(INT64_MAX));
    EventRecord event(const std::string& subscriber, uint64_t seq);

private:
    Database db_;
    Statement count_, consents_, bindings_, history_;
};

}  // namespace optgate::consentd
