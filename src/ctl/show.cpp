// optgatectl show SUBSCRIBER and optgatectl binding ADDRESS [--at TIME]: what
// a support agent needs on a call (GET /v1/subscribers/{id}, GET
// /v1/bindings/{address}; docs/optgatectl.md). Readable tables in local time
// by default; --utc for the ledger's UTC times, --json for consentd's answer.
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/program_options.hpp>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <string>
#include <vector>

#include "consentd/event.hpp"
#include "ctl/api_client.hpp"
#include "ctl/commands.hpp"

namespace optgate::ctl {

namespace po = boost::program_options;
namespace json = boost::json;

namespace {

// A ledger time ("2024-05-01T12:00:00.123Z") as "2024-05-01 14:00:00 CEST"
// in the local zone (TZ), or as "2024-05-01 12:00:00 UTC"; text that is not
// a time is shown as it is.
std::string shown_time(const json::value& v, bool utc) {
    if (!v.is_string()) return cell(v);
    std::string why;
    const auto t = consentd::parse_rfc3339(std::string_view(v.as_string().data(), v.as_string().size()), why);
    if (!t) return cell(v);
    const time_t secs = std::chrono::system_clock::to_time_t(*t);
    std::tm tm{};
    if (utc ? !gmtime_r(&secs, &tm) : !localtime_r(&secs, &tm)) return cell(v);
    char buf[64];
    if (std::strftime(buf, sizeof buf, utc ? "%Y-%m-%d %H:%M:%S UTC" : "%Y-%m-%d %H:%M:%S %Z", &tm) == 0)
        return cell(v);
    return buf;
}

// Rows printed as columns as wide as their widest cell.
class Table {
public:
    explicit Table(std::vector<std::string> header) { rows_.push_back(std::move(header)); }
    void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
    void print() const {
        std::vector<size_t> width(rows_[0].size(), 0);
        for (const auto& r : rows_)
            for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
        for (const auto& r : rows_) {
            std::string line;
            for (size_t i = 0; i < r.size(); ++i) {
                line += r[i];
                if (i + 1 < r.size()) line += std::string(width[i] - r[i].size() + 2, ' ');
            }
            std::printf("  %s\n", line.c_str());
        }
    }

private:
    std::vector<std::vector<std::string>> rows_;
};

// Runs the GET; prints the answer as JSON with --json or on an error, else
// hands the parsed body to `table`.
template <typename Print>
int get_and_print(std::string_view command, const po::variables_map& vm, const std::string& path, Print table) {
    const auto target = api_target(vm);
    if (!target) return 2;
    ApiResult r;
    try {
        r = api_request(*target, boost::beast::http::verb::get, path);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "optgatectl %.*s: %s\n", int(command.size()), command.data(), e.what());
        return 1;
    }
    if (vm.count("json") || r.status != 200) return print_result(command, r);
    try {
        table(json::parse(r.body).as_object(), vm.count("utc") > 0);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "optgatectl %.*s: unexpected answer from consentd: %s\n", int(command.size()),
                     command.data(), e.what());
        return 1;
    }
    return 0;
}

void add_view_options(po::options_description& opts) {
    opts.add_options()("json", "print consentd's answer as JSON (times in UTC, as the ledger has them)")(
        "utc", "show times in UTC instead of the local time zone");
}

