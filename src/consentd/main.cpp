// consentd: the consent ledger and subscriber API (docs/consentd.md).
//
//   consentd --config FILE [--port-file FILE] [--rebuild-derived-tables]   run
//   consentd --check-config FILE                validate config and policy
//   consentd --hash-token < token               print a token's sha256 for the config
#include <fcntl.h>
#include <malloc.h>
#include <sys/file.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/program_options.hpp>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>

#include "common/systemd.hpp"
#include "consentd/api.hpp"
#include "consentd/auth.hpp"
#include "consentd/checkpoint_writer.hpp"
#include "consentd/config.hpp"
#include "consentd/dataplane_server.hpp"
#include "consentd/disclosures.hpp"
#include "consentd/http_server.hpp"
#include "consentd/ledger.hpp"
#include "consentd/ledger_service.hpp"
#include "consentd/log.hpp"
#include "consentd/metrics.hpp"
#include "consentd/policy_document.hpp"
#include "consentd/policy_reloader.hpp"
#include "consentd/portal_server.hpp"
#include "consentd/pseudonym_keys.hpp"
#include "consentd/publisher.hpp"
#include "consentd/radius_server.hpp"
#include "consentd/verify.hpp"
#include "policy/loader.hpp"
#include "proto/tls.hpp"

namespace po = boost::program_options;
namespace asio = boost::asio;
using namespace optgate;
using namespace optgate::consentd;

namespace {

void print_diagnostics(const std::vector<policy::Diagnostic>& ds) {
    for (const auto& d : ds) std::fprintf(stderr, "%s\n", d.to_string().c_str());
}

struct Loaded {
    Config config;
    std::shared_ptr<const Policy> policy;  // null unless `ok`
    std::string policy_text;               // as read: data planes load this very text
    bool ok = true;                        // every check passed (errors printed otherwise)
};

// The config, or nullopt when the config file itself has errors (every one
// printed). Then each check of the files it names (policy, TLS,
// checkpoint key, portal) runs even when one before it failed, printing every error, and `ok` says
// whether all passed.
std::optional<Loaded> load(const std::string& path) {
    Loaded l;
    try {
        auto c = load_config_file(path);
        print_diagnostics(c.warnings);
        l.config = std::move(c.config);
    } catch (const policy::PolicyError& e) {
        print_diagnostics(e.diagnostics());
        return std::nullopt;
    }
    // The policy as a reload reads it, checked against the config's data
    // planes; then the TLS files themselves.
    auto doc = load_policy_document(l.config.policy, l.config.dataplanes);
    print_diagnostics(doc.warnings);
    if (doc.status == PolicyDocument::Status::invalid) {
        print_diagnostics(doc.errors);
        l.ok = false;
    } else if (doc.status == PolicyDocument::Status::unusable) {
        std::fprintf(stderr, "%s: %s\n", path.c_str(), doc.unusable.c_str());
        l.ok = false;
    } else {
        l.policy = std::move(doc.policy);
        l.policy_text = std::move(doc.text);
    }
    if (l.config.dataplanes.tcp && l.config.dataplanes.tcp->tls) {
        try {
            proto::make_server_tls(*l.config.dataplanes.tcp->tls);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "%s: dataplanes.tcp.tls: %s\n", path.c_str(), e.what());
            l.ok = false;
        }
    }
    if (l.config.checkpoints) {
        try {
            CheckpointKey::load_private(l.config.checkpoints->key);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "%s: ledger.checkpoints.key: %s\n", path.c_str(), e.what());
            l.ok = false;
        }
    }
    if (l.config.portal.enabled) {
        if (const auto why = check_portal_files(l.config.portal); !why.empty()) {
            std::fprintf(stderr, "%s\n", why.c_str());
            l.ok = false;
        }
    }
    return l;
}

// "unix PATH, tcp ADDR:PORT (mutual TLS)"
std::string dataplane_listeners(const DataPlaneConfig& c) {
    std::string d;
    if (!c.socket.empty()) d = "unix " + c.socket;
    if (c.tcp) {
        if (!d.empty()) d += ", ";
        d += "tcp " + c.tcp->address + ":" + std::to_string(c.tcp->port) + (c.tcp->tls ? " (mutual TLS)" : "");
    }
    return d;
}

