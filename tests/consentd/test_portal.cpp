// The privacy page's parts that need no daemon: signed links, the language
// choice, the catalogue and its overrides, the config section, forms, the
// client address behind proxies, and each rendered section from data built
// here (tests/consentd/portal_test.py drives the whole page in a browser).
#include <doctest/doctest.h>

#include <fstream>

#include "consentd/config.hpp"
#include "consentd/portal.hpp"
#include "consentd/portal_link.hpp"
#include "consentd/portal_page.hpp"
#include "consentd/portal_text.hpp"
#include "consentd/router.hpp"
#include "fixture.hpp"

using namespace optgate;
using namespace optgate::consentd;
using namespace std::chrono_literals;

namespace {

const std::string kPortalSecret = "0123456789abcdef0123456789abcdef-test-secret";

std::string token_of(const std::string& url) { return url.substr(url.find("/link/") + 6); }

size_t occurrences(const std::string& hay, const std::string& needle) {
    size_t n = 0;
    for (size_t p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) ++n;
    return n;
}

std::vector<std::string> portal_config_errors(const std::string& yaml, const std::string& dir) {
    try {
        load_config_text(yaml, "c.yaml", dir);
    } catch (const policy::PolicyError& e) {
        std::vector<std::string> out;
        for (const auto& d : e.diagnostics()) out.push_back(d.to_string());
        return out;
    }
    return {};
}

bool any_contains(const std::vector<std::string>& v, const std::string& s) {
    return std::any_of(v.begin(), v.end(), [&](const std::string& x) { return x.find(s) != std::string::npos; });
}

const std::string kPortalTokens =
    "database: l.db\npolicy: p.yaml\ntokens:\n  - {name: portal, role: write, sha256: "
    "a81e611a041b13f078bf8ebe5dab4d4fd63fcc5594661c918bec093a2f416a7e}\n";

}  // namespace

TEST_CASE("a signed link opens once, for its subscriber, until it expires") {
    PortalLinks links(kPortalSecret, "https://privacy.isp.example", 15min);
    const auto now = PortalLinks::Clock::now();
    const auto issued = links.issue("cust-0042", now);
    CHECK(issued.url.rfind("https://privacy.isp.example/link/", 0) == 0);
    CHECK(issued.expires == std::chrono::time_point_cast<std::chrono::milliseconds>(now) + 15min);
    const std::string token = token_of(issued.url);

    auto r = links.redeem(token, now + 1s);
    CHECK(r.refusal == PortalLinks::Refusal::none);
    CHECK(r.subscriber == "cust-0042");
    CHECK(links.redeem(token, now + 2s).refusal == PortalLinks::Refusal::used);

    const std::string late = token_of(links.issue("cust-0042", now).url);
    CHECK(links.redeem(late, now + 15min + 1ms).refusal == PortalLinks::Refusal::expired);

    // Any change to the payload breaks the signature; so does another key.
    std::string payload = *base64url_decode(token.substr(0, token.find('.')));
    payload.replace(payload.find("cust-0042"), 9, "cust-0043");
    const std::string forged = base64url(payload) + token.substr(token.find('.'));
    CHECK(links.redeem(forged, now).refusal == PortalLinks::Refusal::bad_signature);
    PortalLinks other(kPortalSecret + "x", "https://privacy.isp.example", 15min);
    CHECK(other.redeem(token_of(links.issue("cust-0042", now).url), now).refusal ==
          PortalLinks::Refusal::bad_signature);

    CHECK(links.redeem("", now).refusal == PortalLinks::Refusal::malformed);
    CHECK(links.redeem("no-dot-here", now).refusal == PortalLinks::Refusal::malformed);
    CHECK(links.redeem("a*b.c", now).refusal == PortalLinks::Refusal::malformed);
}

TEST_CASE("links issued before a restart are refused, so a used one never works again") {
    PortalLinks links(kPortalSecret, "http://127.0.0.1:8480", 15min);
    const auto now = PortalLinks::Clock::now();
    const std::string before = token_of(links.issue("cust-1", now).url);
    links.set_started(now + 1s);
    CHECK(links.redeem(before, now + 2s).refusal == PortalLinks::Refusal::before_restart);
    const std::string after = token_of(links.issue("cust-1", now + 1s).url);
    CHECK(links.redeem(after, now + 2s).refusal == PortalLinks::Refusal::none);
}

