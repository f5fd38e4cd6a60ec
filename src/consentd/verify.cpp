#include "consentd/verify.hpp"

#include <boost/json/parse.hpp>

#include <exception>
#include <unordered_set>

#include "consentd/binding_address.hpp"
#include "consentd/ledger.hpp"
#include "consentd/receipt.hpp"
#include "consentd/schema.hpp"

namespace optgate::consentd {

namespace {

std::string show(const std::optional<std::string>& v) { return v ? "'" + *v + "'" : "NULL"; }

// Names the first differing column of two rows of the same key.
std::string diff(const ConsentRow& stored, const ConsentRow& folded) {
    if (stored.seq != folded.seq)
        return "is from event " + std::to_string(stored.seq) + " but the latest grant is event " +
               std::to_string(folded.seq);
    if (stored.time != folded.time) return "has time '" + stored.time + "', event says '" + folded.time + "'";
    if (stored.source != folded.source) return "has source '" + stored.source + "', event says '" + folded.source + "'";
    if (stored.notice_version != folded.notice_version)
        return "has notice_version " + show(stored.notice_version) + ", event says " + show(folded.notice_version);
    return "has credential '" + stored.credential + "', event says '" + folded.credential + "'";
}

std::string diff(const BindingRow& stored, const BindingRow& folded) {
    if (stored.subscriber != folded.subscriber)
        return "names subscriber '" + stored.subscriber + "', the events bind it to '" + folded.subscriber + "'";
    if (stored.seq != folded.seq)
        return "is from event " + std::to_string(stored.seq) + " but the latest bind is event " +
               std::to_string(folded.seq);
    if (stored.time != folded.time) return "has time '" + stored.time + "', event says '" + folded.time + "'";
    if (stored.source != folded.source) return "has source '" + stored.source + "', event says '" + folded.source + "'";
    return "has credential '" + stored.credential + "', event says '" + folded.credential + "'";
}

class Verifier {
public:
    explicit Verifier(const std::string& path) : own_(std::in_place, path, Database::Mode::read_only), db_(*own_) {}
    // On a connection the caller holds (consentd's own, at startup), between
    // its transactions. Without counting subscribers: a set of every id ever
    // seen, a fifth of the time and half the memory of a start over 1M.
    explicit Verifier(Database& db) : db_(db), count_subscribers_(false) {}

    VerifyReport run() {
        check_schema(db_);
        db_.begin_read();  // one snapshot for the whole walk
        if (check_objects() && walk_events() && compare_consents() && compare_bindings() && check_policies())
            r_.ok = true;
        db_.exec("COMMIT");
        r_.subscribers = subscribers_.size();
        return r_;
    }

    // The chain from event 1 to `seq` only: what a receipt of event `seq`
    // rests on. Leaves the read transaction open for the caller.
    bool walk_to(uint64_t seq, std::string& problem) {
        check_schema(db_);
        db_.begin_read();
        last_ = seq;
        const bool ok = check_objects() && walk_events();
        problem = r_.problem;
        return ok;
    }
    Database& db() { return db_; }

    // The schema and the whole chain, then the fold of the events, for
    // rebuilding the derived tables from. Nullptr and problem() when either
    // does not verify.
    const LedgerFold* fold_all() {
        check_schema(db_);
        db_.begin_read();
        const bool ok = check_objects() && walk_events();
        db_.exec("COMMIT");
        return ok ? &fold_ : nullptr;
    }
    const std::string& problem() const { return r_.problem; }

private:
    bool fail(std::string problem) {
        r_.problem = std::move(problem);
        r_.damage = phase_;
        return false;
    }

    bool check_objects() {
        phase_ = Damage::schema;
        if (auto s = schema_difference(db_); !s.empty()) return fail(s);
        return true;
    }
    // fail("event N " + parts...), built only when it fails.
    template <class... Parts>
    bool fail_at(const Event& e, const Parts&... parts) {
        std::string problem = "event " + std::to_string(e.seq) + " ";
        (problem.append(parts), ...);
        return fail(std::move(problem));
    }

