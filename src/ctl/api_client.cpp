#include "ctl/api_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <boost/program_options.hpp>
#include <boost/url/parse.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>

#include "consentd/json_text.hpp"
#include "proto/endpoint.hpp"

namespace optgate::ctl {

namespace po = boost::program_options;
namespace http = boost::beast::http;
namespace json = boost::json;

void add_client_options(po::options_description& opts) {
    opts.add_options()("server", po::value<std::string>(),
                       "consentd URL (default $OPTGATE_SERVER, else http://127.0.0.1:8470); several, "
                       "comma-separated: the first that accepts the connection")(
        "token", po::value<std::string>(), "API token (default $OPTGATE_TOKEN; visible in ps: prefer the others)")(
        "token-file", po::value<std::string>(), "read the API token from this file");
}

std::optional<ApiTarget> api_target(const po::variables_map& vm) {
    std::string server(kDefaultServer);
    if (vm.count("server"))
        server = vm["server"].as<std::string>();
    else if (const char* e = std::getenv("OPTGATE_SERVER"); e && *e)
        server = e;
    ApiTarget t;
    const auto urls = proto::split_comma_list(server);
    if (urls.size() > proto::Endpoint::kMaxList) {
        std::fprintf(stderr, "optgatectl: more than %zu consentd URLs\n", proto::Endpoint::kMaxList);
        return std::nullopt;
    }
    for (const auto one : urls) {
        const auto url = boost::urls::parse_uri(one);
        if (!url || url->scheme() != "http" || url->host_address().empty()) {
            std::fprintf(stderr, "optgatectl: '%.*s' is not an http:// URL of consentd\n", int(one.size()), one.data());
            return std::nullopt;
        }
        t.servers.push_back({url->host_address(), url->has_port() ? std::string(url->port()) : "80",
                             std::string(url->encoded_host_and_port())});
    }

    if (vm.count("token")) {
        t.token = vm["token"].as<std::string>();
    } else if (vm.count("token-file")) {
        std::ifstream in(vm["token-file"].as<std::string>());
        if (!in || !std::getline(in, t.token)) {
            std::fprintf(stderr, "optgatectl: cannot read a token from %s\n",
                         vm["token-file"].as<std::string>().c_str());
            return std::nullopt;
        }
        while (!t.token.empty() && (t.token.back() == '\r' || t.token.back() == ' ')) t.token.pop_back();
    } else if (const char* e = std::getenv("OPTGATE_TOKEN"); e && *e) {
        t.token = e;
    }
    if (t.token.empty()) {
        std::fprintf(stderr, "optgatectl: no API token: use --token-file, --token or OPTGATE_TOKEN\n");
        return std::nullopt;
    }
    return t;
}

namespace {

// The error code of a JSON error answer ({"error": {"code": ...}}), or "".
std::string error_code(const std::string& body) {
    boost::system::error_code ec;
    const auto v = json::parse(body, ec);
    if (ec || !v.is_object()) return {};
    const auto* e = v.as_object().if_contains("error");
    if (!e || !e->is_object()) return {};
    const auto* c = e->as_object().if_contains("code");
    return c && c->is_string() ? std::string(c->as_string()) : std::string();
}

}  // namespace

ApiResult api_request(const ApiTarget& target_servers, http::verb method, const std::string& target,
                      const std::string& body, std::string_view content_type, std::chrono::seconds timeout) {
    boost::asio::io_context ioc;
    boost::asio::ip::tcp::resolver resolver(ioc);
    std::string why;
    const auto& servers = target_servers.servers;
    for (size_t from = 0;;) {
        boost::beast::tcp_stream stream(ioc);
        boost::beast::error_code ec;
        // The first server from `from` on that takes the connection; nothing
        // was sent to the others, so trying the next is always safe.
        size_t at = from;
        for (; at < servers.size(); ++at) {
            const auto& s = servers[at];
            if (!why.empty()) why += "; ";
            const auto endpoints = resolver.resolve(s.host, s.port, ec);
            if (ec) {
                why += "cannot resolve " + s.host + ": " + ec.message();
                continue;
            }
            stream.expires_after(timeout);
            stream.connect(endpoints, ec);
            if (ec) {
                why += "cannot connect to " + s.host_header + ": " + ec.message();
                continue;
            }
            break;
        }
        if (at == servers.size()) throw std::runtime_error(why.empty() ? std::string("no consentd URL") : why);
        const ApiServer& to = servers[at];

        http::request<http::string_body> req{method, target, 11};
        req.set(http::field::host, to.host_header);
        req.set(http::field::authorization, "Bearer " + target_servers.token);
        req.set(http::field::user_agent, "optgatectl");
        if (!body.empty()) {
            req.set(http::field::content_type, content_type);
            req.body() = body;
        }
        // A large body waits for "100 Continue": a refusal (401, 413) then
        // comes before any of it is sent, instead of a reset connection.
        const bool expect = body.size() > (64u << 10);
        if (expect) req.set(http::field::expect, "100-continue");
        req.prepare_payload();
        http::request_serializer<http::string_body> sr{req};
        boost::beast::flat_buffer buffer;
        auto read_response = [&] {
            http::response_parser<http::string_body> res;
            res.body_limit(256u << 20);
            http::read(stream, buffer, res, ec);
            if (ec) throw std::runtime_error("no answer from " + to.host_header + ": " + ec.message());
            return ApiResult{unsigned(res.get().result_int()), res.get().body()};
        };
        ApiResult r;
        if (expect) {
            http::write_header(stream, sr, ec);
            if (ec) throw std::runtime_error("sending to " + to.host_header + ": " + ec.message());
            r = read_response();
        }
        if (!expect || r.status == 100) {
            http::write(stream, sr, ec);
            if (ec) throw std::runtime_error("sending to " + to.host_header + ": " + ec.message());
            r = read_response();
        }
        // A follower (docs/scale-out.md, "Followers") recorded nothing:
        // the change goes to the next URL, as a refused connection does.
        if (r.status == 503 && at + 1 < servers.size() && error_code(r.body) == "not_writer") {
            why = to.host_header + " follows the ledger and records no changes";
            from = at + 1;
            continue;
        }
        return r;
    }
}

std::string encode_segment(std::string_view s) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : s) {
        const bool keep = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
                          c == '.' || c == '_' || c == '~' || c == ':' || c == '@';
        if (keep) {
            out.push_back(char(c));
        } else {
            out.push_back('%');
            out.push_back(kHex[c >> 4]);
            out.push_back(kHex[c & 15]);
        }
    }
    return out;
}

