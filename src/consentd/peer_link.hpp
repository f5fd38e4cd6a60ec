// The data planes of the other consentd on one PostgreSQL ledger
// (docs/scale-out.md, "?wait=enforced across instances").
//
// A change is recorded by the writer, but the data planes that enforce it
// may be connected to followers. Each consentd publishes what its own data
// planes have applied, as NOTIFYs on the channel `optgate_dataplanes`, and
// hears everyone else's: the writer's ?wait=enforced then waits for every
// data plane of the ledger, wherever it is connected.
//
//   PeerLink link(conninfo, "consentd http://10.0.0.5:8080",
//                 [&](PeerLink::Report r) { post to the publisher's thread });
//   link.start();
//   link.applied("edge-1", "unix pid=42 uid=998", 17);  // any thread
//   link.gone("edge-1");
//   link.stop();
//
// One thread and one PostgreSQL session of its own: it sends what changed
// as soon as it is told (an eventfd wakes it), and everything every second
// (kRefresh), which is how the others know it is still there (at most one
// round per kMinInterval): a data plane
// not heard of for kSilence is gone (Publisher). Notifications are not
// stored: an instance that starts, or whose session was lost, hears
// everyone within a second. Its own notifications come back to it and are
// ignored (its random id).
//
// Payload (at most kMaxPayload bytes; more data planes: more
// notifications), one line each, fields separated by one space:
//   optgate-dataplanes 1 <id> <instance name>
//   + <applied seq> <data plane name> <address>
//   - 0 <data plane name>
// The address and the instance name run to the end of the line (newlines
// in them become spaces).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace optgate::consentd {

class PeerLink {
public:
    static constexpr std::string_view kChannel = "optgate_dataplanes";
    static constexpr std::chrono::milliseconds kRefresh{1000};
    static constexpr std::chrono::milliseconds kSilence{3500};  // three refreshes and some
    static constexpr size_t kMaxPayload = 7900;                 // PostgreSQL's limit is 8000
    // At most one round of NOTIFYs per this, however fast acknowledgements
    // come (a data plane acknowledges every commit): what changes meanwhile
    // goes out together.
    static constexpr std::chrono::microseconds kMinInterval{1000};

    // What another consentd said of one of its data planes.
    struct Report {
        std::string instance_id, instance;  // its random id, the name it gives itself
        std::string name, address;          // the data plane
        uint64_t applied_seq = 0;
        bool gone = false;
    };
    using OnReport = std::function<void(Report)>;  // on the link's thread

    // `instance`: how this consentd names itself (its API address).
    PeerLink(std::string conninfo, std::string instance, OnReport on_report);
    ~PeerLink();
    PeerLink(const PeerLink&) = delete;
    PeerLink& operator=(const PeerLink&) = delete;

    void start();
    void stop();

    // This consentd's data plane `name` has applied up to `applied_seq`.
    void applied(const std::string& name, const std::string& address, uint64_t applied_seq);
    // It disconnected.
    void gone(const std::string& name);

    // Parses one notification's payload (exposed for tests): false if it
    // is not one of ours, or malformed.
    static bool parse(std::string_view payload, std::vector<Report>& out);
    // The payloads for these lines (each at most kMaxPayload bytes).
    static std::vector<std::string> payloads(const std::string& header, const std::vector<std::string>& lines);

private:
    struct Local {
        std::string address;
        uint64_t applied_seq = 0;
        bool dirty = true;
    };
    void run();
    void wake() noexcept;
    // The lines to send now: what changed, or everything (`all`).
    std::vector<std::string> take_lines(bool all);

    const std::string conninfo_, instance_, id_;
    const OnReport on_report_;
    int wake_fd_ = -1;
    std::mutex mu_;
    std::map<std::string, Local, std::less<>> locals_;  // mu_
    std::vector<std::string> gone_;                     // mu_
    std::atomic<bool> stopping_{false};
    std::thread thread_;
};

}  // namespace optgate::consentd
