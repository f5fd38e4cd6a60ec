// HttpParser: each case is fed whole, cut at every offset, one byte per
// piece, and at random cut points; the result must not depend on the cuts.
#include <doctest/doctest.h>

#include "test_http_util.hpp"

using namespace optgate;
using namespace optgate::httptest;
using namespace std::string_literals;

namespace {

using Ids = std::vector<std::pair<int, bool>>;

// Runs `input` under every cutting and checks the scrubbed stream and the
// identifier lines seen; returns the one-piece result for further checks.
Recorded expect(Harness& h, std::string_view input, const std::string& out, const Ids& ids) {
    return h.run_all(input, [&](const Recorded& r, const std::string& where) {
        INFO(where);
        CHECK(r.out == out);
        CHECK(r.ids == ids);
    });
}

}  // namespace

TEST_CASE("header names match case-insensitively, whole names only, split anywhere") {
    const HeaderMatcher m(kIdentifiers);
    for (std::string_view n : {"x-uidh", "X-UIDH", "x-UiDh", "X-Up-Calling-Line-ID"}) CHECK(m.find(n) != nullptr);
    CHECK(m.find("X-UIDH")->identifier == 0);
    CHECK(m.find("x-up-calling-line-id")->identifier == 3);
    for (std::string_view n : {"x-uid", "x-uidhx", "x-ui", "x", "uidh", "x-acrx", "x-up", "accept", "cookie"})
        CHECK(m.find(n) == nullptr);
    CHECK(m.find("HOST")->role == FieldRole::host);
    CHECK(m.find("Content-Length")->role == FieldRole::content_length);
    CHECK(m.find("transfer-encoding")->role == FieldRole::transfer_encoding);
    CHECK(m.find("Upgrade")->role == FieldRole::upgrade);
    CHECK(m.find("Host")->identifier == -1);

    // Names sharing prefixes: every name is found and nothing else.
    const HeaderMatcher p({{"ab", 0}, {"abc", 1}, {"abd", 2}, {"abcd", 3}, {"b", 4}});
    CHECK(p.find("ab")->identifier == 0);
    CHECK(p.find("ABC")->identifier == 1);
    CHECK(p.find("abd")->identifier == 2);
    CHECK(p.find("abcd")->identifier == 3);
    CHECK(p.find("b")->identifier == 4);
    CHECK(p.find("a") == nullptr);
    CHECK(p.find("abce") == nullptr);
    CHECK(p.find("abdd") == nullptr);
    CHECK(p.find("bb") == nullptr);

    // '^' and '~' differ only in bit 5: a naive |0x20 would confuse them.
    const HeaderMatcher t({{"x^y", 0}});
    CHECK(t.find("x^y") != nullptr);
    CHECK(t.find("x~y") == nullptr);

    // An identifier that is also a framing header is flagged.
    const HeaderMatcher c({{"content-length", 0}});
    CHECK(c.find("content-length")->conflict);
}

TEST_CASE("header-name prefixes: longest match wins, exact names before prefixes") {
    // x-nokia- (5) and x-nokia-msisdn- (6) are prefixes; x-nokia-id (7) and
    // x-uidh (0) exact names; "x" (8) a one-byte prefix in its own matcher.
    const HeaderMatcher m({{"x-uidh", 0}, {"x-nokia-id", 7}}, {{"X-Nokia-", 5}, {"x-nokia-msisdn-", 6}});
    CHECK(m.find("x-nokia-")->identifier == 5);  // the prefix itself
    CHECK(m.find("X-NOKIA-IMSI")->identifier == 5);
    CHECK(m.find("x-nokia-i")->identifier == 5);    // on the way to x-nokia-id
    CHECK(m.find("x-nokia-idx")->identifier == 5);  // past it
    CHECK(m.find("x-nokia-id")->identifier == 7);   // the exact name wins
    CHECK(m.find("x-nokia-msisdn")->identifier == 5);
    CHECK(m.find("x-nokia-msisdn-")->identifier == 6);  // the longer prefix wins
    CHECK(m.find("x-nokia-msisdn-home")->identifier == 6);
    CHECK(m.find("x-nokia-id")->prefix == false);
    CHECK(m.find("x-nokia-zz")->prefix);
    for (std::string_view n : {"x-nokia", "x-noki", "x-nokib-", "nokia-x", "x-uidhx", "host2"}) {
        INFO(n);
        CHECK(m.find(n) == nullptr);
    }
    CHECK(m.find("x-uidh")->identifier == 0);
    CHECK(m.find("Host")->role == FieldRole::host);

    const HeaderMatcher one({{"xa", 1}}, {{"x", 8}});
    CHECK(one.find("x")->identifier == 8);
    CHECK(one.find("xa")->identifier == 1);
    CHECK(one.find("xab")->identifier == 8);
    CHECK(one.find("y") == nullptr);

    // Streamed through the parser, cut anywhere: the family's values are
    // scrubbed, other fields are not.
    const std::string in =
        "GET / HTTP/1.1\r\nX-Nokia-Msisdn: 4915123\r\nX-Nokiax: keep\r\nx-nokia-id: dev-1\r\n"
        "X-NOKIA-MSISDN-HOME: 4930\r\nX-Noki: keep\r\n\r\n";
    Harness h({{"x-uidh", 0}, {"x-nokia-id", 7}}, 8, {{"x-nokia-", 5}, {"x-nokia-msisdn-", 6}});
    expect(h, in, fill_values(in, {"4915123", "dev-1", "4930"}), {{5, false}, {7, false}, {6, false}});
    // Conservative mode finds them too.
    h.conservative_start = true;
    expect(h, in, fill_values(in, {"4915123", "dev-1", "4930"}), {{5, false}, {7, false}, {6, false}});
}

