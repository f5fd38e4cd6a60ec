// Test helpers for running the project's real programs: a temporary
// directory, a child process with its output in a file, and "run to
// completion". Used by the golden, end-to-end and protocol tests.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

namespace optgate::test {

namespace fs = std::filesystem;

// An environment variable that meson sets for the test; throws if missing.
std::string env(const char* name);

std::string slurp(const std::string& path);

// A fresh directory under /tmp (short: Unix socket paths must fit 108
// bytes), removed with everything in it on destruction.
struct TempDir {
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    std::string file(const std::string& name) const { return (path / name).string(); }
    // Writes `text` to `name` and returns its path.
    std::string write(const std::string& name, const std::string& text) const;
    fs::path path;
};

// A child process (no shell); stdout and stderr go to `log`.
class Process {
public:
    Process(std::vector<std::string> argv, std::string log);
    ~Process();  // kills it if still running
    Process(const Process&) = delete;
    Process& operator=(const Process&) = delete;
    pid_t pid() const { return pid_; }
    void kill(int sig);
    // The exit status (128 + signal when killed); -1 if still running at the timeout.
    int wait(std::chrono::milliseconds timeout = std::chrono::milliseconds(60000));
    bool running();
    std::string output() const { return slurp(log_); }

private:
    pid_t pid_ = -1;
    int status_ = -1;
    std::string log_;
};

// Runs a program to completion; stdout and stderr together in `output`.
struct RunResult {
    int exit_code = -1;
    std::string output;
};
RunResult run(const std::vector<std::string>& argv,
              std::chrono::milliseconds timeout = std::chrono::milliseconds(60000));

}  // namespace optgate::test