TEST_CASE("redeemed links are remembered within a bound: past it, links are refused, not let through") {
    PortalLinks links(kPortalSecret, "http://x", 15min, 2);
    const auto now = PortalLinks::Clock::now();
    CHECK(links.redeem(token_of(links.issue("a", now).url), now).refusal == PortalLinks::Refusal::none);
    CHECK(links.redeem(token_of(links.issue("b", now).url), now).refusal == PortalLinks::Refusal::none);
    CHECK(links.redeem(token_of(links.issue("c", now).url), now).refusal == PortalLinks::Refusal::busy);
    // Once the remembered ones expire, there is room again.
    const auto later = now + 16min;
    CHECK(links.redeem(token_of(links.issue("c", later).url), later).refusal == PortalLinks::Refusal::none);
}

TEST_CASE("base64url round-trips every byte and refuses what it did not write") {
    std::string all;
    for (int i = 0; i < 256; ++i) all += char(i);
    for (size_t n : {0, 1, 2, 3, 4, 255, 256}) CHECK(base64url_decode(base64url(all.substr(0, n))) == all.substr(0, n));
    CHECK_FALSE(base64url_decode("ab=c"));
    CHECK_FALSE(base64url_decode("A"));   // 6 bits: not a byte
    CHECK_FALSE(base64url_decode("AB"));  // 12 bits whose last 4 are not zero padding
}

TEST_CASE("Accept-Language picks French or English by q-value") {
    CHECK(choose_lang("fr-CA,fr;q=0.9,en;q=0.8") == Lang::fr);
    CHECK(choose_lang("en-US,en;q=0.9,fr;q=0.8") == Lang::en);
    CHECK(choose_lang("de-DE, fr;q=0.5") == Lang::fr);
    CHECK(choose_lang("FR") == Lang::fr);
    CHECK(choose_lang("en;q=0.4, fr;q=0.7") == Lang::fr);
    CHECK(choose_lang("fr;q=0") == Lang::en);
    CHECK(choose_lang("") == Lang::en);
    CHECK(choose_lang("*") == Lang::en);
    CHECK(choose_lang("fry, frr") == Lang::en);
}

TEST_CASE("catalogue texts are escaped and filled; overrides keep their placeholders") {
    const Catalogue c;
    CHECK(c.html(Lang::fr, Text::title) == "Vos choix de confidentialité");
    CHECK(c.html(Lang::en, Text::turn_on, {"<b>x</b>"}) == "Turn on “<b>x</b>”");  // args are the caller's HTML
    for (size_t t = 0; t < size_t(Text::count); ++t)
        for (Lang l : {Lang::en, Lang::fr}) CHECK_MESSAGE(!c.raw(l, Text(t)).empty(), key_of(Text(t)));

    const auto o = Catalogue::with_overrides_text("fr:\n  title: \"Exemple <Télécom>\"\n  turn_on: \"Oui à {1}\"\n",
                                                  "t.yaml");
    CHECK(o.html(Lang::fr, Text::title) == "Exemple &lt;Télécom&gt;");
    CHECK(o.html(Lang::fr, Text::turn_on, {"pub"}) == "Oui à pub");
    CHECK(o.html(Lang::en, Text::title) == "Your privacy choices");

    auto errors = [](const std::string& yaml) {
        try {
            Catalogue::with_overrides_text(yaml, "t.yaml");
        } catch (const policy::PolicyError& e) {
            std::string all;
            for (const auto& d : e.diagnostics()) all += d.to_string() + "\n";
            return all;
        }
        return std::string();
    };
    CHECK(errors("fr:\n  titel: x\n").find("did you mean 'title'") != std::string::npos);
    CHECK(errors("de:\n  title: x\n").find("de") != std::string::npos);
    CHECK(errors("en:\n  turn_on: \"Turn on\"\n").find("placeholders {1}") != std::string::npos);
    CHECK(errors("en:\n  title: \"Title {1}\"\n").find("placeholders none") != std::string::npos);
}

