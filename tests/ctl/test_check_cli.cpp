// `optgatectl check` as an operator runs it: exit status, stdout, stderr.
// The binary under test comes from $OPTGATECTL (set by meson), the example
// configs from $OPTGATE_SOURCE_ROOT.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

struct Run {
    int status = -1;  // exit status, or -1 if it did not exit normally
    std::string out, err;
};

std::string env(const char* name) {
    const char* v = std::getenv(name);
    REQUIRE_MESSAGE(v, name << " is not set (run through meson test)");
    return v;
}

std::string slurp(const fs::path& p) {
    std::ifstream in(p);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

std::vector<std::string> lines(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string l; std::getline(in, l);) out.push_back(l);
    return out;
}

// A scratch directory for one test case, removed at the end.
struct Scratch {
    fs::path dir;
    Scratch() {
        std::string templ = (fs::temp_directory_path() / "optgatectl-check-XXXXXX").string();
        REQUIRE(mkdtemp(templ.data()));
        dir = templ;
    }
    ~Scratch() {
        std::error_code ec;
        fs::remove_all(dir, ec);
    }
    Scratch(const Scratch&) = delete;
    Scratch& operator=(const Scratch&) = delete;
    std::string write(const std::string& name, const std::string& text) const {
        std::ofstream(dir / name) << text;
        return (dir / name).string();
    }
};

Run run(const std::vector<std::string>& args) {
    Scratch s;
    const fs::path out = s.dir / "stdout", err = s.dir / "stderr";
    const std::string ctl = env("OPTGATECTL");
    // execv takes mutable strings: hand it copies.
    std::vector<std::string> words{ctl};
    words.insert(words.end(), args.begin(), args.end());
    std::vector<char*> argv;
    argv.reserve(words.size() + 1);
    for (auto& w : words) argv.push_back(w.data());
    argv.push_back(nullptr);
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        if (!freopen(out.c_str(), "w", stdout) || !freopen(err.c_str(), "w", stderr)) _exit(127);
        execv(ctl.c_str(), argv.data());
        _exit(127);
    }
    int wstatus = 0;
    REQUIRE(waitpid(pid, &wstatus, 0) == pid);
    Run r;
    r.status = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1;
    r.out = slurp(out);
    r.err = slurp(err);
    return r;
}

std::string example(const char* name) { return env("OPTGATE_SOURCE_ROOT") + "/config/" + name; }

// A small valid policy; tests append to it.
constexpr const char* kPolicy = R"(version: 1
purposes:
  advertising: {description: Ads chosen for you., benefit: Fewer irrelevant ads., data: [device identifier], retention: 90 days}
  analytics: {description: Counting visits., benefit: Better sites., data: [device identifier], retention: 13 months}
identifiers:
  http_headers: [{header: X-UIDH, name: Verizon UIDH}]
  dns_options: [{code: 8, name: ECS}]
subscribers:
  prefixes: [100.64.0.0/10]
)";

}  // namespace

