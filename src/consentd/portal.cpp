#include "consentd/portal.hpp"

#include <boost/asio/post.hpp>
#include <boost/beast/http/field.hpp>

#include <algorithm>

#include "consentd/api.hpp"  // json_response: the receipt as the API answers it
#include "consentd/binding_address.hpp"
#include "consentd/log.hpp"
#include "core/chars.hpp"
#include "policy/values.hpp"

namespace optgate::consentd {

namespace http = boost::beast::http;

namespace {

constexpr std::string_view kCookie = "optgate_portal";
constexpr auto kWindow = std::chrono::minutes(1);

// The credential recorded on the events: how the subscriber was identified.
std::string credential_of(PortalConfig::Mode m) {
    return m == PortalConfig::Mode::network ? "portal-network" : "portal-signed-link";
}

std::optional<IpAddr> to_ip(const boost::asio::ip::address& a) {
    if (a.is_v4()) return IpAddr::from_v4(a.to_v4().to_bytes().data());
    const auto v6 = a.to_v6();
    if (v6.is_v4_mapped())
        return IpAddr::from_v4(boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, v6).to_bytes().data());
    return IpAddr::from_v6(v6.to_bytes().data());
}

bool in_any(const std::vector<Prefix>& ps, const IpAddr& a) {
    return std::any_of(ps.begin(), ps.end(), [&](const Prefix& p) { return p.contains(a); });
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

// application/x-www-form-urlencoded: '+' is a space, %XX a byte.
std::optional<std::string> percent_decode(std::string_view s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '+') {
            out += ' ';
        } else if (s[i] == '%') {
            if (i + 2 >= s.size()) return std::nullopt;
            const int hi = hex_chars::value(s[i + 1]), lo = hex_chars::value(s[i + 2]);
            if (hi < 0 || lo < 0) return std::nullopt;
            out += char(hi * 16 + lo);
            i += 2;
        } else {
            out += s[i];
        }
    }
    return out;
}

// Compares in time independent of where the strings differ.
bool same_secret(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    unsigned char diff = 0;
    for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
    return diff == 0;
}

}  // namespace

std::optional<std::unordered_map<std::string, std::string>> parse_form(std::string_view body,
                                                                       const std::vector<std::string_view>& allowed) {
    std::unordered_map<std::string, std::string> out;
    while (!body.empty()) {
        const auto amp = body.find('&');
        const std::string_view pair = body.substr(0, amp);
        body = amp == std::string_view::npos ? std::string_view() : body.substr(amp + 1);
        if (pair.empty()) continue;
        const auto eq = pair.find('=');
        const auto key = percent_decode(pair.substr(0, eq));
        const auto value = percent_decode(eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1));
        if (!key || !value) return std::nullopt;
        if (std::find(allowed.begin(), allowed.end(), *key) == allowed.end()) return std::nullopt;
        if (!out.emplace(*key, *value).second) return std::nullopt;
    }
    return out;
}

struct Portal::Context {
    const Request* req = nullptr;
    Lang lang = Lang::en;
    IpAddr client;
    std::string set_cookie;
    Respond respond;
};

Portal::Portal(boost::asio::io_context& ioc, LedgerService& service, Publisher* publisher, const Config& config,
               Catalogue catalogue, PortalLinks* links)
    : ioc_(ioc), service_(service), publisher_(publisher), config_(config), portal_(config.portal),
      catalogue_(std::move(catalogue)), links_(links), reader_(config.database, [this] { service_.wait_durable(); }) {}

std::optional<IpAddr> client_address(const std::vector<Prefix>& trusted, const IpAddr& peer,
                                     std::string_view forwarded_for) {
    if (!in_any(trusted, peer)) return peer;
    // Proxies append: the rightmost entry that is not one of ours is the
    // client; anything left of it was written by the client itself.
    while (!forwarded_for.empty()) {
        const auto comma = forwarded_for.rfind(',');
        const std::string_view item = trim(comma == std::string_view::npos ? forwarded_for
                                                                           : forwarded_for.substr(comma + 1));
        forwarded_for = comma == std::string_view::npos ? std::string_view() : forwarded_for.substr(0, comma);
        const auto ip = IpAddr::parse(item);
        if (!ip) return std::nullopt;
        if (!in_any(trusted, *ip)) return ip;
    }
    return peer;
}

