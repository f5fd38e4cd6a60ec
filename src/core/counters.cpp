#include "core/counters.hpp"

namespace optgate {
namespace {

constexpr std::string_view kNames[] = {
#define OPTGATE_X(name, help) #name,
    OPTGATE_COUNTERS(OPTGATE_X)
#undef OPTGATE_X
};

constexpr std::string_view kHelp[] = {
#define OPTGATE_X(name, help) help,
    OPTGATE_COUNTERS(OPTGATE_X)
#undef OPTGATE_X
};

}  // namespace

std::string_view counter_name(Counter c) noexcept { return kNames[size_t(c)]; }
std::string_view counter_help(Counter c) noexcept { return kHelp[size_t(c)]; }

void WorkerCounters::accumulate(const WorkerCounters& o) noexcept {
    for (size_t i = 0; i < value.size(); ++i) value[i] += o.value[i];
    for (size_t i = 0; i < destination_stripped.size(); ++i) {
        destination_stripped[i] += o.destination_stripped[i];
        destination_passed[i] += o.destination_passed[i];
    }
    for (size_t i = 0; i < identifier_stripped.size(); ++i) {
        identifier_stripped[i] += o.identifier_stripped[i];
        identifier_passed[i] += o.identifier_passed[i];
    }
}

}  // namespace optgate
