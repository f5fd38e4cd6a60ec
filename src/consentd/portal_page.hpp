// The privacy page's HTML, rendered on the server from plain structs (no
// JavaScript, no external asset; docs/portal.md). Each section is its own
// function so that it can be tested, and fed, alone:
//  - render_purpose:     what a purpose means, who receives what, the choice;
//  - render_history:     the subscriber's consent events, each with its receipt;
//  - render_disclosures: what was shared in the last 30 days, as an SVG bar
//                        chart and a table.
// Every text comes from the Catalogue, escaped; every value from the ledger
// or the policy is escaped where it is written.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "consentd/disclosures.hpp"  // DisclosureRow: the store's daily rows
#include "consentd/portal_text.hpp"
#include "core/policy.hpp"

namespace optgate::consentd {

struct CollectorView {
    std::string name, description;
};

// One purpose as the page shows it.
struct PurposeView {
    std::string name;
    std::string description;
    std::string benefit;  // what the subscriber gets; "" : not shown
    std::vector<std::string> data;
    std::string retention;
    std::vector<CollectorView> collectors;
    bool in_policy = true;  // false: a consent kept for a purpose the policy dropped
    bool granted = false;
    std::string since_time, since_source;  // when granted
};

// The policy's purposes, in policy order, none granted yet.
std::vector<PurposeView> purpose_views(const Policy& policy);

// One consent event of the subscriber.
struct HistoryRow {
    uint64_t seq = 0;
    std::string time;  // RFC 3339, as the ledger has it
    std::string purpose;
    bool granted = false;
    std::string source;
    std::string notice_version;  // "" : none recorded
    std::string receipt_href;    // "" : no receipt to link
};

// What the page says about the last change (after its redirect).
struct Flash {
    enum class Kind : uint8_t { ok, pending, error };
    Kind kind = Kind::ok;
    std::string html;  // already rendered from the catalogue
};

struct PageView {
    Lang lang = Lang::en;
    std::string subscriber;
    std::string line_address;  // network mode: the address the page applies to
    std::string csrf;
    std::string notice_version;
    std::optional<Flash> flash;
    std::vector<PurposeView> purposes;
    std::vector<HistoryRow> history;
    // Absent: the section is not shown (nothing feeds it).
    std::optional<std::vector<DisclosureRow>> disclosures;
};

std::string render_purpose(const Catalogue& c, Lang l, const PurposeView& p, const std::string& csrf);
std::string render_history(const Catalogue& c, Lang l, const std::vector<HistoryRow>& rows);
// Rows are summed per (collector, identifier) over their dates.
std::string render_disclosures(const Catalogue& c, Lang l, const std::vector<DisclosureRow>& rows,
                               const std::vector<PurposeView>& purposes);
std::string render_page(const Catalogue& c, const PageView& v);

// A page with a title, one message and, optionally, a link back.
std::string render_message_page(const Catalogue& c, Lang l, Text title, const std::string& body_html,
                                bool link_back = true, const std::string& head_extra = {});

// Network mode: "turn X on/off for the line using ADDRESS?" with Confirm and Cancel.
std::string render_confirm_page(const Catalogue& c, Lang l, const PurposeView& p, bool grant, bool agreed,
                                const std::string& line_address, const std::string& csrf);

// The stylesheet served at /style.css.
std::string_view portal_css();

// "2024-05-01T10:05:39.960Z" -> "2024-05-01 10:05"
std::string short_time(std::string_view rfc3339);

}  // namespace optgate::consentd
