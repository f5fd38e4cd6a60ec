// optgate-replay: runs the core pipeline over a pcap, exactly as the data
// plane runs it over a NIC (same Worker, same bursts), and writes what the
// edge would have forwarded. docs/replay.md.
//
//   optgate-replay --policy FILE --consent FILE [--report FILE.json] IN.pcap OUT.pcap
//   optgate-replay --control SOCKET|HOST:PORT [--name N] [--pace] [...] IN.pcap OUT.pcap
//
// Exit status: 0 done; 2 bad input (message names the file); OUT is only
// created when the whole run succeeded.
#include <boost/json.hpp>
#include <boost/program_options.hpp>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <thread>
#include <vector>

#include "common/report.hpp"
#include "common/static_consent.hpp"
#include "core/enforcement.hpp"
#include "core/pipeline.hpp"
#include "policy/loader.hpp"
#include "policy/values.hpp"
#include "replay/control.hpp"
#include "replay/pcap_files.hpp"

namespace po = boost::program_options;
using namespace optgate;

namespace {

constexpr uint32_t kBurst = 32;

struct Options {
    std::string policy, consent, pseudonym_keys, report, input, output;
    bool quiet = false;
    replay::ControlOptions control;  // control.endpoint set: --control mode
    std::string control_timeout = "10s";
    std::string stats_interval;
    std::string disclosure_interval;
    size_t disclosure_entries = DisclosureConfig{}.entries;
    size_t fragment_datagrams = ReassemblyConfig{}.datagrams;
    size_t fragment_memory = ReassemblyConfig{}.memory;
    bool pace = false;
};

constexpr const char* kUsage =
    "usage: optgate-replay --policy FILE --consent FILE [--pseudonym-keys FILE] [--report FILE.json] IN.pcap "
    "OUT.pcap\n"
    "       optgate-replay --control SOCKET|HOST:PORT [--name NAME] [--pace] [--report FILE.json] IN.pcap OUT.pcap\n";

struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

Options parse_options(int argc, char** argv) {
    Options o;
    po::options_description named("options");
    named.add_options()("help,h", "show this help")("policy", po::value(&o.policy),
                                                    "policy file (YAML, docs/policy.md)")(
        "pseudonym-keys", po::value(&o.pseudonym_keys),
        "keys of the collectors that receive pseudonyms (docs/replay.md#--pseudonym-keys); without: they strip")(
        "consent", po::value(&o.consent), "consent file (YAML, docs/consent-file.md)")(
        "report", po::value(&o.report), "write counters as JSON to this file")("quiet,q", po::bool_switch(&o.quiet),
                                                                               "do not print the summary")(
        "control", po::value(&o.control.endpoint),
        "take policy and table from consentd at this Unix socket or HOST:PORT; several, comma-separated, are tried in "
        "turn (docs/replay.md#--control)")("name", po::value(&o.control.name),
                                           "with --control: how consentd lists this replay (default replay-HOST-PID)")(
        "control-timeout", po::value(&o.control_timeout),
        "with --control: wait this long for the table, and at the end for consentd to acknowledge the last disclosure "
        "report (default 10s)")("stats-interval", po::value(&o.stats_interval),
                                "with --control: report counters to consentd this often (default 1s)")(
        "disclosure-interval", po::value(&o.disclosure_interval),
        "with --control: report disclosure counts to consentd this often (default 60s)")(
        "disclosure-entries", po::value(&o.disclosure_entries),
        "disclosure table slots (default 65536; 0: off, no \"disclosures\" in the report; docs/replay.md#disclosures)")(
        "fragment-datagrams", po::value(&o.fragment_datagrams),
        "fragmented datagrams held for reassembly at once (default 256; docs/pipeline.md#fragments)")(
        "fragment-memory", po::value(&o.fragment_memory),
        "bytes of fragment copies held for reassembly (default 4194304)")(
        "tls-cert", po::value(&o.control.tls_cert), "with --control HOST:PORT: this data plane's certificate (PEM)")(
        "tls-key", po::value(&o.control.tls_key), "with --control HOST:PORT: its private key (PEM)")(
        "tls-ca", po::value(&o.control.tls_ca), "with --control HOST:PORT: the CA that signs consentd's certificate")(
        "checkpoint-public-key", po::value(&o.control.checkpoint_public_key),
        "with --control: consentd's checkpoint public key (PEM); checkpoints that do not verify are refused")(
        "pace", po::bool_switch(&o.pace), "replay in real time, honouring the capture's inter-packet gaps");
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
        std::cout << kUsage << named;
        std::exit(0);
    }
    if (!o.control.endpoint.empty()) {
        if (!o.policy.empty() || !o.consent.empty())
            throw UsageError("--control takes the policy and table from consentd: drop --policy and --consent");
        if (!o.pseudonym_keys.empty())
            throw UsageError("--control takes pseudonym keys from consentd: drop --pseudonym-keys");
        std::string error;
        const auto t = policy::syntax::parse_duration(o.control_timeout, error);
        if (!t) throw UsageError("--control-timeout " + o.control_timeout + ": " + error);
        o.control.timeout = *t;
        if (vm.count("stats-interval")) {
            const auto si = policy::syntax::parse_duration(o.stats_interval, error);
            if (!si) throw UsageError("--stats-interval " + o.stats_interval + ": " + error);
            o.control.stats_interval = *si;
        }
        if (vm.count("disclosure-interval")) {
            const auto di = policy::syntax::parse_duration(o.disclosure_interval, error);
            if (!di || *di < std::chrono::seconds(1))
                throw UsageError("--disclosure-interval " + o.disclosure_interval + ": " +
                                 (di ? "must be at least 1s" : error));
            o.control.disclosure_interval = *di;
        }
    } else {
        if (o.policy.empty()) throw UsageError("--policy FILE is required (or --control)");
        if (o.consent.empty()) throw UsageError("--consent FILE is required");
        if (!o.control.name.empty() || !o.control.tls_cert.empty() || !o.control.tls_key.empty() ||
            !o.control.tls_ca.empty() || !o.control.checkpoint_public_key.empty() || vm.count("stats-interval") ||
            vm.count("disclosure-interval"))
            throw UsageError(
                "--name, --stats-interval, --disclosure-interval, --checkpoint-public-key and --tls-* go with "
                "--control");
    }
    if (o.input.empty() || o.output.empty()) throw UsageError("IN.pcap and OUT.pcap are required");
    if (o.fragment_datagrams < 1 || o.fragment_datagrams > 65536)
        throw UsageError("--fragment-datagrams must be between 1 and 65536");
    if (o.fragment_memory < 65536 || o.fragment_memory > (size_t(1) << 32))
        throw UsageError("--fragment-memory must be between 65536 and 4294967296 bytes");
    if (o.disclosure_entries > (size_t(1) << 24))
        throw UsageError("--disclosure-entries must be between 0 (off) and 16777216");
    return o;
}

