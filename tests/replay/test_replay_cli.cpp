// optgate-replay's command line and its handling of bad input: exit 2, one
// clear message naming the file (with line:column for YAML), and never an
// OUT file that looks complete.
#include <doctest/doctest.h>

#include <filesystem>

#include "golden_support.hpp"
#include "packet_builder.hpp"

using namespace optgate;
using namespace optgate::test;
using golden::run_replay;
using golden::TempDir;

namespace {

std::string sample_pcap(const TempDir& tmp) {
    std::string path = tmp.file("in.pcap");
    write_pcap(path, {{1, PacketBuilder().ipv4("100.64.0.10", "203.0.113.5").tcp(1, 80).build()}});
    return path;
}

bool contains(const std::string& haystack, const std::string& needle) {
    return haystack.find(needle) != std::string::npos;
}

}  // namespace

TEST_CASE("usage errors exit 2 with the usage line") {
    auto r = run_replay({});
    CHECK(r.exit_code == 2);
    CHECK(contains(r.output, "usage: optgate-replay"));
    r = run_replay({"--policy", golden::example_policy(), "in.pcap", "out.pcap"});
    CHECK(r.exit_code == 2);
    CHECK(contains(r.output, "--consent"));
    r = run_replay({"--bogus"});
    CHECK(r.exit_code == 2);
    r = run_replay({"--help"});
    CHECK(r.exit_code == 0);
    CHECK(contains(r.output, "--report"));
}

TEST_CASE("missing files are named") {
    TempDir tmp;
    const std::string in = sample_pcap(tmp);
    const std::string out = tmp.file("out.pcap");
    auto r = run_replay({"--policy", tmp.file("nope.yaml"), "--consent", golden::example_consent(), in, out});
    CHECK(r.exit_code == 2);
    CHECK(contains(r.output, tmp.file("nope.yaml")));
    r = run_replay({"--policy", golden::example_policy(), "--consent", tmp.file("gone.yaml"), in, out});
    CHECK(r.exit_code == 2);
    CHECK(contains(r.output, tmp.file("gone.yaml")));
    r = run_replay(
        {"--policy", golden::example_policy(), "--consent", golden::example_consent(), tmp.file("no.pcap"), out});
    CHECK(r.exit_code == 2);
    CHECK(contains(r.output, tmp.file("no.pcap")));
    CHECK_FALSE(std::filesystem::exists(out));
}

TEST_CASE("a file that is not a pcap, and a pcap that is not Ethernet") {
    TempDir tmp;
    const std::string out = tmp.file("out.pcap");
    const std::string junk = tmp.write("junk.pcap", "this is not a capture file at all\n");
    auto r = run_replay({"--policy", golden::example_policy(), "--consent", golden::example_consent(), junk, out});
    CHECK(r.exit_code == 2);
    CHECK(contains(r.output, junk));
    CHECK_FALSE(std::filesystem::exists(out));

    const std::string raw = tmp.file("raw.pcap");
    write_pcap(raw, {{1, Bytes(40, 0x45)}}, 113 /* Linux cooked capture (DLT_LINUX_SLL) */);
    r = run_replay({"--policy", golden::example_policy(), "--consent", golden::example_consent(), raw, out});
    CHECK(r.exit_code == 2);
    CHECK(contains(r.output, raw));
    CHECK(contains(r.output, "not Ethernet"));
    CHECK_FALSE(std::filesystem::exists(out));
}

TEST_CASE("invalid YAML and unknown purposes come with line:column") {
    TempDir tmp;
    const std::string in = sample_pcap(tmp);
    const std::string out = tmp.file("out.pcap");
    const std::string bad_yaml = tmp.write("bad.yaml", "version: 1\npurposes: [unclosed\n");
    auto r = run_replay({"--policy", bad_yaml, "--consent", golden::example_consent(), in, out});
    CHECK(r.exit_code == 2);
    CHECK(contains(r.output, bad_yaml + ":"));
    CHECK_FALSE(std::filesystem::exists(out));

    const std::string consent = tmp.write("consent.yaml",
                                          "subscribers:\n"
                                          "  - id: sub-1\n"
                                          "    addresses: [100.64.0.10]\n"
                                          "    consents: [advertising, astrology]\n");
    r = run_replay({"--policy", golden::example_policy(), "--consent", consent, in, out});
    CHECK(r.exit_code == 2);
    CHECK(contains(r.output, consent + ":4:"));
    CHECK(contains(r.output, "astrology"));
    CHECK_FALSE(std::filesystem::exists(out));
}

TEST_CASE("a truncated pcap fails without leaving an OUT that looks complete") {
    TempDir tmp;
    std::vector<PcapRecord> recs;
    recs.reserve(50);
    for (int i = 0; i < 50; ++i)
        recs.push_back(
            {uint64_t(i) * 1000,
             PacketBuilder().ipv4("100.64.0.10", "203.0.113.5").tcp(1, 80).payload(std::string(100, 'a')).build()});
    const std::string in = tmp.file("in.pcap");
    write_pcap(in, recs);
    std::filesystem::resize_file(in, std::filesystem::file_size(in) - 37);  // cut inside the last record
    const std::string out = tmp.file("out.pcap");
    auto r = run_replay({"--policy", golden::example_policy(), "--consent", golden::example_consent(), in, out});
    CHECK(r.exit_code == 2);
    CHECK(contains(r.output, in));
    CHECK_FALSE(std::filesystem::exists(out));
    CHECK_FALSE(std::filesystem::exists(out + ".partial"));
}