TEST_CASE("identifier values are overwritten on strip, left alone on pass") {
    const std::string in =
        "GET /index.html HTTP/1.1\r\nHost: www.example.com\r\nX-UIDH: 3g4h5j6k7l\r\nAccept: */*\r\n"
        "X-ACR: acr-value-1\r\n\r\n";
    Harness h;
    const Recorded r = expect(h, in, fill_values(in, {"3g4h5j6k7l", "acr-value-1"}), {{0, false}, {1, false}});
    CHECK(r.count(Counter::http_requests) == 1);
    CHECK(r.requests == 1);
    CHECK(r.first_of_request == 1);
    CHECK(r.state == HttpState::request_start);
    CHECK(r.hosts == std::vector<std::string>{"www.example.com"});

    // The host decides: a collector host with consent passes.
    h.sink.by_host["www.example.com"] = kPass;
    expect(h, in, in, {{0, true}, {1, true}});
}

TEST_CASE("the filler is the policy's") {
    const std::string in = "GET / HTTP/1.1\r\nX-MSISDN: 15551234567\r\n\r\n";
    Harness h;
    h.sink.filler = '0';
    expect(h, in, fill_values(in, {"15551234567"}, '0'), {{2, false}});
}

TEST_CASE("names in any letter case, duplicated identifiers, empty values") {
    const std::string in =
        "POST /a HTTP/1.1\r\nx-uidh: one\r\nX-UiDh:two\r\nX-UIDH:\t three \r\nX-IMSI:\r\nX-UIDH:   \r\n"
        "Content-Length: 0\r\n\r\n";
    Harness h;
    expect(h, in, fill_values(in, {"one", "two", "three "}),
           {{0, false}, {0, false}, {0, false}, {4, false}, {0, false}});
}

TEST_CASE("obs-fold continuation lines of an identifier are scrubbed, their leading whitespace kept") {
    const std::string in =
        "GET / HTTP/1.1\r\nX-UIDH: first\r\n  second part\r\n\tthird\r\nUser-Agent: ua\r\n  ua-fold\r\n\r\n";
    Harness h;
    const std::string out = fill_values(in, {"first", "second part", "third"});
    CHECK(out.find("\r\n  xxxxxxxxxxx\r\n\txxxxx\r\n") != std::string::npos);
    expect(h, in, out, {{0, false}});
}

TEST_CASE("bare LF line endings") {
    const std::string in =
        "GET / HTTP/1.1\nHost: a.example\nX-UIDH: abc\nX-ACR: def\n  fold\n\nGET /2 HTTP/1.0\nX-UIDH: ghi\n\n";
    Harness h;
    const Recorded r = expect(h, in, fill_values(in, {"abc", "def", "fold", "ghi"}),
                              {{0, false}, {1, false}, {0, false}});
    CHECK(r.count(Counter::http_requests) == 2);
}

