// Which RADIUS accounting session holds which binding: the side tables the
// accounting listener (radius_server.hpp) keeps beside the ledger, written by
// the ledger writer in the same transaction as the events (docs/radius.md,
// "Sessions").
//
//   radius_events(seq, client, nas, session_id)
//     for every event the listener made, the Acct-Session-Id of the request.
//   radius_session_bindings(client, nas, session_id, address)
//     the addresses each session bound: candidates for its Stop and for its
//     NAS's Accounting-On/Off, nothing more.
//
// A session holds a binding while the binding is still the one that session
// made: bindings.seq is a bind event radius_events attributes to the session.
// Any later bind or unbind of the address (by the API, an import or another
// session) changes bindings.seq or deletes the row, so no other code path has
// to know about these tables, and a binding written here costs one row in
// radius_events per event and one in radius_session_bindings per address.
// A session's rows in radius_session_bindings outlive a move of its address
// to another session (they no longer match); they are deleted at the
// session's Stop and at its NAS's Accounting-On/Off.
//
// The events and their hash chain are untouched (the session is not part of
// the event format); both tables are created IF NOT EXISTS when the ledger
// opens, so ledgers from before this feature and tools that do not know them
// work unchanged (schema version 1). A ledger with the older radius_sessions
// table is migrated when it opens (schema.hpp, migrate_schema).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "consentd/database.hpp"

namespace optgate::consentd {

struct RadiusSession {
    std::string client, nas, session_id;
    friend bool operator==(const RadiusSession&, const RadiusSession&) = default;
};

class RadiusSessions {
public:
    explicit RadiusSessions(Database& db);

    // The session holding the binding `address` and the subscriber it bound,
    // when the binding is still the one that session made.
    struct Holder {
        RadiusSession session;
        std::string subscriber;
    };
    std::optional<Holder> holder(std::string_view address);
    // The session has bound `address` (its bind event noted with note_event).
    void hold(std::string_view address, const RadiusSession& s);
    // Every current binding made through `client` for `nas` (address, subscriber).
    std::vector<std::pair<std::string, std::string>> held_by(std::string_view client, std::string_view nas);
    // Every current binding the session made (address, subscriber).
    std::vector<std::pair<std::string, std::string>> held_by(const RadiusSession& s);
    // The session ended (Stop): its candidate rows go. The rows deleted.
    int64_t forget(const RadiusSession& s);
    // The NAS restarted (Accounting-On/Off): its sessions' candidate rows go.
    // The rows deleted.
    int64_t forget_all(std::string_view client, std::string_view nas);
    void note_event(uint64_t seq, const RadiusSession& s);

private:
    Database& db_;
    Statement holder_, hold_, held_by_, held_by_session_, forget_, forget_all_, note_;
};

}  // namespace optgate::consentd
