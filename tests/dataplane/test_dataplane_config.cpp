// The data plane's configuration file (src/dataplane/config.hpp).
#include <doctest/doctest.h>

#include <string>

#include "core/reassembly.hpp"
#include "dataplane/config.hpp"

using namespace optgate;
using namespace optgate::dataplane;

namespace {
std::string errors_of(const std::string& yaml) {
    try {
        load_config_text(yaml, "optgate.yaml", "/etc/optgate");
    } catch (const policy::PolicyError& e) {
        return e.what();
    }
    return {};
}
}  // namespace

TEST_CASE("a full controlled-mode file") {
    const auto loaded = load_config_text(R"(
ports: {subscriber: "0000:3b:00.0", internet: 1}
workers: {lcores: [2, 3, 4], steering: software, idle_sleep_us: 20}
queues: {rx_descriptors: 2048, tx_descriptors: 512, burst: 64, ring_size: 8192}
mempool: {mbufs: 65536, cache: 128}
control:
  endpoint: run/consentd.sock
  name: edge-7
  bootstrap_policy: policy.yaml
  sync_timeout: 2s
  stats_interval: 500ms
  checkpoint_public_key: checkpoint.pub
http: {flows: 1024, idle_timeout: 5m}
stats_file: /var/lib/optgate/stats.json
log_level: debug
)",
                                         "optgate.yaml", "/etc/optgate");
    const Config& c = loaded.config;
    CHECK(c.subscriber_port == "0000:3b:00.0");
    CHECK(c.internet_port == "1");
    CHECK(c.worker_lcores == std::vector<unsigned>{2, 3, 4});
    CHECK(c.steering == Steering::software);
    CHECK(c.idle_sleep.count() == 20);
    CHECK(c.rx_descriptors == 2048);
    CHECK(c.tx_descriptors == 512);
    CHECK(c.burst == 64);
    CHECK(c.ring_size == 8192);
    CHECK(c.mbufs == 65536);
    CHECK(c.mbuf_cache == 128);
    CHECK(c.control == "/etc/optgate/run/consentd.sock");  // relative to the file
    CHECK(c.name == "edge-7");
    CHECK(c.bootstrap_policy == "/etc/optgate/policy.yaml");
    CHECK(c.sync_timeout.count() == 2000);
    CHECK(c.stats_interval.count() == 500);
    CHECK(c.checkpoint_public_key == "/etc/optgate/checkpoint.pub");
    CHECK(c.http_flows == 1024);
    CHECK(c.http_idle_timeout.count() == 300);
    CHECK(c.log_level == "debug");
    CHECK(loaded.warnings.empty());
}

TEST_CASE("control without bootstrap_policy: warned that frames are dropped until the first snapshot") {
    const auto bare = load_config_text("ports: {subscriber: 0, internet: 1}\ncontrol: {endpoint: run/c.sock}\n",
                                       "optgate.yaml", "/etc/optgate");
    REQUIRE(bare.warnings.size() == 1);
    CHECK(bare.warnings[0].to_string().find("optgate.yaml:2:10: warning: without 'bootstrap_policy' optgate drops "
                                            "every frame") == 0);
    // A policy to enforce, or a start that waits for the table: no warning.
    for (const char* control :
         {"{endpoint: run/c.sock, bootstrap_policy: p.yaml}", "{endpoint: run/c.sock, sync_timeout: 10s}"}) {
        INFO(control);
        CHECK(load_config_text(std::string("ports: {subscriber: 0, internet: 1}\ncontrol: ") + control + "\n",
                               "optgate.yaml", "/etc/optgate")
                  .warnings.empty());
    }
}

