#include "golden_support.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>

extern char** environ;

namespace optgate::golden {
namespace {

std::string env(const char* name) {
    const char* v = std::getenv(name);
    if (!v || !*v) throw std::runtime_error(std::string(name) + " is not set (run through meson test)");
    return v;
}

std::string slurp(const std::string& path) {
    std::ifstream f(path);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

}  // namespace

TempDir::TempDir() {
    std::random_device rd;
    path = fs::temp_directory_path() / ("optgate-golden-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
    fs::create_directories(path);
}

TempDir::~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
}

std::string TempDir::write(const std::string& name, const std::string& text) const {
    const std::string p = file(name);
    std::ofstream(p) << text;
    return p;
}

std::string source_path(const std::string& relative) { return env("OPTGATE_SOURCE_ROOT") + "/" + relative; }
std::string example_policy() { return source_path("config/policy.example.yaml"); }
std::string example_consent() { return source_path("config/consent.example.yaml"); }

RunResult run_replay(const std::vector<std::string>& args) {
    const std::string binary = env("OPTGATE_REPLAY");
    TempDir tmp;
    const std::string out_path = tmp.file("output.txt");
    std::vector<std::string> argv_s{binary};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    pid_t pid;
    const int rc = posix_spawn(&pid, binary.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw std::runtime_error("cannot start " + binary);
    int status = 0;
    waitpid(pid, &status, 0);
    RunResult r;
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r.output = slurp(out_path);
    return r;
}

uint64_t Replay::counter(const std::string& name) const {
    const auto& counters = report.at("counters").as_object();
    const auto* v = counters.if_contains(name);
    if (!v) throw std::runtime_error("no counter '" + name + "' in the report");
    return v->to_number<uint64_t>();
}

namespace {
uint64_t destination_field(const boost::json::object& report, const std::string& name, const char* field) {
    for (const auto& d : report.at("destinations").as_array())
        if (d.at("name").as_string() == name) return d.at(field).to_number<uint64_t>();
    throw std::runtime_error("no destination '" + name + "' in the report");
}
}  // namespace

uint64_t Replay::stripped_to(const std::string& d) const { return destination_field(report, d, "identifiers_stripped"); }
uint64_t Replay::passed_to(const std::string& d) const { return destination_field(report, d, "identifiers_passed"); }

Replay replay(const std::vector<test::Bytes>& frames, const std::string& policy, const std::string& consent) {
    TempDir tmp;
    Replay r;
    uint64_t ts = 1'700'000'000'000'000'000ull;
    for (const auto& f : frames) {
        r.input.push_back({ts, f});
        ts += 1'000'000;
    }
    test::write_pcap(tmp.file("in.pcap"), r.input);
    r.run = run_replay({"--policy", policy, "--consent", consent, "--report", tmp.file("report.json"),
                        tmp.file("in.pcap"), tmp.file("out.pcap")});
    INFO("optgate-replay said:\n" << r.run.output);
    REQUIRE(r.run.exit_code == 0);
    r.output = test::read_pcap(tmp.file("out.pcap"));
    r.report = boost::json::parse(slurp(tmp.file("report.json"))).as_object();
    return r;
}

}  // namespace optgate::golden