    bool walk_events() {
        phase_ = Damage::chain;
        auto st = db_.prepare("SELECT " + std::string(kEventColumns) + " FROM events WHERE seq <= ?1 ORDER BY seq");
        st.stream();
        st.bind(1, int64_t(last_));
        Digest prev{};
        std::string prev_hex = kGenesisHash;
        uint64_t expected = 1;
        while (st.step()) {
            Event e;
            try {
                e = event_from_row(st);
            } catch (const std::exception& ex) {
                return fail(ex.what());
            }
            if (e.seq != expected)
                return fail_at(e, "follows event ", std::to_string(expected - 1), ": events ", std::to_string(expected),
                               "..", std::to_string(e.seq - 1), " are missing");
            if (e.prev_hash != prev_hex)
                return fail_at(e, "has prev_hash ", e.prev_hash, " but event ", std::to_string(e.seq - 1),
                               " hashes to ", prev_hex);
            const Digest h = event_hash(prev, e);
            const std::string hex = to_hex(h);
            if (e.hash != hex) return fail_at(e, "has hash ", e.hash, " but its content hashes to ", hex);
            if (auto s = shape_error(e); !s.empty()) return fail_at(e, s);
            if (e.address && !parse_binding_text(*e.address))
                return fail_at(e, "has address '", *e.address, "', which is not a binding in canonical form");
            if (auto s = fold_.apply(e); !s.empty()) return fail_at(e, s);
            if (count_subscribers_) subscribers_.insert(e.subscriber);
            prev = h;
            prev_hex = hex;
            ++expected;
        }
        r_.events = expected - 1;
        r_.head_hash = prev_hex;
        return true;
    }

    bool compare_consents() {
        phase_ = Damage::derived;
        auto st = db_.prepare(
            "SELECT subscriber, purpose, seq, time, source, notice_version, credential FROM consents "
            "ORDER BY subscriber, purpose");
        st.stream();
        auto& folded = fold_.consents();
        while (st.step()) {
            ConsentRow row{std::string(st.text(0)), std::string(st.text(1)), uint64_t(st.int64(2)),
                           std::string(st.text(3)), std::string(st.text(4)), st.opt_text(5),
                           std::string(st.text(6))};
            const std::string what = "consents row ('" + row.subscriber + "', '" + row.purpose + "') ";
            const auto it = folded.find(LedgerFold::consent_key(row.subscriber, row.purpose));
            if (it == folded.end()) return fail(what + "exists but the events leave that purpose not granted");
            if (!(it->second == row)) return fail(what + diff(row, it->second));
            folded.erase(it);
            ++r_.consents;
        }
        if (!folded.empty()) {
            const ConsentRow* first = nullptr;
            for (const auto& [k, row] : folded)
                if (!first || row.seq < first->seq) first = &row;
            return fail("event " + std::to_string(first->seq) + " grants '" + first->purpose + "' to '" +
                        first->subscriber + "' and nothing revokes it, but the consents table has no row for it");
        }
        return true;
    }

    bool compare_bindings() {
        auto st = db_.prepare(
            "SELECT address, subscriber, seq, time, source, credential FROM bindings ORDER BY address");
        st.stream();
        auto& folded = fold_.bindings();
        while (st.step()) {
            BindingRow row{std::string(st.text(0)), std::string(st.text(1)), uint64_t(st.int64(2)),
                           std::string(st.text(3)), std::string(st.text(4)), std::string(st.text(5))};
            const std::string what = "bindings row '" + row.address + "' ";
            const auto it = folded.find(row.address);
            if (it == folded.end()) return fail(what + "exists but the events leave that address unbound");
            if (!(it->second == row)) return fail(what + diff(row, it->second));
            folded.erase(it);
            ++r_.bindings;
        }
        if (!folded.empty()) {
            const BindingRow* first = nullptr;
            for (const auto& [k, row] : folded)
                if (!first || row.seq < first->seq) first = &row;
            return fail("event " + std::to_string(first->seq) + " binds " + first->address + " to '" +
                        first->subscriber + "' and nothing unbinds it, but the bindings table has no row for it");
        }
        return true;
    }

