#include "consentd/portal_page.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>

namespace optgate::consentd {

namespace {

std::string e(std::string_view s) { return html_escape(s); }

// An id attribute from a purpose name (names are free text in the policy).
std::string id_of(std::string_view prefix, std::string_view name) {
    std::string out(prefix);
    for (char ch : name) out += (std::isalnum(static_cast<unsigned char>(ch)) ? ch : '-');
    return out;
}

std::string hidden(std::string_view name, std::string_view value) {
    return "<input type=\"hidden\" name=\"" + e(name) + "\" value=\"" + e(value) + "\">";
}

std::string head(const Catalogue& c, Lang l, Text title, const std::string& extra = {}) {
    return "<!DOCTYPE html>\n<html lang=\"" + std::string(to_string(l)) +
           "\">\n<head>\n<meta charset=\"utf-8\">\n"
           "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
           "<title>" +
           c.html(l, title) + "</title>\n<link rel=\"stylesheet\" href=\"/style.css\">\n" + extra + "</head>\n";
}

}  // namespace

std::string short_time(std::string_view t) {
    // The ledger writes 2024-05-01T10:05:39.960Z; anything else is shown as is.
    if (t.size() >= 16 && t[10] == 'T') return std::string(t.substr(0, 10)) + " " + std::string(t.substr(11, 5));
    return std::string(t);
}

std::vector<PurposeView> purpose_views(const Policy& policy) {
    std::vector<PurposeView> out;
    for (unsigned i = 0; i < policy.purposes.size(); ++i) {
        const Purpose& p = policy.purposes[i];
        PurposeView v;
        v.name = p.name;
        v.description = p.description;
        v.benefit = p.benefit;
        v.data = p.data;
        v.retention = p.retention;
        for (const auto& col : policy.collectors)
            if (col.purpose == i) v.collectors.push_back({col.name, col.description});
        out.push_back(std::move(v));
    }
    return out;
}

std::string render_purpose(const Catalogue& c, Lang l, const PurposeView& p, const std::string& csrf) {
    const std::string hid = id_of("purpose-", p.name);
    std::string h = "<section class=\"purpose\" aria-labelledby=\"" + hid + "\">\n<h2 id=\"" + hid + "\">" + e(p.name) +
                    "</h2>\n";
    if (!p.in_policy) h += "<p>" + c.html(l, Text::no_longer_offered) + "</p>\n";
    if (!p.description.empty()) h += "<p>" + e(p.description) + "</p>\n";
    h += "<dl>\n";
    if (!p.benefit.empty()) h += "<dt>" + c.html(l, Text::benefit) + "</dt><dd>" + e(p.benefit) + "</dd>\n";
    if (!p.data.empty()) {
        std::string data;
        for (const auto& d : p.data) data += (data.empty() ? "" : ", ") + e(d);
        h += "<dt>" + c.html(l, Text::data) + "</dt><dd>" + data + "</dd>\n";
    }
    if (!p.retention.empty()) h += "<dt>" + c.html(l, Text::retention) + "</dt><dd>" + e(p.retention) + "</dd>\n";
    if (!p.collectors.empty()) {
        h += "<dt>" + c.html(l, Text::recipients) + "</dt><dd><ul>";
        for (const auto& col : p.collectors)
            h += "<li><strong>" + e(col.name) + "</strong>" +
                 (col.description.empty() ? "" : ": " + e(col.description)) + "</li>";
        h += "</ul></dd>\n";
    }
    h += "<dt>" + c.html(l, Text::choice) + "</dt><dd><span class=\"state " + (p.granted ? "on" : "off") + "\">" +
         (p.granted ? c.html(l, Text::choice_on, {e(short_time(p.since_time)), e(p.since_source)})
                    : c.html(l, Text::choice_off)) +
         "</span></dd>\n</dl>\n";
    h += "<form method=\"post\" action=\"/choice\" class=\"choice\">\n" + hidden("csrf", csrf) +
         hidden("purpose", p.name) + hidden("action", p.granted ? "off" : "on") + "\n";
    if (p.granted) {
        h += "<button type=\"submit\" class=\"off\">" + c.html(l, Text::turn_off, {e(p.name)}) + "</button>\n";
    } else if (p.in_policy) {
        const std::string aid = id_of("agree-", p.name);
        h += "<p class=\"agree\"><input type=\"checkbox\" id=\"" + aid +
             "\" name=\"agree\" value=\"yes\">\n<label for=\"" + aid + "\">" + c.html(l, Text::agree) +
             "</label></p>\n<button type=\"submit\" class=\"on\">" + c.html(l, Text::turn_on, {e(p.name)}) +
             "</button>\n";
    }
    h += "</form>\n</section>\n";
    return h;
}

std::string render_history(const Catalogue& c, Lang l, const std::vector<HistoryRow>& rows) {
    std::string h = "<section class=\"history\" aria-labelledby=\"history-title\">\n<h2 id=\"history-title\">" +
                    c.html(l, Text::history_title) + "</h2>\n";
    if (rows.empty()) return h + "<p>" + c.html(l, Text::history_empty) + "</p>\n</section>\n";
    const bool receipts = std::any_of(rows.begin(), rows.end(),
                                      [](const HistoryRow& r) { return !r.receipt_href.empty(); });
    h += "<div class=\"table\" role=\"region\" aria-labelledby=\"history-title\" tabindex=\"0\">\n<table>\n<thead><tr>"
         "<th scope=\"col\">" +
         c.html(l, Text::col_date) + "</th><th scope=\"col\">" + c.html(l, Text::col_purpose) +
         "</th><th scope=\"col\">" + c.html(l, Text::col_choice) + "</th><th scope=\"col\">" +
         c.html(l, Text::col_channel) + "</th><th scope=\"col\">" + c.html(l, Text::col_notice) + "</th>" +
         (receipts ? "<th scope=\"col\">" + c.html(l, Text::col_receipt) + "</th>" : "") + "</tr></thead>\n<tbody>\n";
    // Newest first: what the subscriber just did is on top.
    for (auto it = rows.rbegin(); it != rows.rend(); ++it) {
        const HistoryRow& r = *it;
        h += "<tr><td>" + e(short_time(r.time)) + "</td><td>" + e(r.purpose) + "</td><td>" +
             c.html(l, r.granted ? Text::history_on : Text::history_off) + "</td><td>" + e(r.source) + "</td><td>" +
             e(r.notice_version) + "</td>";
        if (receipts) {
            h += "<td>";
            if (!r.receipt_href.empty())
                h += "<a href=\"" + e(r.receipt_href) + "\" download>" +
                     c.html(l, Text::receipt, {std::to_string(r.seq)}) + "</a>";
            h += "</td>";
        }
        h += "</tr>\n";
    }
    return h + "</tbody>\n</table>\n</div>\n</section>\n";
}

std::string render_disclosures(const Catalogue& c, Lang l, const std::vector<DisclosureRow>& rows,
                               const std::vector<PurposeView>& purposes) {
    std::string h = "<section class=\"shared\" aria-labelledby=\"shared-title\">\n<h2 id=\"shared-title\">" +
                    c.html(l, Text::shared_title) + "</h2>\n<p>" + c.html(l, Text::shared_intro) + "</p>\n";
    struct Sum {
        uint64_t passed = 0, stripped = 0;
    };
    std::map<std::pair<std::string, std::string>, Sum> sums;  // (collector, identifier), sorted
    for (const auto& r : rows) {
        auto& s = sums[{r.destination, r.identifier}];
        s.passed += r.passed;
        s.stripped += r.stripped;
    }
    std::erase_if(sums, [](const auto& kv) { return kv.second.passed + kv.second.stripped == 0; });
    if (sums.empty()) return h + "<p>" + c.html(l, Text::shared_empty) + "</p>\n</section>\n";
    std::map<std::string, std::string> described;
    for (const auto& p : purposes)
        for (const auto& col : p.collectors) described[col.name] = col.description;

    // The chart: one bar per (collector, identifier), passed then removed,
    // scaled to the largest total; its numbers are in the table below too.
    uint64_t max_total = 1;
    for (const auto& [k, s] : sums) max_total = std::max(max_total, s.passed + s.stripped);
    constexpr int kWidth = 420, kBar = 300, kRow = 52, kTop = 34;
    const int height = kTop + int(sums.size()) * kRow;
    h += "<figure>\n<svg class=\"chart\" viewBox=\"0 0 " + std::to_string(kWidth) + " " + std::to_string(height) +
         "\" role=\"img\" aria-labelledby=\"chart-title\">\n<title id=\"chart-title\">" + c.html(l, Text::chart_title) +
         "</title>\n";
    h += "<rect x=\"0\" y=\"4\" width=\"14\" height=\"14\" fill=\"#1b6e35\"/><text x=\"20\" y=\"16\">" +
         c.html(l, Text::col_passed) +
         "</text>\n<rect x=\"140\" y=\"4\" width=\"14\" height=\"14\" fill=\"#5a5a5a\"/><text x=\"160\" y=\"16\">" +
         c.html(l, Text::col_stripped) + "</text>\n";
    int y = kTop;
    for (const auto& [k, s] : sums) {
        const int wp = int(std::lround(double(s.passed) / double(max_total) * kBar));
        const int ws = int(std::lround(double(s.stripped) / double(max_total) * kBar));
        h += "<text x=\"0\" y=\"" + std::to_string(y + 14) + "\">" + e(k.first) + " · " + e(k.second) + "</text>\n";
        if (wp > 0)
            h += "<rect x=\"0\" y=\"" + std::to_string(y + 20) + "\" width=\"" + std::to_string(wp) +
                 "\" height=\"20\" fill=\"#1b6e35\"/>\n";
        if (ws > 0)
            h += "<rect x=\"" + std::to_string(wp) + "\" y=\"" + std::to_string(y + 20) + "\" width=\"" +
                 std::to_string(ws) + "\" height=\"20\" fill=\"#5a5a5a\"/>\n";
        h += "<text x=\"" + std::to_string(wp + ws + 6) + "\" y=\"" + std::to_string(y + 35) + "\">" +
             std::to_string(s.passed) + " / " + std::to_string(s.stripped) + "</text>\n";
        y += kRow;
    }
    h += "</svg>\n</figure>\n";

    h += "<div class=\"table\" role=\"region\" aria-labelledby=\"shared-title\" tabindex=\"0\">\n<table>\n<thead><tr>"
         "<th scope=\"col\">" +
         c.html(l, Text::col_recipient) + "</th><th scope=\"col\">" + c.html(l, Text::col_identifier) +
         "</th><th scope=\"col\" class=\"num\">" + c.html(l, Text::col_passed) +
         "</th><th scope=\"col\" class=\"num\">" + c.html(l, Text::col_stripped) + "</th></tr></thead>\n<tbody>\n";
    for (const auto& [k, s] : sums) {
        const auto d = described.find(k.first);
        h += "<tr><td><strong>" + e(k.first) + "</strong>" +
             (d != described.end() && !d->second.empty() ? "<br><span class=\"who\">" + e(d->second) + "</span>" : "") +
             "</td><td>" + e(k.second) + "</td><td class=\"num\">" + std::to_string(s.passed) +
             "</td><td class=\"num\">" + std::to_string(s.stripped) + "</td></tr>\n";
    }
    return h + "</tbody>\n</table>\n</div>\n</section>\n";
}

std::string render_page(const Catalogue& c, const PageView& v) {
    const Lang l = v.lang;
    std::string h = head(c, l, Text::title);
    h += "<body>\n<a class=\"skip\" href=\"#choices\">" + c.html(l, Text::skip_to_content) + "</a>\n<header>\n<h1>" +
         c.html(l, Text::title) + "</h1>\n<p>" +
         (v.line_address.empty()
              ? c.html(l, Text::applies_account, {"<strong>" + e(v.subscriber) + "</strong>"})
              : c.html(l, Text::applies_line,
                       {"<strong>" + e(v.line_address) + "</strong>", "<strong>" + e(v.subscriber) + "</strong>"})) +
         "</p>\n</header>\n<main id=\"main\">\n";
    if (v.flash) {
        static constexpr std::string_view kClass[] = {"ok", "pending", "error"};
        h += "<div class=\"flash " + std::string(kClass[size_t(v.flash->kind)]) + "\" role=\"" +
             (v.flash->kind == Flash::Kind::error ? "alert" : "status") + "\">" + v.flash->html + "</div>\n";
    }
    h += "<p class=\"intro\">" + c.html(l, Text::intro) + "</p>\n<div id=\"choices\">\n";
    for (const auto& p : v.purposes) h += render_purpose(c, l, p, v.csrf);
    h += "</div>\n" + render_history(c, l, v.history);
    if (v.disclosures) h += render_disclosures(c, l, *v.disclosures, v.purposes);
    h += "</main>\n<footer>\n<p>" + c.html(l, Text::notice_version, {e(v.notice_version)}) +
         "</p>\n<form method=\"post\" action=\"/logout\">" + hidden("csrf", v.csrf) + "<button type=\"submit\">" +
         c.html(l, Text::logout) + "</button></form>\n</footer>\n</body>\n</html>\n";
    return h;
}

std::string render_message_page(const Catalogue& c, Lang l, Text title, const std::string& body_html, bool link_back,
                                const std::string& head_extra) {
    std::string h = head(c, l, title, head_extra);
    h += "<body>\n<main id=\"main\" class=\"message\">\n<h1>" + c.html(l, title) + "</h1>\n<p>" + body_html + "</p>\n";
    if (link_back) h += "<p><a href=\"/\">" + c.html(l, Text::back) + "</a></p>\n";
    return h + "</main>\n</body>\n</html>\n";
}

std::string render_confirm_page(const Catalogue& c, Lang l, const PurposeView& p, bool grant, bool agreed,
                                const std::string& line_address, const std::string& csrf) {
    std::string h = head(c, l, Text::confirm_title);
    h += "<body>\n<main id=\"main\" class=\"message\">\n<h1>" + c.html(l, Text::confirm_title) + "</h1>\n";
    h += "<form method=\"post\" action=\"/choice\">\n<p>" +
         c.html(l, grant ? Text::confirm_on : Text::confirm_off,
                {"<strong>" + e(p.name) + "</strong>", "<strong>" + e(line_address) + "</strong>"}) +
         "</p>\n" + hidden("csrf", csrf) + hidden("purpose", p.name) + hidden("action", grant ? "on" : "off") +
         (agreed ? hidden("agree", "yes") : "") + hidden("line", line_address) + hidden("confirm", "yes") +
         "\n<p class=\"buttons\"><button type=\"submit\" class=\"" + (grant ? "on" : "off") + "\">" +
         c.html(l, Text::confirm) + "</button> <a href=\"/\">" + c.html(l, Text::cancel) +
         "</a></p>\n</form>\n</main>\n</body>\n</html>\n";
    return h;
}

std::string_view portal_css() {
    // System fonts, high contrast (text 16:1, buttons over 7:1, graphics
    // over 4.5:1), a visible focus ring, one column that fits 320 px.
    // History dates and notice versions are not broken at their hyphens.
    // Turning on and turning off look alike: neither is the nudged choice.
    return R"CSS(*,*::before,*::after{box-sizing:border-box}
html{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans",sans-serif;font-size:100%;line-height:1.5;color:#1a1a1a;background:#f4f5f7}
body{margin:0 auto;max-width:46rem;padding:1rem}
h1{font-size:1.75rem;line-height:1.2;margin:.5rem 0}
h2{font-size:1.3rem;margin:0 0 .5rem}
a{color:#0b4f8a}
:focus-visible{outline:3px solid #b34700;outline-offset:2px}
.skip{position:absolute;left:-999px}
.skip:focus{position:static;display:inline-block;padding:.25rem .5rem;background:#fff}
header,main>section,.purpose,footer,.message{background:#fff;border:1px solid #c9ced6;border-radius:.5rem;padding:1rem 1.25rem;margin:1rem 0}
header p{margin:.25rem 0}
.intro{margin:1rem .25rem}
dl{margin:.5rem 0;display:grid;grid-template-columns:minmax(7rem,max-content) 1fr;gap:.35rem 1rem}
dt{font-weight:600}
dd{margin:0}
dd ul{margin:0;padding-left:1.1rem}
.state{font-weight:600}
.state.on{color:#1b6e35}
.state.off{color:#4a4a4a}
.agree{display:flex;gap:.6rem;align-items:flex-start;margin:.75rem 0}
.agree input{width:1.4rem;height:1.4rem;margin:.1rem 0 0;flex:none}
button{font:inherit;font-weight:600;min-height:2.75rem;padding:.5rem 1rem;border-radius:.4rem;cursor:pointer;border:2px solid #0b4f8a;background:#fff;color:#0b4f8a}
button.on,button.off{background:#0b4f8a;color:#fff}
button:hover{text-decoration:underline}
.flash{border-radius:.5rem;padding:.75rem 1rem;margin:1rem 0;border:2px solid}
.flash.ok{background:#e9f6ee;border-color:#1b6e35}
.flash.pending{background:#fff6e0;border-color:#8a5a00}
.flash.error{background:#fdecec;border-color:#a4161a}
.table{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:.95rem}
th,td{text-align:left;padding:.4rem .5rem;border-bottom:1px solid #d5d9df;vertical-align:top}
.num{text-align:right;font-variant-numeric:tabular-nums}
.history td:first-child{min-width:7rem}
.history td:nth-child(5){white-space:nowrap}
.who{color:#4a4a4a;font-size:.9rem}
figure{margin:.5rem 0 1rem}
svg.chart{width:100%;max-width:34rem;height:auto;font-size:14px;font-family:inherit}
svg.chart text{fill:#1a1a1a}
footer{display:flex;flex-wrap:wrap;gap:1rem;align-items:center;justify-content:space-between}
footer p{margin:0}
.buttons{display:flex;gap:1rem;align-items:center}
@media (max-width:30rem){body{padding:.5rem}dl{grid-template-columns:1fr}dt{margin-top:.35rem}h1{font-size:1.5rem}}
)CSS";
}

}  // namespace optgate::consentd
