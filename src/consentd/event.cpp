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

}  // namespace optgate::consentd
