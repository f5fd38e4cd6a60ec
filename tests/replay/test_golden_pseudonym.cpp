// Golden replays of per-collector pseudonyms (docs/http.md#pseudonyms): the
// shipped example policy (see test_golden_http.cpp for who consents to
// what) with web-analytics (198.51.100.0/24) and metrics-hosts
// (*.metrics.example) set to `deliver: pseudonym`, keys given with
// --pseudonym-keys. The expected pseudonyms are not written here: the test
// checks what they must be (same length and character class, not the
// value, the same for the same value and collector, different for another
// collector) and that every other byte, the sequence numbers and the
// checksums are as sent.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>

#include "golden_support.hpp"
#include "packet_builder.hpp"

using namespace optgate;
using namespace optgate::test;
using golden::Conn;
using golden::replay;

namespace {

constexpr std::string_view kUidhValue = "0123456789abcdef0123456789abcdef0123";  // hex, 36 bytes
constexpr std::string_view kMsisdnValue = "12075550123";                         // digits
constexpr std::string_view kAcrValue = "QUNSLXZhbHVlLTEyMzQ1Ng==";               // base64, padded

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The example policy with two collectors that receive pseudonyms.
struct PseudonymPolicy {
    TempDir dir;
    std::string policy = dir.file("policy.yaml");
    std::string keys = dir.file("keys.txt");
    PseudonymPolicy() {
        std::string text = slurp(golden::example_policy());
        for (const char* anchor :
             {"description: Example Analytics Inc., web audience measurement\n",
              "description: Example Metrics, app analytics SDK endpoints (matched by HTTP Host)\n"}) {
            const size_t at = text.find(anchor);
            REQUIRE(at != std::string::npos);
            text.insert(at + std::strlen(anchor), "    deliver: pseudonym\n    rotate: 30d\n");
        }
        std::ofstream(policy) << text;
        std::ofstream(keys) << "# collector key\n"
                               "web-analytics 000102030405060708090a0b0c0d0e0f\n"
                               "metrics-hosts f0e0d0c0b0a090807060504030201000\n";
    }
};

std::string request(std::string_view host, std::string_view uidh, std::string_view msisdn, std::string_view acr) {
    return "GET /p HTTP/1.1\r\nHost: " + std::string(host) + "\r\nX-UIDH: " + std::string(uidh) +
           "\r\nX-MSISDN: " + std::string(msisdn) + "\r\nX-ACR: " + std::string(acr) + "\r\nAccept: */*\r\n\r\n";
}

// The value of header `name` in the payload text.
std::string value_of(std::string_view text, std::string_view name) {
    const size_t at = text.find(std::string(name) + ": ");
    REQUIRE(at != std::string_view::npos);
    const size_t from = at + name.size() + 2;
    return std::string(text.substr(from, text.find("\r\n", from) - from));
}

std::string payload_text(const Bytes& frame, size_t payload_len) {
    return std::string(frame.end() - std::ptrdiff_t(payload_len), frame.end());
}

bool all_of_class(std::string_view s, std::string_view alphabet) {
    return s.find_first_not_of(alphabet) == std::string_view::npos;
}

// Everything but the three values is as sent; returns the values out.
struct Out {
    std::string uidh, msisdn, acr;
};
Out check_frame(const Bytes& in, const Bytes& out, std::string_view req) {
    INFO("in:\n" << hexdump(in) << "out:\n" << hexdump(out));
    REQUIRE(out.size() == in.size());
    CHECK(verify_checksums(out).ok());
    const std::string o = payload_text(out, req.size());
    Out v{value_of(o, "X-UIDH"), value_of(o, "X-MSISDN"), value_of(o, "X-ACR")};
    // The output with its values put back is the input, headers included
    // (the TCP checksum aside, which the values change).
    std::string restored = o;
    for (auto [name, raw] : {std::pair{"X-UIDH", kUidhValue}, {"X-MSISDN", kMsisdnValue}, {"X-ACR", kAcrValue}}) {
        const size_t at = restored.find(std::string(name) + ": ") + std::strlen(name) + 2;
        restored.replace(at, raw.size(), raw);
    }
    CHECK(restored == std::string(req));
    CHECK(std::equal(in.begin(), in.end() - std::ptrdiff_t(req.size()) - 20 + 16,
                     out.begin()));  // Ethernet, IP and TCP up to the checksum: same seq, same length
    return v;
}

}  // namespace