TEST_CASE("pipelined requests with Content-Length bodies: body bytes are never fields") {
    const std::string body = "X-UIDH: not-a-header\r\n\r\nGET /fake HTTP/1.1\r\n";
    const std::string in = "POST /a HTTP/1.1\r\nContent-Length: " + std::to_string(body.size()) +
                           "\r\nX-UIDH: v1\r\n\r\n" + body +
                           "GET /b HTTP/1.1\r\nX-UIDH: v2\r\n\r\n"
                           "PUT /c HTTP/1.1\r\ncontent-length:  5 , 5\r\n\r\nX-ACRGET /d HTTP/1.1\r\nX-ACR: v3\r\n\r\n";
    Harness h;
    const Recorded r = expect(h, in, fill_values(in, {"v1", "v2", "v3"}), {{0, false}, {0, false}, {1, false}});
    CHECK(r.count(Counter::http_requests) == 4);
    CHECK(r.first_of_request == 3);
    CHECK(r.count(Counter::http_conservative_flows) == 0);
}

TEST_CASE("chunked bodies: sizes, extensions, data that looks like fields, trailers scrubbed") {
    const std::string in =
        "POST /up HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\nX-UIDH: h1\r\n\r\n"
        "5;name=\"v\"\r\nabcde\r\n"
        "1A\r\n\r\nX-UIDH: inside-data!\r\n\r\n\r\n"
        "0\r\nX-UIDH: trailer-id\r\nChecksum: 1\r\nContent-Length: 12\r\n\r\n"
        "GET /next HTTP/1.1\r\nX-ACR: after\r\n\r\n";
    Harness h;
    const Recorded r = expect(h, in, fill_values(in, {"h1", "trailer-id", "after"}),
                              {{0, false}, {0, false}, {1, false}});
    CHECK(r.count(Counter::http_requests) == 2);
    CHECK(r.first_of_request == 2);  // the trailer belongs to the first request
    CHECK(r.count(Counter::http_conservative_flows) == 0);
    CHECK(r.state == HttpState::request_start);
}

TEST_CASE("chunked with bare LF framing and multiple Transfer-Encoding fields") {
    const std::string in =
        "POST / HTTP/1.1\nTransfer-Encoding: gzip\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\n"
        "GET / HTTP/1.1\nX-UIDH: ID1\n\n";
    Harness h;
    const Recorded r = expect(h, in, fill_values(in, {"ID1"}), {{0, false}});
    CHECK(r.count(Counter::http_conservative_flows) == 0);
}

TEST_CASE("the Host decides only when it comes before the identifier") {
    Harness h;
    h.sink.by_host["ads.example"] = kPass;
    SUBCASE("before: normalised (case, port, trailing dot)") {
        const std::string in = "GET / HTTP/1.1\r\nHost: ADS.Example.:8080\r\nX-UIDH: v\r\n\r\n";
        const Recorded r = expect(h, in, in, {{0, true}});
        CHECK(r.hosts == std::vector<std::string>{"ads.example"});
    }
    SUBCASE("after: host unknown, request decision") {
        const std::string in = "GET / HTTP/1.1\r\nX-UIDH: v\r\nHost: ads.example\r\n\r\n";
        expect(h, in, fill_values(in, {"v"}), {{0, false}});
    }
    SUBCASE("between two identifiers: each is decided when its name ends") {
        const std::string in = "GET / HTTP/1.1\r\nX-UIDH: v1\r\nHost: ads.example\r\nX-ACR: v2\r\n\r\n";
        const Recorded r = expect(h, in, fill_values(in, {"v1"}), {{0, false}, {1, true}});
        CHECK(r.first_of_request == 1);
    }
    SUBCASE("missing") {
        const std::string in = "GET / HTTP/1.0\r\nX-UIDH: v\r\n\r\n";
        const Recorded r = expect(h, in, fill_values(in, {"v"}), {{0, false}});
        CHECK(r.hosts.empty());
    }
    SUBCASE("absolute-form target: the Host field is not trusted") {
        const std::string in = "GET http://ads.example/x HTTP/1.1\r\nHost: ads.example\r\nX-UIDH: v\r\n\r\n";
        const Recorded r = expect(h, in, fill_values(in, {"v"}), {{0, false}});
        CHECK(r.hosts.empty());
    }
    SUBCASE("two Host fields: back to host unknown") {
        const std::string in = "GET / HTTP/1.1\r\nHost: ads.example\r\nHost: other.example\r\nX-UIDH: v\r\n\r\n";
        expect(h, in, fill_values(in, {"v"}), {{0, false}});
    }
    SUBCASE("folded Host: host unknown") {
        const std::string in = "GET / HTTP/1.1\r\nHost: ads.example\r\n .more\r\nX-UIDH: v\r\n\r\n";
        expect(h, in, fill_values(in, {"v"}), {{0, false}});
    }
    SUBCASE("the next request starts without a host again") {
        const std::string in =
            "GET / HTTP/1.1\r\nHost: ads.example\r\nX-UIDH: v1\r\n\r\nGET / HTTP/1.1\r\nX-UIDH: v2\r\n\r\n";
        expect(h, in, fill_values(in, {"v2"}), {{0, true}, {0, false}});
    }
    SUBCASE("hosts not used by the policy are not looked at") {
        h.use_host = false;
        const std::string in = "GET / HTTP/1.1\r\nHost: ads.example\r\nX-UIDH: v\r\n\r\n";
        const Recorded r = expect(h, in, fill_values(in, {"v"}), {{0, false}});
        CHECK(r.hosts.empty());
    }
}