int check_config(const std::string& path) {
    auto l = load(path);
    if (!l) return 1;
    bool ok = l->ok;
    const bool pg = l->config.backend == Backend::postgresql;
    const auto dir = pg ? std::filesystem::path() : std::filesystem::path(l->config.database).parent_path();
    std::string ledger = "new";
    if (!dir.empty() && !std::filesystem::is_directory(dir)) {
        std::fprintf(stderr, "%s: the database directory %s does not exist\n", path.c_str(), dir.c_str());
        ok = false;
    } else if (pg || std::filesystem::exists(l->config.database)) {
        // An existing ledger must be one this consentd reads; the chain
        // itself is verify-ledger's job. PostgreSQL: the server must answer.
        try {
            Database db(l->config.database, Database::Mode::read_only);
            if (!pg || db.has_table("meta")) {  // an empty PostgreSQL database is a new ledger
                check_schema(db);
                auto st = db.prepare("SELECT count(*) FROM events");
                st.step();
                ledger = std::to_string(st.int64(0)) + " events";
            }
        } catch (const std::exception& e) {
            std::fprintf(stderr, "%s: database: %s\n", path.c_str(), e.what());
            ok = false;
        }
    }
    if (!ok) return 1;
    const auto& r = l->config.radius;
    const std::string radius = r ? ", RADIUS accounting " + r->address + ":" + std::to_string(r->port) + " (" +
                                       std::to_string(r->clients.size()) + " clients)"
                                 : "";
    std::printf("%s: ok: listen %s:%u, %zu tokens, database %s (%s), policy %s (%zu purposes), data planes %s%s\n",
                path.c_str(), l->config.listen_address.c_str(), unsigned(l->config.port), l->config.tokens.size(),
                printable_locator(l->config.database).c_str(), ledger.c_str(), l->config.policy.c_str(),
                l->policy->purposes.size(), dataplane_listeners(l->config.dataplanes).c_str(), radius.c_str());
    if (const auto& c = l->config.checkpoints)
        std::printf("%s: checkpoints: key %s, to %s every %llu events or %llds\n", path.c_str(),
                    CheckpointKey::load_private(c->key).id().c_str(), c->file.c_str(),
                    static_cast<unsigned long long>(c->every_events),
                    static_cast<long long>(std::chrono::duration_cast<std::chrono::seconds>(c->every).count()));
    if (l->config.portal.enabled)
        std::printf("%s: portal: %s on %s:%u\n", path.c_str(), std::string(to_string(l->config.portal.mode)).c_str(),
                    l->config.portal.listen_address.c_str(), unsigned(l->config.portal.port));
    return 0;
}

int hash_token_from_stdin() {
    std::string token;
    std::getline(std::cin, token);
    while (!token.empty() && (token.back() == '\r' || token.back() == '\n')) token.pop_back();
    if (token.empty()) {
        std::fprintf(stderr, "consentd --hash-token: give the token on stdin (e.g. openssl rand -hex 32)\n");
        return 2;
    }
    std::printf("%s\n", hash_token(token).c_str());
    return 0;
}

// Held for the daemon's life: a second consentd on the same ledger would
// fork its hash chain.
bool lock_ledger(const std::string& database) {
    const std::string path = database + ".lock";
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        log_error("cannot open " + path + ": " + std::strerror(errno));
        return false;
    }
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
        log_error("another consentd is using " + database + " (" + path + " is locked)");
        return false;
    }
    return true;  // the descriptor stays open: the lock lasts until exit
}

void write_port_file(const std::string& path, uint16_t port) {
    const std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp);
        out << port << "\n";
    }
    std::filesystem::rename(tmp, path);
}

// Nothing is served from a ledger that does not verify (docs/consentd.md,
// "Startup integrity check"): a derived row or schema object planted with
// sqlite3 would otherwise be enforced, or undo what the API records.
bool check_ledger(Ledger& ledger, const std::string& database, bool rebuild) {
    const auto c = check_ledger_at_start(ledger, rebuild);
    // The fold was millions of small blocks: give them back rather than
    // keep the check's peak for the daemon's life.
    malloc_trim(0);
    if (!c.rebuilt.empty())
        log_warning("rebuilt the consents and bindings tables of " + database +
                    " from its events (--rebuild-derived-tables); they differed: " + c.rebuilt);
    if (c.report.ok) return true;
    std::string hint = "; run optgatectl verify-ledger " + database;
    if (c.report.damage == Damage::derived)
        hint = "; consentd --rebuild-derived-tables rebuilds consents and bindings from the events";
    log_error("refusing to start: the ledger " + database + " is inconsistent: " + c.report.problem + hint);
    return false;
}