Portal::Response Portal::page(Context& cx, unsigned status, std::string html) const {
    Response r{http::status(status), 11};
    r.set(http::field::content_type, "text/html; charset=utf-8");
    r.set(http::field::content_language, to_string(cx.lang));
    r.set(http::field::vary, "Accept-Language, Cookie");
    if (!cx.set_cookie.empty()) r.set(http::field::set_cookie, cx.set_cookie);
    r.body() = std::move(html);
    return r;
}

Portal::Response Portal::message(Context& cx, unsigned status, Text title, const std::string& body_html,
                                 bool link_back) {
    return page(cx, status, render_message_page(catalogue_, cx.lang, title, body_html, link_back));
}

void Portal::handle(const Request& req, const boost::asio::ip::address& peer, Respond respond) {
    Context cx;
    cx.req = &req;
    cx.respond = [respond = std::move(respond)](Response r) {
        // Nothing here may be cached, framed or sent on as a referrer (the
        // link's token is in the URL).
        r.set(http::field::cache_control, "no-store");
        r.set("Content-Security-Policy",
              "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; "
              "base-uri 'none'");
        r.set("X-Content-Type-Options", "nosniff");
        r.set("X-Frame-Options", "DENY");
        r.set("Referrer-Policy", "no-referrer");
        respond(std::move(r));
    };
    if (const auto al = req.find(http::field::accept_language); al != req.end()) cx.lang = choose_lang(al->value());
    std::string forwarded;
    for (auto [it, end] = req.equal_range("X-Forwarded-For"); it != end; ++it)
        forwarded += (forwarded.empty() ? "" : ",") + std::string(it->value());
    const auto peer_ip = to_ip(peer);
    const auto client = peer_ip ? client_address(portal_.trusted_proxies, *peer_ip, forwarded) : std::nullopt;
    if (!client) {
        cx.respond(message(cx, 400, Text::form_title, catalogue_.html(cx.lang, Text::form_refused)));
        return;
    }
    cx.client = *client;
    if (over_address_limit(cx.client)) {
        cx.respond(message(cx, 429, Text::rate_title, catalogue_.html(cx.lang, Text::rate_limited), false));
        return;
    }
    try {
        route(cx, req);
    } catch (const std::exception& e) {
        log_error(std::string("portal: ") + e.what());
        cx.respond(message(cx, 503, Text::busy_title, catalogue_.html(cx.lang, Text::done_failed)));
    }
}

void Portal::route(Context& cx, const Request& req) {
    std::string_view target = req.target();
    target = target.substr(0, target.find('?'));  // the page takes no query
    const bool get = req.method() == http::verb::get || req.method() == http::verb::head;
    const bool post = req.method() == http::verb::post;
    if (target == "/style.css" && get) {
        Response r{http::status::ok, 11};
        r.set(http::field::content_type, "text/css; charset=utf-8");
        r.body() = std::string(portal_css());
        cx.respond(std::move(r));
        return;
    }
    if (target == "/" && get) return show_page(cx);
    if (target.rfind("/link/", 0) == 0 && get && links_) return open_link(cx, target.substr(6));
    if (target == "/choice" && post) return post_choice(cx, req);
    if (target == "/logout" && post) return post_logout(cx, req);
    if (target.rfind("/receipts/", 0) == 0 && get && transparency_) return get_receipt(cx, target.substr(10));
    const bool known = target == "/" || target == "/choice" || target == "/logout" || target == "/style.css";
    auto r = message(cx, known ? 405 : 404, Text::not_found_title, catalogue_.html(cx.lang, Text::not_found));
    if (known) r.set(http::field::allow, target == "/choice" || target == "/logout" ? "POST" : "GET, HEAD");
    cx.respond(std::move(r));
}

