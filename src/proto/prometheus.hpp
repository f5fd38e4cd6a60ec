// The Prometheus text format (0.0.4), shared by consentd's GET /metrics and
// optgate's own endpoint (docs/dataplane.md#prometheus), so that a data
// plane's statistics have the same names whichever of the two is scraped.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "proto/wire.hpp"

namespace optgate::proto {

// A family's "# HELP" and "# TYPE" lines: every family starts with them
// (the text format wants both before the samples).
void metric_header(std::string& out, std::string_view name, std::string_view type, std::string_view help);
// A family of one unlabelled sample: its header, then "name value".
void metric(std::string& out, std::string_view name, std::string_view type, std::string_view help, uint64_t v);

// One data plane's stats entries (stats.hpp) as consentd shows them: the
// family optgate_dp_<name> per name, each sample labelled
// dataplane="<dataplane>" and with the entry's own label. Normalizes the
// list first (normalize_stats): invalid and repeated entries are left out.
void render_stats(std::string& out, std::vector<StatEntry> entries, std::string_view dataplane);

}  // namespace optgate::proto