TEST_CASE("the portal section: off unless present, defaults, and every error") {
    test::TempDir dir;
    {
        std::ofstream(dir.file("link.key")) << std::string(64, 'k') << "\n";
        std::ofstream(dir.file("short.key")) << "too-short\n";
    }
    const auto off = load_config_text(kPortalTokens, "c.yaml", dir.file("")).config;
    CHECK_FALSE(off.portal.enabled);

    const auto on = load_config_text(
                        kPortalTokens + "portal: {link_secret_file: link.key, notice_version: \"2026-01\"}\n", "c.yaml",
                        dir.file(""))
                        .config.portal;
    CHECK(on.enabled);
    CHECK(on.mode == PortalConfig::Mode::signed_link);
    CHECK(on.link_secret == std::string(64, 'k'));
    CHECK(on.url_for(8480) == "http://127.0.0.1:8480");
    CHECK(on.url_for(41234) == "http://127.0.0.1:41234");  // port 0: the one bound
    CHECK(on.link_lifetime == 15min);
    CHECK(on.notice_version == "2026-01");
    CHECK_FALSE(on.secure_cookie());

    const auto net = load_config_text(kPortalTokens +
                                          "portal:\n  mode: network\n  notice_version: v2\n  public_url: "
                                          "https://privacy.isp.example/\n  trusted_proxies: [127.0.0.1, \"::1\"]\n"
                                          "  rate_limits: {per_address: 5, per_session: 3}\n  link_lifetime: 2m\n",
                                      "c.yaml", dir.file(""))
                         .config.portal;
    CHECK(net.mode == PortalConfig::Mode::network);
    CHECK(net.url_for(8480) == "https://privacy.isp.example");
    CHECK(net.secure_cookie());
    CHECK(net.trusted_proxies.size() == 2);
    CHECK(net.per_address_per_minute == 5);
    CHECK(net.per_session_per_minute == 3);
    CHECK(net.link_lifetime == 2min);

    CHECK(any_contains(portal_config_errors(kPortalTokens + "portal: {notice_version: v1}\n", dir.file("")),
                       "needs 'link_secret_file'"));
    CHECK(any_contains(portal_config_errors(
                           kPortalTokens + "portal: {link_secret_file: short.key, notice_version: v1}\n", dir.file("")),
                       "at least 32"));
    CHECK(any_contains(portal_config_errors(
                           kPortalTokens + "portal: {link_secret_file: nope.key, notice_version: v1}\n", dir.file("")),
                       "cannot read 'link_secret_file'"));
    CHECK(
        any_contains(portal_config_errors(kPortalTokens + "portal: {mode: email, notice_version: v1}\n", dir.file("")),
                     "signed-link or network"));
    CHECK(any_contains(portal_config_errors(kPortalTokens + "portal: {mode: network}\n", dir.file("")),
                       "notice_version"));
    CHECK(any_contains(
        portal_config_errors(kPortalTokens + "portal: {mode: network, notice_version: v1, public_url: ftp://x}\n",
                             dir.file("")),
        "'public_url'"));
    CHECK(any_contains(
        portal_config_errors(kPortalTokens + "portal: {mode: network, notice_version: v1, trusted_proxies: [x]}\n",
                             dir.file("")),
        "'trusted_proxies'"));
    CHECK(
        any_contains(portal_config_errors(
                         kPortalTokens + "portal: {mode: network, notice_version: v1, max_sesions: 3}\n", dir.file("")),
                     "did you mean 'max_sessions'"));
}

TEST_CASE("forms: only the fields a form has, each once, percent-decoded") {
    const auto f = parse_form("csrf=ab%2Bc&purpose=carrier-marketing&agree=yes&x=", {"csrf", "purpose", "agree", "x"});
    REQUIRE(f);
    CHECK(f->at("csrf") == "ab+c");
    CHECK(f->at("purpose") == "carrier-marketing");
    CHECK(f->at("x").empty());
    CHECK(parse_form("a=1+2", {"a"})->at("a") == "1 2");
    CHECK_FALSE(parse_form("csrf=a&subscriber=other", {"csrf"}));  // a field the form does not have
    CHECK_FALSE(parse_form("csrf=a&csrf=b", {"csrf"}));
    CHECK_FALSE(parse_form("csrf=%zz", {"csrf"}));
    CHECK_FALSE(parse_form("csrf=%4", {"csrf"}));
}