// "consentd http://HOST:PORT": the API's address as a client would use it
// (the host's name when it listens on every address).
std::string advertised_name(const std::string& listen_address, uint16_t port) {
    std::string host = listen_address;
    if (host == "0.0.0.0" || host == "::") {
        char name[256] = {};
        host = ::gethostname(name, sizeof name - 1) == 0 ? std::string(name) : std::string("localhost");
    }
    if (host.find(':') != std::string::npos) host = "[" + host + "]";
    return "consentd http://" + host + ":" + std::to_string(port);
}

int run(const std::string& config_path, const std::string& port_file, bool rebuild) {
    auto l = load(config_path);
    if (!l || !l->ok) return 1;
    const Config& config = l->config;
    // PostgreSQL: the writer's advisory lock, taken by the Ledger.
    if (config.backend == Backend::sqlite && !lock_ledger(config.database)) return 1;
    if (!config.receipts.controller_name)
        log_warning("no 'receipts' section in " + config_path +
                    ": consent receipts will not name the controller, jurisdiction or privacy policy "
                    "(docs/receipts.md)");

    Metrics metrics;
    asio::io_context ioc(1);
    // Declared before the service: destroyed after its writer, which calls it.
    std::optional<CheckpointWriter> checkpoints;
    std::unique_ptr<LedgerService> service;
    try {
        auto ledger = std::make_unique<Ledger>(
            config.database,
            Ledger::Options{config.standby, [](const std::string& why) { log_info(why); }, config.follow});
        if (rebuild && !ledger->writer()) {
            log_error("refusing to start: --rebuild-derived-tables writes, and another consentd is the writer of " +
                      printable_locator(config.database));
            return 1;
        }
        if (!check_ledger(*ledger, printable_locator(config.database), rebuild)) return 1;
        if (config.checkpoints) {
            try {
                checkpoints.emplace(ioc, config.database, *config.checkpoints);
            } catch (const std::exception& e) {
                log_error(std::string("refusing to start: checkpoints: ") + e.what());
                return 1;
            }
        }
        LedgerService::Options service_options{config.max_batch, l->policy_text, config.receipts};
        if (config.backend == Backend::postgresql) service_options.fence_after = config.fence_after;
        service = std::make_unique<LedgerService>(std::move(ledger), l->policy, metrics, std::move(service_options));
    } catch (const std::exception& e) {
        log_error(std::string("cannot open the ledger: ") + e.what());
        return 1;
    }
    // Disclosure reports from data planes, attributed through the binding
    // history into the same database (docs/transparency.md).
    std::unique_ptr<DisclosureStore> disclosures;
    try {
        disclosures = std::make_unique<DisclosureStore>(
            config.database, DisclosureOptions{config.disclosures.retention_days, config.disclosures.clock_margin},
            metrics, [&service] { return service->policy(); });
    } catch (const std::exception& e) {
        log_error(std::string("cannot open the disclosures store: ") + e.what());
        return 1;
    }
    // The publisher hears every commit from the start; its first snapshot
    // then covers whatever came before (it ignores commits it already has).
    LedgerTableSource table_source(*service);
    // Keys of the collectors that receive pseudonyms, next to the ledger
    // (docs/consentd.md, "Pseudonym keys"): one that does not read is an
    // error, not a reason to make new keys (collectors' pseudonyms would
    // change without a rotation).
    std::optional<PseudonymKeyStore> pseudonym_keys;
    try {
        pseudonym_keys.emplace(config.pseudonym_keys);
    } catch (const std::exception& e) {
        log_error(std::string("refusing to start: ") + e.what());
        return 1;
    }
    // Data planes' disclosure reports go to the store and are acknowledged
    // once durable. The store outlives the sessions: it is stopped below,
    // after the io_context has run its last handler (its late answers are
    // posted to a stopped io_context, which drops them unrun).
    Publisher publisher(ioc, table_source, config.dataplanes, disclosures.get());
    publisher.set_pseudonym_keys(&*pseudonym_keys);
    publisher.add_policy_document(l->policy, config.policy, l->policy_text);
    service->add_listener(&publisher);
    if (checkpoints) {
        service->add_listener(&*checkpoints);
        checkpoints->start(service->head_seq());
        // Data planes keep the latest (docs/protocol.md, "Checkpoints").
        publisher.enable_checkpoints();
        checkpoints->on_signed([&publisher](const Checkpoint& c) { publisher.publish_checkpoint(c.seq, c.line()); });
    }
    service->start();
    disclosures->start();
    DataPlaneServer dataplanes(ioc, publisher);
    try {
        publisher.start();
        // What the other listeners may hold stays free (docs/protocol.md,
        // "Limits before hello"): the data-plane port must never starve the API.
        dataplanes.start(config.limits.max_connections +
                         (config.portal.enabled ? size_t(PortalServer::kMaxConnections) : 0));
    } catch (const std::exception& e) {
        log_error(std::string("data planes: ") + e.what());
        service->remove_listener(&publisher);
        return 1;
    }

    // SIGHUP and POST /v1/policy/reload both reload through it.
    PolicyReloader reloader(ioc, *service, metrics, config, &publisher);
    std::optional<Api> api;
    std::optional<HttpServer> server;
    try {
        api.emplace(ioc, *service, metrics, config, reloader, &publisher);
        if (checkpoints) api->set_checkpoints(&*checkpoints);
        const asio::ip::tcp::endpoint at(asio::ip::make_address(config.listen_address), config.port);
        server.emplace(ioc, at, *api, config.limits, metrics);
    } catch (const std::exception& e) {
        log_error("cannot listen on " + config.listen_address + ":" + std::to_string(config.port) + ": " + e.what());
        return 1;
    }
    server->start();
    const uint16_t port = server->port();
    // Followers name the writer by it in their 503 not_writer answers.
    std::optional<PeerLink> peers;
    if (config.backend == Backend::postgresql) {
        const std::string name = advertised_name(config.listen_address, port);
        service->advertise(name);
        // ?wait=enforced waits for the data planes of every consentd of the
        // ledger (docs/scale-out.md, "?wait=enforced across instances").
        peers.emplace(postgresql_conninfo(config.database), name, [&ioc, &publisher](PeerLink::Report r) {
            asio::post(ioc, [&publisher, r = std::move(r)] { publisher.peer_report(r); });
        });
        publisher.set_peer_link(&*peers);
        peers->start();
    }
    std::optional<RadiusServer> radius;
    if (config.radius) {
        try {
            radius.emplace(ioc, *service, metrics, *config.radius);
        } catch (const std::exception& e) {
            log_error("RADIUS: cannot listen on " + config.radius->address + ":" + std::to_string(config.radius->port) +
                      ": " + e.what());
            service->remove_listener(&publisher);
            return 1;
        }
        radius->start();
        if (!port_file.empty()) write_port_file(port_file + ".radius", radius->port());
        log_info("RADIUS accounting on " + config.radius->address + ":" + std::to_string(radius->port()) + ", " +
                 std::to_string(config.radius->clients.size()) + " clients");
    }
    // The subscribers' privacy page, on its own listener (docs/portal.md),
    // with each choice's receipt and the last 30 days' disclosures.
    std::optional<LedgerTransparency> transparency;
    std::optional<PortalDaemon> portal;
    if (config.portal.enabled) {
        try {
            transparency.emplace(config.database, [&s = *service] { s.wait_durable(); });
            portal.emplace(ioc, *service, &publisher, config, *api, metrics);
            portal->portal.set_transparency(&*transparency);
        } catch (const std::exception& e) {
            log_error("portal: cannot listen on " + config.portal.listen_address + ":" +
                      std::to_string(config.portal.port) + ": " + e.what());
            if (radius) radius->stop();
            service->remove_listener(&publisher);
            return 1;
        }
        portal->server.start();
        log_info("portal (" + std::string(to_string(config.portal.mode)) + ") on " + config.portal.listen_address +
                 ":" + std::to_string(portal->server.port()) + ", public URL " +
                 config.portal.url_for(portal->server.port()));
        if (!port_file.empty()) write_port_file(port_file + ".portal", portal->server.port());
    }
    asio::steady_timer watchdog(ioc);  // systemd's WatchdogSec=, below
    const auto watchdog_interval = systemd::watchdog_interval();
    asio::signal_set signals(ioc, SIGINT, SIGTERM, SIGHUP);
    asio::steady_timer grace(ioc);
    std::function<void(boost::system::error_code, int)> on_signal = [&](boost::system::error_code ec, int sig) {
        if (ec) return;
        if (sig == SIGHUP) {
            log_info("SIGHUP: reloading the policy");
            reloader.reload();  // the outcome is logged and counted
            signals.async_wait(on_signal);
            return;
        }
        log_info("stopping: finishing queued requests");
        systemd::notify("STOPPING=1");
        watchdog.cancel();
        server->stop();
        if (radius) radius->stop();
        if (portal) portal->server.stop();
        service->stop();  // drains the writer; their answers are queued on ioc
        // Data planes get a goodbye (they keep their tables until the
        // staleness limit); pending ?wait=enforced answers say "timeout".
        publisher.stop();
        dataplanes.stop();
        // A moment for those answers to go out, then stop.
        grace.expires_after(std::chrono::milliseconds(300));
        grace.async_wait([&](boost::system::error_code) { ioc.stop(); });
    };
    signals.async_wait(on_signal);

    log_info("listening on " + config.listen_address + ":" + std::to_string(port) + "; ledger " +
             printable_locator(config.database) + " at event " + std::to_string(service->head_seq()) +
             (service->following() ? " (following its writer)" : "") + "; policy " + config.policy + " (" +
             std::to_string(l->policy->purposes.size()) + " purposes); data planes on " + dataplanes.describe());
    // Last: a test (or script) that waits for the port file finds the line
    // above in the log already, with the data-plane port it names.
    if (!port_file.empty()) write_port_file(port_file, port);
    // WatchdogSec=: pinged from this thread, which serves the API and the
    // data planes, so a hung one gets the unit restarted (docs/consentd.md).
    std::function<void(boost::system::error_code)> ping = [&](boost::system::error_code ec) {
        if (ec) return;
        systemd::notify("WATCHDOG=1");
        watchdog.expires_after(watchdog_interval);
        watchdog.async_wait(ping);
    };
    systemd::notify("READY=1\nSTATUS=listening on " + config.listen_address + ":" + std::to_string(port) +
                    "; data planes on " + dataplanes.describe());
    if (watchdog_interval.count() > 0) ping({});
    for (;;) {
        try {
            ioc.run();
            break;
        } catch (const std::exception& e) {
            // A handler let an exception out: log it and keep serving.
            log_error(std::string("API thread: ") + e.what());
        }
    }
    portal.reset();
    server.reset();
    api.reset();
    service->stop();
    service->remove_listener(&publisher);
    if (checkpoints) {
        // The head as it stops, signed: a restart finds it in the file.
        service->remove_listener(&*checkpoints);
        checkpoints->on_signed(nullptr);  // data planes are gone
        checkpoints->stop(service->head_seq());
    }
    disclosures->stop();  // stores what is attributable; the rest is resent (unacknowledged)
    log_info("stopped");
    return 0;
}

