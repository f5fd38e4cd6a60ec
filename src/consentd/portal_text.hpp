// The privacy page's message catalogue: every string the page shows, in
// English and French, chosen per request from Accept-Language. Operators
// override any text per language with the `portal.texts` file
// (docs/portal.md, "Customising texts"):
//
//   fr:
//     title: "Vos choix de confidentialité chez Exemple Télécom"
//
// Placeholders {1}, {2}... are filled by the page (already escaped); an
// override must keep the same ones.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "policy/loader.hpp"

namespace optgate::consentd {

enum class Lang : uint8_t { en, fr };
inline constexpr size_t kLangCount = 2;
std::string_view to_string(Lang l) noexcept;

// The best supported language of an Accept-Language header (RFC 9110
// §12.5.4: q-values, primary tags; "fr-CA" means French); English when none.
Lang choose_lang(std::string_view accept_language) noexcept;

// One X(name) a line; clang-format would fold the list differently on each run.
// clang-format off
#define OPTGATE_PORTAL_TEXTS(X) \
    X(title) \
    X(skip_to_content) \
    X(applies_account) \
    X(applies_line) \
    X(intro) \
    X(notice_version) \
    X(benefit) \
    X(data) \
    X(retention) \
    X(recipients) \
    X(choice) \
    X(choice_on) \
    X(choice_off) \
    X(no_longer_offered) \
    X(agree) \
    X(turn_on) \
    X(turn_off) \
    X(agree_missing) \
    X(done_on_enforced) \
    X(done_off_enforced) \
    X(done_on_pending) \
    X(done_off_pending) \
    X(done_failed) \
    X(history_title) \
    X(history_empty) \
    X(col_date) \
    X(col_purpose) \
    X(col_choice) \
    X(col_channel) \
    X(col_notice) \
    X(col_receipt) \
    X(history_on) \
    X(history_off) \
    X(receipt) \
    X(shared_title) \
    X(shared_intro) \
    X(shared_empty) \
    X(col_recipient) \
    X(col_identifier) \
    X(col_passed) \
    X(col_stripped) \
    X(chart_title) \
    X(logout) \
    X(logged_out_title) \
    X(logged_out) \
    X(confirm_title) \
    X(confirm_on) \
    X(confirm_off) \
    X(confirm) \
    X(cancel) \
    X(link_expired_title) \
    X(link_expired) \
    X(link_used_title) \
    X(link_used) \
    X(link_invalid_title) \
    X(link_invalid) \
    X(session_title) \
    X(session_ended) \
    X(not_recognised_title) \
    X(not_recognised) \
    X(line_changed) \
    X(form_title) \
    X(form_refused) \
    X(rate_title) \
    X(rate_limited) \
    X(busy_title) \
    X(busy) \
    X(not_found_title) \
    X(not_found) \
    X(back) \
    X(signed_in) \
    X(continue_link)
// clang-format on

enum class Text : uint16_t {
#define OPTGATE_X(name) name,
    OPTGATE_PORTAL_TEXTS(OPTGATE_X)
#undef OPTGATE_X
        count
};

class Catalogue {
public:
    // The built-in texts.
    Catalogue();
    // The built-in texts with the overrides of a texts file; throws
    // policy::PolicyError with every problem (unknown language or key, a
    // placeholder missing or added).
    static Catalogue with_overrides(const std::string& path);
    static Catalogue with_overrides_text(std::string_view yaml, const std::string& name);

    // The text, HTML-escaped, with {1}, {2}... replaced by `args` (which the
    // caller has escaped).
    std::string html(Lang l, Text t, const std::vector<std::string>& args = {}) const;
    const std::string& raw(Lang l, Text t) const { return texts_[size_t(l)][size_t(t)]; }

private:
    std::array<std::array<std::string, size_t(Text::count)>, kLangCount> texts_;
};

std::string_view key_of(Text t) noexcept;
// &, <, >, " and ' as entities.
std::string html_escape(std::string_view s);

}  // namespace optgate::consentd
