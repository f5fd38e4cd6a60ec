#include "consentd/event.hpp"

#include <cstdio>
#include <ctime>

namespace optgate::consentd {

namespace {

constexpr std::string_view kActionNames[kActionCount] = {"grant", "revoke", "bind", "unbind"};

void put_field(std::string& out, const std::string* v) {
    if (!v) {
        out.push_back('\0');
        return;
    }
    const uint32_t n = uint32_t(v->size());
    out.push_back('\1');
    out.push_back(char(n >> 24));
    out.push_back(char(n >> 16));
    out.push_back(char(n >> 8));
    out.push_back(char(n));
    out.append(*v);
}

const std::string* opt(const std::optional<std::string>& v) { return v ? &*v : nullptr; }

}  // namespace

std::string_view to_string(Action a) noexcept { return kActionNames[unsigned(a)]; }

std::optional<Action> parse_action(std::string_view s) noexcept {
    for (unsigned i = 0; i < kActionCount; ++i)
        if (kActionNames[i] == s) return Action(i);
    return std::nullopt;
}

std::string canonical_encoding(const Event& e) {
    std::string out;
    out.reserve(128 + e.subscriber.size() + e.source.size() + e.credential.size());
    out.append("optgate-ledger-v1\n");
    const std::string seq = std::to_string(e.seq);
    const std::string action(to_string(e.action));
    put_field(out, &seq);
    put_field(out, &e.time);
    put_field(out, &e.subscriber);
    put_field(out, &action);
    put_field(out, opt(e.purpose));
    put_field(out, opt(e.address));
    put_field(out, &e.source);
    put_field(out, opt(e.notice_version));
    put_field(out, &e.credential);
    return out;
}

Digest event_hash(const Digest& prev, const Event& e) {
    return sha256(std::string_view(reinterpret_cast<const char*>(prev.data()), prev.size()), canonical_encoding(e));
}

std::string shape_error(const Event& e) {
    const bool consent = e.action == Action::grant || e.action == Action::revoke;
    if (e.subscriber.empty()) return "has no subscriber";
    if (e.source.empty()) return "has no source";
    if (e.credential.empty()) return "has no credential";
    if (consent && (!e.purpose || e.purpose->empty()))
        return "is a " + std::string(to_string(e.action)) + " without a purpose";
    if (consent && e.address) return "is a " + std::string(to_string(e.action)) + " with an address";
    if (!consent && (!e.address || e.address->empty()))
        return "is a " + std::string(to_string(e.action)) + " without an address";
    if (!consent && e.purpose) return "is a " + std::string(to_string(e.action)) + " with a purpose";
    if (e.action == Action::grant && !e.notice_version) return "is a grant without a notice_version";
    if (!consent && e.notice_version) return "is a " + std::string(to_string(e.action)) + " with a notice_version";
    return {};
}

std::string format_utc_ms(std::chrono::system_clock::time_point t) {
    using namespace std::chrono;
    const auto ms = duration_cast<milliseconds>(t.time_since_epoch()).count();
    const time_t secs = time_t(ms / 1000);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char buf[96];  // sized for any int the format can meet
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                  tm.tm_hour, tm.tm_min, tm.tm_sec, int(ms % 1000));
    return buf;
}

std::optional<std::chrono::system_clock::time_point> parse_rfc3339(std::string_view t, std::string& error) {
    using namespace std::chrono;
    error = "must be an RFC 3339 time with a zone, like 2024-05-01T12:00:00Z or 2024-05-01T14:00:00.250+02:00";
    size_t at = 0;
    // `n` digits at `at`, or -1.
    const auto digits = [&](size_t n) -> int {
        if (at + n > t.size()) return -1;
        int v = 0;
        for (size_t i = 0; i < n; ++i) {
            const char c = t[at + i];
            if (c < '0' || c > '9') return -1;
            v = v * 10 + (c - '0');
        }
        at += n;
        return v;
    };
    const auto sep = [&](std::string_view allowed) {
        if (at >= t.size() || allowed.find(t[at]) == std::string_view::npos) return false;
        ++at;
        return true;
    };
    const int y = digits(4);
    if (y < 0 || !sep("-")) return std::nullopt;
    const int mo = digits(2);
    if (mo < 0 || !sep("-")) return std::nullopt;
    const int d = digits(2);
    if (d < 0 || !sep("Tt ")) return std::nullopt;
    const int h = digits(2);
    if (h < 0 || !sep(":")) return std::nullopt;
    const int mi = digits(2);
    if (mi < 0 || !sep(":")) return std::nullopt;
    const int s = digits(2);
    if (s < 0) return std::nullopt;
    int ms = 0;
    if (sep(".")) {
        const size_t first = at;
        while (at < t.size() && t[at] >= '0' && t[at] <= '9') ++at;
        if (at == first) return std::nullopt;
        for (size_t i = first; i < first + 3; ++i) ms = ms * 10 + (i < at ? t[i] - '0' : 0);
    }
    int offset_min = 0;
    if (!sep("Zz")) {
        if (at >= t.size() || (t[at] != '+' && t[at] != '-')) return std::nullopt;
        const int sign = t[at++] == '-' ? -1 : 1;
        const int oh = digits(2);
        if (oh < 0 || !sep(":")) return std::nullopt;
        const int om = digits(2);
        if (om < 0) return std::nullopt;
        if (oh > 23 || om > 59) {
            error = "has a zone offset out of range";
            return std::nullopt;
        }
        offset_min = sign * (oh * 60 + om);
    }
    if (at != t.size()) return std::nullopt;
    const year_month_day ymd{year(y), month(unsigned(mo)), day(unsigned(d))};
    if (!ymd.ok() || h > 23 || mi > 59 || s > 59) {
        error = "is not a date and time that exists";
        return std::nullopt;
    }
    error.clear();
    return sys_days(ymd) + hours(h) + minutes(mi) + seconds(s) + milliseconds(ms) - minutes(offset_min);
}

}  // namespace optgate::consentd
