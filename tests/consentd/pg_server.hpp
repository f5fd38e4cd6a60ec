// A PostgreSQL 15 server of the test's own, for the doctest suites of the
// PostgreSQL store: a copy of one initdb'd cluster in a temporary
// directory, a Unix socket only, stopped at the end (as the postgres user
// when the suite runs as root: PostgreSQL refuses to run as root).
// tests/consentd/pg_server.py is the same for the Python suites.
#pragma once

#include <doctest/doctest.h>
#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "consentd/pg_connection.hpp"
#include "subprocess.hpp"

namespace optgate::consentd::test_pg {

using namespace std::chrono_literals;

inline constexpr auto kPatience = 60s;  // a busy 2-core machine; waits poll, so this costs nothing when all is well
inline const std::string kBin = "/usr/lib/postgresql/15/bin/";

// Runs `argv` as the postgres user when we are root.
inline std::vector<std::string> as_owner(std::vector<std::string> argv) {
    if (::geteuid() != 0) return argv;
    std::vector<std::string> out{"/usr/bin/setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"};
    out.insert(out.end(), argv.begin(), argv.end());
    return out;
}

// A temporary directory the server's user owns.
inline void give_to_owner(const optgate::test::TempDir& dir) {
    if (::geteuid() != 0) return;
    const passwd* pw = ::getpwnam("postgres");
    REQUIRE_MESSAGE(pw, "no postgres user: install postgresql-15 (scripts/setup)");
    REQUIRE(::chown(dir.path.c_str(), pw->pw_uid, pw->pw_gid) == 0);
}

// One initdb per test program, never started: each PgServer starts from a
// copy (cp -a keeps the owner and the 0700 PostgreSQL insists on). A test
// program makes a few dozen servers, and initdb is most of the cost of one.
inline const std::string& template_data() {
    static const optgate::test::TempDir dir;
    static const std::string data = [] {
        give_to_owner(dir);
        std::string path = dir.file("data");
        const auto init = optgate::test::run(
            as_owner({kBin + "initdb", "--pgdata", path, "--auth", "trust", "--username", "optgate", "--encoding",
                      "UTF8", "--locale", "C", "--no-sync"}),
            std::chrono::duration_cast<std::chrono::milliseconds>(kPatience));
        REQUIRE_MESSAGE(init.exit_code == 0, init.output);
        return path;
    }();
    return data;
}

// A PostgreSQL server of its own in a temporary directory.
struct PgServer {
    optgate::test::TempDir dir;
    std::string data = dir.file("data");
    std::unique_ptr<optgate::test::Process> server;

    PgServer() {
        give_to_owner(dir);
        const auto copy = optgate::test::run({"/bin/cp", "-a", template_data(), data},
                                             std::chrono::duration_cast<std::chrono::milliseconds>(kPatience));
        REQUIRE_MESSAGE(copy.exit_code == 0, copy.output);
        start();
    }
    ~PgServer() { stop(); }
    PgServer(const PgServer&) = delete;
    PgServer& operator=(const PgServer&) = delete;

    // Unix socket only; fsync off: these tests are about the protocol, not
    // about surviving a power cut.
    void start() {
        server = std::make_unique<optgate::test::Process>(
            as_owner(
                {kBin + "postgres", "-D", data, "-k", dir.path.string(), "-c", "listen_addresses=", "-c", "fsync=off"}),
            dir.file("postgres.log"));
        const auto deadline = std::chrono::steady_clock::now() + kPatience;
        for (;;) {
            try {
                PgConnection probe(conninfo());
                return;
            } catch (const PgError&) {
            }
            REQUIRE_MESSAGE(server->running(), optgate::test::slurp(dir.file("postgres.log")));
            REQUIRE_MESSAGE(std::chrono::steady_clock::now() < deadline,
                            optgate::test::slurp(dir.file("postgres.log")));
            std::this_thread::sleep_for(20ms);
        }
    }
    // A fast shutdown (SIGINT): sessions are ended, as when the server is
    // restarted under a running consentd.
    void stop() {
        if (!server) return;
        server->kill(SIGINT);
        server->wait(std::chrono::duration_cast<std::chrono::milliseconds>(kPatience));
        server.reset();
    }
    std::string conninfo() const { return "host=" + dir.path.string() + " user=optgate dbname=postgres"; }
    // An empty database for one ledger; the locator a Database opens.
    std::string new_database(const std::string& name) const {
        PgConnection admin(conninfo());
        admin.exec("CREATE DATABASE " + name);
        return "postgresql:host=" + dir.path.string() + " user=optgate dbname=" + name;
    }
};

}  // namespace optgate::consentd::test_pg
