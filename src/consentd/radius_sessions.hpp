// Which RADIUS accounting session holds which binding: the side tables the
// accounting listener (radius_server.hpp) keeps beside the ledger, written by
// the ledger writer in the same transaction as the events (docs/radius.md,
// "Sessions").
//
//   radius_sessions(address, client, nas, session_id, subscriber, seq)
//     the session whose Start/Interim made the binding `address`, and the seq
//     of that bind event. The row describes the current binding only while
//     bindings.seq is still that seq: any later bind or unbind of the address
//     (by the API, an import or another session) makes it stale, so no
//     other code path has to know about this table.
//   radius_events(seq, client, nas, session_id)
//     for every event the listener made, the Acct-Session-Id of the request.
//
// The events and their hash chain are untouched (the session is not part of
// the event format); both tables are created IF NOT EXISTS when the ledger
// opens, so ledgers from before this feature and tools that do not know them
// work unchanged (schema version 1).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "consentd/sqlite.hpp"

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
    void hold(std::string_view address, const RadiusSession& s, std::string_view subscriber, uint64_t seq);
    void forget(std::string_view address);
    // Every current binding made through `client` for `nas` (address, subscriber).
    std::vector<std::pair<std::string, std::string>> held_by(std::string_view client, std::string_view nas);
    // Every current binding the session made (address, subscriber).
    std::vector<std::pair<std::string, std::string>> held_by(const RadiusSession& s);
    void forget_all(std::string_view client, std::string_view nas);
    void note_event(uint64_t seq, const RadiusSession& s);

private:
    Statement holder_, hold_, forget_, held_by_, held_by_session_, forget_all_, note_;
};

}  // namespace optgate::consentd
