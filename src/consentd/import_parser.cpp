#include "consentd/import_parser.hpp"

#include <boost/unordered/unordered_flat_map.hpp>

#include <algorithm>
#include <future>
#include <iterator>
#include <thread>
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

namespace {

// check_import_record, also handing back the bindings of the record's
// addresses in order (when `bindings` is set and the record is valid).
std::string check_record(const ImportRecord& r, const Policy& policy, std::vector<Prefix>* bindings) {
    if (!policy::syntax::is_subscriber_id(r.subscriber))
        return "subscriber id '" + r.subscriber + "' is not 1..128 characters of [A-Za-z0-9._:@-]";
    if (r.addresses.empty() && r.consents.empty()) return "the record has no addresses and no consents";
    if (!r.consents.empty() && !r.notice_version) return "consents need the notice_version the subscriber saw";
    for (size_t i = 0; i < r.consents.size(); ++i) {
        if (!policy.purpose_index(r.consents[i])) return "unknown purpose '" + r.consents[i] + "'";
        if (std::find(r.consents.begin(), r.consents.begin() + long(i), r.consents[i]) != r.consents.begin() + long(i))
            return "purpose '" + r.consents[i] + "' is listed twice";
    }
    const size_t from = bindings ? bindings->size() : 0;
    auto fail = [&](std::string e) {
        if (bindings) bindings->resize(from);
        return e;
    };
    if (r.addresses.size() == 1) {  // most records: no set needed
        AddressProblem problem = AddressProblem::none;
        std::string error;
        const auto b = binding_for_bind(r.addresses[0], policy, problem, error);
        if (!b) return error;
        if (bindings) bindings->push_back(*b);
        return {};
    }
    // A hash set: a list made a record of 40k addresses cost 4.3 s (issue 17).
    std::unordered_set<Prefix, PrefixHash> seen;
    seen.reserve(r.addresses.size());
    for (const auto& a : r.addresses) {
        AddressProblem problem = AddressProblem::none;
        std::string error;
        const auto b = binding_for_bind(a, policy, problem, error);
        if (!b) return fail(std::move(error));
        if (!seen.insert(*b).second) return fail("address " + binding_text(*b) + " is listed twice");
        if (bindings) bindings->push_back(*b);
    }
    return {};
}

// One part of the body, read on its own: its valid records, and for the
// merge (which reads these while the records are moved) each record's line
// and address count, the bindings of its addresses in order, its errors
// with their lines, and the events its records ask for.
struct Part {
    struct Mark {
        size_t line;
        size_t addresses;
    };
    std::vector<ImportRecord> records;
    std::vector<Mark> marks;
    std::vector<Prefix> bindings;
    std::vector<std::pair<size_t, std::string>> errors;
    size_t events = 0;
};

// Reads the lines of `text`, the first numbered `first_line`, with room
// for `room` records. Stops after `max_errors` errors: no more of this part
// can be reported, since the parts before it come first.
Part read_part(std::string_view text, size_t first_line, size_t room, ImportFormat format,
               const std::optional<CsvHeader>& header, const Policy& policy, size_t max_errors) {
    Part part;
    part.records.reserve(room);
    const size_t lines = size_t(std::count(text.begin(), text.end(), '\n')) + 1;
    part.marks.reserve(lines);
    part.bindings.reserve(lines);
    std::vector<std::string> cols;
    policy::StrictJsonParser json;
    for_each_line(text, [&](size_t n, std::string_view l) {
        if (blank(l)) return true;
        const size_t line = first_line + n - 1;
        std::string error;
        std::optional<ImportRecord> r = format == ImportFormat::ndjson ? ndjson_record(line, l, json, error)
                                                                       : csv_record(line, l, *header, cols, error);
        if (r) error = check_record(*r, policy, &part.bindings);
        if (!error.empty()) {
            part.errors.emplace_back(line, std::move(error));
            return part.errors.size() < max_errors;
        }
        part.marks.push_back({line, r->addresses.size()});
        part.events += r->addresses.size() + r->consents.size();
        part.records.push_back(std::move(*r));
        return true;
    });
    return part;
}

// Where to cut `body` into `parts` pieces of about equal size, each after a
// newline (a piece may be empty).
std::vector<std::string_view> cut(std::string_view body, size_t parts) {
    std::vector<std::string_view> out;
    for (size_t k = parts; k > 1; --k) {
        size_t at = body.size() / k;
        at = body.find('\n', at);
        at = at == std::string_view::npos ? body.size() : at + 1;
        out.push_back(body.substr(0, at));
        body.remove_prefix(at);
    }
    out.push_back(body);
    return out;
}

}  // namespace

std::string check_import_record(const ImportRecord& r, const Policy& policy) {
    return check_record(r, policy, nullptr);
}