TEST_CASE("X-Forwarded-For counts only from trusted proxies") {
    const std::vector<Prefix> trusted = {test::P("127.0.0.1/32"), test::P("10.9.0.0/16")};
    const IpAddr proxy = *IpAddr::parse("127.0.0.1");
    const IpAddr direct = *IpAddr::parse("100.64.0.9");
    CHECK(client_address(trusted, direct, "100.64.0.10") == direct);  // not a proxy: its header is ignored
    CHECK(client_address(trusted, proxy, "100.64.0.10") == IpAddr::parse("100.64.0.10"));
    // The client may write anything on the left; the rightmost untrusted entry counts.
    CHECK(client_address(trusted, proxy, "100.64.0.66, 100.64.0.10, 10.9.1.1") == IpAddr::parse("100.64.0.10"));
    CHECK(client_address(trusted, proxy, "") == proxy);
    CHECK_FALSE(client_address(trusted, proxy, "100.64.0.10, garbage"));
}

TEST_CASE("a purpose: what it means, who receives it, and an unticked 'I agree' to turn it on") {
    auto policy = test::sample_policy();
    policy.purposes[0].benefit = "2 EUR off your bill";
    auto views = purpose_views(policy);
    REQUIRE(views.size() == 3);
    CHECK(views[0].benefit == "2 EUR off your bill");  // every purpose states the subscriber's benefit
    CHECK(views[0].collectors.size() == 1);
    CHECK(views[0].collectors[0].name == "adnet");
    CHECK(views[2].collectors.empty());
    views[0].description = "Ads <b>for</b> you";
    views[0].benefit = "Fewer irrelevant ads";
    const Catalogue c;
    const std::string off = render_purpose(c, Lang::en, views[0], "tok");
    CHECK(off.find("Ads &lt;b&gt;for&lt;/b&gt; you") != std::string::npos);
    CHECK(off.find("<dt>What you gain</dt><dd>Fewer irrelevant ads</dd>") != std::string::npos);
    CHECK(off.find("An ad network") != std::string::npos);
    CHECK(off.find("device identifier") != std::string::npos);
    CHECK(off.find("90 days") != std::string::npos);
    CHECK(off.find("type=\"checkbox\" id=\"agree-advertising\" name=\"agree\" value=\"yes\">") != std::string::npos);
    CHECK(off.find("checked") == std::string::npos);
    CHECK(off.find("<label for=\"agree-advertising\">") != std::string::npos);
    CHECK(off.find("name=\"action\" value=\"on\"") != std::string::npos);
    CHECK(off.find("name=\"csrf\" value=\"tok\"") != std::string::npos);
    CHECK(off.find("Off: nothing is shared") != std::string::npos);

    views[0].granted = true;
    views[0].since_time = "2026-01-02T03:04:05.678Z";
    views[0].since_source = "portal";
    const std::string on = render_purpose(c, Lang::en, views[0], "tok");
    CHECK(on.find("On since 2026-01-02 03:04 (through portal)") != std::string::npos);
    CHECK(on.find("name=\"action\" value=\"off\"") != std::string::npos);
    CHECK(on.find("checkbox") == std::string::npos);  // turning off is one click
    views[1].benefit.clear();
    CHECK(render_purpose(c, Lang::en, views[1], "t").find("What you gain") == std::string::npos);
}

TEST_CASE("history: newest first, each with its receipt when there is one") {
    const Catalogue c;
    std::vector<HistoryRow> rows = {{3, "2026-01-01T10:00:00.000Z", "advertising", true, "portal", "v1", "/receipts/3"},
                                    {7, "2026-01-02T11:00:00.000Z", "advertising", false, "call-centre", "", ""}};
    const std::string h = render_history(c, Lang::fr, rows);
    CHECK(h.find("Historique de vos choix") != std::string::npos);
    CHECK(h.find("2026-01-02 11:00") < h.find("2026-01-01 10:00"));
    CHECK(occurrences(h, "<a href=") == 1);
    CHECK(h.find("<a href=\"/receipts/3\" download>Télécharger le reçu du choix 3 (JSON)</a>") != std::string::npos);
    CHECK(h.find("désactivé") != std::string::npos);
    rows[0].receipt_href.clear();
    CHECK(render_history(c, Lang::en, rows).find("Receipt") == std::string::npos);  // no column without receipts
    CHECK(render_history(c, Lang::en, {}).find("No choice recorded yet.") != std::string::npos);
}