    bool check_policies() {
        phase_ = Damage::policies;
        if (auto s = check_policy_history(db_, r_.events, r_.policies); !s.empty()) return fail(s);
        return true;
    }

    std::optional<Database> own_;
    Database& db_;
    const bool count_subscribers_ = true;
    Damage phase_ = Damage::unreadable;
    uint64_t last_ = uint64_t(INT64_MAX);
    LedgerFold fold_;
    std::unordered_set<std::string> subscribers_;
    VerifyReport r_;
};

}  // namespace

ReceiptCheck verify_receipt(const std::string& path, std::string_view text) {
    namespace json = boost::json;
    ReceiptCheck c;
    auto fail = [&](std::string problem) {
        c.problem = std::move(problem);
        return c;
    };
    boost::system::error_code ec;
    json::value given = json::parse(text, ec);
    if (ec || !given.is_object()) return fail("the receipt is not a JSON object");
    // A grant or revoke answer holds its receipt.
    if (const auto* inner = given.as_object().if_contains("receipt"); inner && inner->is_object()) given = *inner;
    const auto* ledger = given.as_object().if_contains("ledger");
    const auto* seq = ledger && ledger->is_object() ? ledger->as_object().if_contains("seq") : nullptr;
    const auto* id = given.as_object().if_contains("receipt_id");
    if (!seq || !seq->is_number() || !id || !id->is_string())
        return fail("the receipt has no ledger.seq or no receipt_id: it is not a consent receipt");
    const auto n = seq->to_number<int64_t>(ec);
    if (ec || n < 1) return fail("field 'ledger.seq' is not an event number");
    c.seq = uint64_t(n);
    c.receipt_id = std::string(id->as_string());
    try {
        Verifier v(path);
        std::string problem;
        if (!v.walk_to(c.seq, problem))
            return fail("the ledger does not verify up to event " + std::to_string(c.seq) + ": " + problem);
        auto st = v.db().prepare("SELECT " + std::string(kEventColumns) + " FROM events WHERE seq = ?1");
        st.bind(1, int64_t(c.seq));
        if (!st.step()) return fail("the ledger has no event " + std::to_string(c.seq));
        ReceiptSource source;
        source.event = event_from_row(st);
        const Event& e = source.event;
        if (e.action != Action::grant && e.action != Action::revoke)
            return fail("event " + std::to_string(c.seq) + " is a " + std::string(to_string(e.action)) +
                        ", not a consent event: it has no receipt");
        if (e.hash != c.receipt_id)
            return fail("field 'receipt_id' is " + c.receipt_id + ", but event " + std::to_string(c.seq) +
                        " of the ledger has hash " + e.hash);
        source.record = policy_record_at(v.db(), c.seq);
        if (source.record) source.policy = load_recorded_policy(*source.record);
        if (auto d = receipt_difference(given, build_receipt(source)); !d.empty()) return fail(d);
    } catch (const std::exception& e) {
        return fail(e.what());
    }
    c.ok = true;
    return c;
}

VerifyReport verify_ledger(const std::string& path) {
    try {
        return Verifier(path).run();
    } catch (const std::exception& e) {
        VerifyReport r;
        r.problem = e.what();
        return r;
    }
}

StartupCheck check_ledger_at_start(Ledger& ledger, bool rebuild) {
    StartupCheck c;
    try {
        c.report = Verifier(ledger.db()).run();
        if (c.report.ok || c.report.damage != Damage::derived || !rebuild) return c;
        // Only the derived tables disagree: the events are the record, so
        // the tables become their fold again (a new Verifier: run() used up
        // its fold comparing), and everything is checked once more.
        c.rebuilt = c.report.problem;
        Verifier v(ledger.db());
        const LedgerFold* fold = v.fold_all();
        if (!fold) throw std::runtime_error(v.problem());
        ledger.rebuild_derived(*fold);
        c.report = Verifier(ledger.db()).run();
    } catch (const std::exception& e) {
        c.report = VerifyReport{};
        c.report.problem = e.what();
    }
    return c;
}

}  // namespace optgate::consentd
