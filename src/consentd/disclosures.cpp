#include "consentd/disclosures.hpp"

#include <algorithm>
#include <cstdio>
#include <map>
#include <tuple>

#include "consentd/binding_address.hpp"
#include "consentd/event.hpp"
#include "consentd/ledger.hpp"
#include "consentd/log.hpp"
#include "consentd/schema.hpp"

namespace optgate::consentd {

namespace {

// SQLite integers are signed 64-bit; counts and ids never come near the top.
int64_t to_sql(uint64_t v) { return int64_t(std::min<uint64_t>(v, uint64_t(INT64_MAX))); }

// The binding text of a reported key under `policy`: the same text bind and
// unbind events store in `address`.
std::string key_address(const DisclosureEntry& e, const Policy& policy) {
    Prefix p;
    if (e.family == Family::v4) {
        p.addr = IpAddr::from_v4(e.key.data());
        p.len = 32;
    } else {
        p.addr = IpAddr::from_v6(e.key.data()).masked(policy.ipv6_key_length);
        p.len = policy.ipv6_key_length;
    }
    return binding_text(p);
}

}  // namespace

void create_disclosure_tables(Database& db) {
    if (db.postgresql()) return;  // created with the ledger (kPgSchema)
    db.begin_write();
    try {
        db.exec(kDisclosureSchema);
        db.commit();
    } catch (...) {
        db.rollback();
        throw;
    }
}

std::string utc_day(uint64_t unix_ms) {
    return format_utc_ms(std::chrono::system_clock::time_point(std::chrono::milliseconds(unix_ms))).substr(0, 10);
}

std::string day_text(std::chrono::sys_days d) {
    const std::chrono::year_month_day ymd(d);
    char buf[32];
    std::snprintf(buf, sizeof buf, "%04d-%02u-%02u", int(ymd.year()), unsigned(ymd.month()), unsigned(ymd.day()));
    return buf;
}

std::optional<std::chrono::sys_days> parse_day(std::string_view t) {
    if (t.size() != 10 || t[4] != '-' || t[7] != '-') return std::nullopt;
    auto num = [&](size_t at, size_t n) -> std::optional<unsigned> {
        unsigned v = 0;
        for (size_t i = at; i < at + n; ++i) {
            if (t[i] < '0' || t[i] > '9') return std::nullopt;
            v = v * 10 + unsigned(t[i] - '0');
        }
        return v;
    };
    const auto y = num(0, 4), m = num(5, 2), d = num(8, 2);
    if (!y || !m || !d || *y < 1970) return std::nullopt;
    const std::chrono::year_month_day ymd{std::chrono::year(int(*y)), std::chrono::month(*m), std::chrono::day(*d)};
    if (!ymd.ok()) return std::nullopt;
    return std::chrono::sys_days(ymd);
}

std::string destination_purpose(const Policy& policy, std::string_view destination) {
    for (const auto& c : policy.collectors)
        if (c.name == destination) return policy.purposes[c.purpose].name;
    for (const auto& e : policy.exemptions)
        if (e.name == destination) return "(exempt)";
    if (destination == "(none)") return "(none)";
    return "(unknown)";
}

// A batch's effect, counted for the metrics once it is durable.
struct DisclosureStore::Tally {
    uint64_t stored = 0, duplicates = 0;
    uint64_t entries[3] = {0, 0, 0};  // by Attribution
};

// One report's counts summed per holder (or reason), destination and
// identifier: a subscriber's keys and a report's repeated names add up.
struct DisclosureStore::Attributed {
    struct Sum {
        uint64_t passed = 0, stripped = 0;
    };
    std::string day;
    std::map<std::tuple<Attribution, std::string, std::string, std::string>, Sum> sums;
    uint64_t entries[3] = {0, 0, 0};  // by Attribution
};

DisclosureStore::DisclosureStore(const std::string& database, DisclosureOptions options, Metrics& metrics,
                                 PolicySource policy)
    : db_(database, Database::Mode::read_write), options_(options), metrics_(metrics), policy_(std::move(policy)) {
    check_schema(db_);
    if (!db_.postgresql()) {
        // Per connection: a report is acknowledged only once its commit is on disk.
        db_.exec("PRAGMA synchronous = FULL");
        // Nobody waits on this thread but data planes' acks: outwait a large
        // import's commit rather than fail the batch.
        sqlite3_busy_timeout(db_.handle(), 60000);
    }
    create_disclosure_tables(db_);
    insert_report_ = db_.prepare(
        "INSERT INTO disclosure_reports (dataplane, reporter, seq, day, start_ms, end_ms, entries, "
        "overflowed) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING");
    // Only bind and unbind events have an address; newest first.
    history_ = db_.prepare("SELECT time, subscriber, action FROM events WHERE address = ?1 ORDER BY seq DESC");
    upsert_subscriber_ = db_.prepare(
        "INSERT INTO disclosures (subscriber, day, destination, purpose, identifier, passed, stripped) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (subscriber, day, destination, purpose, identifier) "
        "DO UPDATE SET passed = disclosures.passed + excluded.passed, "
        "stripped = disclosures.stripped + excluded.stripped");
    upsert_unattributed_ = db_.prepare(
        "INSERT INTO disclosures_unattributed (day, reason, destination, purpose, identifier, passed, stripped) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (day, reason, destination, purpose, identifier) "
        "DO UPDATE SET passed = disclosures_unattributed.passed + excluded.passed, "
        "stripped = disclosures_unattributed.stripped + excluded.stripped");
}

DisclosureStore::~DisclosureStore() { stop(); }

void DisclosureStore::start() {
    std::lock_guard lk(mu_);
    if (started_ || stopping_) return;
    started_ = true;
    writer_ = std::thread([this] { run(); });
}

void DisclosureStore::stop() {
    {
        std::lock_guard lk(mu_);
        stopping_ = true;
    }
    cv_.notify_all();
    if (writer_.joinable()) writer_.join();
    // Never started, or not yet attributable: unacknowledged, so the data
    // plane sends them again (to the next consentd).
    std::deque<Pending> left;
    {
        std::lock_guard lk(mu_);
        left.swap(queue_);
    }
    for (auto& p : left) p.done(false);
}

namespace {

uint64_t now_unix_ms() {
    return uint64_t(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count());
}

// A bind committing now carries a time stamped a moment before its commit:
// give such commits this long before reading the history.
constexpr uint64_t kCommitSettleMs = 1000;

}  // namespace

void DisclosureStore::submit(DisclosureReport report, std::function<void(bool)> done) {
    // Attributable once the widened window has closed by consentd's clock:
    // a rebinding inside it may still be on its way. A data plane whose clock
    // runs ahead waits no longer than one from the same moment.
    const uint64_t end = std::min(std::max(report.batch.start_unix_ms, report.batch.end_unix_ms), now_unix_ms());
    const uint64_t ready = end + uint64_t(options_.clock_margin.count()) + kCommitSettleMs;
    {
        std::lock_guard lk(mu_);
        if (!stopping_) {
            queue_.push_back({std::move(report), std::move(done), ready});
            cv_.notify_one();
            return;
        }
    }
    done(false);
}

void DisclosureStore::run() {
    using clock = std::chrono::steady_clock;
    auto next_prune = clock::now();
    std::vector<Pending> batch;
    for (;;) {
        bool stopping = false;
        {
            std::unique_lock lk(mu_);
            for (;;) {
                const uint64_t now = now_unix_ms();
                uint64_t earliest = UINT64_MAX;
                for (auto it = queue_.begin(); it != queue_.end();) {
                    if (it->ready_unix_ms <= now) {
                        batch.push_back(std::move(*it));
                        it = queue_.erase(it);
                    } else {
                        earliest = std::min(earliest, it->ready_unix_ms);
                        ++it;
                    }
                }
                stopping = stopping_;
                if (!batch.empty() || stopping || clock::now() >= next_prune) break;
                auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_prune - clock::now());
                if (earliest != UINT64_MAX) wait = std::min(wait, std::chrono::milliseconds(earliest - now));
                cv_.wait_for(lk, wait);
            }
        }
        if (!batch.empty()) store_batch(batch);
        batch.clear();
        if (stopping) return;  // stop() fails what is not attributable yet
        if (clock::now() >= next_prune) {
            try {
                const auto today = std::chrono::floor<std::chrono::days>(std::chrono::system_clock::now());
                if (const size_t n = prune(today)) log_info("disclosures: pruned " + std::to_string(n) + " rows");
            } catch (const std::exception& e) {
                log_error(std::string("disclosures: pruning failed (retried later): ") + e.what());
            }
            next_prune = clock::now() + options_.prune_interval;
        }
    }
}