TEST_SUITE("optgatectl check") {

TEST_CASE("the example policy passes with one summary line") {
    const std::string policy = example("policy.example.yaml");
    const Run r = run({"check", policy});
    CHECK(r.status == 0);
    CHECK(r.err == "");
    CHECK(r.out == policy +
                       ": OK: 3 purposes, 10 identifiers (5 HTTP headers, 5 DNS options), 5 collectors, 1 exemption, "
                       "2 subscriber prefixes\n");
}

TEST_CASE("the example consent files pass against the example policy") {
    const std::string policy = example("policy.example.yaml"), consent = example("consent.example.yaml"),
                      ndjson = example("consent.example.ndjson");
    for (const auto& args : {std::vector<std::string>{"check", policy, "--consent", consent},
                             std::vector<std::string>{"check", "--consent=" + consent, policy}}) {
        const Run r = run(args);
        CHECK(r.status == 0);
        CHECK(r.err == "");
        const auto out = lines(r.out);
        REQUIRE(out.size() == 2);
        CHECK(out[0].starts_with(policy + ": OK: 3 purposes"));
        CHECK(out[1] == consent + ": OK: 5 subscribers (4 with consent), 7 subscriber keys (4 IPv4, 3 IPv6)");
    }
    const Run r = run({"check", policy, "--consent", ndjson});
    CHECK(r.status == 0);
    CHECK(r.err == "");
    const auto out = lines(r.out);
    REQUIRE(out.size() == 2);
    CHECK(out[1] == ndjson + ": OK: 5 subscribers (4 with consent), 7 subscriber keys (4 IPv4, 3 IPv6)");
}

TEST_CASE("singular and plural in the summary") {
    Scratch s;
    const std::string p = s.write("one.yaml", std::string(kPolicy) + R"(collectors:
  - {name: adnet, purpose: advertising, description: d, match: {prefixes: [203.0.113.0/25]}}
)");
    const Run r = run({"check", p});
    CHECK(r.status == 0);
    CHECK(r.out == p + ": OK: 2 purposes, 2 identifiers (1 HTTP header, 1 DNS option), 1 collector, 0 exemptions, "
                       "1 subscriber prefix\n");
}

TEST_CASE("an invalid policy prints every error as FILE:LINE:COLUMN and exits 1") {
    Scratch s;
    const std::string p = s.write("bad.yaml", std::string(kPolicy) + R"(collectors:
  - name: adnet
    purpose: advertsing
    description: d
    match: {prefixes: [203.0.113.1/25], ports: [0]}
exemptions:
  - name: billing
    match: {prefixes: [198.51.100.0/24]}
)");
    const Run r = run({"check", p});
    CHECK(r.status == 1);
    CHECK(r.out == "");
    const auto err = lines(r.err);
    REQUIRE(err.size() == 4);
    CHECK(err[0].starts_with(p + ":12:14: collector 'adnet' names purpose 'advertsing'"));
    CHECK(err[0].ends_with("(did you mean 'advertising'?)"));
    CHECK(err[1].starts_with(p + ":14:24: '203.0.113.1/25' has host bits set"));
    CHECK(err[2] == p + ":14:49: port 0 is out of range: ports are 1..65535");
    CHECK(err[3].starts_with(p + ":16:5: exemption 'billing' has no 'reason'"));
}

TEST_CASE("a purpose without a benefit is an error located at the purpose") {
    Scratch s;
    std::string text = kPolicy;
    const std::string benefit = " benefit: Better sites.,";
    text.erase(text.find(benefit), benefit.size());  // line 4: analytics
    const std::string p = s.write("no-benefit.yaml", text + "collectors: []\n");
    const Run r = run({"check", p});
    CHECK(r.status == 1);
    CHECK(r.out == "");
    CHECK(r.err == p + ":4:14: purpose 'analytics' has no 'benefit': every purpose must say what the subscriber "
                       "gains by opting in (shown beside 'description' wherever they are asked)\n");
}

TEST_CASE("warnings are printed and the policy still passes") {
    Scratch s;
    const std::string p = s.write("warn.yaml", std::string(kPolicy) + R"(collectors:
  - {name: adnet, purpose: advertising, description: d, match: {prefixes: [203.0.113.0/24]}}
  - {name: stats, purpose: analytics, description: d, match: {prefixes: [203.0.113.128/25]}}
)");
    const Run r = run({"check", p});
    CHECK(r.status == 0);
    const auto err = lines(r.err);
    REQUIRE(err.size() == 1);
    CHECK(err[0].starts_with(p + ":12:74: warning: collector 'stats' (purpose analytics) overlaps collector 'adnet'"));
    CHECK(lines(r.out).size() == 1);
    CHECK(r.out.starts_with(p + ": OK: "));
}

TEST_CASE("a policy that cannot work passes with a warning for each part that cannot") {
    Scratch s;
    const std::string p = s.write("inert.yaml", std::string(kPolicy) + R"(collectors:
  - {name: tls, purpose: advertising, description: d, match: {prefixes: [203.0.113.0/24], ports: [443]}}
  - {name: dnshost, purpose: analytics, description: d, match: {hosts: [resolver.example], ports: [53]}}
http: {ports: []}
enforcement: {staleness_limit: 2s}
)");
    const Run r = run({"check", p});
    CHECK(r.status == 0);
    CHECK(r.out.starts_with(p + ": OK: "));
    const auto err = lines(r.err);
    REQUIRE(err.size() == 4);
    CHECK(err[0].starts_with(p + ": warning: the policy lists HTTP header identifiers but 'http.ports' is empty"));
    CHECK(err[1].starts_with(p + ": warning: collector 'tls' matches only port(s) 443, which optgate never parses"));
    CHECK(err[2].starts_with(p + ": warning: collector 'dnshost' matches host names but only DNS port(s) 53"));
    CHECK(err[3].starts_with(p + ": warning: consentd with its default dataplanes.heartbeat_interval refuses"));
}

TEST_CASE("header prefixes: checked, warned about, counted as HTTP headers") {
    Scratch s;
    std::string text = kPolicy;
    const std::string exact = "  http_headers: [{header: X-UIDH, name: Verizon UIDH}]\n";
    text.replace(text.find(exact), exact.size(),
                 "  http_headers: [{header: X-UIDH, name: Verizon UIDH}, {header_prefix: X-Nokia-, name: Nokia family},"
                 " {header_prefix: X, name: every X}]\n");
    const Run ok = run({"check", s.write("families.yaml", text + "collectors: []\n")});
    CHECK(ok.status == 0);
    CHECK(ok.out.find("4 identifiers (3 HTTP headers, 1 DNS option)") != std::string::npos);
    const auto err = lines(ok.err);
    REQUIRE(err.size() == 3);  // X is short; it covers X-UIDH and X-Nokia-
    CHECK(err[0].find(":6:27: warning: header 'X-UIDH' is also covered by the header prefix 'X' (line 6)") !=
          std::string::npos);

    text.replace(text.find("header_prefix: X,"), 17, "header_prefix: \"X:\",");
    const Run bad = run({"check", s.write("bad.yaml", text + "collectors: []\n")});
    CHECK(bad.status == 1);
    CHECK(bad.err.find("'X:' is not a valid header name prefix") != std::string::npos);
}

TEST_CASE("a YAML syntax error exits 1 with its location") {
    Scratch s;
    const std::string p = s.write("syntax.yaml", "version: 1\npurposes:\n\t- x\n");
    const Run r = run({"check", p});
    CHECK(r.status == 1);
    CHECK(r.err.starts_with(p + ":3:2: YAML syntax error: "));
}

TEST_CASE("an unreadable file exits 1 naming the file") {
    Scratch s;
    const std::string missing = (s.dir / "missing.yaml").string();
    const Run r = run({"check", missing});
    CHECK(r.status == 1);
    CHECK(r.out == "");
    CHECK(r.err == missing + ": cannot read the file: No such file or directory\n");

    const Run dir = run({"check", s.dir.string()});
    CHECK(dir.status == 1);
    CHECK(dir.err.starts_with(s.dir.string() + ": cannot read the file"));
}

TEST_CASE("an invalid consent file exits 1 with its errors") {
    Scratch s;
    const std::string c = s.write("consent.yaml", R"(subscribers:
  - id: sub-1
    addresses: [100.64.0.10, 198.51.100.1]
    consents: [advertising, ads]
)");
    const std::string policy = example("policy.example.yaml");
    const Run r = run({"check", policy, "--consent", c});
    CHECK(r.status == 1);
    CHECK(r.out.starts_with(policy + ": OK: "));  // the policy itself is fine
    const auto err = lines(r.err);
    REQUIRE(err.size() == 2);
    CHECK(err[0] == c + ":3:30: '198.51.100.1' is not in the policy's subscriber prefixes (subscribers.prefixes)");
    CHECK(err[1].starts_with(c + ":4:29: unknown purpose 'ads'"));
}

TEST_CASE("an invalid NDJSON consent file exits 1 with its errors, by line") {
    Scratch s;
    const std::string c = s.write(
        "consent.ndjson",
        "{\"id\": \"sub-1\", \"addresses\": [\"100.64.0.10\"], \"consents\": [\"advertising\"]}\n"
        "\n"
        "{\"id\": \"sub-2\", \"addresses\": [\"198.51.100.1\"], \"consents\": [\"ads\"]}\n"
        "{\"id\": \"sub-3\", \"addresses\": [\"100.64.0.11\"]}\n");
    const std::string policy = example("policy.example.yaml");
    const Run r = run({"check", policy, "--consent", c});
    CHECK(r.status == 1);
    const auto err = lines(r.err);
    REQUIRE(err.size() == 3);
    CHECK(err[0] == c + ":3:1: '198.51.100.1' is not in the policy's subscriber prefixes (subscribers.prefixes)");
    CHECK(err[1].starts_with(c + ":3:1: unknown purpose 'ads'"));
    CHECK(err[2] == c + ":4:1: missing field 'consents'");
}

TEST_CASE("a consent file is not checked against an invalid policy") {
    Scratch s;
    const std::string p = s.write("bad.yaml", "version: 1\n");
    const Run r = run({"check", p, "--consent", example("consent.example.yaml")});
    CHECK(r.status == 1);
    CHECK(r.out == "");
    CHECK(r.err.find(example("consent.example.yaml") + ": not checked") != std::string::npos);
}

TEST_CASE("usage errors exit 2, --help exits 0") {
    const std::string policy = example("policy.example.yaml");
    for (const auto& args :
         {std::vector<std::string>{"check"}, std::vector<std::string>{"check", "--frobnicate", policy},
          std::vector<std::string>{"check", policy, policy}, std::vector<std::string>{"check", policy, "--consent"},
          std::vector<std::string>{"check", policy, "--consent", "a", "--consent", "b"}}) {
        const Run r = run(args);
        CHECK_MESSAGE(r.status == 2, args.size());
        CHECK(r.out == "");
        CHECK(r.err.find("usage: optgatectl check") != std::string::npos);
    }
    const Run help = run({"check", "--help"});
    CHECK(help.status == 0);
    CHECK(help.out.starts_with("usage: optgatectl check POLICY_FILE [--consent CONSENT_FILE]"));
    CHECK(run({}).status == 2);
    CHECK(run({"no-such-command"}).status == 2);
}

}  // TEST_SUITE("optgatectl check")