std::optional<std::pair<std::string, std::string>> Portal::holder_of(const IpAddr& client) const {
    const auto policy = service_.policy();
    AddressText a{Prefix{client, uint8_t(client.bit_width())}, true};
    AddressProblem problem{};
    std::string why;
    const auto binding = binding_for_bind(a, *policy, problem, why);
    if (!binding) return std::nullopt;
    std::optional<std::pair<std::string, std::string>> out;
    service_.snapshot([&](uint64_t, const ConsentState& state) {
        const std::string* h = state.holder(*binding);
        if (h && binding_active(*binding, state.policy())) out.emplace(*h, binding_text(*binding));
    });
    return out;
}

Portal::Session* Portal::find_session(const Request& req) {
    const auto cookie = req.find(http::field::cookie);
    if (cookie == req.end()) return nullptr;
    std::string_view rest = cookie->value();
    while (!rest.empty()) {
        const auto semi = rest.find(';');
        const std::string_view item = trim(rest.substr(0, semi));
        rest = semi == std::string_view::npos ? std::string_view() : rest.substr(semi + 1);
        if (item.size() > kCookie.size() && item.substr(0, kCookie.size()) == kCookie && item[kCookie.size()] == '=') {
            const auto it = sessions_.find(std::string(item.substr(kCookie.size() + 1)));
            if (it == sessions_.end()) continue;
            if (it->second.expires <= Clock::now()) {
                sessions_.erase(it);
                return nullptr;
            }
            return &it->second;
        }
    }
    return nullptr;
}

Portal::Session* Portal::new_session(Context& cx, std::string subscriber, std::string line) {
    const auto now = Clock::now();
    // A session the browser still names is replaced, not kept alongside.
    for (auto* old = find_session(*cx.req); old; old = find_session(*cx.req)) sessions_.erase(std::string(old->id));
    if (sessions_.size() >= portal_.max_sessions)
        std::erase_if(sessions_, [now](const auto& kv) { return kv.second.expires <= now; });
    if (sessions_.size() >= portal_.max_sessions) return nullptr;
    std::string id = random_hex(32);
    Session s;
    s.id = id;
    s.subscriber = std::move(subscriber);
    s.line = std::move(line);
    s.csrf = random_hex(32);
    s.expires = now + portal_.session_lifetime;
    s.window_start = now;
    cx.set_cookie = std::string(kCookie) + "=" + id + "; Path=/; Max-Age=" +
                    std::to_string(std::chrono::duration_cast<std::chrono::seconds>(portal_.session_lifetime).count()) +
                    "; HttpOnly; SameSite=Strict" + (portal_.secure_cookie() ? "; Secure" : "");
    return &sessions_.emplace(std::move(id), std::move(s)).first->second;
}

bool Portal::over_address_limit(const IpAddr& client) {
    const auto now = Clock::now();
    const size_t cap = std::max<size_t>(4096, portal_.max_sessions * 2);
    if (by_address_.size() >= cap)
        std::erase_if(by_address_, [now](const auto& kv) { return now - kv.second.start >= kWindow; });
    const std::string key = client.to_string();
    auto it = by_address_.find(key);
    if (it == by_address_.end()) {
        if (by_address_.size() >= cap) return true;  // cannot count it: refuse rather than let it through
        it = by_address_.emplace(key, Window{now, 0}).first;
    }
    if (now - it->second.start >= kWindow) it->second = Window{now, 0};
    return ++it->second.requests > portal_.per_address_per_minute;
}

bool Portal::over_session_limit(Session& s) {
    const auto now = Clock::now();
    if (now - s.window_start >= kWindow) s.window_start = now, s.window_requests = 0;
    return ++s.window_requests > portal_.per_session_per_minute;
}

bool Portal::csrf_ok(const Session& s, const std::string* token) const { return token && same_secret(*token, s.csrf); }

