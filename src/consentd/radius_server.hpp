// The RADIUS accounting listener (docs/radius.md): UDP on consentd's
// io_context. Each Accounting-Request from a configured client, once its
// authenticators check, becomes one SessionChange for the ledger writer and
// is answered only when that change is durable (RFC 2866 §2: no answer for
// what was not recorded; the client retransmits).
//
//   Start, Interim-Update  bind the session's addresses to its subscriber
//   Stop                   unbind those the session still holds
//   Accounting-On/Off      unbind everything bound through that client for that NAS
//
// Dropped without an answer, and counted by reason: unknown client,
// malformed packet, another code, a bad Request Authenticator or
// Message-Authenticator, no Acct-Status-Type or Acct-Session-Id, too many
// requests pending, a failed commit. Answered but nothing bound, and counted:
// no address, an address outside the subscriber prefixes, no usable
// subscriber name, a delegated prefix with too many keys, another status
// type. A retransmission (same source, Identifier and Request Authenticator)
// gets the cached answer, or none while its original is still pending: no
// second event either way.
#pragma once

#include <array>
#include <chrono>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>

#include "consentd/ledger_service.hpp"
#include "consentd/metrics.hpp"
#include "consentd/radius_config.hpp"
#include "consentd/radius_packet.hpp"

namespace optgate::consentd {

class RadiusServer {
public:
    // Binds the socket; throws boost::system::system_error when it cannot.
    RadiusServer(boost::asio::io_context& ioc, LedgerService& service, Metrics& metrics, const RadiusConfig& config);
    ~RadiusServer();
    RadiusServer(const RadiusServer&) = delete;
    RadiusServer& operator=(const RadiusServer&) = delete;

    uint16_t port() const { return socket_.local_endpoint().port(); }
    void start() { receive(); }
    void stop();

    // consentd_radius_* for GET /metrics.
    void render_metrics(std::string& out) const;

private:
    using Endpoint = boost::asio::ip::udp::endpoint;
    struct Cached {
        bool answered = false;
        std::array<uint8_t, radius::kHeaderBytes> answer{};
        std::chrono::steady_clock::time_point at;
    };

    // A request the writer has finished with, waiting for the io thread.
    struct Completed {
        std::string key;
        Endpoint to;
        const RadiusClient* client;
        std::array<uint8_t, radius::kHeaderBytes> answer;
        Outcome outcome;
    };

    void receive();
    void handle(std::span<const uint8_t> datagram, const Endpoint& from);
    // Called on the ledger's sync thread: queues `c` and wakes the io thread once
    // per commit, not once per request.
    void complete(Completed c);
    void send_completed();
    // Builds the change for a request that authenticated; nullopt when it is
    // answered at once (nothing to bind) or dropped (`drop` set).
    std::optional<SessionChange> change_for(const radius::Packet& p, const RadiusClient& client, uint32_t status,
                                            std::string& skip, std::string& drop);
    void finish(const std::string& key, const Endpoint& to, const RadiusClient& client,
                const std::array<uint8_t, radius::kHeaderBytes>& answer, const Outcome* outcome);
    void remember(const std::string& key);
    void expire();

    void count_drop(const std::string& client, std::string_view reason);
    void count_skip(const std::string& client, std::string_view reason);

    boost::asio::io_context& ioc_;
    LedgerService& service_;
    Metrics& metrics_;
    const RadiusConfig& config_;
    boost::asio::ip::udp::socket socket_;
    Endpoint from_;
    std::array<uint8_t, radius::kMaxPacketBytes> buffer_{};
    bool stopped_ = false;

    std::unordered_map<std::string, Cached> cache_;  // source, Identifier, Request Authenticator
    std::deque<std::pair<std::string, std::chrono::steady_clock::time_point>> cache_order_;
    size_t pending_ = 0;

    std::mutex completed_mu_;
    std::vector<Completed> completed_;  // a drain is posted while this is not empty

    struct ClientCounters {
        std::map<std::string, uint64_t, std::less<>> requests;  // by status type
        uint64_t responses = 0, retransmissions = 0, bound = 0, unbound = 0;
        std::map<std::string, uint64_t, std::less<>> drops, skips;
    };
    mutable std::mutex counters_mu_;  // render_metrics may be called from any thread
    std::map<std::string, ClientCounters, std::less<>> counters_;
};

}  // namespace optgate::consentd