TEST_CASE("a split Host needs a buffer; none free means host unknown (fail closed)") {
    const std::string in = "GET / HTTP/1.1\r\nHost: ads.example\r\nX-UIDH: v\r\n\r\n";
    Harness h(kIdentifiers, 0);
    h.sink.by_host["ads.example"] = kPass;
    const Recorded whole = h.run(in);
    CHECK(whole.out == in);  // in one piece no buffer is needed
    const size_t cut = in.find("example");
    const Recorded split = h.run(in, {cut});
    CHECK(split.out == fill_values(in, {"v"}));
    CHECK(split.count(Counter::http_host_no_buffer) == 1);

    Harness ok(kIdentifiers, 1);
    ok.sink.by_host["ads.example"] = kPass;
    CHECK(ok.run(in, {cut}).out == in);
    CHECK(ok.hosts().free_count() == 1);  // given back
}

TEST_CASE("normalize_host") {
    char buf[HostBuffers::kBytes];
    CHECK(normalize_host("Example.COM", buf) == "example.com");
    CHECK(normalize_host(" a.example:80 ", buf) == "a.example");
    CHECK(normalize_host("a.example.", buf) == "a.example");
    CHECK(normalize_host("a.example:", buf) == "a.example");
    CHECK(normalize_host("[2001:DB8::1]:443", buf) == "[2001:db8::1]");
    CHECK(normalize_host("[2001:db8::1]", buf) == "[2001:db8::1]");
    for (std::string_view bad : {"", "   ", "a b", "a:b:c", "a.example:8x", "user@a.example", "a/b", "[::1", "[::1]x"})
        CHECK(normalize_host(bad, buf).empty());
    CHECK(normalize_host(std::string(300, 'a'), buf).empty());
}

TEST_CASE("keep-alive: each request takes its own decision at its first byte") {
    const std::string in =
        "GET /1 HTTP/1.1\r\nX-UIDH: a\r\n\r\nGET /2 HTTP/1.1\r\nX-UIDH: b\r\n\r\n\r\nGET /3 HTTP/1.1\r\nX-UIDH: "
        "c\r\n\r\n";
    Harness h;
    h.sink.requests = {kPass, kStrip, kPass};
    const Recorded r = expect(h, in, fill_values(in, {"b"}), {{0, true}, {0, false}, {0, true}});
    CHECK(r.requests == 3);
}

