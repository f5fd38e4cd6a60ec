#include "consentd/radius_sessions.hpp"

#include "consentd/schema.hpp"

namespace optgate::consentd {

namespace {

// A candidate row whose address is still bound by that session's event.
constexpr std::string_view kHeld =
    "SELECT s.address, b.subscriber FROM radius_session_bindings s "
    "JOIN bindings b ON b.address = s.address "
    "JOIN radius_events r ON r.seq = b.seq AND r.client = s.client AND r.nas = s.nas AND "
    "r.session_id = s.session_id ";

}  // namespace

RadiusSessions::RadiusSessions(Database& db) : db_(db) {
    if (!db.postgresql()) db.exec(kRadiusSchema);  // PostgreSQL: created with the ledger (kPgSchema)
    holder_ = db.prepare(
        "SELECT r.client, r.nas, r.session_id, b.subscriber FROM bindings b "
        "JOIN radius_events r ON r.seq = b.seq WHERE b.address = ?1");
    hold_ = db.prepare(
        "INSERT INTO radius_session_bindings (client, nas, session_id, address) VALUES (?1, ?2, ?3, ?4) "
        "ON CONFLICT DO NOTHING");
    held_by_ = db.prepare(std::string(kHeld) + "WHERE s.client = ?1 AND s.nas = ?2");
    held_by_session_ = db.prepare(std::string(kHeld) + "WHERE s.client = ?1 AND s.nas = ?2 AND s.session_id = ?3");
    forget_ = db.prepare("DELETE FROM radius_session_bindings WHERE client = ?1 AND nas = ?2 AND session_id = ?3");
    forget_all_ = db.prepare("DELETE FROM radius_session_bindings WHERE client = ?1 AND nas = ?2");
    note_ = db.prepare("INSERT INTO radius_events (seq, client, nas, session_id) VALUES (?1, ?2, ?3, ?4)");
}

std::optional<RadiusSessions::Holder> RadiusSessions::holder(std::string_view address) {
    holder_.bind(1, address);
    std::optional<Holder> h;
    if (holder_.step())
        h = Holder{{std::string(holder_.text(0)), std::string(holder_.text(1)), std::string(holder_.text(2))},
                   std::string(holder_.text(3))};
    holder_.reset();
    return h;
}

void RadiusSessions::hold(std::string_view address, const RadiusSession& s) {
    hold_.bind(1, s.client).bind(2, s.nas).bind(3, s.session_id).bind(4, address);
    hold_.queue();
}

std::vector<std::pair<std::string, std::string>> RadiusSessions::held_by(std::string_view client,
                                                                         std::string_view nas) {
    held_by_.bind(1, client).bind(2, nas);
    std::vector<std::pair<std::string, std::string>> out;
    while (held_by_.step()) out.emplace_back(held_by_.text(0), held_by_.text(1));
    held_by_.reset();
    return out;
}

std::vector<std::pair<std::string, std::string>> RadiusSessions::held_by(const RadiusSession& s) {
    held_by_session_.bind(1, s.client).bind(2, s.nas).bind(3, s.session_id);
    std::vector<std::pair<std::string, std::string>> out;
    while (held_by_session_.step()) out.emplace_back(held_by_session_.text(0), held_by_session_.text(1));
    held_by_session_.reset();
    return out;
}

int64_t RadiusSessions::forget(const RadiusSession& s) {
    forget_.bind(1, s.client).bind(2, s.nas).bind(3, s.session_id);
    forget_.run();
    return db_.changes();
}

int64_t RadiusSessions::forget_all(std::string_view client, std::string_view nas) {
    forget_all_.bind(1, client).bind(2, nas);
    forget_all_.run();
    return db_.changes();
}

void RadiusSessions::note_event(uint64_t seq, const RadiusSession& s) {
    note_.bind(1, int64_t(seq)).bind(2, s.client).bind(3, s.nas).bind(4, s.session_id);
    note_.queue();
}

}  // namespace optgate::consentd