int run(Options& o) {
    const bool controlled = !o.control.endpoint.empty();
    Enforcement enforcement(controlled ? Enforcement::Mode::controlled : Enforcement::Mode::static_table);
    replay::StatsSource stats(enforcement);  // before the client, whose thread reads it
    replay::DisclosureSource disclosures(enforcement);
    std::unique_ptr<proto::ControlClient> control;
    StaticLoadResult consent;  // static mode: who holds each key, for the report
    if (controlled)
        control = replay::connect_control(o.control, enforcement, &stats);  // waits for the snapshot
    else
        consent = install_static_consent(enforcement, o.policy, o.consent, o.pseudonym_keys);

    replay::PcapReader in(o.input);
    if (in.linktype() != DLT_EN10MB)
        throw replay::FileError(o.input + ": link type " + std::to_string(in.linktype()) +
                                " is not Ethernet (DLT_EN10MB); optgate-replay reads Ethernet captures only");
    replay::PcapWriter out(o.output, in.linktype(), in.snaplen(), in.nanosecond());

    ReassemblyConfig fragments;
    fragments.datagrams = o.fragment_datagrams;
    fragments.memory = o.fragment_memory;
    Worker worker(enforcement, HttpStageConfig{}, DisclosureConfig{o.disclosure_entries}, fragments);
    // Frames the worker makes (re-fragmented datagrams, released fragments):
    // written right after the frame whose arrival made them, as the data
    // plane sends them.
    struct Emitted {
        uint32_t index;
        std::vector<uint8_t> frame;
    };
    std::vector<Emitted> emitted;
    worker.set_emit(
        [](void* user, const uint8_t* frame, uint32_t len, uint32_t index) noexcept {
            static_cast<std::vector<Emitted>*>(user)->push_back({index, std::vector<uint8_t>(frame, frame + len)});
        },
        &emitted);
    if (worker.disclosure()) {
        disclosures.attach(worker);
        // Reported to consentd every interval, and once more at the end.
        if (control)
            control->set_disclosure_source([&](DisclosureBatch& b) { disclosures.drain_into(b); },
                                           o.control.disclosure_interval);
    }
    const uint32_t max_frame = uint32_t(std::max(in.snaplen(), 65536)) + 64;
    std::vector<std::vector<uint8_t>> buffers(kBurst, std::vector<uint8_t>(max_frame));
    PacketRef pkts[kBurst];
    uint32_t origlen[kBurst];

    auto process = [&](uint32_t n) {
        uint32_t caplen_before[kBurst];
        for (uint32_t i = 0; i < n; ++i) caplen_before[i] = pkts[i].len;
        emitted.clear();
        worker.process_burst(pkts, n, monotonic_ns());
        size_t e = 0;
        for (uint32_t i = 0; i < n; ++i) {
            if (pkts[i].action == Action::forward) {
                // A shrunk frame shrinks on the wire too.
                const uint32_t wire = origlen[i] - (caplen_before[i] - pkts[i].len);
                out.write(pkts[i].data, pkts[i].len, wire, pkts[i].timestamp_ns);
            }
            for (; e < emitted.size() && emitted[e].index == i; ++e) {
                const auto& f = emitted[e].frame;
                out.write(f.data(), uint32_t(f.size()), uint32_t(f.size()), pkts[i].timestamp_ns);
            }
        }
        if (control) stats.update(worker.counters());
    };
    replay::Pacer pacer;
    bool more = true;
    while (more) {
        uint32_t n = 0;
        while (n < kBurst) {
            const uint8_t* data = nullptr;
            uint32_t caplen = 0, len = 0;
            uint64_t ts = 0;
            if (!in.next(data, caplen, len, ts)) {
                more = false;
                break;
            }
            if (o.pace) {
                // Real time: what is due goes out before waiting for the next.
                if (const uint64_t wait = pacer.wait_ns(ts)) {
                    if (n) process(n);
                    n = 0;
                    worker.idle();  // offline: the control thread may reclaim meanwhile
                    std::this_thread::sleep_for(std::chrono::nanoseconds(wait));
                }
            }
            std::memcpy(buffers[n].data(), data, caplen);
            pkts[n] = PacketRef{buffers[n].data(), caplen, ts, Action::forward};
            origlen[n] = len;
            ++n;
        }
        if (n == 0) break;
        process(n);
    }
    worker.idle();
    if (control) {
        // consentd keeps the final counts (GET /metrics, up 0 once we are gone).
        stats.update(worker.counters(), true);
        control->flush_stats(std::chrono::seconds(1));
        // The last counts, acknowledged once consentd has stored them (after
        // its clock margin: docs/transparency.md); unacknowledged ones are
        // lost with this process, as the report's "control" block says.
        // Bounded by --control-timeout, so a consentd that is gone does not
        // hold the end of the run for long.
        if (worker.disclosure() && !control->flush_disclosures(o.control.timeout))
            std::fprintf(stderr,
                         "optgate-replay: consentd did not acknowledge every disclosure report within "
                         "--control-timeout (%lld ms)\n",
                         static_cast<long long>(o.control.timeout.count()));
        control->stop();  // the table stays installed; the thread is gone
    }
    // What no drain took yet (a final report to consentd drains before the
    // client stops): into the totals for --report.
    DisclosureBatch last;
    disclosures.drain_into(last);

    out.commit();
    const auto runtime = enforcement.runtime();
    if (!o.report.empty()) {
        const std::string partial = o.report + ".partial";
        std::ofstream f(partial);
        auto json = report::to_json(worker.counters(), *runtime);
        if (control) json["control"] = replay::control_report(o.control, control->status());
        if (worker.disclosure()) {
            json["disclosures"] = report::disclosures_to_json(disclosures.totals(), consent.bindings,
                                                              runtime->policy().ipv6_key_length);
            json["disclosures_overflowed"] = disclosures.overflowed();
        }
        f << boost::json::serialize(json) << "\n";
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
        Options o = parse_options(argc, argv);
        return run(o);
    } catch (const UsageError& e) {
        std::cerr << "optgate-replay: " << e.what() << "\n" << kUsage;
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
