#include "consentd/ledger_reader.hpp"

#include <algorithm>
#include <map>

#include "consentd/ledger.hpp"

namespace optgate::consentd {
namespace {}  // namespace

LedgerReader::LedgerReader(const std::string& path, std::function<void()> durable)
    : durable_(std::move(durable)), db_(path, Database::Mode::read_write) {
    check_schema(db_);
    count_ = db_.prepare("SELECT count(*) FROM events WHERE subscriber = ?1");
    consents_ = db_.prepare(
        "SELECT subscriber, purpose, seq, time, source, notice_version, credential FROM consents "
        "WHERE subscriber = ?1 ORDER BY purpose");
    // Grants and revokes, newest first: walking back from each current
    // consent to its run's first grant stops at the purpose's last revoke.
    runs_ = db_.prepare(
        "SELECT seq, time, action, purpose FROM events WHERE subscriber = ?1 AND action IN ('grant', 'revoke') "
        "ORDER BY seq DESC");
    bindings_ = db_.prepare(
        "SELECT address, subscriber, seq, time, source, credential FROM bindings WHERE subscriber = ?1 "
        "ORDER BY address");
    history_ = db_.prepare("SELECT " + std::string(kEventColumns) +
                           " FROM events WHERE subscriber = ?1 AND seq < ?3 ORDER BY seq DESC LIMIT ?2");
}

std::optional<SubscriberRecord> LedgerReader::subscriber(const std::string& id, size_t history_limit, uint64_t before) {
    return settled(read_subscriber(id, history_limit, before));
}

EventRecord LedgerReader::event(const std::string& subscriber, uint64_t seq) {
    return settled(read_event(subscriber, seq));
}

AddressRecord LedgerReader::address(const std::string& binding, const std::optional<std::string>& at) {
    return settled(read_address(binding, at));
}

std::optional<SubscriberRecord> LedgerReader::read_subscriber(const std::string& id, size_t history_limit,
                                                              uint64_t before) {
    // One read transaction: the four queries see the same commit.
    db_.begin_read();
    struct End {
        LedgerReader& r;
        explicit End(LedgerReader& reader) : r(reader) {}
        End(const End&) = delete;
        End& operator=(const End&) = delete;
        ~End() {
            for (Statement* st : {&r.count_, &r.consents_, &r.runs_, &r.bindings_, &r.history_}) st->reset();
            r.db_.end_read();
        }
    } end{*this};

    SubscriberRecord r;
    count_.bind(1, id);
    if (count_.step()) r.event_count = uint64_t(count_.int64(0));
    count_.reset();
    if (r.event_count == 0) return std::nullopt;

    consents_.bind(1, id);
    while (consents_.step())
        r.consents.push_back(ConsentRow{std::string(consents_.text(0)), std::string(consents_.text(1)),
                                        uint64_t(consents_.int64(2)), std::string(consents_.text(3)),
                                        std::string(consents_.text(4)), consents_.opt_text(5),
                                        std::string(consents_.text(6))});
    consents_.reset();

    if (!r.consents.empty()) {
        // purpose -> (first seq, time) of its current run; done once revoked.
        std::map<std::string, std::pair<ConsentRun, bool>, std::less<>> open;
        for (const auto& c : r.consents) open[c.purpose] = {ConsentRun{c.purpose, c.seq, c.time}, false};
        size_t left = open.size();
        runs_.bind(1, id);
        while (left > 0 && runs_.step()) {
            const auto it = open.find(runs_.text(3));
            if (it == open.end() || it->second.second) continue;
            if (runs_.text(2) == "revoke") {
                it->second.second = true;
                --left;
            } else {
                it->second.first.first_seq = uint64_t(runs_.int64(0));
                it->second.first.first_time = runs_.text(1);
            }
        }
        runs_.reset();
        for (const auto& c : r.consents) r.runs.push_back(open[c.purpose].first);
    }

    bindings_.bind(1, id);
    while (bindings_.step())
        r.bindings.push_back(BindingRow{std::string(bindings_.text(0)), std::string(bindings_.text(1)),
                                        uint64_t(bindings_.int64(2)), std::string(bindings_.text(3)),
                                        std::string(bindings_.text(4)), std::string(bindings_.text(5))});
    bindings_.reset();

    // One more than asked: whether older events exist, without a count.
    history_.bind(1, id).bind(2, int64_t(history_limit) + 1).bind(3, int64_t(std::min<uint64_t>(before, INT64_MAX)));
    while (history_.step()) r.history.push_back(event_from_row(history_));
    history_.reset();
    if (r.history.size() > history_limit) {
        r.older = true;
        r.history.pop_back();
    }
    std::reverse(r.history.begin(), r.history.end());
    return r;
}

EventRecord LedgerReader::read_event(const std::string& subscriber, uint64_t seq) {
    const ReadTransaction read{db_};
    EventRecord r;
    {
        auto st = db_.prepare("SELECT 1 FROM events WHERE subscriber = ?1 LIMIT 1");
        st.bind(1, subscriber);
        r.subscriber_known = st.step();
    }
    if (!r.subscriber_known) return r;
    {
        auto st = db_.prepare("SELECT " + std::string(kEventColumns) + " FROM events WHERE seq = ?1");
        st.bind(1, int64_t(seq));
        if (st.step()) r.event = event_from_row(st);
    }
    if (r.event) r.record = policy_record_at(db_, seq);
    return r;
}

AddressRecord LedgerReader::read_address(const std::string& binding, const std::optional<std::string>& at) {
    const ReadTransaction read{db_};
    AddressRecord r;
    // Both through the index events_by_address, which the disclosure store
    // creates at start (disclosures.cpp): it attributes through the same history.
    {
        auto st = db_.prepare("SELECT " + std::string(kEventColumns) +
                              " FROM events WHERE address = ?1 AND (CAST(?2 AS TEXT) IS NULL OR time <= ?2) "
                              "ORDER BY seq DESC LIMIT 1");
        st.bind(1, binding).bind(2, at);
        if (st.step()) r.since = event_from_row(st);
    }
    {
        auto st = db_.prepare("SELECT " + std::string(kEventColumns) +
                              " FROM events WHERE address = ?1 AND seq > ?2 ORDER BY seq LIMIT 1");
        st.bind(1, binding).bind(2, int64_t(r.since ? r.since->seq : 0));
        if (st.step()) r.until = event_from_row(st);
    }
    return r;
}

}  // namespace optgate::consentd