TEST_CASE("several consentd endpoints: a list, or text with commas; relative paths resolved; mistakes reported") {
    const char* ports = "ports: {subscriber: 0, internet: 1}\n";
    for (const char* control : {"control: {endpoint: [run/a.sock, \"10.0.0.2:8471\", \"[::1]:8471\"]}\n",
                                "control: {endpoint: \"run/a.sock, 10.0.0.2:8471,[::1]:8471\"}\n"}) {
        INFO(control);
        const auto loaded = load_config_text(std::string(ports) + control, "optgate.yaml", "/etc/optgate");
        CHECK(loaded.config.control == "/etc/optgate/run/a.sock,10.0.0.2:8471,[::1]:8471");
        CHECK(validate(loaded.config).empty());
    }
    CHECK(errors_of(std::string(ports) + "control: {endpoint: [run/a.sock, run/a.sock]}\n")
              .find("optgate.yaml:2:21: 'endpoint': '/etc/optgate/run/a.sock' is in the list twice") !=
          std::string::npos);
    CHECK(errors_of(std::string(ports) + "control: {endpoint: \"run/a.sock,\"}\n")
              .find("'endpoint': an empty endpoint in the list") != std::string::npos);
    CHECK(errors_of(std::string(ports) + "control: {endpoint: [run/a.sock, [x]]}\n").find("text") != std::string::npos);
}

TEST_CASE("defaults and static mode") {
    const auto c = load_config_text("ports: {subscriber: 0, internet: 1}\nstatic: {policy: p.yaml, consent: c.yaml}\n",
                                    "optgate.yaml", "/srv")
                       .config;
    CHECK(c.policy == "/srv/p.yaml");
    CHECK(c.consent == "/srv/c.yaml");
    CHECK(c.worker_lcores.empty());
    CHECK(c.steering == Steering::automatic);
    CHECK(c.burst == 32);
    CHECK(c.mbufs == 0);
    CHECK(c.control.empty());
}

TEST_CASE("every mistake is reported with its line and column") {
    const std::string e = errors_of(R"(
ports: {subscriber: 0, internet: 0}
workers: {lcores: [1, 1], steering: magic, idel_sleep_us: 3}
queues: {burst: 65, ring_size: 1000}
control: {endpoint: "not an endpoint"}
static: {policy: p.yaml}
)");
    CHECK(e.find("optgate.yaml:3:23: lcore 1 is listed twice") != std::string::npos);
    CHECK(e.find("'steering' must be one of: auto, rss, software; not 'magic'") != std::string::npos);
    CHECK(e.find("did you mean 'idle_sleep_us'") != std::string::npos);
    CHECK(e.find("optgate.yaml:4:17: 'burst' is out of range") != std::string::npos);  // burst 65 out of range
    CHECK(e.find("'ring_size' must be a power of two, not 1000") != std::string::npos);
    CHECK(e.find("'endpoint':") != std::string::npos);
    CHECK(e.find("missing the required key 'consent'") != std::string::npos);  // reported by the static map
    CHECK(e.find("not both") != std::string::npos);
}

TEST_CASE("whole-file rules") {
    CHECK(errors_of("ports: {subscriber: 0, internet: 1}\n").find("missing 'control'") != std::string::npos);
    CHECK(
        errors_of("ports: {subscriber: 0, internet: 0}\nstatic: {policy: p, consent: c}\n").find("ports must differ") !=
        std::string::npos);
    CHECK(errors_of("ports: {subscriber: 0, internet: 1}\ncontrol: {endpoint: /run/c.sock, tls: {cert: a}}\n")
              .find("missing the required key 'key'") != std::string::npos);
    CHECK(errors_of("ports: [0, 1]\nstatic: {policy: p, consent: c}\n").find("'ports'") != std::string::npos);
    CHECK(errors_of("log_level: loud\nports: {subscriber: 0, internet: 1}\nstatic: {policy: p, consent: c}\n")
              .find("'log_level' must be one of") != std::string::npos);
}

