// optgate-replay: runs the core pipeline over a pcap, exactly as the data
// plane runs it over a NIC (same Worker, same bursts), and writes what the
// edge would have forwarded. docs/replay.md.
//
//   optgate-replay --policy FILE --consent FILE [--report FILE.json] IN.pcap OUT.pcap
//
// Exit status: 0 done; 2 bad input (message names the file); OUT is only
// created when the whole run succeeded.
#include <boost/json.hpp>
#include <boost/program_options.hpp>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <vector>

#include "common/report.hpp"
#include "core/enforcement.hpp"
#include "core/pipeline.hpp"
#include "policy/loader.hpp"
#include "replay/pcap_files.hpp"

namespace po = boost::program_options;
using namespace optgate;

namespace {

constexpr uint32_t kBurst = 32;

struct Options {
    std::string policy, consent, report, input, output;
    bool quiet = false;
};

struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

Options parse_options(int argc, char** argv) {
    Options o;
    po::options_description named("options");
    named.add_options()
        ("help,h", "show this help")
        ("policy", po::value(&o.policy), "policy file (YAML, docs/policy.md)")
        ("consent", po::value(&o.consent), "consent file (YAML, docs/consent-file.md)")
        ("report", po::value(&o.report), "write counters as JSON to this file")
        ("quiet,q", po::bool_switch(&o.quiet), "do not print the summary");
    po::options_description hidden;
    hidden.add_options()("input", po::value(&o.input))("output", po::value(&o.output));
    po::options_description all;
    all.add(named).add(hidden);
    po::positional_options_description pos;
    pos.add("input", 1).add("output", 1);
    po::variables_map vm;
    try {
        po::store(po::command_line_parser(argc, argv).options(all).positional(pos).run(), vm);
        po::notify(vm);
    } catch (const po::error& e) {
        throw UsageError(e.what());
    }
    if (vm.count("help")) {
        std::cout << "usage: optgate-replay --policy FILE --consent FILE [--report FILE.json] IN.pcap OUT.pcap\n"
                  << named;
        std::exit(0);
    }
    if (o.policy.empty()) throw UsageError("--policy FILE is required");
    if (o.consent.empty()) throw UsageError("--consent FILE is required");
    if (o.input.empty() || o.output.empty()) throw UsageError("IN.pcap and OUT.pcap are required");
    return o;
}

// Loads policy and consent into a static-mode enforcement (always fresh).
void load_enforcement(const Options& o, Enforcement& enforcement) {
    auto loaded = policy::load_policy_file(o.policy);
    for (const auto& w : loaded.warnings) std::cerr << w.to_string() << "\n";
    const auto records = policy::load_consent_file(o.consent, loaded.policy);
    std::string error;
    auto runtime = Runtime::compile(std::move(loaded.policy), &error);
    if (!runtime) throw replay::FileError(o.policy + ": " + error);
    auto table = enforcement.make_table(records.size());
    for (const auto& r : records)
        for (const auto& key : r.keys) table->upsert(key, r.purposes);
    enforcement.install(std::move(runtime), std::move(table));
}

int run(const Options& o) {
    Enforcement enforcement(Enforcement::Mode::static_table);
    load_enforcement(o, enforcement);

    replay::PcapReader in(o.input);
    if (in.linktype() != DLT_EN10MB)
        throw replay::FileError(o.input + ": link type " + std::to_string(in.linktype()) +
                                " is not Ethernet (DLT_EN10MB); optgate-replay reads Ethernet captures only");
    replay::PcapWriter out(o.output, in.linktype(), in.snaplen(), in.nanosecond());

    Worker worker(enforcement);
    const uint32_t max_frame = uint32_t(std::max(in.snaplen(), 65536)) + 64;
    std::vector<std::vector<uint8_t>> buffers(kBurst, std::vector<uint8_t>(max_frame));
    PacketRef pkts[kBurst];
    uint32_t origlen[kBurst];

    bool more = true;
    while (more) {
        uint32_t n = 0;
        while (n < kBurst) {
            const uint8_t* data;
            uint32_t caplen, len;
            uint64_t ts;
            if (!in.next(data, caplen, len, ts)) {
                more = false;
                break;
            }
            std::memcpy(buffers[n].data(), data, caplen);
            pkts[n] = PacketRef{buffers[n].data(), caplen, ts, Action::forward};
            origlen[n] = len;
            ++n;
        }
        if (n == 0) break;
        uint32_t caplen_before[kBurst];
        for (uint32_t i = 0; i < n; ++i) caplen_before[i] = pkts[i].len;
        worker.process_burst(pkts, n, monotonic_ns());
        for (uint32_t i = 0; i < n; ++i) {
            if (pkts[i].action != Action::forward) continue;
            // A shrunk frame shrinks on the wire too.
            const uint32_t wire = origlen[i] - (caplen_before[i] - pkts[i].len);
            out.write(pkts[i].data, pkts[i].len, wire, pkts[i].timestamp_ns);
        }
    }

    out.commit();
    const auto runtime = enforcement.runtime();
    if (!o.report.empty()) {
        const std::string partial = o.report + ".partial";
        std::ofstream f(partial);
        f << boost::json::serialize(report::to_json(worker.counters(), *runtime)) << "\n";
        f.close();
        if (!f || std::rename(partial.c_str(), o.report.c_str()) != 0)
            throw replay::FileError(o.report + ": cannot write the report");
    }
    if (!o.quiet) std::cout << report::human_summary(worker.counters(), *runtime);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(parse_options(argc, argv));
    } catch (const UsageError& e) {
        std::cerr << "optgate-replay: " << e.what() << "\n"
                  << "usage: optgate-replay --policy FILE --consent FILE [--report FILE.json] IN.pcap OUT.pcap\n";
        return 2;
    } catch (const policy::PolicyError& e) {
        std::cerr << e.what();
        if (std::string_view(e.what()).ends_with('\n') == false) std::cerr << "\n";
        return 2;
    } catch (const replay::FileError& e) {
        std::cerr << "optgate-replay: " << e.what() << "\n";
        return 2;
    } catch (const std::exception& e) {
        std::cerr << "optgate-replay: " << e.what() << "\n";
        return 2;
    }
}