TEST_CASE("framing errors go to conservative mode, which still scrubs identifier lines") {
    Harness h;
    h.sink.conservative = kOutOfSync;
    struct Case {
        const char* name;
        std::string in;
        Counter why;
        std::vector<std::string_view> scrubbed;
    };
    // Values that must be scrubbed are "ID1", "ID2"; anything else must stay.
    const std::vector<Case> cases = {
        {"conflicting lengths",
         "POST / HTTP/1.1\r\nContent-Length: 5, 6\r\nX-UIDH: ID1\r\n\r\nX-UIDH: ID2\r\n",
         Counter::http_error_content_length,
         {"ID1", "ID2"}},
        {"two different lengths",
         "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nX-ACR: ID1\r\n",
         Counter::http_error_content_length,
         {"ID1"}},
        {"length not a number",
         "POST / HTTP/1.1\r\nContent-Length: 5x\r\nX-UIDH: ID1\r\n",
         Counter::http_error_content_length,
         {"ID1"}},
        {"empty length",
         "POST / HTTP/1.1\r\nContent-Length:\r\nX-UIDH: ID1\r\n",
         Counter::http_error_content_length,
         {"ID1"}},
        {"length overflow",
         "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\nX-UIDH: ID1\r\n",
         Counter::http_error_content_length,
         {"ID1"}},
        {"length and chunked",
         "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nX-UIDH: ID1\r\n",
         Counter::http_error_content_length,
         {"ID1"}},
        {"folded length",
         "POST / HTTP/1.1\r\nContent-Length: 3\r\n 4\r\nX-UIDH: ID1\r\n",
         Counter::http_error_content_length,
         {"ID1"}},
        {"coding not chunked",
         "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\nX-UIDH: ID1\r\n",
         Counter::http_error_transfer_encoding,
         {"ID1"}},
        {"coding with parameters",
         "POST / HTTP/1.1\r\nTransfer-Encoding: chunked;q=1\r\nX-UIDH: ID1\r\n",
         Counter::http_error_transfer_encoding,
         {"ID1"}},
        {"chunked on HTTP/1.0",
         "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\nX-UIDH: ID1\r\n",
         Counter::http_error_transfer_encoding,
         {"ID1"}},
        {"bad chunk size",
         "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nX-UIDH: ID1\r\n",
         Counter::http_error_chunk,
         {"ID1"}},
        {"chunk size too long",
         "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\nX-UIDH: ID1\r\n",
         Counter::http_error_chunk,
         {"ID1"}},
        {"chunk data without CRLF",
         "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX-UIDH: ID1\r\nX-UIDH: ID2\r\n",
         Counter::http_error_chunk,
         {"ID1", "ID2"}},
        {"bad name byte", "GET / HTTP/1.1\r\nX(UIDH: zz\r\nX-UIDH: ID1\r\n", Counter::http_error_header_line, {"ID1"}},
        {"line without colon", "GET / HTTP/1.1\r\nX-UIDH\r\nX-UIDH: ID1\r\n", Counter::http_error_header_line, {"ID1"}},
        {"whitespace before colon", "GET / HTTP/1.1\r\nX-UIDH : ID1\r\n", Counter::http_error_header_line, {"ID1"}},
        {"whitespace before the first field",
         "GET / HTTP/1.1\r\n X-UIDH: zz\r\nX-UIDH: ID1\r\n",
         Counter::http_error_header_line,
         {"ID1"}},
        {"bare CR in a value",
         "GET / HTTP/1.1\r\nX-UIDH: ID1\rID2\r\nAccept: *\r\n",
         Counter::http_error_bare_cr,
         {"ID1", "ID2"}},
        {"bare CR ends a value for a lenient server",
         "GET / HTTP/1.1\r\nAccept: zz\rX-UIDH: ID1\r\n",
         Counter::http_error_bare_cr,
         {"ID1"}},
        {"bad request line", "GET /a b HTTP/1.1\r\nX-UIDH: ID1\r\n", Counter::http_error_request_line, {"ID1"}},
        {"HTTP/0.9", "GET /\r\nX-UIDH: ID1\r\n", Counter::http_error_request_line, {"ID1"}},
        {"unknown version", "GET / HTTP/3.0\r\nX-UIDH: ID1\r\n", Counter::http_error_request_line, {"ID1"}},
        {"non-HTTP bytes", "\x01\x02\x03\nX-UIDH: ID1\r\n"s, Counter::http_bail_non_http, {"ID1"}},
        {"TLS on port 80",
         "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\nX-UIDH: ID1\r\n"s,
         Counter::http_bail_tls,
         {"ID1"}},
        {"HTTP/2 preface",
         "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00\x00\x00\x00\x00\nX-UIDH: ID1\r\n"s,
         Counter::http_bail_h2,
         {"ID1"}},
        {"CONNECT",
         "CONNECT ads.example:443 HTTP/1.1\r\nHost: ads.example:443\r\nX-UIDH: ID1\r\n\r\n\x16\x03\x01\r\nX-UIDH: "
         "ID2\r\n",
         Counter::http_bail_connect,
         {"ID1", "ID2"}},
        {"Upgrade",
         "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-UIDH: ID1\r\n\r\n\x81\x05hello\nx-uidh: "
         "ID2\r\n",
         Counter::http_bail_upgrade,
         {"ID1", "ID2"}},
    };
    for (const Case& c : cases) {
        INFO(std::string(c.name));
        const std::string out = fill_values(c.in, c.scrubbed);
        const Recorded r = h.run_all(
            c.in,
            [&](const Recorded& got, const std::string& where) {
                INFO(where);
                CHECK(got.out == out);
                CHECK(got.count(c.why) == 1);
                CHECK(got.count(Counter::http_conservative_flows) == 1);
            },
            10);
        CHECK(r.state >= HttpState::c_line_start);  // conservative for the rest of the flow
        for (const auto& [id, passed] : r.ids) CHECK_FALSE(passed);
    }
}