void Portal::open_link(Context& cx, std::string_view token) {
    const auto r = links_->redeem(token);
    using R = PortalLinks::Refusal;
    switch (r.refusal) {
    case R::none: break;
    case R::expired:
    case R::before_restart:
        cx.respond(message(cx, 410, Text::link_expired_title, catalogue_.html(cx.lang, Text::link_expired), false));
        return;
    case R::used:
        cx.respond(message(cx, 410, Text::link_used_title, catalogue_.html(cx.lang, Text::link_used), false));
        return;
    case R::busy: cx.respond(message(cx, 503, Text::busy_title, catalogue_.html(cx.lang, Text::busy), false)); return;
    default:
        cx.respond(message(cx, 400, Text::link_invalid_title, catalogue_.html(cx.lang, Text::link_invalid), false));
        return;
    }
    if (!new_session(cx, r.subscriber, {})) {
        cx.respond(message(cx, 503, Text::busy_title, catalogue_.html(cx.lang, Text::busy), false));
        return;
    }
    // Not a redirect: a SameSite=Strict cookie set by a response to a
    // navigation from another site is not sent on the redirect that follows
    // it. A page of our own that moves on (meta refresh, or the link) is
    // same-site, so the cookie goes with it.
    cx.respond(page(cx, 200,
                    render_message_page(catalogue_, cx.lang, Text::title,
                                        catalogue_.html(cx.lang, Text::signed_in) + " <a href=\"/\">" +
                                            catalogue_.html(cx.lang, Text::continue_link) + "</a>",
                                        false, "<meta http-equiv=\"refresh\" content=\"0; url=/\">\n")));
}

void Portal::show_page(Context& cx) {
    Session* s = find_session(*cx.req);
    std::string line;
    if (portal_.mode == PortalConfig::Mode::network) {
        const auto holder = holder_of(cx.client);
        if (!holder) {
            cx.respond(message(cx, 403, Text::not_recognised_title,
                               catalogue_.html(cx.lang, Text::not_recognised,
                                               {"<strong>" + html_escape(cx.client.to_string()) + "</strong>"}),
                               false));
            return;
        }
        line = holder->second;
        if (!s || s->subscriber != holder->first || s->line != line) s = new_session(cx, holder->first, line);
        if (!s) {
            cx.respond(message(cx, 503, Text::busy_title, catalogue_.html(cx.lang, Text::busy), false));
            return;
        }
    } else if (!s) {
        cx.respond(message(cx, 401, Text::session_title, catalogue_.html(cx.lang, Text::session_ended), false));
        return;
    }
    if (over_session_limit(*s)) {
        cx.respond(message(cx, 429, Text::rate_title, catalogue_.html(cx.lang, Text::rate_limited), false));
        return;
    }
    const auto policy = service_.policy();
    PageView v;
    v.lang = cx.lang;
    v.subscriber = s->subscriber;
    v.line_address = line;
    v.csrf = s->csrf;
    v.notice_version = portal_.notice_version;
    v.flash = std::move(s->flash);
    s->flash.reset();
    v.purposes = purpose_views(*policy);
    if (const auto record = reader_.subscriber(s->subscriber, config_.history_limit)) {
        for (const auto& c : record->consents) {
            auto it = std::find_if(v.purposes.begin(), v.purposes.end(),
                                   [&](const PurposeView& p) { return p.name == c.purpose; });
            if (it == v.purposes.end()) {
                // Kept for a purpose the policy dropped: it can still be revoked.
                PurposeView gone;
                gone.name = c.purpose;
                gone.in_policy = false;
                it = v.purposes.insert(v.purposes.end(), std::move(gone));
            }
            it->granted = true;
            it->since_time = c.time;
            it->since_source = c.source;
        }
        for (const auto& e : record->history) {
            if (e.action != Action::grant && e.action != Action::revoke) continue;
            HistoryRow h;
            h.seq = e.seq;
            h.time = e.time;
            h.purpose = e.purpose.value_or("");
            h.granted = e.action == Action::grant;
            h.source = e.source;
            h.notice_version = e.notice_version.value_or("");
            if (transparency_) h.receipt_href = "/receipts/" + std::to_string(e.seq);
            v.history.push_back(std::move(h));
        }
    }
    if (transparency_) v.disclosures = transparency_->disclosures(s->subscriber, 30);
    cx.respond(page(cx, 200, render_page(catalogue_, v)));
}

