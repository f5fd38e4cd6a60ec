// optgatectl's client for the consentd API: the server URL and token from
// --server/--token/--token-file or OPTGATE_SERVER/OPTGATE_TOKEN, one HTTP/1.1
// request per call (Boost.Beast, blocking), and the printing every
// subscriber command shares.
//
// Several consentd instances may be named, comma-separated: a request goes
// to the first that accepts the connection. Only a request that was never
// sent moves on (cannot resolve, cannot connect): one sent and unanswered
// may have been carried out, and is reported instead.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/beast/http/verb.hpp>
#include <boost/json/value.hpp>
#include <boost/program_options/options_description.hpp>
#include <boost/program_options/positional_options.hpp>
#include <boost/program_options/variables_map.hpp>

namespace optgate::ctl {

inline constexpr std::string_view kDefaultServer = "http://127.0.0.1:8470";

struct ApiServer {
    std::string host;
    std::string port;
    std::string host_header;
};

struct ApiTarget {
    std::vector<ApiServer> servers;  // 1..16, tried in order
    std::string token;
};

// Adds --server, --token, --token-file to a command's options.
void add_client_options(boost::program_options::options_description& opts);
// The server and token from the parsed options or the environment; on a
// problem prints it and returns nullopt.
std::optional<ApiTarget> api_target(const boost::program_options::variables_map& vm);

struct ApiResult {
    unsigned status = 0;
    std::string body;
};

// The "enforcement"."status" of a ?wait=enforced answer ("enforced",
// "timeout", "no_dataplanes"), or "" when there is none.
std::string enforcement_status(const std::string& body);

// Throws std::runtime_error when no server can be reached (naming each and
// why), or when the one reached does not answer.
ApiResult api_request(const ApiTarget& to, boost::beast::http::verb method, const std::string& target,
                      const std::string& body = {}, std::string_view content_type = "application/json",
                      std::chrono::seconds timeout = std::chrono::seconds(30));

// A path segment with everything but unreserved characters, ':' and '@'
// percent-encoded ("/" becomes %2F).
std::string encode_segment(std::string_view s);

// A JSON value as a table cell: a string as it is, null as "-", a bool as
// "yes" or "no", a number in decimal, anything else as compact JSON.
std::string cell(const boost::json::value& v);

// JSON text indented for reading; `text` returned unchanged if it is not JSON.
std::string pretty_json(std::string_view text);

// Prints a 2xx body (pretty) to stdout and returns 0; anything else as
// "optgatectl CMD: HTTP status: code: message" plus details to stderr,
// returning 1.
int print_result(std::string_view command, const ApiResult& r);

// Parses a command line (argv[0] is the command) into `vm`; prints the
// problem or the help and returns the exit status when it should stop.
std::optional<int> parse_command(int argc, char** argv, const boost::program_options::options_description& opts,
                                 const boost::program_options::positional_options_description& positional,
                                 std::string_view usage, boost::program_options::variables_map& vm);

}  // namespace optgate::ctl
