// Read side of the ledger for the API: one subscriber's current consents,
// bindings and history; who held an address at a time. A separate SQLite connection (WAL readers never wait
// for the writer), used by one thread; each call reads one consistent
// snapshot.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "consentd/database.hpp"
#include "consentd/event.hpp"
#include "consentd/fold.hpp"
#include "consentd/policy_history.hpp"

namespace optgate::consentd {

// Where a current consent's run began: its first grant since the purpose
// was last revoked (or ever). A repeat grant does not move it.
struct ConsentRun {
    std::string purpose;
    uint64_t first_seq = 0;
    std::string first_time;
};

struct SubscriberRecord {
    std::vector<ConsentRow> consents;  // by purpose name
    std::vector<ConsentRun> runs;      // one per consent, in the same order
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

// An address's binding at a time: the bind or unbind in force then, and the
// event that ended it.
struct AddressRecord {
    std::optional<Event> since;  // the address's latest event at or before the time; none: never bound by then
    std::optional<Event> until;  // the address's next event after `since`; none: still in force
};

class LedgerReader {
public:
    // `durable`, when given, runs after each read and before its result is
    // returned: LedgerService::wait_durable, so that what a read returns is
    // durable (a reader sees a commit as soon as it is written, before the
    // fsync that makes it durable).
    explicit LedgerReader(const std::string& path, std::function<void()> durable = {});

    // nullopt when the ledger has no event for `subscriber`. `history`: the
    // latest `history_limit` events with a seq below `before` (a page cursor).
    std::optional<SubscriberRecord> subscriber(const std::string& subscriber, size_t history_limit,
                                               uint64_t before = uint64_t(INT64_MAX));
    EventRecord event(const std::string& subscriber, uint64_t seq);
    // `binding`: the stored text of a binding (binding_text()). `at`: a time
    // as events store it (format_utc_ms); nullopt: now. The ledger's order
    // decides: the last event (by seq) whose time is not after `at`.
    AddressRecord address(const std::string& binding, const std::optional<std::string>& at);

private:
    std::optional<SubscriberRecord> read_subscriber(const std::string& subscriber, size_t history_limit,
                                                    uint64_t before);
    EventRecord read_event(const std::string& subscriber, uint64_t seq);
    AddressRecord read_address(const std::string& binding, const std::optional<std::string>& at);
    // Returns `r` once what the read saw is durable.
    template <class T>
    T settled(T r) const {
        if (durable_) durable_();
        return r;
    }

    std::function<void()> durable_;
    Database db_;
    Statement count_, consents_, runs_, bindings_, history_;
};

}  // namespace optgate::consentd