void DisclosureStore::store_batch(std::vector<Pending>& batch) {
    Tally t;
    bool ok = true;
    try {
        // The history is read first, in one read transaction, without
        // SQLite's write lock: the ledger writer is held up only by the
        // writes. Nothing read can change meanwhile: every report here is
        // past its window's close, and later bindings carry later times.
        const auto policy = policy_();
        std::vector<Attributed> attributed;
        attributed.reserve(batch.size());
        db_.begin_read();
        try {
            for (const auto& p : batch) attributed.push_back(attribute_report(p.report, *policy));
            db_.commit();
        } catch (...) {
            db_.rollback();
            throw;
        }
        db_.begin_write();
        for (size_t i = 0; i < batch.size(); ++i) {
            if (!store_one(batch[i].report, attributed[i], *policy)) {
                ++t.duplicates;
                continue;
            }
            ++t.stored;
            for (unsigned a = 0; a < 3; ++a) t.entries[a] += attributed[i].entries[a];
        }
        db_.commit();
    } catch (const std::exception& e) {
        ok = false;
        db_.rollback();
        for (Statement* st : {&insert_report_, &history_, &upsert_subscriber_, &upsert_unattributed_}) st->reset();
        log_error("disclosures: storing " + std::to_string(batch.size()) +
                  " reports failed, nothing stored (data planes send them again): " + e.what());
    }
    if (ok)
        metrics_.count_disclosures(t.stored, t.duplicates, t.entries[0], t.entries[1], t.entries[2]);
    else
        metrics_.count_disclosure_failures(batch.size());
    for (auto& p : batch) p.done(ok);
}

