// Invariant checks for fuzz targets. A failed check prints what was expected
// and aborts: libFuzzer saves the input as a crash, and the replay driver
// (replay_main.cpp) fails the meson test that ran it.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

namespace optgate::fuzz {

[[noreturn]] inline void fail(const char* file, int line, const char* what, const std::string& detail) {
    std::fprintf(stderr, "\n%s:%d: invariant failed: %s\n%s%s", file, line, what, detail.c_str(),
                 detail.empty() || detail.back() == '\n' ? "" : "\n");
    std::fflush(stderr);
    std::abort();
}

}  // namespace optgate::fuzz

// FUZZ_CHECK(cond, detail): `detail` (a std::string expression) is only
// built when the check fails.
#define FUZZ_CHECK(cond, detail)                                               \
    do {                                                                       \
        if (!(cond)) ::optgate::fuzz::fail(__FILE__, __LINE__, #cond, detail); \
    } while (0)