TEST_CASE("conservative mode uses its own decision, and passes when it says pass") {
    Harness h;
    h.conservative_start = true;
    h.sink.conservative = kPass;
    const std::string in = "ue-of-something\r\nX-UIDH: a\r\n";
    expect(h, in, in, {{0, true}});
    h.sink.conservative = kOutOfSync;
    expect(h, in, fill_values(in, {"a"}), {{0, false}});
}

TEST_CASE("conservative mode: names split across segments, folds, line starts") {
    Harness h;
    h.conservative_start = true;
    SUBCASE("identifier at the very start of the first segment") {
        const std::string in = "X-UIDH: at-start\r\nfoo\r\n";
        expect(h, in, fill_values(in, {"at-start"}), {{0, false}});
    }
    SUBCASE("bodies, folds, bare LF, whitespace before colon, any case") {
        const std::string in =
            "\x00\x01binary\nx-uIdH:  ID1\r\n  ID2-fold\r\nNot-X-UIDH: keep\r\nX-UIDH-Not: keep\nX-ACR \t: ID3\n"
            "GET / HTTP/1.1\r\nX-UIDHX: keep\r\n:X-UIDH: keep\r\nX-IMSI: ID4\r"s;
        expect(h, in, fill_values(in, {"ID1", "ID2-fold", "ID3", "ID4"}), {{0, false}, {1, false}, {4, false}});
    }
    SUBCASE("a bare CR starts a line too") {
        const std::string in = "abc\rX-UIDH: v\r\n";
        expect(h, in, fill_values(in, {"v"}), {{0, false}});
    }
}

TEST_CASE("a policy change while a name is half read scrubs that field (fail closed)") {
    const HeaderMatcher m(kIdentifiers);
    HostBuffers hosts(1);
    Recorded rec;
    const std::string in = "GET / HTTP/1.1\r\nX-Other: v1\r\nAccept: a\r\n";
    rec.out = in;
    TestSink sink;
    sink.rec = &rec;
    HttpParserState st;
    HttpParser::reset(st, hosts, 1);
    const size_t cut = in.find("Other");
    std::vector<uint8_t> a(in.begin(), in.begin() + long(cut)), b(in.begin() + long(cut), in.end());
    sink.piece = a.data();
    HttpParser::feed(st, HttpParseContext{m, hosts, 1, true}, a.data(), uint32_t(a.size()), sink);
    CHECK(HttpParser::in_identifier_line(st));  // "X-" may still become an identifier
    sink.piece = b.data();
    sink.base = cut;
    HttpParser::feed(st, HttpParseContext{m, hosts, 2, true}, b.data(), uint32_t(b.size()), sink);
    CHECK(rec.out == fill_values(in, {"v1"}));
    CHECK(rec.count(Counter::http_policy_resync) == 1);
    CHECK(rec.ids == Ids{{-1, false}});
    CHECK(HttpParser::conservative(st));
}

TEST_CASE("gaps inside a known-length body can be skipped, nowhere else") {
    const HeaderMatcher m(kIdentifiers);
    HostBuffers hosts(1);
    Recorded rec;
    TestSink sink;
    sink.rec = &rec;
    const std::string head = "POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n";
    rec.out = head + "0123456789GET / HTTP/1.1\r\nX-UIDH: v\r\n\r\n";
    HttpParserState st;
    HttpParser::reset(st, hosts, 1);
    const HttpParseContext cx{m, hosts, 1, true};
    CHECK_FALSE(HttpParser::can_skip(st, 1));
    std::vector<uint8_t> a(head.begin(), head.end());
    sink.piece = a.data();
    HttpParser::feed(st, cx, a.data(), uint32_t(a.size()), sink);
    CHECK(st.state == HttpState::body);
    CHECK(HttpParser::can_skip(st, 10));
    CHECK_FALSE(HttpParser::can_skip(st, 11));
    HttpParser::skip(st, hosts, 10);  // the whole body unseen
    CHECK(st.state == HttpState::request_start);
    const std::string rest = "GET / HTTP/1.1\r\nX-UIDH: v\r\n\r\n";
    std::vector<uint8_t> b(rest.begin(), rest.end());
    sink.piece = b.data();
    sink.base = head.size() + 10;
    HttpParser::feed(st, cx, b.data(), uint32_t(b.size()), sink);
    CHECK(rec.ids == Ids{{0, false}});
    const std::string expected = fill_values(rest, {"v"});
    CHECK(std::string(b.begin(), b.end()) == expected);
}

