// A consentd publisher and its data-plane listeners in-process, fed by a
// fake ledger (the same discipline as LedgerService: each commit changes the
// table and tells the publisher under one lock), and data planes built on
// the real client library. For the protocol tests.
#pragma once

#include <doctest/doctest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <chrono>
#include <filesystem>
#include <functional>
#include <future>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>

#include "consentd/dataplane_server.hpp"
#include "consentd/publisher.hpp"
#include "consentd/sha256.hpp"
#include "core/addr_hash.hpp"
#include "policy/loader.hpp"
#include "proto/control_client.hpp"
#include "proto_fixture.hpp"

namespace optgate::test_proto {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

struct TempDir {
    TempDir() {
        std::random_device rd;
        path = fs::temp_directory_path() / ("optgate-proto-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
        fs::create_directories(path);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    std::string file(const std::string& name) const { return (path / name).string(); }
    fs::path path;
};

inline std::shared_ptr<const Policy> load_policy(const std::string& yaml) {
    return std::make_shared<const Policy>(policy::load_policy_text(yaml, "test-policy.yaml").policy);
}

// The ledger's part: a table, a sequence, a policy, a hash chain (each
// event hashed over the one before and its changes); commits go to the
// publisher under the lock, like LedgerService's listeners.
class FakeLedger : public consentd::TableSource {
public:
    consentd::Publisher* publisher = nullptr;

    explicit FakeLedger(std::shared_ptr<const Policy> p) : policy_(std::move(p)) {
        table_version_ = consentd::table_version(*policy_);
    }

    // One event.
    uint64_t commit(const std::vector<proto::TableChange>& deltas) { return commit_events({deltas}); }
    // Several events in one commit (a writer's batch, or a follower reading
    // another's commits in one go): one sequence and hash each, one commit.
    // Before `publisher` is set, commits only change the ledger (what it
    // held before this consentd started).
    uint64_t commit_events(const std::vector<std::vector<proto::TableChange>>& events) {
        std::lock_guard lk(mu_);
        consentd::ChainHashes chain;
        std::vector<proto::TableChange> all;
        for (const auto& deltas : events) {
            apply(deltas);
            ++seq_;
            head_ = next_hash(deltas);
            chain.push_back(head_);
            all.insert(all.end(), deltas.begin(), deltas.end());
        }
        if (publisher) publisher->on_commit(seq_, all, chain);
        return seq_;
    }
    uint64_t upsert(const char* addr, PurposeMask m) {
        return commit({{proto::TableChange::Op::upsert, key(addr), m}});
    }
    uint64_t erase(const char* addr) { return commit({{proto::TableChange::Op::erase, key(addr), 0}}); }

    void set_policy(std::shared_ptr<const Policy> p) {
        std::lock_guard lk(mu_);
        const std::string tv = consentd::table_version(*p);
        const bool changed = tv != table_version_;
        policy_ = std::move(p);
        table_version_ = tv;
        publisher->publish_policy(seq_, policy_, tv, changed);
    }

    // The table recomputed behind the feed's back (a commit in doubt the
    // ledger adopted), then the publisher told to resend it.
    void adopt(const std::vector<proto::TableChange>& deltas) {
        std::lock_guard lk(mu_);
        apply(deltas);
        ++seq_;
        head_ = next_hash(deltas);
        publisher->on_resync(seq_, head_, policy_, table_version_);
    }

    void snapshot(consentd::SnapshotSink& sink) override {
        std::lock_guard lk(mu_);
        sink.begin(seq_, head_, policy_, table_version_);
        for (const auto& [k, m] : table_) sink.add(k, m);
    }

    uint64_t seq() {
        std::lock_guard lk(mu_);
        return seq_;
    }
    std::vector<std::pair<SubscriberKey, PurposeMask>> entries() {
        std::lock_guard lk(mu_);
        return {table_.begin(), table_.end()};
    }

private:
    void apply(const std::vector<proto::TableChange>& deltas) {
        for (const auto& d : deltas) {
            if (d.op == proto::TableChange::Op::upsert)
                table_[d.key] = d.purposes;
            else
                table_.erase(d.key);
        }
    }
    consentd::Digest next_hash(const std::vector<proto::TableChange>& deltas) const {
        std::string text(reinterpret_cast<const char*>(head_.data()), head_.size());
        for (const auto& d : deltas)
            text += d.key.addr.to_string() + "=" + std::to_string(d.purposes) +
                    (d.op == proto::TableChange::Op::erase ? "-" : "+");
        return consentd::sha256(text);
    }

    std::mutex mu_;
    uint64_t seq_ = 0;
    consentd::Digest head_{};
    std::shared_ptr<const Policy> policy_;
    std::string table_version_;
    std::unordered_map<SubscriberKey, PurposeMask, SubscriberKeyHash> table_;
};

struct Rig {
    TempDir dir;
    std::shared_ptr<const Policy> policy = load_policy(kPolicyYaml);
    FakeLedger ledger{policy};
    consentd::DataPlaneConfig config;
    boost::asio::io_context ioc;
    std::unique_ptr<consentd::Publisher> publisher;
    std::unique_ptr<consentd::DataPlaneServer> server;
    std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work;
    std::thread io_thread;

    // `tune` adjusts the config before anything starts; `disclosures`: the
    // publisher's disclosure sink (none by default); `before`: what the
    // ledger holds before the publisher starts.
    template <class Tune>
    explicit Rig(Tune tune, consentd::DisclosureSink* disclosures = nullptr,
                 const std::function<void(FakeLedger&)>& before = {}) {
        config.socket = dir.file("dp.sock");
        config.heartbeat_interval = 50ms;
        tune(config);
        if (before) before(ledger);
        publisher = std::make_unique<consentd::Publisher>(ioc, ledger, config, disclosures);
        publisher->add_policy_document(policy, "test-policy.yaml", kPolicyYaml);
        ledger.publisher = publisher.get();
        publisher->start();
        server = std::make_unique<consentd::DataPlaneServer>(ioc, *publisher);
        server->start();
        work.emplace(ioc.get_executor());
        io_thread = std::thread([this] { ioc.run(); });
    }
    Rig() : Rig([](consentd::DataPlaneConfig&) {}) {}

    // Runs f on the io thread and returns its result.
    template <class F>
    auto on_io(F f) {
        std::promise<decltype(f())> p;
        boost::asio::post(ioc, [&] {
            if constexpr (std::is_void_v<decltype(f())>) {
                f();
                p.set_value();
            } else {
                p.set_value(f());
            }
        });
        return p.get_future().get();
    }

    Rig(const Rig&) = delete;
    Rig& operator=(const Rig&) = delete;
    // NOLINTNEXTLINE(bugprone-exception-escape): a teardown that fails should end the test binary, loudly
    ~Rig() {
        on_io([this] {
            server->stop();
            publisher->stop();
        });
        work.reset();
        // Sessions finish their goodbyes within a second.
        std::this_thread::sleep_for(50ms);
        ioc.stop();
        io_thread.join();
    }

    std::vector<consentd::DataPlaneInfo> dataplanes() {
        return on_io([this] { return publisher->dataplanes(); });
    }
    std::string metrics() {
        return on_io([this] {
            std::string s;
            publisher->render_metrics(s);
            return s;
        });
    }
    uint64_t metric(const std::string& name) {
        const std::string m = metrics();
        const auto at = m.find("\n" + name + " ");
        REQUIRE_MESSAGE(at != std::string::npos, "no metric " << name);
        return std::stoull(m.substr(at + name.size() + 2));
    }
    proto::Endpoint endpoint() const {
        proto::Endpoint e;
        e.kind = proto::Endpoint::Kind::unix_socket;
        e.path = config.socket;
        return e;
    }
};

// A data plane: its own Enforcement and the real client library.
struct DataPlane {
    Enforcement enforcement{Enforcement::Mode::controlled};
    std::vector<std::string> log;
    std::mutex log_mu;
    proto::ControlClient client;

    QsbrDomain::ReaderId reader;

    // `tune` adjusts the client's options.
    DataPlane(const proto::Endpoint& ep, const std::string& name, std::chrono::milliseconds backoff = 50ms,
              std::optional<proto::TlsFiles> tls = std::nullopt,
              const std::function<void(proto::ControlClient::Options&)>& tune = {})
        : client(enforcement, options(ep, name, backoff, std::move(tls), tune)),
          reader(enforcement.rcu().register_reader()) {
        enforcement.rcu().offline(reader);
    }
    ~DataPlane() {
        client.stop();
        enforcement.rcu().unregister_reader(reader);
    }
    DataPlane(const DataPlane&) = delete;
    DataPlane& operator=(const DataPlane&) = delete;

    proto::ControlClient::Options options(const proto::Endpoint& ep, const std::string& name,
                                          std::chrono::milliseconds backoff, std::optional<proto::TlsFiles> tls,
                                          const std::function<void(proto::ControlClient::Options&)>& tune) {
        proto::ControlClient::Options o;
        o.name = name;
        o.endpoints = {ep};
        o.tls = std::move(tls);
        o.backoff_initial = backoff;
        o.backoff_max = backoff * 4;
        o.log = [this](std::string_view line) {
            std::lock_guard lk(log_mu);
            log.emplace_back(line);
        };
        if (tune) tune(o);
        return o;
    }

    // Reads like a worker: an RCU reader, online only while it looks.
    ConsentLookup look(const SubscriberKey& k) {
        enforcement.rcu().online(reader);
        const ConsentTable* t = enforcement.table();
        const ConsentLookup r = t ? t->lookup(k) : ConsentLookup{};
        enforcement.rcu().offline(reader);
        return r;
    }
    ConsentLookup look(const char* a) { return look(SubscriberKey::make(*IpAddr::parse(a), 64)); }
    size_t table_size() {
        enforcement.rcu().online(reader);
        const ConsentTable* t = enforcement.table();
        const size_t n = t ? t->size() : 0;
        enforcement.rcu().offline(reader);
        return n;
    }
    // The data plane holds exactly the ledger's table.
    bool holds(const std::vector<std::pair<SubscriberKey, PurposeMask>>& entries) {
        if (table_size() != entries.size()) return false;
        for (const auto& [k, m] : entries) {
            const auto r = look(k);
            if (!r.found || r.purposes != m) return false;
        }
        return true;
    }
    std::string logged() {
        std::lock_guard lk(log_mu);
        std::string all;
        for (const auto& l : log) all += l + "\n";
        return all;
    }
};

// Polls `pred` until true or `timeout` (kPatience: proto_fixture.hpp).
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = kPatience) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
        if (pred()) return true;
        std::this_thread::sleep_for(2ms);
    }
    return pred();
}

}  // namespace optgate::test_proto