TEST_CASE("disclosure: defaults, values and their bounds") {
    const char* base = "ports: {subscriber: 0, internet: 1}\nstatic: {policy: p, consent: c}\n";
    const auto d = load_config_text(base, "optgate.yaml", "/srv").config;
    CHECK(d.disclosure_interval == std::chrono::seconds(60));
    CHECK(d.disclosure_entries == 65536);
    const auto c =
        load_config_text(std::string(base) + "disclosure: {interval: 5m, entries: 0}\n", "optgate.yaml", "/srv").config;
    CHECK(c.disclosure_interval == std::chrono::minutes(5));
    CHECK(c.disclosure_entries == 0);
    CHECK(errors_of(std::string(base) + "disclosure: {interval: 10ms}\n").find("'interval'") != std::string::npos);
    CHECK(errors_of(std::string(base) + "disclosure: {entries: 99999999}\n").find("'entries' is out of range") !=
          std::string::npos);
    CHECK(errors_of(std::string(base) + "disclosure: {entrys: 4}\n").find("did you mean 'entries'") !=
          std::string::npos);
}

TEST_CASE("fragments: defaults are the core's, values and their bounds") {
    const char* base = "ports: {subscriber: 0, internet: 1}\nstatic: {policy: p, consent: c}\n";
    const auto d = load_config_text(base, "optgate.yaml", "/srv").config;
    CHECK(d.fragment_datagrams == ReassemblyConfig{}.datagrams);
    CHECK(d.fragment_memory == ReassemblyConfig{}.memory);
    const auto c = load_config_text(std::string(base) + "fragments: {datagrams: 1024, memory: 16777216}\n",
                                    "optgate.yaml", "/srv")
                       .config;
    CHECK(c.fragment_datagrams == 1024);
    CHECK(c.fragment_memory == 16777216);
    CHECK(errors_of(std::string(base) + "fragments: {datagrams: 0}\n").find("'datagrams' is out of range") !=
          std::string::npos);
    CHECK(errors_of(std::string(base) + "fragments: {memory: 4096}\n").find("'memory' is out of range") !=
          std::string::npos);
    CHECK(errors_of(std::string(base) + "fragments: {datagram: 4}\n").find("did you mean 'datagrams'") !=
          std::string::npos);
}

TEST_CASE("metrics: on loopback by default, an address literal, a port, an off switch") {
    const char* base = "ports: {subscriber: 0, internet: 1}\nstatic: {policy: p, consent: c}\n";
    const auto d = load_config_text(base, "optgate.yaml", "/srv").config;
    CHECK(d.metrics);
    CHECK(d.metrics_address == "127.0.0.1");
    CHECK(d.metrics_port == 9477);
    const auto c = load_config_text(std::string(base) + "metrics: {address: '2001:db8:ad::7', port: 0}\n",
                                    "optgate.yaml", "/srv")
                       .config;
    CHECK(c.metrics_address == "2001:db8:ad::7");
    CHECK(c.metrics_port == 0);
    CHECK_FALSE(
        load_config_text(std::string(base) + "metrics: {enabled: false}\n", "optgate.yaml", "/srv").config.metrics);
    CHECK(errors_of(std::string(base) + "metrics: {address: localhost}\n").find("IPv4 or IPv6 address") !=
          std::string::npos);
    // Off: the address is not used, so not checked.
    CHECK(errors_of(std::string(base) + "metrics: {enabled: false, address: localhost}\n").empty());
    CHECK(errors_of(std::string(base) + "metrics: {port: 70000}\n").find("'port' is out of range") !=
          std::string::npos);
    CHECK(errors_of(std::string(base) + "metrics: {adress: 127.0.0.1}\n").find("did you mean 'address'") !=
          std::string::npos);
}

TEST_CASE("ports.link_propagation: on by default") {
    const char* mode = "static: {policy: p, consent: c}\n";
    CHECK(load_config_text(std::string("ports: {subscriber: 0, internet: 1}\n") + mode, "optgate.yaml", "/srv")
              .config.link_propagation);
    CHECK_FALSE(load_config_text(std::string("ports: {subscriber: 0, internet: 1, link_propagation: false}\n") + mode,
                                 "optgate.yaml", "/srv")
                    .config.link_propagation);
    CHECK(errors_of(std::string("ports: {subscriber: 0, internet: 1, link_propagation: maybe}\n") + mode)
              .find("link_propagation") != std::string::npos);
}