void print_subscriber(const json::object& b, bool utc) {
    const auto t = [utc](const json::value& v) { return shown_time(v, utc); };
    std::printf("subscriber %s: %s events in the ledger\n", cell(b.at("subscriber")).c_str(),
                cell(b.at("history_total")).c_str());
    const auto& consents = b.at("consents").as_array();
    std::printf("\nconsents (%zu)%s\n", consents.size(),
                consents.empty() ? ": none, every identifier about this subscriber is stripped" : "");
    if (!consents.empty()) {
        Table c({"PURPOSE", "OPTED IN SINCE", "LAST GRANTED", "NOTICE", "SOURCE", "BY", "IN POLICY"});
        for (const auto& v : consents) {
            const auto& o = v.as_object();
            c.add({cell(o.at("purpose")), t(o.at("since")), t(o.at("time")), cell(o.at("notice_version")),
                   cell(o.at("source")), cell(o.at("credential")), cell(o.at("in_policy"))});
        }
        c.print();
    }
    const auto& bindings = b.at("bindings").as_array();
    std::printf("\naddresses (%zu)%s\n", bindings.size(), bindings.empty() ? ": none bound now" : "");
    if (!bindings.empty()) {
        Table a({"ADDRESS", "BOUND SINCE", "SOURCE", "BY", "ACTIVE"});
        for (const auto& v : bindings) {
            const auto& o = v.as_object();
            a.add({cell(o.at("address")), t(o.at("time")), cell(o.at("source")), cell(o.at("credential")),
                   cell(o.at("active"))});
        }
        a.print();
    }
    const auto& history = b.at("history").as_array();
    std::printf("\nhistory (%zu of %s%s)\n", history.size(), cell(b.at("history_total")).c_str(),
                b.at("history_truncated").as_bool() ? ", the latest; --history N for more" : "");
    if (!history.empty()) {
        Table h({"SEQ", "TIME", "ACTION", "PURPOSE/ADDRESS", "NOTICE", "SOURCE", "BY"});
        for (const auto& v : history) {
            const auto& o = v.as_object();
            const json::value* what = o.if_contains("purpose");
            if (!what) what = o.if_contains("address");
            const json::value* notice = o.if_contains("notice_version");
            h.add({cell(o.at("seq")), t(o.at("time")), cell(o.at("action")), what ? cell(*what) : "-",
                   notice ? cell(*notice) : "-", cell(o.at("source")), cell(o.at("credential"))});
        }
        h.print();
    }
}

// --at as the API takes it: RFC 3339 as given, or a local "YYYY-MM-DD
// HH:MM[:SS]" converted to UTC here; empty when neither.
std::string at_query(const std::string& text) {
    std::string why;
    if (consentd::parse_rfc3339(text, why)) return text;
    // "YYYY-MM-DD HH:MM" or "YYYY-MM-DD HH:MM:SS" ('T' for the space too).
    static constexpr std::string_view kShape = "dddd-dd-dd dd:dd:dd";
    if (text.size() != 16 && text.size() != 19) return {};
    for (size_t i = 0; i < text.size(); ++i) {
        const char want = kShape[i], c = text[i];
        const bool ok = want == 'd' ? c >= '0' && c <= '9' : want == ' ' ? c == ' ' || c == 'T' : c == want;
        if (!ok) return {};
    }
    const auto num = [&text](size_t at, size_t n) { return std::stoi(text.substr(at, n)); };
    std::tm tm{};
    tm.tm_year = num(0, 4) - 1900;
    tm.tm_mon = num(5, 2) - 1;
    tm.tm_mday = num(8, 2);
    tm.tm_hour = num(11, 2);
    tm.tm_min = num(14, 2);
    tm.tm_sec = text.size() == 19 ? num(17, 2) : 0;
    tm.tm_isdst = -1;  // the zone's rules decide
    const std::tm asked = tm;
    const time_t t = std::mktime(&tm);
    // mktime normalises (February 30th becomes March 2nd): refuse what moved.
    if (t == time_t(-1) || tm.tm_mon != asked.tm_mon || tm.tm_mday != asked.tm_mday || asked.tm_hour > 23 ||
        asked.tm_min > 59 || asked.tm_sec > 59)
        return {};
    return consentd::format_utc_ms(std::chrono::system_clock::from_time_t(t));
}