TEST_CASE("in_identifier_line marks the states whose loss could leak") {
    Harness h;
    auto state_after = [&](std::string_view in) {
        const HeaderMatcher& m = h.matcher();
        HttpParserState st;
        HttpParser::reset(st, h.hosts(), 1);
        TestSink s;
        Recorded rec;
        rec.out = std::string(in);
        s.rec = &rec;
        std::vector<uint8_t> b(in.begin(), in.end());
        s.piece = b.data();
        HttpParser::feed(st, HttpParseContext{m, h.hosts(), 1, true}, b.data(), uint32_t(b.size()), s);
        const bool r = HttpParser::in_identifier_line(st);
        HttpParser::release(st, h.hosts());
        return r;
    };
    CHECK(state_after("GET / HTTP/1.1\r\nX-UI"));
    CHECK(state_after("GET / HTTP/1.1\r\nX-UIDH:"));
    CHECK(state_after("GET / HTTP/1.1\r\nX-UIDH: abc"));
    CHECK(state_after("GET / HTTP/1.1\r\nX-UIDH: abc\r"));
    CHECK(state_after("GET / HTTP/1.1\r\nX-UIDH: abc\r\n"));  // a fold may follow
    CHECK_FALSE(state_after("GET / HTTP/1.1\r\nX-UIDH: abc\r\nAccept: x"));
    CHECK_FALSE(state_after("GET / HTTP/1.1\r\nUser-Age"));
    CHECK_FALSE(state_after("GET / HTTP/1.1\r\nX-UIDH: abc\r\n\r\n"));
    CHECK_FALSE(state_after("GET / HTT"));
    CHECK_FALSE(state_after("POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\nabc"));
}

// ---- Global Privacy Control (docs/http.md#global-privacy-control)

TEST_CASE("Sec-GPC: 1 before an identifier strips it despite consent, wherever the segments are cut") {
    const std::string in = "GET / HTTP/1.1\r\nsec-gpc:  1 \r\nX-UIDH: uidh-value\r\nAccept: */*\r\n\r\n";
    Harness h;
    h.sink.requests = {kPass};
    const Recorded r = expect(h, in, fill_values(in, {"uidh-value"}), {{0, false}});
    CHECK(r.count(Counter::http_gpc_requests) == 1);
    CHECK(r.count(Counter::http_gpc_stripped) == 1);
    CHECK(r.count(Counter::http_gpc_too_late) == 0);

    // A purpose that does not honour it: the identifier passes.
    h.sink.honour_gpc = false;
    const Recorded off = expect(h, in, in, {{0, true}});
    CHECK(off.count(Counter::http_gpc_requests) == 1);
    CHECK(off.count(Counter::http_gpc_stripped) == 0);

    // A strip stays a strip, and is not counted as GPC's doing.
    h.sink.honour_gpc = true;
    h.sink.requests = {kStrip};
    const Recorded strip = expect(h, in, fill_values(in, {"uidh-value"}), {{0, false}});
    CHECK(strip.count(Counter::http_gpc_stripped) == 0);
}

TEST_CASE("Sec-GPC: only the value 1 is the signal") {
    Harness h;
    h.sink.requests = {kPass};
    for (std::string v : {"0", "11", "1 1", "1,1", "", "true", "yes"}) {
        INFO("Sec-GPC: '" << v << "'");
        const std::string in = "GET / HTTP/1.1\r\nSec-GPC: " + v + "\r\nX-UIDH: u\r\n\r\n";
        const Recorded r = expect(h, in, in, {{0, true}});
        CHECK(r.count(Counter::http_gpc_requests) == 0);
    }
    for (std::string v : {"1", "1 ", "1\t "}) {
        const std::string in = "GET / HTTP/1.1\r\nSec-GPC: " + v + "\r\nX-UIDH: u\r\n\r\n";
        expect(h, in, fill_values(in, {"u"}), {{0, false}});
    }
}

