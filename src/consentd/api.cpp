#include "consentd/api.hpp"

#include <boost/asio/post.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/json/serialize.hpp>

#include "consentd/binding_address.hpp"
#include "consentd/checkpoint_writer.hpp"
#include "consentd/import_parser.hpp"
#include "consentd/json_text.hpp"
#include "consentd/log.hpp"
#include "consentd/request_bodies.hpp"
#include "policy/loader.hpp"
#include "policy/values.hpp"

namespace optgate::consentd {

namespace http = boost::beast::http;
namespace json = boost::json;
using Request = http::request<http::string_body>;

namespace {

// One binding of a subscriber's answer as JSON, written straight into its
// text like the events below (a subscriber may hold many: the bindings are
// not paged).
void append_binding_json(std::string& out, const BindingRow& b, bool active) {
    out += "{\"address\":";
    append_json_string(out, b.address);
    out += ",\"seq\":";
    append_json_number(out, b.seq);
    out += ",\"time\":";
    append_json_string(out, b.time);
    out += ",\"source\":";
    append_json_string(out, b.source);
    out += ",\"credential\":";
    append_json_string(out, b.credential);
    out += active ? ",\"active\":true}" : ",\"active\":false}";
}

// One event of a history page as JSON, written straight into the page's
// text: a page holds up to 100,000 of them (as objects, an allocation for
// every key and value). Keys in this order; a purpose, an address and a
// notice_version only where the event has one.
void append_event_json(std::string& out, const Event& e) {
    out += "{\"seq\":";
    append_json_number(out, e.seq);
    out += ",\"time\":";
    append_json_string(out, e.time);
    out += ",\"action\":";
    append_json_string(out, to_string(e.action));
    if (e.purpose) {
        out += ",\"purpose\":";
        append_json_string(out, *e.purpose);
    }
    if (e.address) {
        out += ",\"address\":";
        append_json_string(out, *e.address);
    }
    out += ",\"source\":";
    append_json_string(out, e.source);
    if (e.notice_version) {
        out += ",\"notice_version\":";
        append_json_string(out, *e.notice_version);
    }
    out += ",\"credential\":";
    append_json_string(out, e.credential);
    out += ",\"hash\":";
    append_json_string(out, e.hash);
    out += '}';
}

// The media type without parameters, lowercased: "application/json".
std::string media_type(std::string_view content_type) {
    std::string t(content_type.substr(0, content_type.find(';')));
    while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.pop_back();
    return ascii_lower(t);
}

unsigned status_of(Outcome::Status s) {
    switch (s) {
    case Outcome::Status::ok: return 200;
    case Outcome::Status::invalid: return 400;
    case Outcome::Status::not_found: return 404;
    case Outcome::Status::conflict: return 409;
    case Outcome::Status::unavailable: return 503;
    }
    return 500;
}

// The request's JSON body as an object (an empty body reads as {}), or the
// error to answer.
std::optional<json::value> json_body(const Request& req, std::optional<Response>& error) {
    if (req.body().empty()) return json::value(json::object());
    const auto ct = req.find(http::field::content_type);
    if (ct == req.end() || media_type(ct->value()) != "application/json") {
        error = error_response(415, "unsupported_media_type", "send the body as Content-Type: application/json");
        return std::nullopt;
    }
    BodyError why;
    auto v = read_json_body(req.body(), why);
    if (!v) error = error_response(400, why.code, why.message);
    return v;
}

}  // namespace

Response json_response(unsigned status, const json::object& body) {
    Response r{http::status(status), 11};
    r.set(http::field::content_type, "application/json");
    r.body() = json_text(body);
    r.body().push_back('\n');
    return r;
}

Response error_response(unsigned status, std::string_view code, std::string_view message,
                        const std::vector<std::string>& details) {
    json::object e;
    e["code"] = code;
    e["message"] = message;
    if (!details.empty()) {
        json::array d;
        for (const auto& s : details) d.emplace_back(s);
        e["details"] = std::move(d);
    }
    json::object body;
    body["error"] = std::move(e);
    return json_response(status, body);
}

Api::Api(boost::asio::io_context& ioc, LedgerService& service, Metrics& metrics, const Config& config,
         PolicyReloader& reloader, Publisher* publisher)
    : ioc_(ioc), service_(service), metrics_(metrics), config_(config), reloader_(reloader), publisher_(publisher),
      reader_(config.database, [this] { service_.wait_durable(); }), disclosure_reader_(config.database),
      history_reader_(config.database, [this] { service_.wait_durable(); }) {}

Api::~Api() {
    import_pool_.join();
    read_pool_.join();
}

Api::Admission Api::admit(const http::request<http::empty_body>& h) const {
    Admission a;
    a.match = match_route(h.method(), h.target());
    if (a.match.route == Route::none) {
        a.reject = error_response(a.match.status, a.match.code, a.match.message);
        if (!a.match.allow.empty()) a.reject->set(http::field::allow, a.match.allow);
        return a;
    }
    const RouteInfo& info = route_info(a.match.route);
    if (info.role != Role::none) {
        const auto auth = h.find(http::field::authorization);
        // The tokens in force now (a reload replaces them); the admission
        // keeps this table alive while the request uses its token.
        auto tokens = reloader_.tokens();
        const Caller c = tokens->authenticate(auth == h.end() ? std::string_view() : std::string_view(auth->value()));
        if (!c.token) {
            a.reject = error_response(401, "unauthorized",
                                      c.presented ? "unknown token" : "send Authorization: Bearer <token>");
            a.reject->set(http::field::www_authenticate, "Bearer realm=\"consentd\"");
            return a;
        }
        if (c.token->role < info.role) {
            a.reject = error_response(403, "forbidden",
                                      "token '" + c.token->name + "' has role " +
                                          std::string(to_string(c.token->role)) + "; this endpoint needs " +
                                          std::string(to_string(info.role)));
            return a;
        }
        a.token = std::shared_ptr<const Token>(std::move(tokens), c.token);
    }
    // ?wait=enforced is checked here, before the body: bad input changes nothing.
    const std::string* wait = a.match.param("wait");
    const std::string* timeout = a.match.param("timeout");
    if (wait && *wait != "enforced") {
        a.reject = error_response(400, "invalid_parameter", "wait takes one value: wait=enforced");
        return a;
    }
    if (timeout && !wait) {
        a.reject = error_response(400, "invalid_parameter", "timeout goes with wait=enforced");
        return a;
    }
    if (wait) {
        a.enforced_wait = config_.dataplanes.enforced_wait_timeout;
        if (timeout) {
            std::string why;
            const auto t = policy::syntax::parse_duration(*timeout, why);
            if (!t || t->count() < 1 || *t > std::chrono::minutes(1)) {
                a.reject = error_response(400, "invalid_parameter",
                                          "timeout must be a duration from 1ms to 60s, like 500ms or 2s");
                return a;
            }
            a.enforced_wait = *t;
        }
    }
    // A route that needs no token takes no body: anyone may call it, so it
    // must not buffer what anyone sends (issue 17: 1,000 × 1 MiB to /healthz).
    a.body_limit = info.role == Role::none ? 0
                   : info.import_body      ? config_.limits.max_import_bytes
                                           : config_.limits.max_body_bytes;
    a.body_timeout = info.import_body ? config_.limits.import_timeout : config_.limits.body_timeout;
    if (const auto len = h.find(http::field::content_length); len != h.end()) {
        const auto n = policy::syntax::parse_decimal(len->value());
        if (n && *n > a.body_limit) {
            a.reject = error_response(413, "body_too_large",
                                      "the body is " + std::to_string(*n) + " bytes; this endpoint takes at most " +
                                          std::to_string(a.body_limit));
            return a;
        }
    }
    if (info.import_body) {
        if (import_busy_->exchange(true)) {
            a.reject = error_response(409, "import_in_progress", "another import is running; retry when it is done");
            return a;
        }
        a.import_slot = std::make_shared<ImportSlot>(import_busy_);
    }
    return a;
}

void Api::handle(const Admission& a, Request&& req, Respond respond) {
    switch (a.match.route) {
    case Route::healthz: {
        json::object o;
        // Fenced (docs/scale-out.md, "Fencing"): what this consentd would
        // read out may lack changes recorded elsewhere; 503 turns a load
        // balancer to another instance.
        const bool in_step = service_.in_step();
        o["status"] = in_step ? "ok" : "out_of_step";
        // A load balancer's check for where changes go (docs/scale-out.md,
        // "Followers"): false while this consentd follows another writer.
        o["writer"] = !service_.following();
        respond(json_response(in_step ? 200 : 503, o));
        return;
    }
    case Route::metrics: {
        Response r{http::status::ok, 11};
        r.set(http::field::content_type, "text/plain; version=0.0.4");
        r.body() = metrics_.render();
        if (publisher_) publisher_->render_metrics(r.body());
        respond(std::move(r));
        return;
    }
    case Route::purposes: get_purposes(respond); return;
    case Route::dataplanes: get_dataplanes(a, respond); return;
    case Route::ledger_checkpoint: get_checkpoint(respond); return;
    case Route::subscriber_get: get_subscriber(a, respond); return;
    case Route::receipt_get: get_receipt(a, respond); return;
    case Route::disclosures_get: get_disclosures(a, respond); return;
    case Route::binding_get: get_binding(a, respond); return;
    case Route::import: import(a, req, std::move(req.body()), respond); return;
    case Route::policy_reload: reload_policy(std::move(respond)); return;
    default: break;
    }
    std::optional<Response> error;
    const auto body = json_body(req, error);
    if (!body) {
        respond(std::move(*error));
        return;
    }
    switch (a.match.route) {
    case Route::consent_put: put_consent(a, *body, true, respond); return;
    case Route::consent_delete: put_consent(a, *body, false, respond); return;
    case Route::binding_put: put_binding(a, *body, respond); return;
    case Route::binding_delete: delete_binding(a, *body, respond); return;
    case Route::portal_link: post_portal_link(a, *body, respond); return;
    default: respond(error_response(500, "internal", "unhandled route"));
    }
}

void Api::get_checkpoint(Respond& respond) {
    const auto* latest = checkpoints_ ? &checkpoints_->latest() : nullptr;
    if (!latest || !*latest) {
        respond(error_response(404, "no_checkpoint",
                               checkpoints_ ? "no checkpoint signed yet"
                                            : "signed checkpoints are off (ledger.checkpoints in the config)"));
        return;
    }
    const Checkpoint& c = **latest;
    json::object o;
    o["seq"] = c.seq;
    o["head"] = c.head;
    o["time"] = c.time;
    o["key_id"] = c.key_id;
    o["line"] = c.line();  // as in the checkpoint file: verify-ledger --checkpoints reads it
    respond(json_response(200, o));
}

void Api::get_purposes(Respond& respond) {
    const auto policy = service_.policy();
    json::array purposes;
    for (unsigned i = 0; i < policy->purposes.size(); ++i) {
        const Purpose& p = policy->purposes[i];
        json::object o;
        o["name"] = p.name;
        o["bit"] = i;
        o["description"] = p.description;
        o["benefit"] = p.benefit;
        json::array data;
        for (const auto& d : p.data) data.emplace_back(d);
        o["data"] = std::move(data);
        o["retention"] = p.retention;
        json::array collectors;
        for (const auto& c : policy->collectors) {
            if (c.purpose != i) continue;
            json::object co;
            co["name"] = c.name;
            co["description"] = c.description;
            collectors.emplace_back(std::move(co));
        }
        o["collectors"] = std::move(collectors);
        purposes.emplace_back(std::move(o));
    }
    json::array exemptions;
    for (const auto& e : policy->exemptions) {
        json::object o;
        o["name"] = e.name;
        o["reason"] = e.reason;
        exemptions.emplace_back(std::move(o));
    }
    json::object body;
    body["purposes"] = std::move(purposes);
    body["exemptions"] = std::move(exemptions);
    respond(json_response(200, body));
}

void Api::get_dataplanes(const Admission& a, Respond& respond) {
    bool with_stats = false;
    if (const auto* s = a.match.param("stats")) {
        if (*s != "true" && *s != "false") {
            respond(error_response(400, "invalid_parameter", "stats takes true or false"));
            return;
        }
        with_stats = *s == "true";
    }
    json::object body;
    json::array list, gone;
    if (publisher_) {
        for (const auto& d : publisher_->dataplanes()) list.emplace_back(to_json(d, with_stats));
        for (const auto& d : publisher_->disconnected_dataplanes()) gone.emplace_back(to_json(d, with_stats));
    }
    body["head_seq"] = publisher_ ? publisher_->head_seq() : service_.head_seq();
    body["dataplanes"] = std::move(list);
    body["disconnected"] = std::move(gone);
    respond(json_response(200, body));
}

void Api::get_subscriber(const Admission& a, Respond& respond) {
    size_t limit = config_.history_limit;
    if (const auto* h = a.match.param("history")) {
        const auto n = policy::syntax::parse_decimal(*h);
        if (!n || *n > 100000) {
            respond(error_response(400, "invalid_parameter", "history must be a number of events, 0..100000"));
            return;
        }
        limit = *n;
    }
    uint64_t before = uint64_t(INT64_MAX);
    if (const auto* b = a.match.param("before")) {
        const auto n = policy::syntax::parse_decimal(*b);
        if (!n || *n < 1 || *n > uint64_t(INT64_MAX)) {
            respond(error_response(400, "invalid_parameter",
                                   "before must be an event seq from 1 (history_before of the previous page)"));
            return;
        }
        before = *n;
    }
    // The read and the answer's JSON on the read thread; the answer back here.
    boost::asio::post(read_pool_, [this, subscriber = a.match.subscriber, limit, before, policy = service_.policy(),
                                   respond = std::move(respond)]() mutable {
        Response answer = subscriber_answer(subscriber, limit, before, *policy);
        boost::asio::post(
            ioc_, [answer = std::move(answer), respond = std::move(respond)]() mutable { respond(std::move(answer)); });
    });
}

Response Api::subscriber_answer(const std::string& subscriber, size_t limit, uint64_t before, const Policy& policy) {
    std::optional<SubscriberRecord> r;
    try {
        r = history_reader_.subscriber(subscriber, limit, before);
    } catch (const std::exception& e) {
        log_error(std::string("reading the ledger: ") + e.what());
        return error_response(503, "ledger_unavailable", "the ledger could not be read; retry");
    }
    if (!r)
        return error_response(404, "unknown_subscriber", "the ledger has no event for subscriber '" + subscriber + "'");
    json::array consents;
    for (size_t i = 0; i < r->consents.size(); ++i) {
        const ConsentRow& c = r->consents[i];
        json::object o;
        o["purpose"] = c.purpose;
        o["seq"] = c.seq;
        o["time"] = c.time;
        // Since when, without a break: the run's first grant.
        o["since_seq"] = r->runs[i].first_seq;
        o["since"] = r->runs[i].first_time;
        o["source"] = c.source;
        o["notice_version"] = json_or_null(c.notice_version);
        o["credential"] = c.credential;
        // A purpose the policy no longer defines is kept but not enforced.
        o["in_policy"] = policy.purpose_index(c.purpose).has_value();
        consents.emplace_back(std::move(o));
    }
    // The answer's text is written element by element: as one JSON tree, the
    // largest page (100,000 events, and a subscriber's bindings, which are
    // not paged) took about 270 MiB to build a 31 MiB answer (issue 17;
    // docs/consentd.md, "Limits under attack").
    std::string text = "{\"subscriber\":" + json_text(json::value(subscriber)) +
                       ",\"consents\":" + json_text(consents) + ",\"bindings\":[";
    for (size_t i = 0; i < r->bindings.size(); ++i) {
        const auto& b = r->bindings[i];
        const auto p = parse_binding_text(b.address);
        if (i) text += ',';
        append_binding_json(text, b, p && binding_active(*p, policy));
    }
    text += "],\"history\":[";
    for (size_t i = 0; i < r->history.size(); ++i) {
        if (i) text += ',';
        append_event_json(text, r->history[i]);
    }
    text += "],\"history_total\":" + std::to_string(r->event_count);
    text += std::string(",\"history_truncated\":") + (r->older ? "true" : "false");
    // The next (older) page: ?before=<this>.
    if (r->older) text += ",\"history_before\":" + std::to_string(r->history.empty() ? before : r->history.front().seq);
    text += "}\n";
    Response answer{http::status::ok, 11};
    answer.set(http::field::content_type, "application/json");
    answer.body() = std::move(text);
    return answer;
}

// Days a disclosures request covers by default, and at most.
constexpr int kDisclosureDefaultDays = 30;
constexpr int kDisclosureMaxDays = 366;

void Api::get_disclosures(const Admission& a, Respond& respond) {
    using std::chrono::days;
    // Defaults: the last 30 days up to today (UTC); `to` alone: the 30 days
    // before it; `from` alone: up to today.
    std::optional<std::chrono::sys_days> from, to;
    for (const char* name : {"from", "to"}) {
        if (const auto* v = a.match.param(name)) {
            const auto d = parse_day(*v);
            if (!d) {
                respond(error_response(400, "invalid_parameter",
                                       std::string(name) + " must be a date as YYYY-MM-DD (UTC), e.g. 2024-05-01"));
                return;
            }
            (name[0] == 'f' ? from : to) = d;
        }
    }
    if (!to) to = std::chrono::floor<days>(std::chrono::system_clock::now());
    if (!from) from = *to - days(kDisclosureDefaultDays - 1);
    if (*from > *to) {
        respond(error_response(400, "invalid_parameter", "from is after to"));
        return;
    }
    if ((*to - *from).count() + 1 > kDisclosureMaxDays) {
        respond(error_response(400, "invalid_parameter",
                               "at most " + std::to_string(kDisclosureMaxDays) + " days per request"));
        return;
    }
    const std::string from_text = day_text(*from), to_text = day_text(*to);
    std::optional<std::vector<DisclosureRow>> rows;
    try {
        rows = disclosure_reader_.subscriber(a.match.subscriber, from_text, to_text);
    } catch (const std::exception& e) {
        log_error(std::string("reading disclosures: ") + e.what());
        respond(error_response(503, "ledger_unavailable", "the ledger could not be read; retry"));
        return;
    }
    if (!rows) {
        respond(error_response(404, "unknown_subscriber",
                               "the ledger has no event for subscriber '" + a.match.subscriber + "'"));
        return;
    }
    // Rows come ordered by day, destination, purpose, identifier: group them.
    const auto policy = service_.policy();
    json::array day_list;
    uint64_t passed = 0, stripped = 0;
    for (size_t i = 0; i < rows->size();) {
        const std::string& day = (*rows)[i].day;
        json::array collectors;
        while (i < rows->size() && (*rows)[i].day == day) {
            const DisclosureRow& first = (*rows)[i];
            json::object c;
            c["name"] = first.destination;
            // What the destination is, as the policy in force describes it.
            json::value description = nullptr;
            std::string_view kind = "other";  // "(none)" or a name this policy does not know
            for (const auto& col : policy->collectors)
                if (col.name == first.destination) {
                    kind = "collector";
                    description = col.description;
                }
            for (const auto& ex : policy->exemptions)
                if (ex.name == first.destination) {
                    kind = "exemption";
                    description = ex.reason;
                }
            c["kind"] = kind;
            c["description"] = description;
            c["purpose"] = first.purpose;
            json::array identifiers;
            while (i < rows->size() && (*rows)[i].day == day && (*rows)[i].destination == first.destination &&
                   (*rows)[i].purpose == first.purpose) {
                const DisclosureRow& r = (*rows)[i];
                json::object id;
                id["name"] = r.identifier;
                id["passed"] = r.passed;
                id["stripped"] = r.stripped;
                identifiers.emplace_back(std::move(id));
                passed += r.passed;
                stripped += r.stripped;
                ++i;
            }
            c["identifiers"] = std::move(identifiers);
            collectors.emplace_back(std::move(c));
        }
        json::object d;
        d["day"] = day;
        d["collectors"] = std::move(collectors);
        day_list.emplace_back(std::move(d));
    }
    json::object body;
    body["subscriber"] = a.match.subscriber;
    body["from"] = from_text;
    body["to"] = to_text;
    body["days"] = std::move(day_list);
    body["passed"] = passed;
    body["stripped"] = stripped;
    respond(json_response(200, body));
}

void Api::post_portal_link(const Admission& a, const json::value& body, Respond& respond) {
    if (!portal_links_) {
        respond(error_response(404, "portal_not_enabled",
                               "the portal is not enabled in signed-link mode (docs/portal.md)"));
        return;
    }
    if (!body.is_object() || !body.as_object().empty()) {
        respond(error_response(400, "invalid_body", "send no body, or {}"));
        return;
    }
    const auto link = portal_links_->issue(a.match.subscriber);
    json::object j;
    j["subscriber"] = a.match.subscriber;
    j["url"] = link.url;
    j["expires"] = format_utc_ms(link.expires);
    respond(json_response(200, j));
}

void Api::put_consent(const Admission& a, const json::value& body, bool grant, Respond& respond) {
    BodyError error;
    auto fields = read_consent_body(body, grant, error);
    if (!fields) {
        respond(error_response(400, error.code, error.message));
        return;
    }
    ConsentChange c;
    c.subscriber = a.match.subscriber;
    c.purpose = a.match.purpose;
    c.grant = grant;
    c.source = std::move(fields->source);
    c.notice_version = std::move(fields->notice_version);
    submit(
        std::move(c), a,
        [grant](const Outcome& o) {
            json::object j;
            j["subscriber"] = o.subscriber;
            j["granted"] = grant;
            j["changed"] = o.changed;
            j["seq"] = o.last_seq;
            j["time"] = o.time;
            if (o.receipt) j["receipt"] = build_receipt(*o.receipt);
            return j;
        },
        std::move(respond));
}

void Api::get_receipt(const Admission& a, Respond& respond) {
    const std::string& id = a.match.subscriber;
    const std::string n = std::to_string(a.match.seq);
    ReceiptReader::Result r;
    try {
        r = receipts_.read(id, a.match.seq);
    } catch (const std::exception& e) {
        log_error(std::string("reading a receipt: ") + e.what());
        respond(error_response(503, "ledger_unavailable", "the ledger could not be read; retry"));
        return;
    }
    using Status = ReceiptReader::Status;
    switch (r.status) {
    case Status::found: respond(json_response(200, r.receipt)); return;
    case Status::unknown_subscriber:
        respond(error_response(404, "unknown_subscriber", "the ledger has no event for subscriber '" + id + "'"));
        return;
    case Status::unknown_event: respond(error_response(404, "unknown_event", "the ledger has no event " + n)); return;
    case Status::other_subscriber:
        respond(error_response(404, "unknown_event", "event " + n + " is not one of subscriber '" + id + "'"));
        return;
    case Status::not_a_consent_event:
        respond(error_response(
            404, "not_a_consent_event",
            "event " + n + " is a " + std::string(to_string(r.action)) + ": only grants and revokes have receipts"));
        return;
    }
}

namespace {

// The route's {address}, or nullopt with the 400 answer sent.
std::optional<AddressText> route_address(const std::string& text, const Api::Respond& respond) {
    std::string why;
    auto address = parse_address_text(text, why);
    if (!address) respond(error_response(400, "invalid_address", "'" + text + "': " + why));
    return address;
}

// What a bind or unbind answers.
json::object binding_json(const Outcome& o, bool bind) {
    json::object j;
    j["address"] = o.address;
    j["subscriber"] = o.subscriber;
    if (bind) {
        j["previous_subscriber"] = json_or_null(o.previous_subscriber);
        j["changed"] = o.changed;
    }
    j["seq"] = o.last_seq;
    j["time"] = o.time;
    return j;
}

}  // namespace

void Api::put_binding(const Admission& a, const json::value& body, Respond& respond) {
    BodyError error;
    auto fields = read_bind_body(body, error);
    if (!fields) {
        respond(error_response(400, error.code, error.message));
        return;
    }
    const auto address = route_address(a.match.address, respond);
    if (!address) return;
    BindChange c{*address, std::move(fields->subscriber), fields->source.value_or("api")};
    submit(
        std::move(c), a, [](const Outcome& o) { return binding_json(o, true); }, std::move(respond));
}

void Api::delete_binding(const Admission& a, const json::value& body, Respond& respond) {
    BodyError error;
    auto fields = read_unbind_body(body, error);
    if (!fields) {
        respond(error_response(400, error.code, error.message));
        return;
    }
    const auto address = route_address(a.match.address, respond);
    if (!address) return;
    UnbindChange c{*address, std::move(fields->subscriber), fields->source.value_or("api")};
    submit(
        std::move(c), a, [](const Outcome& o) { return binding_json(o, false); }, std::move(respond));
}

namespace {

// An address's bind or unbind event, with whom it names.
json::value address_event_json(const std::optional<Event>& e) {
    if (!e) return nullptr;
    json::object o;
    o["seq"] = e->seq;
    o["time"] = e->time;
    o["action"] = to_string(e->action);
    o["subscriber"] = e->subscriber;
    o["source"] = e->source;
    o["credential"] = e->credential;
    return o;
}

}  // namespace

void Api::get_binding(const Admission& a, Respond& respond) {
    const auto address = route_address(a.match.address, respond);
    if (!address) return;
    // The binding the address falls in, as bind and unbind name it (a bare
    // IPv6 address: its prefix at today's ipv6_key_length).
    std::string why;
    const auto binding = binding_for_unbind(*address, *service_.policy(), why);
    if (!binding) {
        respond(error_response(400, "invalid_address", why));
        return;
    }
    std::optional<std::string> at;
    if (const auto* t = a.match.param("at")) {
        std::string text = *t;
        // A '+' sent unencoded in a query reads as a space: only an offset can be there.
        if (text.size() > 19 && text[text.size() - 6] == ' ') text[text.size() - 6] = '+';
        const auto when = parse_rfc3339(text, why);
        if (!when) {
            respond(error_response(400, "invalid_parameter", "at " + why + " (send '+' as %2B)"));
            return;
        }
        at = format_utc_ms(*when);
    }
    boost::asio::post(read_pool_, [this, key = binding_text(*binding), at, respond = std::move(respond)]() mutable {
        Response answer = [&] {
            AddressRecord r;
            try {
                r = history_reader_.address(key, at);
            } catch (const std::exception& e) {
                log_error(std::string("reading the ledger: ") + e.what());
                return error_response(503, "ledger_unavailable", "the ledger could not be read; retry");
            }
            json::object body;
            body["address"] = key;
            body["at"] = json_or_null(at);
            body["subscriber"] = r.since && r.since->action == Action::bind ? json::value(r.since->subscriber)
                                                                            : json::value(nullptr);
            body["since"] = address_event_json(r.since);
            body["until"] = address_event_json(r.until);
            return json_response(200, body);
        }();
        boost::asio::post(
            ioc_, [answer = std::move(answer), respond = std::move(respond)]() mutable { respond(std::move(answer)); });
    });
}

void Api::submit(Change change, const Admission& a, std::function<json::object(const Outcome&)> ok, Respond respond) {
    service_.submit(
        std::move(change), a.token->name,
        [this, wait = a.enforced_wait, ok = std::move(ok), respond = std::move(respond)](Outcome o) mutable {
            // On the ledger's sync thread: hand the answer to the io thread.
            boost::asio::post(
                ioc_, [this, wait, ok = std::move(ok), respond = std::move(respond), o = std::move(o)]() mutable {
                    if (o.status != Outcome::Status::ok) {
                        respond(error_response(status_of(o.status), o.code, o.message));
                        return;
                    }
                    if (!wait || !publisher_ || o.last_seq == 0) {
                        respond(json_response(200, ok(o)));
                        return;
                    }
                    // Durable now; the answer waits for the data planes
                    // (latency measured from here) or the timeout.
                    publisher_->wait_enforced(
                        o.last_seq, *wait,
                        [ok = std::move(ok), respond = std::move(respond), o](const EnforcementReport& r) mutable {
                            json::object body = ok(o);
                            body["enforcement"] = r.to_json();
                            respond(json_response(200, body));
                        });
                });
        });
}

void Api::import(const Admission& a, const Request& req, std::string&& body, Respond& respond) {
    // The slot taken at admission is given back with the answer, whatever it is.
    respond = [slot = a.import_slot, respond = std::move(respond)](Response r) {
        slot->release();
        respond(std::move(r));
    };
    std::optional<ImportFormat> format;
    std::string wanted;
    if (const auto* f = a.match.param("format")) {
        wanted = *f;
    } else if (const auto ct = req.find(http::field::content_type); ct != req.end()) {
        wanted = media_type(ct->value());
    }
    if (wanted == "ndjson" || wanted == "application/x-ndjson" || wanted == "application/ndjson")
        format = ImportFormat::ndjson;
    else if (wanted == "csv" || wanted == "text/csv")
        format = ImportFormat::csv;
    if (!format) {
        respond(error_response(415, "unsupported_media_type",
                               "send the import as Content-Type: application/x-ndjson or text/csv "
                               "(or ?format=ndjson|csv)"));
        return;
    }
    // Parsing a large import takes seconds: not on the io thread.
    auto text = std::make_shared<std::string>(std::move(body));
    auto policy = service_.policy();
    boost::asio::post(import_pool_, [this, a, text, policy, format, respond = std::move(respond)]() mutable {
        const auto start = std::chrono::steady_clock::now();
        ImportParse parsed;
        try {
            parsed = parse_import(*text, *format, *policy);
        } catch (const std::exception& e) {  // out of memory, most likely
            log_error(std::string("import: ") + e.what());
            boost::asio::post(ioc_, [respond = std::move(respond)] {
                respond(error_response(503, "import_failed", "the import could not be read; nothing was imported"));
            });
            return;
        }
        log_info("import: " + std::to_string(text->size()) + " bytes, " + std::to_string(parsed.records.size()) +
                 " records, " + std::to_string(parsed.errors.size()) + " errors, read in " +
                 std::to_string(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()) +
                 " s");
        text.reset();
        if (!parsed.errors.empty()) {
            auto errors = std::move(parsed.errors);
            boost::asio::post(ioc_, [errors = std::move(errors), respond = std::move(respond)] {
                respond(error_response(400, "invalid_import", "the import has errors; nothing was imported", errors));
            });
            return;
        }
        const size_t records = parsed.records.size();
        auto list = std::make_shared<const std::vector<ImportRecord>>(std::move(parsed.records));
        submit(
            ImportChange{std::move(list), std::move(policy)}, a,
            [records](const Outcome& o) {
                json::object j;
                j["records"] = records;
                j["events"] = o.events;
                j["first_seq"] = o.first_seq;
                j["last_seq"] = o.last_seq;
                j["time"] = o.time;
                return j;
            },
            [respond = std::move(respond)](Response r) mutable { respond(std::move(r)); });
    });
}

void Api::reload_policy(Respond respond) {
    // The daemon's reload (it logs and counts the outcome); here, the answer.
    reloader_.reload([respond = std::move(respond)](const PolicyReload& r) {
        switch (r.status) {
        case PolicyReload::Status::invalid:
            respond(error_response(422, "invalid_policy",
                                   r.file + " is not valid; the running policy and tokens are kept", r.details));
            return;
        case PolicyReload::Status::unusable:
            respond(error_response(422, "invalid_policy",
                                   r.file + " is not usable; the running policy and tokens are kept", r.details));
            return;
        case PolicyReload::Status::failed:
            respond(error_response(status_of(r.outcome.status), r.outcome.code, r.outcome.message));
            return;
        case PolicyReload::Status::reloaded: break;
        }
        json::object j;
        j["reloaded"] = true;
        j["purposes"] = r.purposes;
        j["tokens"] = r.tokens;
        j["table_resync"] = r.outcome.table_resync;
        json::array w;
        for (const auto& s : r.warnings) w.emplace_back(s);
        j["warnings"] = std::move(w);
        respond(json_response(200, j));
    });
}

}  // namespace optgate::consentd
