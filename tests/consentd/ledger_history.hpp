// Events for ledger tests, on either store (test_ledger.cpp on SQLite,
// test_pg_ledger.cpp on PostgreSQL): one event, a transaction of them, and
// a sample history.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "consentd/ledger.hpp"

namespace optgate::consentd::test {

inline Event make(std::string subscriber, Action a, std::optional<std::string> what, std::string source = "portal") {
    Event e;
    e.time = "2024-05-01T12:00:00.000Z";
    e.subscriber = std::move(subscriber);
    e.action = a;
    if (a == Action::grant || a == Action::revoke) {
        e.purpose = std::move(what);
        if (a == Action::grant) e.notice_version = "v1";
    } else {
        e.address = std::move(what);
    }
    e.source = std::move(source);
    e.credential = "test";
    return e;
}

inline void append_all(Ledger& l, std::vector<Event> events) {
    l.begin();
    for (auto& e : events) l.append(e);
    l.commit();
}

// sub-1 grants two purposes and revokes one; 100.64.0.1 moves from sub-1
// to sub-2.
inline void sample_history(Ledger& l) {
    append_all(l, {make("sub-1", Action::grant, "advertising"), make("sub-1", Action::grant, "analytics"),
                   make("sub-1", Action::bind, "100.64.0.1")});
    append_all(l, {make("sub-1", Action::revoke, "analytics"), make("sub-1", Action::unbind, "100.64.0.1"),
                   make("sub-2", Action::bind, "100.64.0.1"), make("sub-2", Action::bind, "2001:db8:1000:1::/64")});
}

}  // namespace optgate::consentd::test
