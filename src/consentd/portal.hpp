// The subscriber's privacy page (docs/portal.md): who the subscriber is
// (signed link or network address), sessions, CSRF, rate limits, and each
// request's answer. A client of the LedgerService like the API: a change is
// the same consent event, with source "portal", and waits for enforcement
// like ?wait=enforced. Runs on the io_context thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include "consentd/config.hpp"
#include "consentd/disclosures.hpp"
#include "consentd/ledger_reader.hpp"
#include "consentd/ledger_service.hpp"
#include "consentd/portal_link.hpp"
#include "consentd/portal_page.hpp"
#include "consentd/portal_text.hpp"
#include "consentd/publisher.hpp"
#include "consentd/receipt.hpp"

namespace optgate::consentd {

// Where the page's transparency sections get their data (issue 13: receipts
// and disclosures). Without one, those sections are not shown.
class TransparencySource {
public:
    virtual ~TransparencySource() = default;
    // The subscriber's disclosures of the last `days` days.
    virtual std::vector<DisclosureRow> disclosures(const std::string& subscriber, unsigned days) = 0;
    // The receipt (JSON) of the subscriber's consent event `seq`; nullopt
    // when `seq` is not one of this subscriber's consent events.
    virtual std::optional<std::string> receipt(const std::string& subscriber, uint64_t seq) = 0;
};

// The TransparencySource of consentd: the disclosure store's rows and the
// ledger's receipts, read as the API reads them (ReceiptReader: the same
// receipt, from the one builder). Its own connections to the ledger file,
// used on the io_context thread only, like the API's.
class LedgerTransparency final : public TransparencySource {
public:
    // `durable`: LedgerService::wait_durable (LedgerReader).
    LedgerTransparency(const std::string& database, std::function<void()> durable);

    // Days today - days + 1 .. today (UTC); none when the ledger does not
    // know the subscriber.
    std::vector<DisclosureRow> disclosures(const std::string& subscriber, unsigned days) override;
    // The API's body for GET /v1/subscribers/{id}/receipts/{seq}.
    std::optional<std::string> receipt(const std::string& subscriber, uint64_t seq) override;

private:
    LedgerReader ledger_;
    ReceiptReader receipts_{ledger_};
    DisclosureReader disclosures_;
};

class Portal {
public:
    using Request = boost::beast::http::request<boost::beast::http::string_body>;
    using Response = boost::beast::http::response<boost::beast::http::string_body>;
    using Respond = std::function<void(Response)>;
    using Clock = std::chrono::steady_clock;

    // `links`: signed-link mode only (shared with the API, which issues them).
    Portal(boost::asio::io_context& ioc, LedgerService& service, Publisher* publisher, const Config& config,
           Catalogue catalogue, PortalLinks* links);

    void set_transparency(TransparencySource* t) { transparency_ = t; }

    // `peer`: the connection's remote address. Calls respond exactly once,
    // on the io_context thread.
    void handle(const Request& req, const boost::asio::ip::address& peer, Respond respond);

    size_t session_count() const { return sessions_.size(); }

private:
    struct Session {
        std::string id;  // the cookie's value
        std::string subscriber;
        std::string line;  // network mode: the binding it was opened for
        std::string csrf;
        Clock::time_point expires;
        Clock::time_point window_start;
        unsigned window_requests = 0;
        std::optional<Flash> flash;
    };
    struct Context;

    void route(Context& cx, const Request& req);
    void show_page(Context& cx);
    void open_link(Context& cx, std::string_view token);
    void post_choice(Context& cx, const Request& req);
    void post_logout(Context& cx, const Request& req);
    void get_receipt(Context& cx, std::string_view seq);
    void apply_change(Context& cx, const std::string& purpose, bool grant);

    // Network mode: the subscriber holding the client's address now, and
    // that binding's text.
    std::optional<std::pair<std::string, std::string>> holder_of(const IpAddr& client) const;
    Session* find_session(const Request& req);
    // nullptr when max_sessions are open and none has expired.
    Session* new_session(Context& cx, std::string subscriber, std::string line);
    bool over_address_limit(const IpAddr& client);
    bool over_session_limit(Session& s);
    bool csrf_ok(const Session& s, const std::string* token) const;

    Response page(Context& cx, unsigned status, std::string html) const;
    Response message(Context& cx, unsigned status, Text title, const std::string& body_html, bool link_back = true);

    boost::asio::io_context& ioc_;
    LedgerService& service_;
    Publisher* publisher_;
    const Config& config_;
    const PortalConfig& portal_;
    Catalogue catalogue_;
    PortalLinks* links_;
    TransparencySource* transparency_ = nullptr;
    LedgerReader reader_;
    std::unordered_map<std::string, Session> sessions_;  // by session id
    struct Window {
        Clock::time_point start;
        unsigned requests = 0;
    };
    std::unordered_map<std::string, Window> by_address_;
};

// The client's address: the peer, or, when the peer is one of the trusted
// proxies, the rightmost X-Forwarded-For entry that is not one; nullopt when
// that entry is not an address.
std::optional<IpAddr> client_address(const std::vector<Prefix>& trusted_proxies, const IpAddr& peer,
                                     std::string_view forwarded_for);

// Form fields of an application/x-www-form-urlencoded body; nullopt when it
// is malformed, repeats a field, or has a field outside `allowed`.
std::optional<std::unordered_map<std::string, std::string>> parse_form(std::string_view body,
                                                                       const std::vector<std::string_view>& allowed);

}  // namespace optgate::consentd