void Portal::post_choice(Context& cx, const Request& req) {
    const auto form = parse_form(req.body(), {"csrf", "purpose", "action", "agree", "line", "confirm"});
    Session* s = find_session(req);
    auto field = [&](const char* k) -> const std::string* {
        const auto it = form->find(k);
        return it == form->end() ? nullptr : &it->second;
    };
    if (!form || !s || !csrf_ok(*s, field("csrf"))) {
        cx.respond(message(cx, 403, Text::form_title, catalogue_.html(cx.lang, Text::form_refused)));
        return;
    }
    if (over_session_limit(*s)) {
        cx.respond(message(cx, 429, Text::rate_title, catalogue_.html(cx.lang, Text::rate_limited), false));
        return;
    }
    const std::string* purpose = field("purpose");
    const std::string* action = field("action");
    const std::string* agree = field("agree");
    if (!purpose || !action || (*action != "on" && *action != "off") || (agree && *agree != "yes")) {
        cx.respond(message(cx, 400, Text::form_title, catalogue_.html(cx.lang, Text::form_refused)));
        return;
    }
    const bool grant = *action == "on";
    // Only what the page offered: a policy purpose, or one the subscriber
    // still holds (to revoke it).
    const auto policy = service_.policy();
    auto views = purpose_views(*policy);
    auto view = std::find_if(views.begin(), views.end(), [&](const PurposeView& p) { return p.name == *purpose; });
    if (view == views.end()) {
        bool held = false;
        service_.snapshot(
            [&](uint64_t, const ConsentState& st) { held = !grant && st.granted(s->subscriber, *purpose); });
        if (!held || !policy::syntax::is_subscriber_id(*purpose)) {
            cx.respond(message(cx, 400, Text::form_title, catalogue_.html(cx.lang, Text::form_refused)));
            return;
        }
        PurposeView gone;
        gone.name = *purpose;
        view = views.insert(views.end(), std::move(gone));
    }
    if (portal_.mode == PortalConfig::Mode::network) {
        // The address may have moved to another subscriber since the page
        // was shown: then this session speaks for nobody.
        const auto holder = holder_of(cx.client);
        const std::string* line = field("line");
        if (!holder || holder->first != s->subscriber || holder->second != s->line ||
            (line && *line != holder->second)) {
            cx.respond(message(cx, 409, Text::form_title,
                               catalogue_.html(cx.lang, Text::line_changed,
                                               {"<strong>" + html_escape(cx.client.to_string()) + "</strong>"})));
            sessions_.erase(std::string(s->id));
            return;
        }
    }
    if (grant && !agree) {
        s->flash = Flash{Flash::Kind::error, catalogue_.html(cx.lang, Text::agree_missing, {html_escape(*purpose)})};
        Response r{http::status::see_other, 11};
        r.set(http::field::location, "/");
        cx.respond(std::move(r));
        return;
    }
    if (portal_.mode == PortalConfig::Mode::network && !field("confirm")) {
        cx.respond(
            page(cx, 200, render_confirm_page(catalogue_, cx.lang, *view, grant, agree != nullptr, s->line, s->csrf)));
        return;
    }
    if (const std::string* confirm = field("confirm"); confirm && *confirm != "yes") {
        cx.respond(message(cx, 400, Text::form_title, catalogue_.html(cx.lang, Text::form_refused)));
        return;
    }
    apply_change(cx, *purpose, grant);
}