TEST_CASE("golden: pseudonym collectors get same-length, same-class pseudonyms; others raw or stripped") {
    const PseudonymPolicy pp;
    const Conn analytics1{"100.64.0.10", "198.51.100.7", 41001};  // sub-1001: analytics, pseudonym
    const Conn analytics2{"100.64.0.11", "198.51.100.9", 41002};  // sub-1002: analytics, pseudonym
    const Conn metrics{"100.64.0.10", "198.18.7.7", 41003};       // sub-1001 via host: metrics-hosts
    const Conn no_consent{"100.64.1.20", "198.51.100.7", 41004};  // sub-1003: advertising only
    const Conn adnet{"100.64.0.10", "203.0.113.5", 41005};        // sub-1001 to a raw collector
    const std::string plain = request("www.example.org", kUidhValue, kMsisdnValue, kAcrValue);
    const std::string metrics_req = request("sdk.metrics.example", kUidhValue, kMsisdnValue, kAcrValue);
    const std::vector<Bytes> frames = {
        analytics1.syn(),
        analytics1.data(0, plain),
        analytics1.data(0, plain),  // and its retransmission
        analytics2.syn(),
        analytics2.data(0, plain),
        metrics.syn(),
        metrics.data(0, metrics_req),
        no_consent.syn(),
        no_consent.data(0, plain),
        adnet.syn(),
        adnet.data(0, plain),
    };
    const auto r = replay(frames, pp.policy, golden::example_consent(), {"--pseudonym-keys", pp.keys});
    REQUIRE(r.output.size() == frames.size());

    const Out a1 = check_frame(frames[1], r.output[1].data, plain);
    CHECK(a1.uidh != kUidhValue);
    CHECK(a1.uidh.size() == kUidhValue.size());
    CHECK(all_of_class(a1.uidh, "0123456789abcdef"));  // lowercase hex stays lowercase hex
    CHECK(a1.msisdn != kMsisdnValue);
    CHECK(all_of_class(a1.msisdn, "0123456789"));
    CHECK(a1.acr != kAcrValue);
    CHECK(a1.acr.substr(a1.acr.size() - 2) == "==");  // padding in place
    CHECK(all_of_class(a1.acr.substr(0, a1.acr.size() - 2),
                       "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"));
    // The retransmission leaves with the same bytes.
    CHECK(r.output[2].data == r.output[1].data);
    // Another subscriber, the same value, the same collector: the same pseudonym.
    const Out a2 = check_frame(frames[4], r.output[4].data, plain);
    CHECK(a2.uidh == a1.uidh);
    CHECK(a2.msisdn == a1.msisdn);
    CHECK(a2.acr == a1.acr);
    // Another collector (another key): another pseudonym.
    const Out m = check_frame(frames[6], r.output[6].data, metrics_req);
    CHECK(m.uidh != a1.uidh);
    CHECK(m.uidh != kUidhValue);
    CHECK(all_of_class(m.uidh, "0123456789abcdef"));
    // No consent: stripped as ever.
    const Out s = check_frame(frames[8], r.output[8].data, plain);
    CHECK(s.uidh == std::string(kUidhValue.size(), 'x'));
    CHECK(s.msisdn == std::string(kMsisdnValue.size(), 'x'));
    // A collector with `deliver: raw` (the default): byte for byte as sent.
    CHECK(r.output[10].data == frames[10]);

    // Three values in each of three requests; the retransmission is given
    // the recorded rewrite, not parsed (nor counted) again.
    CHECK(r.counter("http_pseudonymised") == 9);
    CHECK(r.counter("verdict_pass_pseudonym") == 3);
    CHECK(r.counter("verdict_pass_consent") == 1);
    CHECK(r.counter("http_pseudonym_split") == 0);
    // Pseudonym passes count as passed, in rows of their own.
    CHECK(r.passed_to("web-analytics") == 6);
    CHECK(r.passed_to("metrics-hosts") == 3);
    bool pseudonym_row = false;
    for (const auto& v : r.report.at("disclosures").as_array()) {
        const auto& o = v.as_object();
        if (o.at("destination").as_string() == "web-analytics" &&
            o.at("identifier").as_string() == "Verizon unique identifier header (pseudonym)")
            pseudonym_row = o.at("passed").to_number<uint64_t>() == 1;
    }
    CHECK(pseudonym_row);
}

TEST_CASE("golden: a pseudonym collector without a key, or a value split across segments, is stripped") {
    const PseudonymPolicy pp;
    const Conn c{"100.64.0.10", "198.51.100.7", 42001};
    const std::string req = request("www.example.org", kUidhValue, kMsisdnValue, kAcrValue);
    SUBCASE("no key") {
        const auto r = replay({c.syn(), c.data(0, req)}, pp.policy);
        const Out v = check_frame(c.data(0, req), r.output[1].data, req);
        CHECK(v.uidh == std::string(kUidhValue.size(), 'x'));
        CHECK(v.acr == std::string(kAcrValue.size(), 'x'));
        CHECK(r.counter("verdict_strip_no_pseudonym_key") == 1);
        CHECK(r.counter("http_pseudonymised") == 0);
    }
    SUBCASE("split value") {
        // The X-UIDH value is cut after its 10th byte.
        const size_t cut = req.find("X-UIDH: ") + 8 + 10;
        const std::string first = req.substr(0, cut), second = req.substr(cut);
        const auto r = replay({c.syn(), c.data(0, first), c.data(cut, second)}, pp.policy, golden::example_consent(),
                              {"--pseudonym-keys", pp.keys});
        REQUIRE(r.output.size() == 3);
        const std::string out = payload_text(r.output[1].data, first.size()) +
                                payload_text(r.output[2].data, second.size());
        CHECK(value_of(out, "X-UIDH") == std::string(kUidhValue.size(), 'x'));  // no byte of it out
        CHECK(value_of(out, "X-MSISDN") != kMsisdnValue);                       // whole: a pseudonym
        CHECK(value_of(out, "X-MSISDN").find('x') == std::string::npos);
        CHECK(r.counter("http_pseudonym_split") == 1);
        CHECK(r.counter("http_pseudonymised") == 2);
    }
}