int consentd_main(int argc, char** argv) {
    po::options_description opts("consentd options");
    opts.add_options()("help,h", "this help")("config", po::value<std::string>(), "run with this config file")(
        "check-config", po::value<std::string>(), "validate a config file and its policy, then exit")(
        "hash-token", "read a token on stdin, print its sha256 for the config's tokens")(
        "port-file", po::value<std::string>(), "write the port the API listens on to this file (for port 0)")(
        "rebuild-derived-tables",
        "at start, replace consents and bindings tables that disagree with the events by the events' fold");
    po::variables_map vm;
    try {
        po::store(po::parse_command_line(argc, argv, opts), vm);
        po::notify(vm);
    } catch (const po::error& e) {
        std::fprintf(stderr, "consentd: %s\n", e.what());
        return 2;
    }
    if (vm.count("help")) {
        std::cout << "usage: consentd --config FILE [--port-file FILE] [--rebuild-derived-tables]\n"
                     "       consentd --check-config FILE\n"
                     "       consentd --hash-token < token-file\n\n"
                  << opts;
        return 0;
    }
    if (vm.count("hash-token")) return hash_token_from_stdin();
    if (vm.count("check-config")) return check_config(vm["check-config"].as<std::string>());
    if (!vm.count("config")) {
        std::fprintf(stderr, "consentd: --config FILE is required (see --help)\n");
        return 2;
    }
    return run(vm["config"].as<std::string>(), vm.count("port-file") ? vm["port-file"].as<std::string>() : "",
               vm.count("rebuild-derived-tables") > 0);
}

}  // namespace

int main(int argc, char** argv) {
    std::signal(SIGPIPE, SIG_IGN);
    try {
        return consentd_main(argc, argv);
    } catch (const std::exception& e) {
        // What no layer below handled (writing the port file, say): an
        // error and a failed exit, not std::terminate's abort.
        std::fprintf(stderr, "consentd: %s\n", e.what());
        return 1;
    }
}
