// optgatectl grant / revoke / bind / unbind / import / reload: the
// consentd API from the command line (docs/consentd.md, "optgatectl").
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <boost/program_options.hpp>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "ctl/api_client.hpp"
#include "ctl/commands.hpp"

namespace optgate::ctl {

namespace po = boost::program_options;
namespace http = boost::beast::http;
namespace json = boost::json;

namespace {

struct Parsed {
    po::variables_map vm;
    ApiTarget target;
};

// Parses, checks the positional arguments are all there, resolves server and
// token. Returns the exit status when the command should stop.
std::optional<int> prepare(int argc, char** argv, po::options_description& opts,
                           const std::vector<const char*>& positional, std::string_view usage, Parsed& p) {
    add_client_options(opts);
    po::positional_options_description pos;
    for (const char* name : positional) {
        opts.add_options()(name, po::value<std::string>(), "");
        pos.add(name, 1);
    }
    if (auto stop = parse_command(argc, argv, opts, pos, usage, p.vm)) return stop;
    for (const char* name : positional)
        if (!p.vm.count(name)) {
            std::fprintf(stderr, "optgatectl %s: missing %s\nusage: optgatectl %.*s\n", argv[0], name,
                         int(usage.size()), usage.data());
            return 2;
        }
    auto t = api_target(p.vm);
    if (!t) return 2;
    p.target = std::move(*t);
    return std::nullopt;
}

std::string arg(const Parsed& p, const char* name) { return p.vm[name].as<std::string>(); }

// --wait[=TIMEOUT] on every write: answer once every connected data plane
// enforces the change (consentd's ?wait=enforced).
void add_wait_option(po::options_description& opts) {
    opts.add_options()("wait", po::value<std::string>()->implicit_value(""),
                       "return once every connected data plane enforces the change (optionally: at most this "
                       "long, e.g. 2s; default consentd's enforced_wait_timeout)");
}

std::string wait_query(const Parsed& p) {
    if (!p.vm.count("wait")) return "";
    const std::string t = arg(p, "wait");
    return t.empty() ? "?wait=enforced" : "?wait=enforced&timeout=" + t;
}

int call(std::string_view command, const Parsed& p, http::verb method, const std::string& target,
         const std::string& body = {}, std::string_view content_type = "application/json",
         std::chrono::seconds timeout = std::chrono::seconds(90)) {
    try {
        const ApiResult r = api_request(p.target, method, target, body, content_type, timeout);
        const int status = print_result(command, r);
        if (status != 0 || !p.vm.count("wait")) return status;
        // Recorded durably; say so plainly if a data plane did not confirm.
        const std::string enforcement = enforcement_status(r.body);
        if (enforcement == "timeout") {
            std::fprintf(stderr, "optgatectl %.*s: recorded, but not every data plane confirmed enforcing it in time\n",
                         int(command.size()), command.data());
            return 3;
        }
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "optgatectl %.*s: %s\n", int(command.size()), command.data(), e.what());
        return 1;
    }
}

int consent(int argc, char** argv, bool grant) {
    po::options_description opts;
    opts.add_options()("source", po::value<std::string>(),
                       "channel the choice came through (portal, call-centre...); required")(
        "notice-version", po::value<std::string>(), "version of the notice the subscriber saw (required to grant)");
    add_wait_option(opts);
    Parsed p;
    const std::string usage = std::string(grant ? "grant" : "revoke") + " SUBSCRIBER PURPOSE --source S" +
                              (grant ? " --notice-version V" : " [--notice-version V]") + " [--wait[=T]]";
    if (auto stop = prepare(argc, argv, opts, {"subscriber", "purpose"}, usage, p)) return *stop;
    if (!p.vm.count("source") || (grant && !p.vm.count("notice-version"))) {
        std::fprintf(stderr, "optgatectl %s: usage: optgatectl %s\n", argv[0], usage.c_str());
        return 2;
    }
    json::object body;
    body["source"] = arg(p, "source");
    if (p.vm.count("notice-version")) body["notice_version"] = arg(p, "notice-version");
    return call(argv[0], p, grant ? http::verb::put : http::verb::delete_,
                "/v1/subscribers/" + encode_segment(arg(p, "subscriber")) + "/consents/" +
                    encode_segment(arg(p, "purpose")) + wait_query(p),
                json::serialize(body));
}

}  // namespace

int grant(int argc, char** argv) { return consent(argc, argv, true); }
int revoke(int argc, char** argv) { return consent(argc, argv, false); }

int bind(int argc, char** argv) {
    po::options_description opts;
    opts.add_options()("source", po::value<std::string>(), "who reports the assignment (radius, dhcp...)");
    add_wait_option(opts);
    Parsed p;
    if (auto stop = prepare(argc, argv, opts, {"address", "subscriber"},
                            "bind ADDRESS SUBSCRIBER [--source S] [--wait[=T]]", p))
        return *stop;
    json::object body;
    body["subscriber"] = arg(p, "subscriber");
    if (p.vm.count("source")) body["source"] = arg(p, "source");
    return call("bind", p, http::verb::put, "/v1/bindings/" + encode_segment(arg(p, "address")) + wait_query(p),
                json::serialize(body));
}

int unbind(int argc, char** argv) {
    po::options_description opts;
    opts.add_options()("subscriber", po::value<std::string>(), "only if the address is bound to this subscriber")(
        "source", po::value<std::string>(), "who reports the release (radius, dhcp...)");
    add_wait_option(opts);
    Parsed p;
    if (auto stop = prepare(argc, argv, opts, {"address"}, "unbind ADDRESS [--subscriber ID] [--source S] [--wait[=T]]",
                            p))
        return *stop;
    json::object body;
    if (p.vm.count("subscriber")) body["subscriber"] = arg(p, "subscriber");
    if (p.vm.count("source")) body["source"] = arg(p, "source");
    return call("unbind", p, http::verb::delete_, "/v1/bindings/" + encode_segment(arg(p, "address")) + wait_query(p),
                body.empty() ? std::string() : json::serialize(body));
}

int import_file(int argc, char** argv) {
    po::options_description opts;
    opts.add_options()("format", po::value<std::string>(), "ndjson or csv (default: from the file name)");
    Parsed p;
    if (auto stop = prepare(argc, argv, opts, {"file"}, "import FILE [--format ndjson|csv]", p)) return *stop;
    const std::string file = arg(p, "file");
    std::string format = p.vm.count("format") ? arg(p, "format") : "";
    if (format.empty()) {
        const auto dot = file.rfind('.');
        const std::string ext = dot == std::string::npos ? "" : file.substr(dot + 1);
        format = ext == "csv" ? "csv" : (ext == "ndjson" || ext == "jsonl") ? "ndjson" : "";
    }
    if (format != "csv" && format != "ndjson") {
        std::fprintf(stderr, "optgatectl import: say --format ndjson or --format csv\n");
        return 2;
    }
    std::ifstream in(file, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    if (!in) {
        std::fprintf(stderr, "optgatectl import: cannot read %s\n", file.c_str());
        return 1;
    }
    return call("import", p, http::verb::post, "/v1/import", text.str(),
                format == "csv" ? "text/csv" : "application/x-ndjson", std::chrono::seconds(1800));
}

int reload(int argc, char** argv) {
    po::options_description opts;
    Parsed p;
    if (auto stop = prepare(argc, argv, opts, {}, "reload", p)) return *stop;
    return call("reload", p, http::verb::post, "/v1/policy/reload");
}

}  // namespace optgate::ctl
