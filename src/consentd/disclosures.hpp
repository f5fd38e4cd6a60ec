// Disclosures: what was shared about each subscriber (docs/transparency.md).
//
// Data planes report, per interval, the identifier instances they passed and
// stripped per (subscriber key, destination, identifier). DisclosureStore
// attributes each key to the subscriber that held it AT THAT TIME, through
// the ledger's binding history (bind/unbind events), and adds the counts to
// daily rows in the ledger database, apart from the hash chain (no events).
//
// Attribution is conservative, never split: a report carries one sum per
// interval, not when within it each identifier was seen, so any split of an
// interval in which the key changed hands would give one subscriber some of
// another's counts. A key's counts go to subscriber S only if S held the key
// throughout the interval widened by `clock_margin` on each side (the data
// plane's clock and consentd's may differ, and a binding is recorded when
// consentd commits it, not when the access network assigned the address).
// Nobody held it throughout: "unbound". Anything else (the holder changed,
// or the key was bound for part of the window): "ambiguous". Unattributed
// counts are kept per day, destination and identifier for operators, and are
// never shown to a subscriber.
//
// A report is attributed once its widened window has closed by consentd's
// clock (plus a second for commits in flight), so a rebinding recorded just
// after the interval's end is seen; its acknowledgement waits that long.
//
// Writes: the store has its own thread and its own SQLite connection to the
// ledger file. SQLite lets one writer at a time into the WAL; the ledger
// writer's transactions and the store's are both short and each waits for
// the other (busy timeout), so neither needs to know about the other, and the
// ledger's group commit path is unchanged. The history is read before the
// write transaction, so the ledger writer waits only for the writes. Each
// batch of queued reports is one write transaction holding both the counts
// and the reports' ids: a report is counted exactly once, and acknowledged
// (done(true)) only once that transaction is durable (synchronous=FULL).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "consentd/database.hpp"
#include "consentd/disclosure_sink.hpp"
#include "consentd/metrics.hpp"
#include "core/policy.hpp"

namespace optgate::consentd {

// The tables (and the events index attribution needs), created if missing:
// an additive migration that leaves the ledger's schema version alone.
void create_disclosure_tables(Database& db);

// "YYYY-MM-DD" (UTC) of a Unix time in ms; and back, nullopt unless `text` is
// exactly a valid date of that form (years 1970..9999).
std::string utc_day(uint64_t unix_ms);
std::optional<std::chrono::sys_days> parse_day(std::string_view text);
std::string day_text(std::chrono::sys_days d);

// Where an entry's counts went.
enum class Attribution : uint8_t { subscriber, unbound, ambiguous };

// The purpose stored with a destination's counts, from the policy in force:
// the collector's purpose; "(exempt)" for an exemption; "(none)" for
// destinations that are neither (their identifiers are always stripped);
// "(unknown)" for a name this policy does not know (it changed since the
// data plane counted).
std::string destination_purpose(const Policy& policy, std::string_view destination);

struct DisclosureOptions {
    unsigned retention_days = 400;                 // rows older than this many days are pruned
    std::chrono::milliseconds clock_margin{5000};  // widens each interval on both sides
    std::chrono::milliseconds prune_interval{3600000};
};

class DisclosureStore final : public DisclosureSink {
public:
    using PolicySource = std::function<std::shared_ptr<const Policy>()>;

    // Opens its own connection to the ledger database (which must exist: open
    // the Ledger first) and creates the tables if missing. Throws on error.
    DisclosureStore(const std::string& database, DisclosureOptions options, Metrics& metrics, PolicySource policy);
    ~DisclosureStore() override;
    DisclosureStore(const DisclosureStore&) = delete;
    DisclosureStore& operator=(const DisclosureStore&) = delete;

    // Starts the writer thread, which also prunes (at start, then every
    // prune_interval).
    void start();
    // Stores what is queued, then stops; later submits get done(false).
    void stop();

    void submit(DisclosureReport report, std::function<void(bool stored)> done) override;

    // Deletes rows and report ids of days before `today` - retention_days;
    // returns how many rows went. On the writer thread, or before start().
    size_t prune(std::chrono::sys_days today);

private:
    struct Pending {
        DisclosureReport report;
        std::function<void(bool)> done;
        uint64_t ready_unix_ms = 0;  // when the history for its window is complete
    };
    struct Tally;
    struct Attributed;

    void run();
    void store_batch(std::vector<Pending>& batch);
    // Reads the binding history only.
    Attributed attribute_report(const DisclosureReport& r, const Policy& policy);
    // In the open write transaction; false when the report was already stored.
    bool store_one(const DisclosureReport& r, const Attributed& a, const Policy& policy);
    Attribution attribute(const std::string& address, const std::string& from, const std::string& to,
                          std::string& holder);

    Database db_;
    DisclosureOptions options_;
    Metrics& metrics_;
    PolicySource policy_;
    Statement insert_report_, history_, upsert_subscriber_, upsert_unattributed_;

    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Pending> queue_;
    bool stopping_ = false;
    bool started_ = false;
    std::thread writer_;
};

// One stored row of a subscriber's disclosures.
struct DisclosureRow {
    std::string day;
    std::string destination;
    std::string purpose;
    std::string identifier;
    uint64_t passed = 0;
    uint64_t stripped = 0;
};

// Read side for the API: its own connection, used by one thread.
class DisclosureReader {
public:
    explicit DisclosureReader(const std::string& database);

    // Rows of days from..to (inclusive, "YYYY-MM-DD"), ordered by day,
    // destination, purpose, identifier; nullopt when no ledger event names
    // the subscriber.
    std::optional<std::vector<DisclosureRow>> subscriber(const std::string& id, const std::string& from,
                                                         const std::string& to);

private:
    Database db_;
    Statement known_, rows_;
};

}  // namespace optgate::consentd