size_t import_parts(size_t body_bytes) {
    const size_t cores = std::max(1U, std::thread::hardware_concurrency());
    return std::clamp<size_t>(body_bytes / kImportPartBytes, 1, std::min<size_t>(cores, kImportMaxParts));
}

ImportParse parse_import(std::string_view body, ImportFormat format, const Policy& policy, size_t max_errors,
                         size_t parts) {
    ImportParse out;
    auto add_error = [&](size_t line, const std::string& msg) {
        out.errors.push_back("line " + std::to_string(line) + ": " + msg);
        return out.errors.size() < max_errors;
    };
    // A CSV's header is its first line that is not blank: read before the
    // rest, which every part reads with it.
    std::optional<CsvHeader> header;
    size_t first_line = 1;
    if (format == ImportFormat::csv) {
        bool failed = false;
        size_t consumed = 0;
        for_each_line(body, [&](size_t line, std::string_view text) {
            const size_t nl = body.find('\n', consumed);
            consumed = nl == std::string_view::npos ? body.size() : nl + 1;
            first_line = line + 1;
            if (blank(text)) return true;
            std::string error;
            header = csv_header(text, error);
            if (!header) {
                add_error(line, error);  // without a header no line can be read
                failed = true;
            }
            return false;
        });
        if (failed) return out;
        if (!header) {
            out.errors.push_back("the CSV has no header line");
            return out;
        }
        body.remove_prefix(consumed);
    }

    // The parts are read at once: the first on this thread, each other on a
    // thread of its own (docs/consentd.md, "Import formats"). The first
    // has room for every line's record: the others' are moved after its.
    const std::vector<std::string_view> pieces = cut(body, parts ? parts : import_parts(body.size()));
    std::vector<size_t> first(pieces.size() + 1, first_line);
    for (size_t k = 1; k <= pieces.size(); ++k)
        first[k] = first[k - 1] + size_t(std::count(pieces[k - 1].begin(), pieces[k - 1].end(), '\n'));
    std::vector<std::future<Part>> others;
    others.reserve(pieces.size() - 1);
    for (size_t k = 1; k < pieces.size(); ++k)
        others.push_back(std::async(std::launch::async, read_part, pieces[k], first[k], first[k + 1] - first[k] + 1,
                                    format, std::cref(header), std::cref(policy), max_errors));
    std::vector<Part> read;
    read.reserve(pieces.size());
    read.push_back(read_part(pieces[0], first[0], first.back() - first[0] + 1, format, header, policy, max_errors));
    for (auto& f : others) read.push_back(f.get());

    // The records in order, moved behind the first part's on another thread
    // while this one merges the rest (they touch nothing in common).
    std::vector<ImportRecord>& records = read[0].records;
    std::future<void> moved;
    if (read.size() > 1)
        moved = std::async(std::launch::async, [&read, &records] {
            for (size_t k = 1; k < read.size(); ++k)
                std::move(read[k].records.begin(), read[k].records.end(), std::back_inserter(records));
        });

    // Merged in line order, as one reader would have: which line binds each
    // address (one import cannot bind it twice), and the errors up to
    // max_errors. A flat map: a node per address cost 0.4 s a million.
    size_t bindings = 0;
    for (const auto& p : read) bindings += p.bindings.size();
    boost::unordered_flat_map<Prefix, size_t, PrefixHash> bound_at;
    bound_at.reserve(bindings);
    // False once max_errors are reported: nothing after counts.
    auto merge = [&](const Part& p) {
        size_t e = 0, b = 0;
        for (const auto& m : p.marks) {
            for (; e < p.errors.size() && p.errors[e].first < m.line; ++e)
                if (!add_error(p.errors[e].first, p.errors[e].second)) return false;
            const size_t from = b;
            b += m.addresses;
            for (size_t i = from; i < b; ++i) {
                const auto [it, fresh] = bound_at.try_emplace(p.bindings[i], m.line);
                if (fresh) continue;
                if (!add_error(m.line, "address " + binding_text(p.bindings[i]) + " is already bound by line " +
                                           std::to_string(it->second)))
                    return false;
                break;
            }
        }
        for (; e < p.errors.size(); ++e)
            if (!add_error(p.errors[e].first, p.errors[e].second)) return false;
        return true;
    };
    for (const auto& p : read)
        if (!merge(p)) break;
    if (moved.valid()) moved.get();
    if (!out.errors.empty()) return out;  // nothing is imported: no records, no events
    for (const auto& p : read) out.events += p.events;
    out.records = std::move(records);
    if (out.records.empty()) out.errors.push_back("the import holds no records");
    return out;
}

}  // namespace optgate::consentd