void print_binding(const json::object& b, bool utc) {
    const auto t = [utc](const json::value& v) { return shown_time(v, utc); };
    const std::string when = b.at("at").is_null() ? "now" : "at " + t(b.at("at"));
    const json::value& since = b.at("since");
    const json::value& until = b.at("until");
    if (!b.at("subscriber").is_null()) {
        std::printf("%s %s: bound to subscriber %s\n", cell(b.at("address")).c_str(), when.c_str(),
                    cell(b.at("subscriber")).c_str());
    } else {
        std::printf("%s %s: not bound to any subscriber\n", cell(b.at("address")).c_str(), when.c_str());
    }
    Table e({"", "SEQ", "TIME", "ACTION", "SUBSCRIBER", "SOURCE", "BY"});
    const auto row = [&](const char* label, const json::value& v) {
        if (v.is_null()) return;
        const auto& o = v.as_object();
        e.add({label, cell(o.at("seq")), t(o.at("time")), cell(o.at("action")), cell(o.at("subscriber")),
               cell(o.at("source")), cell(o.at("credential"))});
    };
    row("since", since);
    row("until", until);
    if (since.is_null() && until.is_null()) {
        std::printf("  the ledger has no bind or unbind of this address\n");
        return;
    }
    if (since.is_null()) std::printf("  never bound before then\n");
    if (until.is_null()) std::printf("  unchanged since\n");
    e.print();
}

}  // namespace

int show(int argc, char** argv) {
    po::options_description opts;
    opts.add_options()("history", po::value<unsigned>(), "how many of the latest events to list")(
        "subscriber", po::value<std::string>(), "");
    add_view_options(opts);
    add_client_options(opts);
    po::positional_options_description pos;
    pos.add("subscriber", 1);
    po::variables_map vm;
    const std::string_view usage = "show SUBSCRIBER [--history N] [--utc] [--json]";
    if (auto stop = parse_command(argc, argv, opts, pos, usage, vm)) return *stop;
    if (!vm.count("subscriber")) {
        std::fprintf(stderr, "optgatectl show: missing subscriber\nusage: optgatectl %.*s\n", int(usage.size()),
                     usage.data());
        return 2;
    }
    std::string path = "/v1/subscribers/" + encode_segment(vm["subscriber"].as<std::string>());
    if (vm.count("history")) path += "?history=" + std::to_string(vm["history"].as<unsigned>());
    return get_and_print("show", vm, path, print_subscriber);
}

int binding(int argc, char** argv) {
    po::options_description opts;
    opts.add_options()("at", po::value<std::string>(),
                       "when: RFC 3339 (2024-05-01T14:00:00+02:00) or local time (\"2024-05-01 14:00\"); "
                       "default now")("address", po::value<std::string>(), "");
    add_view_options(opts);
    add_client_options(opts);
    po::positional_options_description pos;
    pos.add("address", 1);
    po::variables_map vm;
    const std::string_view usage = "binding ADDRESS [--at TIME] [--utc] [--json]";
    if (auto stop = parse_command(argc, argv, opts, pos, usage, vm)) return *stop;
    if (!vm.count("address")) {
        std::fprintf(stderr, "optgatectl binding: missing address\nusage: optgatectl %.*s\n", int(usage.size()),
                     usage.data());
        return 2;
    }
    std::string path = "/v1/bindings/" + encode_segment(vm["address"].as<std::string>());
    if (vm.count("at")) {
        const std::string at = at_query(vm["at"].as<std::string>());
        if (at.empty()) {
            std::fprintf(stderr,
                         "optgatectl binding: --at '%s' is not a time: give RFC 3339 (2024-05-01T12:00:00Z, "
                         "2024-05-01T14:00:00+02:00) or local time as \"YYYY-MM-DD HH:MM[:SS]\"\n",
                         vm["at"].as<std::string>().c_str());
            return 2;
        }
        path += "?at=" + encode_segment(at);
    }
    return get_and_print("binding", vm, path, print_binding);
}

}  // namespace optgate::ctl
