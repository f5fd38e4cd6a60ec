// The subscriber API's endpoints (docs/consentd.md, "API"): authentication
// and routing once a request's header is in, then each endpoint's handling.
// Runs on the io_context thread; writes go to the LedgerService and are
// answered when durable; imports are parsed on a worker thread.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/json/object.hpp>

#include "consentd/auth.hpp"
#include "consentd/config.hpp"
#include "consentd/disclosures.hpp"
#include "consentd/ledger_reader.hpp"
#include "consentd/ledger_service.hpp"
#include "consentd/metrics.hpp"
#include "consentd/policy_reloader.hpp"
#include "consentd/portal_link.hpp"
#include "consentd/publisher.hpp"
#include "consentd/receipt.hpp"
#include "consentd/router.hpp"

namespace optgate::consentd {

class CheckpointWriter;

using Response = boost::beast::http::response<boost::beast::http::string_body>;

// {"error": {"code": ..., "message": ..., "details": [...]}} with `status`.
Response error_response(unsigned status, std::string_view code, std::string_view message,
                        const std::vector<std::string>& details = {});
Response json_response(unsigned status, const boost::json::object& body);

// The one import at a time. Taken when an import request is admitted, before
// its body is read (concurrent 256 MiB uploads must not all sit in memory:
// issue 17), and given back exactly once: when the import answers, or when
// its request dies unanswered (the session drops its Admission).
class ImportSlot {
public:
    explicit ImportSlot(std::shared_ptr<std::atomic<bool>> busy) : busy_(std::move(busy)) {}
    ~ImportSlot() { release(); }
    ImportSlot(const ImportSlot&) = delete;
    ImportSlot& operator=(const ImportSlot&) = delete;
    void release() noexcept {
        if (!released_.exchange(true)) *busy_ = false;
    }

private:
    std::shared_ptr<std::atomic<bool>> busy_;
    std::atomic<bool> released_{false};
};

class Api {
public:
    // `reloader`: the daemon's policy reload (POST /v1/policy/reload).
    // `publisher`: data planes (GET /v1/dataplanes, ?wait=enforced); may be null.
    Api(boost::asio::io_context& ioc, LedgerService& service, Metrics& metrics, const Config& config,
        PolicyReloader& reloader, Publisher* publisher = nullptr);
    ~Api();
    Api(const Api&) = delete;
    Api& operator=(const Api&) = delete;

    // What to do with a request whose header has been read.
    // Its implicit move assignment moves a Beast response, which may allocate:
    // NOLINTNEXTLINE(bugprone-exception-escape)
    struct Admission {
        RouteMatch match;
        const Token* token = nullptr;
        std::optional<Response> reject;  // answer now; the body is not read
        size_t body_limit = 0;
        std::chrono::milliseconds body_timeout{};
        // ?wait=enforced[&timeout=]: answer once data planes enforce the write.
        std::optional<std::chrono::milliseconds> enforced_wait;
        std::shared_ptr<ImportSlot> import_slot;  // POST /v1/import only
    };
    Admission admit(const boost::beast::http::request<boost::beast::http::empty_body>& header) const;

    using Respond = std::function<void(Response)>;
    // Calls `respond` exactly once, on the io_context thread.
    void handle(const Admission& a, boost::beast::http::request<boost::beast::http::string_body>&& req,
                Respond respond);

    // POST /v1/policy/reload: the daemon's reload (policy_reloader.hpp),
    // answered with every error, or what was installed.
    void reload_policy(Respond respond);

    // POST /v1/subscribers/{id}/portal-links: signed-link mode's issuer
    // (docs/portal.md); without one the endpoint answers 404.
    void set_portal_links(PortalLinks* links) { portal_links_ = links; }
    // GET /v1/ledger/checkpoint: the latest signed checkpoint (checkpoint.hpp);
    // without a writer the endpoint answers 404.
    void set_checkpoints(const CheckpointWriter* writer) { checkpoints_ = writer; }

private:
    void get_purposes(Respond& respond);
    void get_dataplanes(const Admission& a, Respond& respond);
    void get_checkpoint(Respond& respond);
    void get_subscriber(const Admission& a, Respond& respond);
    // On the read thread: GET /v1/subscribers/{id}'s answer.
    Response subscriber_answer(const std::string& subscriber, size_t limit, uint64_t before, const Policy& policy);
    void get_receipt(const Admission& a, Respond& respond);
    void get_disclosures(const Admission& a, Respond& respond);
    void post_portal_link(const Admission& a, const boost::json::value& body, Respond& respond);
    void put_consent(const Admission& a, const boost::json::value& body, bool grant, Respond& respond);
    void put_binding(const Admission& a, const boost::json::value& body, Respond& respond);
    void delete_binding(const Admission& a, const boost::json::value& body, Respond& respond);
    void import(const Admission& a, const boost::beast::http::request<boost::beast::http::string_body>& req,
                std::string&& body, Respond& respond);
    // Submits to the writer; `ok` builds the success body from the outcome.
    void submit(Change change, const Admission& a, std::function<boost::json::object(const Outcome&)> ok,
                Respond respond);

    boost::asio::io_context& ioc_;
    LedgerService& service_;
    Metrics& metrics_;
    const Config& config_;
    PolicyReloader& reloader_;
    Publisher* publisher_;
    TokenTable tokens_;
    LedgerReader reader_;
    ReceiptReader receipts_{reader_};
    DisclosureReader disclosure_reader_;
    boost::asio::thread_pool import_pool_{1};
    // GET /v1/subscribers/{id}: read and built off the API thread (issue 17:
    // eight parallel ?history=100000 delayed every other request by 3.9 s),
    // with its own connection, used on that thread only.
    LedgerReader history_reader_;
    boost::asio::thread_pool read_pool_{1};
    std::shared_ptr<std::atomic<bool>> import_busy_ = std::make_shared<std::atomic<bool>>(false);
    PortalLinks* portal_links_ = nullptr;
    const CheckpointWriter* checkpoints_ = nullptr;
};

}  // namespace optgate::consentd
