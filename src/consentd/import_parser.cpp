#include "consentd/import_parser.hpp"

#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "core/addr_hash.hpp"
#include "policy/strict_json.hpp"
#include "policy/values.hpp"

namespace optgate::consentd {

using policy::is_printable_ascii;
using policy::JsonFields;

namespace {

constexpr std::string_view kDefaultSource = "import";
constexpr std::string_view kFields[] = {"subscriber", "addresses", "consents", "notice_version", "source"};

// Splits the body into lines (without "\n" or "\r\n"), numbering from 1.
template <class Fn>
void for_each_line(std::string_view body, Fn&& fn) {
    size_t line = 0;
    while (!body.empty()) {
        ++line;
        const size_t nl = body.find('\n');
        std::string_view l = body.substr(0, nl);
        body = nl == std::string_view::npos ? std::string_view() : body.substr(nl + 1);
        if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
        if (!fn(line, l)) return;
    }
}

bool blank(std::string_view s) {
    return std::all_of(s.begin(), s.end(), [](char c) { return c == ' ' || c == '\t'; });
}

// Fills addresses from their texts; false with `error` on bad syntax.
bool add_addresses(ImportRecord& r, const std::vector<std::string>& texts, std::string& error) {
    for (const auto& t : texts) {
        std::string why;
        auto a = parse_address_text(t, why);
        if (!a) {
            error.assign("invalid address '").append(t).append("': ").append(why);
            return false;
        }
        r.addresses.push_back(*a);
    }
    return true;
}

std::string check_text(std::string_view name, std::string_view v) {
    if (v.empty() || v.size() > 128 || !is_printable_ascii(v))
        return "'" + std::string(name) + "' must be 1..128 printable ASCII characters";
    return {};
}

std::optional<ImportRecord> ndjson_record(size_t line, std::string_view text, policy::StrictJsonParser& json,
                                          std::string& error) {
    auto v = json.parse(text, error);
    if (!v) return std::nullopt;
    JsonFields f(*v, {"subscriber", "addresses", "consents", "notice_version", "source"});
    ImportRecord r;
    r.line = line;
    auto subscriber = f.text("subscriber", true);
    auto addresses = f.text_list("addresses", false, 64);
    auto consents = f.text_list("consents", false);
    auto notice = f.text("notice_version", false);
    auto source = f.text("source", false);
    if (!f.ok()) {
        error = f.error();
        return std::nullopt;
    }
    r.subscriber = std::move(*subscriber);
    if (addresses && !add_addresses(r, *addresses, error)) return std::nullopt;
    if (consents) r.consents = std::move(*consents);
    r.notice_version = std::move(notice);
    r.source = source ? std::move(*source) : std::string(kDefaultSource);
    return r;
}

// RFC 4180 fields of one line: quoted fields may hold commas and "" for a
// quote. Records cannot span lines (no value may hold a newline).
bool split_csv(std::string_view line, std::vector<std::string>& out, std::string& error) {
    out.clear();
    size_t i = 0;
    for (;;) {
        std::string field;
        if (i < line.size() && line[i] == '"') {
            ++i;
            for (;;) {
                if (i >= line.size()) {
                    error = "unterminated quoted field";
                    return false;
                }
                if (line[i] == '"') {
                    if (i + 1 < line.size() && line[i + 1] == '"') {
                        field.push_back('"');
                        i += 2;
                        continue;
                    }
                    ++i;
                    break;
                }
                field.push_back(line[i++]);
            }
            if (i < line.size() && line[i] != ',') {
                error = "text after a closing quote";
                return false;
            }
        } else {
            const size_t end = std::min(line.find(',', i), line.size());
            field.assign(line.substr(i, end - i));
            if (field.find('"') != std::string::npos) {
                error = "a quote inside an unquoted field";
                return false;
            }
            i = end;
        }
        out.push_back(std::move(field));
        if (i >= line.size()) return true;
        ++i;  // the comma
    }
}

std::vector<std::string> split_spaces(std::string_view s) {
    std::vector<std::string> out;
    size_t i = 0;
    while (i < s.size()) {
        while (i < s.size() && s[i] == ' ') ++i;
        const size_t start = i;
        while (i < s.size() && s[i] != ' ') ++i;
        if (i > start) out.emplace_back(s.substr(start, i - start));
    }
    return out;
}

struct CsvHeader {
    int column[std::size(kFields)] = {};  // index of each field's column, -1 when absent
    size_t count = 0;
};

std::optional<CsvHeader> csv_header(std::string_view line, std::string& error) {
    std::vector<std::string> cols;
    if (!split_csv(line, cols, error)) return std::nullopt;
    CsvHeader h;
    std::fill(std::begin(h.column), std::end(h.column), -1);
    h.count = cols.size();
    for (size_t c = 0; c < cols.size(); ++c) {
        const auto it = std::find(std::begin(kFields), std::end(kFields), cols[c]);
        if (it == std::end(kFields)) {
            error = "unknown column '" + cols[c] +
                    "' in the header (expected: subscriber, addresses, consents, "
                    "notice_version, source)";
            return std::nullopt;
        }
        int& slot = h.column[it - std::begin(kFields)];
        if (slot >= 0) {
            error = "duplicate column '" + cols[c] + "' in the header";
            return std::nullopt;
        }
        slot = int(c);
    }
    if (h.column[0] < 0) {
        error = "the header has no 'subscriber' column";
        return std::nullopt;
    }
    return h;
}

std::optional<ImportRecord> csv_record(size_t line, std::string_view text, const CsvHeader& h,
                                       std::vector<std::string>& cols, std::string& error) {
    if (!split_csv(text, cols, error)) return std::nullopt;
    if (cols.size() != h.count) {
        error = std::to_string(cols.size()) + " fields, the header has " + std::to_string(h.count);
        return std::nullopt;
    }
    auto cell = [&](size_t field) -> const std::string* {
        const int c = h.column[field];
        return c < 0 || cols[size_t(c)].empty() ? nullptr : &cols[size_t(c)];
    };
    ImportRecord r;
    r.line = line;
    if (const auto* s = cell(0)) r.subscriber = *s;
    if (const auto* a = cell(1); a && !add_addresses(r, split_spaces(*a), error)) return std::nullopt;
    if (const auto* c = cell(2)) r.consents = split_spaces(*c);
    if (const auto* n = cell(3)) {
        if (auto e = check_text("notice_version", *n); !e.empty()) {
            error = e;
            return std::nullopt;
        }
        r.notice_version = *n;
    }
    if (const auto* s = cell(4)) {
        if (auto e = check_text("source", *s); !e.empty()) {
            error = e;
            return std::nullopt;
        }
        r.source = *s;
    } else {
        r.source = kDefaultSource;
    }
    return r;
}

}  // namespace

std::string check_import_record(const ImportRecord& r, const Policy& policy) {
    if (!policy::syntax::is_subscriber_id(r.subscriber))
        return "subscriber id '" + r.subscriber + "' is not 1..128 characters of [A-Za-z0-9._:@-]";
    if (r.addresses.empty() && r.consents.empty()) return "the record has no addresses and no consents";
    if (!r.consents.empty() && !r.notice_version) return "consents need the notice_version the subscriber saw";
    for (size_t i = 0; i < r.consents.size(); ++i) {
        if (!policy.purpose_index(r.consents[i])) return "unknown purpose '" + r.consents[i] + "'";
        if (std::find(r.consents.begin(), r.consents.begin() + long(i), r.consents[i]) != r.consents.begin() + long(i))
            return "purpose '" + r.consents[i] + "' is listed twice";
    }
    // A hash set: a list made a record of 40k addresses cost 4.3 s (issue 17).
    std::unordered_set<Prefix, PrefixHash> seen;
    seen.reserve(r.addresses.size());
    for (const auto& a : r.addresses) {
        AddressProblem problem = AddressProblem::none;
        std::string error;
        const auto b = binding_for_bind(a, policy, problem, error);
        if (!b) return error;
        if (!seen.insert(*b).second) return "address " + binding_text(*b) + " is listed twice";
    }
    return {};
}

ImportParse parse_import(std::string_view body, ImportFormat format, const Policy& policy, size_t max_errors) {
    ImportParse out;
    // Which line binds each address: one import cannot bind it twice.
    std::unordered_map<Prefix, size_t, PrefixHash> bound_at;
    // Sized for a record and an address a line, as imports mostly are:
    // grown a doubling at a time, a million records were copied about twice
    // each (150 MB), and the map grew 20 times over.
    const size_t lines = size_t(std::count(body.begin(), body.end(), '\n')) + 1;
    out.records.reserve(lines);
    bound_at.reserve(lines);
    std::optional<CsvHeader> header;
    std::vector<std::string> cols;
    policy::StrictJsonParser json;
    auto add_error = [&](size_t line, const std::string& msg) {
        out.errors.push_back("line " + std::to_string(line) + ": " + msg);
        return out.errors.size() < max_errors;
    };
    for_each_line(body, [&](size_t line, std::string_view text) {
        if (blank(text)) return true;
        std::string error;
        std::optional<ImportRecord> r;
        if (format == ImportFormat::ndjson) {
            r = ndjson_record(line, text, json, error);
        } else if (!header) {
            header = csv_header(text, error);
            if (!header) {
                add_error(line, error);
                return false;  // without a header no line can be read
            }
            return true;
        } else {
            r = csv_record(line, text, *header, cols, error);
        }
        if (!r) return add_error(line, error);
        if (auto e = check_import_record(*r, policy); !e.empty()) return add_error(line, e);
        for (const auto& a : r->addresses) {
            AddressProblem problem = AddressProblem::none;
            const Prefix b = *binding_for_bind(a, policy, problem, error);
            auto [it, fresh] = bound_at.try_emplace(b, line);
            if (!fresh)
                return add_error(
                    line, "address " + binding_text(b) + " is already bound by line " + std::to_string(it->second));
        }
        out.events += r->addresses.size() + r->consents.size();
        out.records.push_back(std::move(*r));
        return true;
    });
    if (out.errors.empty() && out.records.empty())
        out.errors.push_back(format == ImportFormat::csv && !header ? "the CSV has no header line"
                                                                    : "the import holds no records");
    if (!out.errors.empty()) out.records.clear();
    return out;
}

}  // namespace optgate::consentd