TEST_CASE("an identifier before Sec-GPC: 1 is stripped in the same segment, too late after an earlier one") {
    const std::string in = "GET / HTTP/1.1\r\nX-UIDH: uidh-value\r\n X-folded\r\nSec-GPC: 1\r\nX-MSISDN: 4915\r\n\r\n";
    const std::string all = fill_values(in, {"uidh-value", "X-folded", "4915"});
    const std::string late = fill_values(in, {"4915"});
    const size_t colon = in.find("X-UIDH:") + 6;            // name_done consumes the ':'
    const size_t gpc_end = in.find("Sec-GPC: 1\r\n") + 10;  // the value's end, where the signal is read
    Harness h;
    h.sink.requests = {kPass};
    const Recorded whole = h.run(in);
    CHECK(whole.out == all);
    CHECK(whole.ids == Ids{{0, false}, {2, false}});
    CHECK(whole.count(Counter::http_gpc_stripped) == 2);
    CHECK(whole.count(Counter::http_gpc_too_late) == 0);
    for (size_t k = 1; k < in.size(); ++k) {
        INFO("cut at " << k);
        const Recorded r = h.run(in, {k});
        if (k <= colon || k > gpc_end) {  // the identifier's name and the signal in one piece
            CHECK(r.out == all);
            CHECK(r.count(Counter::http_gpc_too_late) == 0);
        } else {  // the line was decided, and left, before the signal came
            CHECK(r.out == late);
            CHECK(r.ids == Ids{{0, true}, {2, false}});
            CHECK(r.count(Counter::http_gpc_too_late) == 1);
        }
    }
}

TEST_CASE("Sec-GPC: held lines beyond the sink's room pass and are counted too late") {
    const std::string in = "GET / HTTP/1.1\r\nX-UIDH: a\r\nX-ACR: b\r\nSec-GPC: 1\r\n\r\n";
    Harness h;
    h.sink.requests = {kPass};
    h.sink.hold_lines = 1;
    const Recorded r = h.run(in);
    CHECK(r.out == fill_values(in, {"a"}));
    CHECK(r.ids == Ids{{0, false}, {1, true}});
    CHECK(r.count(Counter::http_gpc_too_late) == 1);
    h.sink.hold_lines = 4;
    h.sink.hold_ranges = 0;  // a value whose bytes could not be remembered
    const Recorded lost = h.run(in);
    CHECK(lost.out == in);
    CHECK(lost.ids == Ids{{0, true}, {1, true}});
    CHECK(lost.count(Counter::http_gpc_too_late) == 1);
}

TEST_CASE("Sec-GPC: per request; with a Host after it; not in trailers or conservative mode") {
    Harness h;
    h.sink.requests = {kPass};
    // Pipelined: the signal of the first request does not reach the second.
    const std::string two =
        "GET /1 HTTP/1.1\r\nSec-GPC: 1\r\nX-UIDH: one\r\n\r\nGET /2 HTTP/1.1\r\nX-UIDH: two\r\n\r\n";
    const Recorded r = expect(h, two, fill_values(two, {"one"}), {{0, false}, {0, true}});
    CHECK(r.count(Counter::http_gpc_requests) == 1);

    // A Host after the signal retakes the decision; the signal still applies.
    h.sink.by_host["ads.example.net"] = kPass;
    const std::string host = "GET / HTTP/1.1\r\nSec-GPC: 1\r\nHost: ads.example.net\r\nX-UIDH: v\r\n\r\n";
    expect(h, host, fill_values(host, {"v"}), {{0, false}});

    // Trailers come after the header section has left: Sec-GPC there is not read.
    const std::string trailer =
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nX-UIDH: head\r\n\r\n0\r\nSec-GPC: 1\r\nX-UIDH: tail\r\n\r\n";
    const Recorded t = h.run(trailer);
    CHECK(t.out == trailer);
    CHECK(t.count(Counter::http_gpc_requests) == 0);

    // Conservative mode looks for identifier names only.
    h.sink.conservative = kPass;
    h.conservative_start = true;
    const std::string mid = "Sec-GPC: 1\r\nX-UIDH: v\r\n\r\n";
    const Recorded c = expect(h, mid, mid, {{0, true}});
    CHECK(c.count(Counter::http_gpc_requests) == 0);
}