namespace {

void pretty(const json::value& v, std::string& out, int indent) {
    const std::string pad(size_t(indent) * 2, ' ');
    const std::string inner(size_t(indent + 1) * 2, ' ');
    if (const auto* o = v.if_object()) {
        if (o->empty()) {
            out += "{}";
            return;
        }
        out += "{\n";
        size_t i = 0;
        for (const auto& kv : *o) {
            out += inner + json::serialize(json::value(kv.key())) + ": ";
            pretty(kv.value(), out, indent + 1);
            out += ++i < o->size() ? ",\n" : "\n";
        }
        out += pad + "}";
    } else if (const auto* a = v.if_array()) {
        if (a->empty()) {
            out += "[]";
            return;
        }
        out += "[\n";
        for (size_t i = 0; i < a->size(); ++i) {
            out += inner;
            pretty((*a)[i], out, indent + 1);
            out += i + 1 < a->size() ? ",\n" : "\n";
        }
        out += pad + "]";
    } else {
        out += consentd::json_text(v);  // plain decimals, as consentd wrote them
    }
}

}  // namespace

std::string cell(const json::value& v) {
    if (v.is_string()) return std::string(v.as_string());
    if (v.is_null()) return "-";
    if (v.is_bool()) return v.as_bool() ? "yes" : "no";
    if (v.is_number()) return std::to_string(v.to_number<uint64_t>());
    return json::serialize(v);
}

std::string pretty_json(std::string_view text) {
    json::error_code ec;
    const auto v = json::parse(text, ec);
    if (ec) return std::string(text);
    std::string out;
    pretty(v, out, 0);
    return out + "\n";
}

std::string enforcement_status(const std::string& body) {
    json::error_code ec;
    const auto v = json::parse(body, ec);
    if (ec || !v.is_object()) return "";
    const auto* e = v.as_object().if_contains("enforcement");
    if (!e || !e->is_object()) return "";
    const auto* s = e->as_object().if_contains("status");
    return s && s->is_string() ? std::string(s->as_string()) : "";
}

int print_result(std::string_view command, const ApiResult& r) {
    if (r.status >= 200 && r.status < 300) {
        std::fputs(pretty_json(r.body).c_str(), stdout);
        return 0;
    }
    std::string code, message;
    std::vector<std::string> details;
    json::error_code ec;
    const auto v = json::parse(r.body, ec);
    if (!ec && v.is_object() && v.as_object().contains("error") && v.at("error").is_object()) {
        const auto& e = v.at("error").as_object();
        if (const auto* c = e.if_contains("code"); c && c->is_string()) code = c->as_string();
        if (const auto* m = e.if_contains("message"); m && m->is_string()) message = m->as_string();
        if (const auto* d = e.if_contains("details"); d && d->is_array())
            for (const auto& x : d->as_array())
                if (x.is_string()) details.emplace_back(x.as_string());
    } else {
        message = r.body;
    }
    std::fprintf(stderr, "optgatectl %.*s: HTTP %u: %s%s%s\n", int(command.size()), command.data(), r.status,
                 code.c_str(), code.empty() ? "" : ": ", message.c_str());
    for (const auto& d : details) std::fprintf(stderr, "  %s\n", d.c_str());
    return 1;
}

std::optional<int> parse_command(int argc, char** argv, const po::options_description& opts,
                                 const po::positional_options_description& positional, std::string_view usage,
                                 po::variables_map& vm) {
    po::options_description all = opts;
    all.add_options()("help,h", "this help");
    try {
        po::store(po::command_line_parser(argc, argv).options(all).positional(positional).run(), vm);
        po::notify(vm);
    } catch (const po::error& e) {
        std::fprintf(stderr, "optgatectl %s: %s\nusage: optgatectl %.*s\n", argv[0], e.what(), int(usage.size()),
                     usage.data());
        return 2;
    }
    if (vm.count("help")) {
        std::cout << "usage: optgatectl " << usage << "\n\n" << all;
        return 0;
    }
    return std::nullopt;
}

}  // namespace optgate::ctl
