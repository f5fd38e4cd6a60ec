#include "consentd/portal_text.hpp"

#include <algorithm>

#include "policy/yaml_reader.hpp"

namespace optgate::consentd {

namespace {

struct Entry {
    Text text;
    std::string_view en, fr;
};

// One line per text: what the page says, in each language. Plain wording,
// no penalty for saying no, opting out as easy as opting in.
constexpr Entry kEntries[] = {
    {Text::title, "Your privacy choices", "Vos choix de confidentialité"},
    {Text::skip_to_content, "Skip to your choices", "Aller à vos choix"},
    {Text::applies_account, "These choices apply to your account {1}.", "Ces choix s’appliquent à votre compte {1}."},
    {Text::applies_line, "These choices apply to the line using the address {1} (account {2}).",
     "Ces choix s’appliquent à la ligne qui utilise l’adresse {1} (compte {2})."},
    {Text::intro,
     "Nothing about you is shared unless you turn it on here. You can change your mind at any time: turning a choice "
     "off takes one click.",
     "Rien ne vous concernant n’est partagé sans votre accord donné ici. Vous pouvez changer d’avis à tout moment : "
     "désactiver un choix se fait en un clic."},
    {Text::notice_version, "Information notice version {1}.", "Version de la notice d’information : {1}."},
    {Text::benefit, "What you gain", "Ce que vous y gagnez"},
    {Text::data, "Data shared", "Données partagées"},
    {Text::retention, "Kept for", "Durée de conservation"},
    {Text::recipients, "Who receives it", "Qui les reçoit"},
    {Text::choice, "Your choice", "Votre choix"},
    {Text::choice_on, "On since {1} (through {2})", "Activé depuis le {1} (via {2})"},
    {Text::choice_off, "Off: nothing is shared", "Désactivé : rien n’est partagé"},
    {Text::no_longer_offered, "We no longer offer this. You can still turn it off.",
     "Nous ne proposons plus ce partage. Vous pouvez toujours le désactiver."},
    {Text::agree, "I agree that the data above is shared with these recipients for this purpose.",
     "J’accepte que les données ci-dessus soient partagées avec ces destinataires pour cette finalité."},
    {Text::turn_on, "Turn on “{1}”", "Activer « {1} »"},
    {Text::turn_off, "Turn off “{1}”", "Désactiver « {1} »"},
    {Text::agree_missing, "To turn “{1}” on, tick “I agree” first. Nothing was changed.",
     "Pour activer « {1} », cochez d’abord « J’accepte ». Rien n’a été modifié."},
    {Text::done_on_enforced, "“{1}” is on. In effect on the network now.",
     "« {1} » est activé. C’est en vigueur sur le réseau dès maintenant."},
    {Text::done_off_enforced, "“{1}” is off. In effect on the network now.",
     "« {1} » est désactivé. C’est en vigueur sur le réseau dès maintenant."},
    {Text::done_on_pending, "“{1}” is on. Recorded; the network has not confirmed yet.",
     "« {1} » est activé. C’est enregistré ; le réseau ne l’a pas encore confirmé."},
    {Text::done_off_pending, "“{1}” is off. Recorded; the network has not confirmed yet.",
     "« {1} » est désactivé. C’est enregistré ; le réseau ne l’a pas encore confirmé."},
    {Text::done_failed, "Your choice could not be recorded, so nothing was changed. Please try again in a moment.",
     "Votre choix n’a pas pu être enregistré : rien n’a été modifié. Réessayez dans un instant."},
    {Text::history_title, "History of your choices", "Historique de vos choix"},
    {Text::history_empty, "No choice recorded yet.", "Aucun choix enregistré pour l’instant."},
    {Text::col_date, "Date (UTC)", "Date (UTC)"},
    {Text::col_purpose, "Purpose", "Finalité"},
    {Text::col_choice, "Choice", "Choix"},
    {Text::col_channel, "Made through", "Fait via"},
    {Text::col_notice, "Notice", "Notice"},
    {Text::col_receipt, "Receipt", "Reçu"},
    {Text::history_on, "turned on", "activé"},
    {Text::history_off, "turned off", "désactivé"},
    {Text::receipt, "Download the receipt of choice {1} (JSON)", "Télécharger le reçu du choix {1} (JSON)"},
    {Text::shared_title, "What was shared in the last 30 days", "Ce qui a été partagé ces 30 derniers jours"},
    {Text::shared_intro,
     "Counted at the network edge: each time one of your identifiers was on its way to a recipient, whether it was "
     "passed or removed.",
     "Compté en bordure du réseau : chaque fois qu’un de vos identifiants partait vers un destinataire, s’il a été "
     "transmis ou retiré."},
    {Text::shared_empty, "None of your identifiers went to a recipient in the last 30 days.",
     "Aucun de vos identifiants n’est parti vers un destinataire ces 30 derniers jours."},
    {Text::col_recipient, "Recipient", "Destinataire"},
    {Text::col_identifier, "Identifier", "Identifiant"},
    {Text::col_passed, "Passed", "Transmis"},
    {Text::col_stripped, "Removed", "Retirés"},
    {Text::chart_title, "Identifiers passed and removed, per recipient and identifier",
     "Identifiants transmis et retirés, par destinataire et identifiant"},
    {Text::logout, "Log out", "Se déconnecter"},
    {Text::logged_out_title, "You are logged out", "Vous êtes déconnecté"},
    {Text::logged_out, "Your choices are saved. You can close this page.",
     "Vos choix sont enregistrés. Vous pouvez fermer cette page."},
    {Text::confirm_title, "Confirm the change", "Confirmez la modification"},
    {Text::confirm_on, "Turn “{1}” on for the line using the address {2}?",
     "Activer « {1} » pour la ligne qui utilise l’adresse {2} ?"},
    {Text::confirm_off, "Turn “{1}” off for the line using the address {2}?",
     "Désactiver « {1} » pour la ligne qui utilise l’adresse {2} ?"},
    {Text::confirm, "Confirm", "Confirmer"},
    {Text::cancel, "Cancel", "Annuler"},
    {Text::link_expired_title, "This link has expired", "Ce lien a expiré"},
    {Text::link_expired,
     "Links to this page work once and only for a short time. Open the privacy page again from your customer account.",
     "Les liens vers cette page ne servent qu’une fois et peu de temps. Rouvrez la page de confidentialité depuis "
     "votre "
     "espace client."},
    {Text::link_used_title, "This link was already used", "Ce lien a déjà servi"},
    {Text::link_used,
     "Each link opens the page once. Open the privacy page again from your customer account to get a new one.",
     "Chaque lien n’ouvre la page qu’une fois. Rouvrez la page de confidentialité depuis votre espace client pour en "
     "obtenir un nouveau."},
    {Text::link_invalid_title, "This link is not valid", "Ce lien n’est pas valide"},
    {Text::link_invalid,
     "It may have been copied incompletely. Open the privacy page again from your customer account.",
     "Il a peut-être été copié de façon incomplète. Rouvrez la page de confidentialité depuis votre espace client."},
    {Text::session_title, "Your session has ended", "Votre session a pris fin"},
    {Text::session_ended, "Open the privacy page again from your customer account.",
     "Rouvrez la page de confidentialité depuis votre espace client."},
    {Text::not_recognised_title, "Address not recognised", "Adresse non reconnue"},
    {Text::not_recognised,
     "The address {1} does not belong to one of our lines right now, so no choices can be shown. Connect from your "
     "home line (without a VPN), or use the privacy page in your customer account.",
     "L’adresse {1} n’appartient à aucune de nos lignes en ce moment : aucun choix ne peut être affiché. "
     "Connectez-vous "
     "depuis votre ligne (sans VPN), ou utilisez la page de confidentialité de votre espace client."},
    {Text::line_changed, "The address {1} now belongs to another line. Nothing was changed.",
     "L’adresse {1} appartient maintenant à une autre ligne. Rien n’a été modifié."},
    {Text::form_title, "The form was not accepted", "Le formulaire n’a pas été accepté"},
    {Text::form_refused, "It has expired or did not come from this page. Nothing was changed.",
     "Il a expiré ou ne provient pas de cette page. Rien n’a été modifié."},
    {Text::rate_title, "Too many requests", "Trop de demandes"},
    {Text::rate_limited, "Please wait a minute, then try again.", "Patientez une minute, puis réessayez."},
    {Text::busy_title, "The page is busy", "La page est très sollicitée"},
    {Text::busy, "Too many people are using it right now. Please try again in a few minutes.",
     "Trop de personnes l’utilisent en ce moment. Réessayez dans quelques minutes."},
    {Text::not_found_title, "Page not found", "Page introuvable"},
    {Text::not_found, "There is nothing at this address.", "Il n’y a rien à cette adresse."},
    {Text::back, "Back to your privacy choices", "Retour à vos choix de confidentialité"},
    {Text::signed_in, "You are signed in.", "Vous êtes connecté."},
    {Text::continue_link, "Continue to your privacy choices", "Continuer vers vos choix de confidentialité"},
};

constexpr std::string_view kKeys[] = {
#define OPTGATE_X(name) #name,
    OPTGATE_PORTAL_TEXTS(OPTGATE_X)
#undef OPTGATE_X
};

constexpr std::string_view kLangs[] = {"en", "fr"};

// The placeholders a text uses, in order of number: "{1}{2}".
std::string placeholders(std::string_view s) {
    std::string out;
    for (char n = '1'; n <= '9'; ++n)
        if (s.find(std::string{'{', n, '}'}) != std::string_view::npos) out += n;
    return out;
}

}  // namespace

static_assert(std::size(kEntries) == size_t(Text::count), "one catalogue entry per Text");
static_assert(std::size(kLangs) == kLangCount);

std::string_view to_string(Lang l) noexcept { return kLangs[size_t(l)]; }
std::string_view key_of(Text t) noexcept { return kKeys[size_t(t)]; }

Lang choose_lang(std::string_view header) noexcept {
    Lang best = Lang::en;
    double best_q = 0;
    size_t pos = 0;
    while (pos <= header.size()) {
        size_t end = header.find(',', pos);
        if (end == std::string_view::npos) end = header.size();
        std::string_view item = header.substr(pos, end - pos);
        pos = end + 1;
        double q = 1;
        if (const auto semi = item.find(';'); semi != std::string_view::npos) {
            std::string_view params = item.substr(semi + 1);
            item = item.substr(0, semi);
            while (!params.empty() && params.front() == ' ') params.remove_prefix(1);
            if (params.size() >= 2 && (params[0] == 'q' || params[0] == 'Q') && params[1] == '=') {
                params.remove_prefix(2);
                // 0, 0.x, 1, 1.0: enough to order and to refuse q=0.
                q = params.empty() || (params[0] != '0' && params[0] != '1') ? 0 : params[0] - '0';
                if (params.size() >= 3 && params[0] == '0' && params[1] == '.' && params[2] >= '0' && params[2] <= '9')
                    q = (params[2] - '0') / 10.0 +
                        (params.size() >= 4 && params[3] >= '0' && params[3] <= '9' ? (params[3] - '0') / 100.0 : 0);
            }
        }
        while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
        while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
        const std::string_view primary = item.substr(0, item.find('-'));
        for (size_t i = 0; i < kLangCount; ++i) {
            if (primary.size() == 2 && (primary[0] | 0x20) == kLangs[i][0] && (primary[1] | 0x20) == kLangs[i][1] &&
                q > best_q) {
                best = Lang(i);
                best_q = q;
            }
        }
    }
    return best;
}

std::string html_escape(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (char c : s) {
        switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        case '\'': out += "&#39;"; break;
        default: out += c;
        }
    }
    return out;
}