TEST_CASE("what was shared: summed per recipient and identifier, bars to scale, and a table") {
    const Catalogue c;
    const auto views = purpose_views(test::sample_policy());
    const std::vector<DisclosureRow> rows = {{"2026-01-01", "adnet", "advertising", "X-UIDH", 10, 5},
                                             {"2026-01-02", "adnet", "advertising", "X-UIDH", 20, 25},
                                             {"2026-01-02", "metrics", "analytics", "ECS", 0, 15},
                                             {"2026-01-03", "metrics", "analytics", "X-UIDH", 0, 0}};
    const std::string h = render_disclosures(c, Lang::en, rows, views);
    // adnet/X-UIDH: 30 passed + 30 removed = the largest: 150 + 150 of 300 units.
    CHECK(h.find("<rect x=\"0\" y=\"54\" width=\"150\" height=\"20\" fill=\"#1b6e35\"/>") != std::string::npos);
    CHECK(h.find("<rect x=\"150\" y=\"54\" width=\"150\" height=\"20\" fill=\"#5a5a5a\"/>") != std::string::npos);
    // metrics/ECS, the next row: 15 of 60 -> 75 units, all removed, from 0.
    CHECK(h.find("<rect x=\"0\" y=\"106\" width=\"75\" height=\"20\" fill=\"#5a5a5a\"/>") != std::string::npos);
    CHECK(h.find("<td class=\"num\">30</td><td class=\"num\">30</td>") != std::string::npos);
    CHECK(h.find("<td class=\"num\">0</td><td class=\"num\">15</td>") != std::string::npos);
    CHECK(h.find("An ad network") != std::string::npos);
    CHECK(occurrences(h, "<tr><td>") == 2);  // the all-zero row is left out
    CHECK(h.find("role=\"img\" aria-labelledby=\"chart-title\"") != std::string::npos);
    CHECK(render_disclosures(c, Lang::en, {}, views).find("None of your identifiers") != std::string::npos);
    CHECK(render_disclosures(c, Lang::en, {{"2026-01-01", "<x>", "p", "y", 1, 0}}, views).find("&lt;x&gt;") !=
          std::string::npos);
}

TEST_CASE("the whole page: language, whom it applies to, and only the sections that have data") {
    const Catalogue c;
    PageView v;
    v.lang = Lang::fr;
    v.subscriber = "cust-0042";
    v.csrf = "tok";
    v.notice_version = "2026-01";
    v.purposes = purpose_views(test::sample_policy());
    v.flash = Flash{Flash::Kind::ok, "fait"};
    std::string h = render_page(c, v);
    CHECK(h.find("<html lang=\"fr\">") != std::string::npos);
    CHECK(h.find("<title>Vos choix de confidentialité</title>") != std::string::npos);
    CHECK(h.find("votre compte <strong>cust-0042</strong>") != std::string::npos);
    CHECK(h.find("role=\"status\">fait</div>") != std::string::npos);
    CHECK(occurrences(h, "action=\"/choice\"") == 3);
    CHECK(occurrences(h, "name=\"csrf\" value=\"tok\"") == 4);  // three purposes and log out
    CHECK(h.find("shared-title") == std::string::npos);
    CHECK(h.find("<script") == std::string::npos);
    v.disclosures.emplace();
    v.line_address = "100.64.0.10";
    h = render_page(c, v);
    CHECK(h.find("shared-title") != std::string::npos);
    CHECK(h.find("l’adresse <strong>100.64.0.10</strong> (compte <strong>cust-0042</strong>)") != std::string::npos);
}

TEST_CASE("the API route that issues links: POST, role write, a valid subscriber id") {
    using boost::beast::http::verb;
    const auto m = match_route(verb::post, "/v1/subscribers/cust-0042/portal-links");
    CHECK(m.route == Route::portal_link);
    CHECK(m.subscriber == "cust-0042");
    CHECK(route_info(m.route).role == Role::write);
    const auto get = match_route(verb::get, "/v1/subscribers/cust-0042/portal-links");
    CHECK(get.status == 405);
    CHECK(get.allow == "POST");
    CHECK(match_route(verb::post, "/v1/subscribers/bad%20id/portal-links").code == "invalid_subscriber_id");
    CHECK(match_route(verb::post, "/v1/subscribers/cust-0042/portal-links?x=1").code == "unknown_parameter");
}