DisclosureStore::Attributed DisclosureStore::attribute_report(const DisclosureReport& r, const Policy& policy) {
    const uint64_t first = std::min(r.batch.start_unix_ms, r.batch.end_unix_ms);
    const uint64_t last = std::max(r.batch.start_unix_ms, r.batch.end_unix_ms);
    Attributed out;
    out.day = utc_day(first);
    // The window within which the holder must not have changed, in the
    // events' own time text (fixed width: text order is time order).
    const uint64_t margin = uint64_t(options_.clock_margin.count());
    const auto at = [](uint64_t ms) {
        return format_utc_ms(std::chrono::system_clock::time_point(std::chrono::milliseconds(ms)));
    };
    const std::string from = at(first > margin ? first - margin : 0);
    const std::string to = at(last + margin);
    std::map<std::string, std::pair<Attribution, std::string>> seen;  // address -> attribution, holder
    for (const auto& e : r.batch.entries) {
        const std::string address = key_address(e, policy);
        auto it = seen.find(address);
        if (it == seen.end()) {
            std::string holder;
            const Attribution a = attribute(address, from, to, holder);
            it = seen.emplace(address, std::make_pair(a, std::move(holder))).first;
        }
        const auto& [a, holder] = it->second;
        ++out.entries[unsigned(a)];
        auto& s = out.sums[{a, holder, e.destination, e.identifier}];
        s.passed += e.passed;
        s.stripped += e.stripped;
    }
    return out;
}

bool DisclosureStore::store_one(const DisclosureReport& r, const Attributed& a, const Policy& policy) {
    insert_report_.bind(1, r.dataplane)
        .bind(2, int64_t(r.reporter))  // the random id's bits, as SQLite's signed integer
        .bind(3, to_sql(r.seq))
        .bind(4, a.day)
        .bind(5, to_sql(r.batch.start_unix_ms))
        .bind(6, to_sql(r.batch.end_unix_ms))
        .bind(7, int64_t(r.batch.entries.size()))
        .bind(8, to_sql(r.batch.overflowed));
    insert_report_.run();
    if (db_.changes() == 0) return false;  // counted when it first came
    for (const auto& [k, s] : a.sums) {
        const auto& [attribution, holder, destination, identifier] = k;
        const std::string purpose = destination_purpose(policy, destination);
        const bool to_subscriber = attribution == Attribution::subscriber;
        Statement& st = to_subscriber ? upsert_subscriber_ : upsert_unattributed_;
        st.bind(1, to_subscriber ? std::string_view(holder) : std::string_view(a.day))
            .bind(2, to_subscriber ? std::string_view(a.day)
                                   : std::string_view(attribution == Attribution::unbound ? "unbound" : "ambiguous"))
            .bind(3, destination)
            .bind(4, purpose)
            .bind(5, identifier)
            .bind(6, to_sql(s.passed))
            .bind(7, to_sql(s.stripped));
        st.run();
    }
    return true;
}