void Portal::apply_change(Context& cx, const std::string& purpose, bool grant) {
    const Session* s = find_session(*cx.req);
    const std::string sid = s->id;
    ConsentChange c;
    c.subscriber = s->subscriber;
    c.purpose = purpose;
    c.grant = grant;
    c.source = "portal";
    c.notice_version = portal_.notice_version;
    const auto timeout = config_.dataplanes.enforced_wait_timeout;
    // The answer: back to the page, which says how it went (post, redirect,
    // get: a reload does not send the form again).
    auto finish = [this, sid, lang = cx.lang, respond = cx.respond](Flash flash) {
        if (const auto it = sessions_.find(sid); it != sessions_.end()) it->second.flash = std::move(flash);
        Response r{http::status::see_other, 11};
        r.set(http::field::location, "/");
        r.set(http::field::content_language, to_string(lang));
        respond(std::move(r));
    };
    service_.submit(
        std::move(c), credential_of(portal_.mode), [this, finish, purpose, grant, timeout, lang = cx.lang](Outcome o) {
            boost::asio::post(ioc_, [this, finish, purpose, grant, timeout, lang, o = std::move(o)] {
                const std::string name = html_escape(purpose);
                if (o.status != Outcome::Status::ok) {
                    log_warning("portal: change refused: " + o.code + ": " + o.message);
                    finish(Flash{Flash::Kind::error, catalogue_.html(lang, Text::done_failed)});
                    return;
                }
                const Text pending = grant ? Text::done_on_pending : Text::done_off_pending;
                if (!publisher_ || o.last_seq == 0) {
                    finish(Flash{Flash::Kind::pending, catalogue_.html(lang, pending, {name})});
                    return;
                }
                publisher_->wait_enforced(
                    o.last_seq, timeout, [this, finish, grant, lang, name, pending](const EnforcementReport& r) {
                        if (r.status == EnforcementReport::Status::enforced)
                            finish(Flash{Flash::Kind::ok,
                                         catalogue_.html(lang, grant ? Text::done_on_enforced : Text::done_off_enforced,
                                                         {name})});
                        else
                            finish(Flash{Flash::Kind::pending, catalogue_.html(lang, pending, {name})});
                    });
            });
        });
}

void Portal::post_logout(Context& cx, const Request& req) {
    const auto form = parse_form(req.body(), {"csrf"});
    Session* s = find_session(req);
    const std::string* token = form && form->count("csrf") ? &form->at("csrf") : nullptr;
    if (s && !csrf_ok(*s, token)) {
        cx.respond(message(cx, 403, Text::form_title, catalogue_.html(cx.lang, Text::form_refused)));
        return;
    }
    if (s) sessions_.erase(std::string(s->id));
    cx.set_cookie = std::string(kCookie) + "=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict" +
                    (portal_.secure_cookie() ? "; Secure" : "");
    cx.respond(message(cx, 200, Text::logged_out_title, catalogue_.html(cx.lang, Text::logged_out), false));
}

void Portal::get_receipt(Context& cx, std::string_view seq_text) {
    Session* s = find_session(*cx.req);
    if (!s) {
        cx.respond(message(cx, 401, Text::session_title, catalogue_.html(cx.lang, Text::session_ended), false));
        return;
    }
    if (over_session_limit(*s)) {  // each receipt is a ledger read
        cx.respond(message(cx, 429, Text::rate_title, catalogue_.html(cx.lang, Text::rate_limited), false));
        return;
    }
    const auto seq = policy::syntax::parse_decimal(seq_text);
    const auto receipt = seq ? transparency_->receipt(s->subscriber, *seq) : std::nullopt;
    if (!receipt) {
        cx.respond(message(cx, 404, Text::not_found_title, catalogue_.html(cx.lang, Text::not_found)));
        return;
    }
    Response r{http::status::ok, 11};
    r.set(http::field::content_type, "application/json");
    r.set(http::field::content_disposition, "attachment; filename=\"receipt-" + std::to_string(*seq) + ".json\"");
    r.body() = *receipt;
    cx.respond(std::move(r));
}

LedgerTransparency::LedgerTransparency(const std::string& database, std::function<void()> durable)
    : ledger_(database, std::move(durable)), disclosures_(database) {}

std::vector<DisclosureRow> LedgerTransparency::disclosures(const std::string& subscriber, unsigned count) {
    using std::chrono::days;
    const auto today = std::chrono::floor<days>(std::chrono::system_clock::now());
    const auto from = today - days(std::max(count, 1U) - 1);
    auto rows = disclosures_.subscriber(subscriber, day_text(from), day_text(today));
    return rows ? std::move(*rows) : std::vector<DisclosureRow>{};
}

std::optional<std::string> LedgerTransparency::receipt(const std::string& subscriber, uint64_t seq) {
    auto r = receipts_.read(subscriber, seq);
    if (r.status != ReceiptReader::Status::found) return std::nullopt;
    return json_response(200, r.receipt).body();
}

}  // namespace optgate::consentd
