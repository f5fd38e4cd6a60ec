#include "consentd/copy_ledger.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <string_view>

#include "consentd/database.hpp"
#include "consentd/ledger.hpp"
#include "consentd/schema.hpp"
#include "consentd/verify.hpp"

namespace optgate::consentd {

namespace {

// The tables beside the events and their fold, in an order that satisfies
// nothing in particular: none refers to another.
struct SideTable {
    std::string_view name, columns;
    int count;
};
constexpr std::array<SideTable, 6> kSideTables{{
    {"policies", "id, from_seq, loaded_at, sha256, text, jurisdiction, controller_name, controller_contact, policy_url",
     9},
    {"disclosures", "subscriber, day, destination, purpose, identifier, passed, stripped", 7},
    {"disclosures_unattributed", "day, reason, destination, purpose, identifier, passed, stripped", 7},
    {"disclosure_reports", "dataplane, reporter, seq, day, start_ms, end_ms, entries, overflowed", 8},
    {"radius_events", "seq, client, nas, session_id", 4},
    {"radius_session_bindings", "client, nas, session_id, address", 4},
}};

// An SQLite ledger's lock file (consentd holds it while it runs): taken for
// the copy, so that no consentd writes FROM or TO meanwhile. -1 and `why`
// when a consentd has it. PostgreSQL ledgers have the writer's advisory
// lock instead (Ledger).
int lock_file(const std::string& database, std::string& why) {
    if (is_postgresql_locator(database)) return -1;
    const std::string path = database + ".lock";
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        why = "cannot open " + path + ": " + std::strerror(errno);
        return -1;
    }
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
        ::close(fd);
        why = "a consentd is using " + database + " (" + path + " is locked): stop it first";
        return -1;
    }
    return fd;
}

struct Locks {
    int fds[2] = {-1, -1};
    Locks() = default;
    Locks(const Locks&) = delete;
    Locks& operator=(const Locks&) = delete;
    ~Locks() {
        for (int fd : fds)
            if (fd >= 0) ::close(fd);
    }
};

uint64_t copy_rows(Database& from, Database& to, const SideTable& t) {
    std::string values;
    for (int i = 1; i <= t.count; ++i) values += (i > 1 ? ", ?" : "?") + std::to_string(i);
    auto read = from.prepare("SELECT " + std::string(t.columns) + " FROM " + std::string(t.name));
    read.stream();
    auto write = to.prepare("INSERT INTO " + std::string(t.name) + " (" + std::string(t.columns) + ") VALUES (" +
                            values + ")");
    uint64_t n = 0;
    while (read.step()) {
        // As text: both stores read a decimal integer into an integer column.
        for (int c = 0; c < t.count; ++c) {
            if (read.is_null(c))
                write.bind_null(c + 1);
            else
                write.bind(c + 1, read.text(c));
        }
        write.queue();
        ++n;
    }
    return n;
}

}  // namespace

CopyReport copy_ledger(const std::string& from, const std::string& to) {
    CopyReport r;
    const std::string from_name = printable_locator(from), to_name = printable_locator(to);
    Locks locks;
    if (!is_postgresql_locator(from) && (locks.fds[0] = lock_file(from, r.problem)) < 0) return r;
    if (!is_postgresql_locator(to) && (locks.fds[1] = lock_file(to, r.problem)) < 0) return r;

    const auto source = verify_ledger(from);
    if (!source.ok) {
        r.problem = from_name + " does not verify, nothing was copied: " + source.problem;
        return r;
    }
    try {
        Database in(from, Database::Mode::read_only);
        Ledger out(to);
        if (out.head_seq() != 0) {
            r.problem = to_name + " already holds " + std::to_string(out.head_seq()) +
                        " events: copy into a new, empty ledger";
            return r;
        }
        Database& db = out.db();
        if (!db.postgresql()) {  // PostgreSQL made them with the ledger
            db.exec(kDisclosureSchema);
            db.exec(kRadiusSchema);
        }
        in.begin_read();  // one snapshot of FROM
        out.begin();
        try {
            auto events = in.prepare("SELECT " + std::string(kEventColumns) + " FROM events ORDER BY seq");
            events.stream();
            while (events.step()) {
                const Event stored = event_from_row(events);
                Event e = stored;
                out.append(e);  // seq, prev_hash and hash computed again
                if (e.seq != stored.seq || e.hash != stored.hash)
                    throw std::runtime_error("event " + std::to_string(stored.seq) + " of " + from_name +
                                             " hashes to " + e.hash + " on arrival, not " + stored.hash);
                ++r.events;
            }
            for (const auto& t : kSideTables)
                r.rows[std::string(t.name)] = in.has_table(t.name) ? copy_rows(in, db, t) : 0;
            if (in.has_table("radius_sessions")) {  // an older consentd's layout (schema.hpp)
                const SideTable legacy{"radius_sessions", "client, nas, session_id, address", 4};
                auto read = in.prepare("SELECT " + std::string(legacy.columns) + " FROM radius_sessions");
                auto write = db.prepare(
                    "INSERT INTO radius_session_bindings (client, nas, session_id, address) VALUES (?1, ?2, ?3, ?4) "
                    "ON CONFLICT DO NOTHING");
                while (read.step()) {
                    for (int c = 0; c < 4; ++c) write.bind(c + 1, read.text(c));
                    write.queue();
                    ++r.rows["radius_session_bindings"];
                }
            }
            out.commit();
        } catch (...) {
            out.rollback();
            in.end_read();
            throw;
        }
        in.end_read();
    } catch (const std::exception& e) {
        r.problem = "copying " + from_name + " to " + to_name + ": " + e.what() + " (nothing was committed)";
        return r;
    }
    const auto arrived = verify_ledger(to);
    if (!arrived.ok) {
        r.problem = to_name + " does not verify after the copy: " + arrived.problem;
        return r;
    }
    if (arrived.events != source.events || arrived.head_hash != source.head_hash) {
        r.problem = to_name + " ends at event " + std::to_string(arrived.events) + " (" + arrived.head_hash + "), " +
                    from_name + " at event " + std::to_string(source.events) + " (" + source.head_hash + ")";
        return r;
    }
    r.head_hash = arrived.head_hash;
    r.ok = true;
    return r;
}

}  // namespace optgate::consentd