Catalogue::Catalogue() {
    for (const auto& e : kEntries) {
        texts_[size_t(Lang::en)][size_t(e.text)] = e.en;
        texts_[size_t(Lang::fr)][size_t(e.text)] = e.fr;
    }
}

std::string Catalogue::html(Lang l, Text t, const std::vector<std::string>& args) const {
    const std::string escaped = html_escape(raw(l, t));
    std::string out;
    out.reserve(escaped.size());
    for (size_t i = 0; i < escaped.size(); ++i) {
        if (escaped[i] == '{' && i + 2 < escaped.size() && escaped[i + 2] == '}' && escaped[i + 1] >= '1' &&
            escaped[i + 1] <= '9') {
            const size_t n = size_t(escaped[i + 1] - '1');
            if (n < args.size()) out += args[n];
            i += 2;
            continue;
        }
        out += escaped[i];
    }
    return out;
}

Catalogue Catalogue::with_overrides_text(std::string_view yaml, const std::string& name) {
    using namespace policy::syntax;
    Catalogue c;
    Diagnostics d(name);
    if (const auto root = parse_document(yaml, d)) {
        const Value top{*root, location_of(*root), "the portal texts"};
        const MapReader langs(top, "the portal texts", {kLangs[0], kLangs[1]}, d);
        for (size_t l = 0; langs.is_map() && l < kLangCount; ++l) {
            const auto v = langs.get(kLangs[l]);
            if (!v) continue;
            const MapReader m(*v, "'" + std::string(kLangs[l]) + "'", {std::begin(kKeys), std::end(kKeys)}, d);
            if (!m.is_map()) continue;
            for (size_t t = 0; t < size_t(Text::count); ++t) {
                const auto x = m.get(kKeys[t]);
                if (!x) continue;
                const auto text = as_text(*x, d);
                if (!text) continue;
                const std::string want = placeholders(c.texts_[l][t]);
                if (placeholders(*text) != want) {
                    d.error(x->at, "'" + std::string(kKeys[t]) + "' must use the placeholders " +
                                       (want.empty() ? std::string("none")
                                                     : "{" + std::string(1, want[0]) + "}" +
                                                           (want.size() > 1 ? " and {2}" : "")) +
                                       ", like the built-in text: \"" + c.texts_[l][t] + "\"");
                    continue;
                }
                c.texts_[l][t] = *text;
            }
        }
    }
    d.throw_if_errors();
    return c;
}

Catalogue Catalogue::with_overrides(const std::string& path) {
    return with_overrides_text(policy::syntax::read_file(path), path);
}

}  // namespace optgate::consentd