Attribution DisclosureStore::attribute(const std::string& address, const std::string& from, const std::string& to,
                                       std::string& holder) {
    // Walk the address's bind/unbind events from the newest back to the last
    // one at or before the window's start: that one says who held the key
    // when the window opened, those inside it every change during it.
    // Events after the window do not matter.
    struct Reset {
        Statement& st;
        explicit Reset(Statement& statement) : st(statement) {}
        Reset(const Reset&) = delete;
        Reset& operator=(const Reset&) = delete;
        ~Reset() { st.reset(); }
    } reset(history_);
    history_.bind(1, address);
    std::vector<std::optional<std::string>> states;  // holders during the window (nullopt: unbound)
    bool found_start = false;
    while (history_.step()) {
        const std::string_view time = history_.text(0);
        const bool bind = history_.text(2) == "bind";
        if (time > to) continue;
        states.push_back(bind ? std::optional<std::string>(history_.text(1)) : std::nullopt);
        if (time <= from) {
            found_start = true;
            break;
        }
    }
    if (!found_start) states.emplace_back(std::nullopt);  // before its first event: unbound
    const bool one_state = std::all_of(states.begin(), states.end(), [&](const auto& s) { return s == states[0]; });
    if (!one_state) return Attribution::ambiguous;
    if (!states[0]) return Attribution::unbound;
    holder = *states[0];
    return Attribution::subscriber;
}

size_t DisclosureStore::prune(std::chrono::sys_days today) {
    const std::string cutoff = day_text(today - std::chrono::days(options_.retention_days));
    size_t removed = 0;
    db_.begin_write();
    try {
        for (const char* table : {"disclosures", "disclosures_unattributed", "disclosure_reports"}) {
            auto st = db_.prepare(std::string("DELETE FROM ") + table + " WHERE day < ?1");
            st.bind(1, cutoff);
            st.run();
            removed += size_t(db_.changes());
        }
        db_.commit();
    } catch (...) {
        db_.rollback();
        throw;
    }
    if (removed) metrics_.count_disclosures_pruned(removed);
    return removed;
}

DisclosureReader::DisclosureReader(const std::string& database) : db_(database, Database::Mode::read_write) {
    check_schema(db_);
    create_disclosure_tables(db_);  // no-op once the store made them
    known_ = db_.prepare("SELECT 1 FROM events WHERE subscriber = ?1 LIMIT 1");
    rows_ = db_.prepare(
        "SELECT day, destination, purpose, identifier, passed, stripped FROM disclosures "
        "WHERE subscriber = ?1 AND day >= ?2 AND day <= ?3 ORDER BY day, destination, purpose, identifier");
}

std::optional<std::vector<DisclosureRow>> DisclosureReader::subscriber(const std::string& id, const std::string& from,
                                                                       const std::string& to) {
    // One read transaction: both queries see the same commit.
    db_.begin_read();
    struct End {
        DisclosureReader& r;
        explicit End(DisclosureReader& reader) : r(reader) {}
        End(const End&) = delete;
        End& operator=(const End&) = delete;
        ~End() {
            r.known_.reset();
            r.rows_.reset();
            r.db_.end_read();
        }
    } end(*this);
    known_.bind(1, id);
    if (!known_.step()) return std::nullopt;
    std::vector<DisclosureRow> rows;
    rows_.bind(1, id).bind(2, from).bind(3, to);
    while (rows_.step())
        rows.push_back(DisclosureRow{std::string(rows_.text(0)), std::string(rows_.text(1)), std::string(rows_.text(2)),
                                     std::string(rows_.text(3)), uint64_t(rows_.int64(4)), uint64_t(rows_.int64(5))});
    return rows;
}

}  // namespace optgate::consentd
