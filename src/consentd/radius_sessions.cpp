#include "consentd/radius_sessions.hpp"

#include "consentd/schema.hpp"

namespace optgate::consentd {

RadiusSessions::RadiusSessions(Database& db) {
    db.exec(kRadiusSchema);
    holder_ = db.prepare(
        "SELECT r.client, r.nas, r.session_id, r.subscriber FROM radius_sessions r "
        "JOIN bindings b ON b.address = r.address AND b.seq = r.seq WHERE r.address = ?1");
    hold_ = db.prepare(
        "INSERT OR REPLACE INTO radius_sessions (address, client, nas, session_id, subscriber, seq) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
    forget_ = db.prepare("DELETE FROM radius_sessions WHERE address = ?1");
    held_by_ = db.prepare(
        "SELECT r.address, r.subscriber FROM radius_sessions r "
        "JOIN bindings b ON b.address = r.address AND b.seq = r.seq WHERE r.client = ?1 AND r.nas = ?2");
    held_by_session_ = db.prepare(
        "SELECT r.address, r.subscriber FROM radius_sessions r JOIN bindings b ON b.address = r.address AND "
        "b.seq = r.seq WHERE r.client = ?1 AND r.nas = ?2 AND r.session_id = ?3");
    forget_all_ = db.prepare("DELETE FROM radius_sessions WHERE client = ?1 AND nas = ?2");
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

void RadiusSessions::hold(std::string_view address, const RadiusSession& s, std::string_view subscriber, uint64_t seq) {
    hold_.bind(1, address).bind(2, s.client).bind(3, s.nas).bind(4, s.session_id).bind(5, subscriber);
    hold_.bind(6, int64_t(seq));
    hold_.run();
}

void RadiusSessions::forget(std::string_view address) {
    forget_.bind(1, address);
    forget_.run();
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

void RadiusSessions::forget_all(std::string_view client, std::string_view nas) {
    forget_all_.bind(1, client).bind(2, nas);
    forget_all_.run();
}

void RadiusSessions::note_event(uint64_t seq, const RadiusSession& s) {
    note_.bind(1, int64_t(seq)).bind(2, s.client).bind(3, s.nas).bind(4, s.session_id);
    note_.run();
}

}  // namespace optgate::consentd
