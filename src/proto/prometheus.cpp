#include "proto/prometheus.hpp"

#include "proto/stats.hpp"

namespace optgate::proto {

void metric_header(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
    out.append("# HELP ").append(name).append(" ").append(help).append("\n");
    out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

void metric(std::string& out, std::string_view name, std::string_view type, std::string_view help, uint64_t v) {
    metric_header(out, name, type, help);
    out.append(name).append(" ").append(std::to_string(v)).append("\n");
}

void render_stats(std::string& out, std::vector<StatEntry> entries, std::string_view dataplane) {
    std::string problem;
    normalize_stats(entries, problem);  // sorted: a name's entries are neighbours, of one kind
    std::string family;
    for (size_t i = 0; i < entries.size(); ++i) {
        const StatEntry& e = entries[i];
        if (i == 0 || entries[i - 1].name != e.name) {
            family.assign("optgate_dp_").append(e.name);
            if (const auto help = stat_help(e.name); !help.empty())
                out.append("# HELP ").append(family).append(" ").append(help).append("\n");
            out.append("# TYPE ").append(family).append(" ").append(to_string(e.kind)).append("\n");
        }
        out.append(family).append("{dataplane=\"").append(stat_label_value(dataplane)).append("\"");
        if (!e.label_name.empty())
            out.append(",").append(e.label_name).append("=\"").append(e.label_value).append("\"");
        out.append("} ").append(std::to_string(e.value)).append("\n");
    }
}

}  // namespace optgate::proto
