#include "policy/yaml_reader.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <yaml-cpp/eventhandler.h>

#include "policy/values.hpp"

namespace optgate::policy::syntax {

namespace {

Diagnostic make(Diagnostic::Severity s, const std::string& file, Location at, std::string message) {
    Diagnostic d;
    d.severity = s;
    d.file = file;
    d.line = at.line;
    d.column = at.column;
    d.message = std::move(message);
    return d;
}

void sort_by_location(std::vector<Diagnostic>& v) {
    std::stable_sort(v.begin(), v.end(), [](const Diagnostic& a, const Diagnostic& b) {
        return a.line != b.line ? a.line < b.line : a.column < b.column;
    });
}

bool blank(const std::string& s) {
    return std::all_of(s.begin(), s.end(), [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; });
}

}  // namespace

void Diagnostics::error(Location at, std::string message) {
    errors_.push_back(make(Diagnostic::Severity::error, file_, at, std::move(message)));
}

void Diagnostics::warning(Location at, std::string message) {
    warnings_.push_back(make(Diagnostic::Severity::warning, file_, at, std::move(message)));
}

void Diagnostics::throw_if_errors() const {
    if (errors_.empty()) return;
    std::vector<Diagnostic> all = errors_;
    all.insert(all.end(), warnings_.begin(), warnings_.end());
    sort_by_location(all);
    throw PolicyError(std::move(all));
}

std::vector<Diagnostic> Diagnostics::warnings() const {
    std::vector<Diagnostic> w = warnings_;
    sort_by_location(w);
    return w;
}

namespace {

[[noreturn]] void cannot_read(const std::string& path, int err) {
    throw PolicyError({make(Diagnostic::Severity::error, path, {},
                            std::string("cannot read the file: ") + (err ? std::strerror(err) : "read error"))});
}

}  // namespace

std::ifstream open_file(const std::string& path) {
    // A directory opens fine as a stream and reads as empty: say what it is.
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) cannot_read(path, EISDIR);
    errno = 0;
    std::ifstream in(path, std::ios::binary);
    if (!in) cannot_read(path, errno);
    return in;
}

std::string read_file(const std::string& path) {
    auto in = open_file(path);
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) cannot_read(path, errno);
    return text.str();
}

namespace {

// Where each document starts, and where its root node does; nothing else.
struct DocumentStarts : YAML::EventHandler {
    std::vector<YAML::Mark> starts, roots;
    void OnDocumentStart(const YAML::Mark& m) override { starts.push_back(m); }
    void OnDocumentEnd() override {}
    void OnNull(const YAML::Mark& m, YAML::anchor_t) override { node(m); }
    void OnAlias(const YAML::Mark& m, YAML::anchor_t) override { node(m); }
    void OnScalar(const YAML::Mark& m, const std::string&, YAML::anchor_t, const std::string&) override { node(m); }
    void OnSequenceStart(const YAML::Mark& m, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
        node(m);
    }
    void OnSequenceEnd() override {}
    void OnMapStart(const YAML::Mark& m, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
        node(m);
    }
    void OnMapEnd() override {}
    void node(const YAML::Mark& m) {
        if (roots.size() < starts.size()) roots.push_back(m);
    }
};

}  // namespace

std::optional<YAML::Node> parse_document(std::string_view text, Diagnostics& d) {
    // Not YAML::LoadAll: on a ',' where a document may start (", a", "[a]\n,")
    // yaml-cpp 0.7 yields empty documents without consuming it, so LoadAll
    // never returns and eats memory (found by tests/fuzz). The first document
    // is read on its own; the document starts are then counted, three at
    // most, and a start that does not move is that ','.
    YAML::Node doc;
    DocumentStarts docs;
    try {
        doc = YAML::Load(std::string(text));
        std::istringstream in{std::string(text)};
        YAML::Parser parser(in);
        for (int i = 0; i < 3 && parser.HandleNextDocument(docs); ++i) {
        }
    } catch (const YAML::Exception& e) {
        d.error({e.mark.line + 1, e.mark.column + 1}, "YAML syntax error: " + e.msg);
        return std::nullopt;
    }
    for (size_t i = 1; i < docs.starts.size(); ++i) {
        if (docs.starts[i].pos != docs.starts[i - 1].pos) continue;
        const YAML::Mark& m = docs.starts[i];
        d.error({m.line + 1, m.column + 1}, "YAML syntax error: unexpected ',' (a comma outside [ ] or { })");
        return std::nullopt;
    }
    if (doc.IsNull()) {
        d.error({1, 1}, "the file is empty");
        return std::nullopt;
    }
    if (docs.starts.size() > 1) {
        const YAML::Mark& m = docs.roots.size() > 1 ? docs.roots[1] : docs.starts[1];
        d.error({m.line + 1, m.column + 1}, "a second YAML document: the file must hold exactly one (remove '---')");
        return std::nullopt;
    }
    return doc;
}

Location location_of(const YAML::Node& n) {
    const YAML::Mark m = n.Mark();
    if (m.is_null()) return {};
    return {m.line + 1, m.column + 1};
}

std::string_view kind_of(const YAML::Node& n) {
    switch (n.Type()) {
    case YAML::NodeType::Map: return "a map";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Scalar: return "text";
    default: return "empty";
    }
}

std::optional<std::string> text_under(const YAML::Node& n, std::string_view key) {
    if (!n.IsMap()) return std::nullopt;
    for (auto it = n.begin(); it != n.end(); ++it) {
        const YAML::Node k = it->first, v = it->second;
        if (k.IsScalar() && k.Scalar() == key)
            return v.IsScalar() && !v.Scalar().empty() ? std::optional(v.Scalar()) : std::nullopt;
    }
    return std::nullopt;
}

MapReader::MapReader(const Value& v, std::string owner, std::vector<std::string_view> known, Diagnostics& d)
    : value_(v), owner_(std::move(owner)), d_(d) {
    if (!v.node.IsMap()) {
        if (v.node.IsNull())
            d.error(v.at, v.name + " is empty: expected a map");
        else
            d.error(v.at, v.name + " must be a map, not " + std::string(kind_of(v.node)));
        return;
    }
    is_map_ = true;
    for (auto it = v.node.begin(); it != v.node.end(); ++it) {
        const YAML::Node key = it->first;  // a copy: the iterator hands out a temporary
        const Location key_at = location_of(key);
        if (!key.IsScalar()) {
            d.error(key_at, "keys in " + owner_ + " must be plain names, not " + std::string(kind_of(key)));
            continue;
        }
        const std::string& name = key.Scalar();
        const auto seen = std::find_if(entries_.begin(), entries_.end(), [&](const Entry& e) { return e.key == name; });
        if (seen != entries_.end()) {
            d.error(key_at, "duplicate key '" + name + "' in " + owner_ + " (first at line " +
                                std::to_string(seen->key_at.line) + ")");
            continue;
        }
        if (std::find(known.begin(), known.end(), name) == known.end()) {
            std::string msg = "unknown key '" + name + "' in " + owner_;
            if (const auto near = closest_match(name, known)) {
                msg += " (did you mean '" + std::string(*near) + "'?)";
            } else {
                msg += " (expected one of: ";
                for (size_t i = 0; i < known.size(); ++i) msg += (i ? ", " : "") + std::string(known[i]);
                msg += ")";
            }
            d.error(key_at, std::move(msg));
            continue;
        }
        const YAML::Node val = it->second;
        entries_.push_back({name, key_at, Value{val, val.IsNull() ? key_at : location_of(val), "'" + name + "'"}});
    }
}

std::optional<Value> MapReader::get(std::string_view key) const {
    for (const auto& e : entries_)
        if (e.key == key) return e.value;
    return std::nullopt;
}

std::optional<Value> MapReader::require(std::string_view key) const {
    auto v = get(key);
    if (!v && is_map_) d_.error(value_.at, owner_ + " is missing the required key '" + std::string(key) + "'");
    return v;
}

std::vector<NamedEntry> named_entries(const Value& v, Diagnostics& d) {
    std::vector<NamedEntry> out;
    if (!v.node.IsMap()) {
        if (v.node.IsNull())
            d.error(v.at, v.name + " is empty: expected a map");
        else
            d.error(v.at, v.name + " must be a map, not " + std::string(kind_of(v.node)));
        return out;
    }
    for (auto it = v.node.begin(); it != v.node.end(); ++it) {
        const YAML::Node key = it->first;  // a copy: the iterator hands out a temporary
        const Location key_at = location_of(key);
        if (!key.IsScalar()) {
            d.error(key_at, "names in " + v.name + " must be text, not " + std::string(kind_of(key)));
            continue;
        }
        const std::string& name = key.Scalar();
        const auto seen = std::find_if(out.begin(), out.end(), [&](const NamedEntry& e) { return e.name == name; });
        if (seen != out.end()) {
            d.error(key_at, "duplicate name '" + name + "' in " + v.name + " (first at line " +
                                std::to_string(seen->name_at.line) + ")");
            continue;
        }
        const YAML::Node val = it->second;
        out.push_back({name, key_at, Value{val, val.IsNull() ? key_at : location_of(val), "'" + name + "'"}});
    }
    return out;
}

std::optional<std::chrono::milliseconds> as_duration(const Value& v, Diagnostics& d, std::chrono::milliseconds min,
                                                     std::chrono::milliseconds max) {
    const auto text = as_text(v, d);
    if (!text) return std::nullopt;
    std::string error;
    const auto ms = parse_duration(*text, error);
    if (!ms) {
        d.error(v.at, v.name + ": " + error);
        return std::nullopt;
    }
    if (*ms < min || *ms > max) {
        d.error(v.at, v.name + " must be between " + std::to_string(min.count()) + "ms and " +
                          std::to_string(max.count()) + "ms");
        return std::nullopt;
    }
    return ms;
}

std::string resolve_path(const std::string& path, const std::string& base_dir) {
    const std::filesystem::path p(path);
    if (p.is_absolute() || base_dir.empty()) return path;
    return (std::filesystem::path(base_dir) / p).lexically_normal().string();
}

std::optional<std::string> as_text(const Value& v, Diagnostics& d, bool allow_empty) {
    if (v.node.IsNull()) {
        if (allow_empty) return std::string();
        d.error(v.at, v.name + " is empty: expected text");
        return std::nullopt;
    }
    if (!v.node.IsScalar()) {
        d.error(v.at, v.name + " must be text, not " + std::string(kind_of(v.node)));
        return std::nullopt;
    }
    if (!allow_empty && blank(v.node.Scalar())) {
        d.error(v.at, v.name + " must not be empty");
        return std::nullopt;
    }
    return v.node.Scalar();
}

std::optional<std::vector<Value>> as_list(const Value& v, Diagnostics& d) {
    if (v.node.IsNull()) {
        d.error(v.at, v.name + " is empty: expected a list");
        return std::nullopt;
    }
    if (!v.node.IsSequence()) {
        d.error(v.at, v.name + " must be a list, not " + std::string(kind_of(v.node)) +
                          " (write [a, b] or one \"- item\" per line)");
        return std::nullopt;
    }
    std::vector<Value> items;
    size_t i = 0;
    for (const auto& item : v.node) {
        ++i;
        // A sequence's iterator_value is a Node (the item) and an unused
        // key/value pair: keep the Node.
        const YAML::Node& node = item;
        items.push_back(
            {node, node.IsNull() ? v.at : location_of(node), "item " + std::to_string(i) + " of " + v.name});
    }
    return items;
}

std::optional<std::vector<std::string>> as_text_list(const Value& v, Diagnostics& d, bool allow_empty_list) {
    const auto items = as_list(v, d);
    if (!items) return std::nullopt;
    if (items->empty() && !allow_empty_list) {
        d.error(v.at, v.name + " must list at least one entry");
        return std::nullopt;
    }
    std::vector<std::string> out;
    bool ok = true;
    for (const auto& item : *items) {
        auto t = as_text(item, d);
        if (t)
            out.push_back(std::move(*t));
        else
            ok = false;
    }
    if (!ok) return std::nullopt;
    return out;
}

std::optional<uint64_t> as_integer(const Value& v, Diagnostics& d, uint64_t min, uint64_t max) {
    const auto text = as_text(v, d);
    if (!text) return std::nullopt;
    const auto n = parse_decimal(*text);
    if (!n) {
        d.error(v.at, v.name + " must be a whole number, not '" + *text + "'");
        return std::nullopt;
    }
    if (*n < min || *n > max) {
        d.error(v.at, v.name + " is out of range: " + std::to_string(*n) + " is not in " + std::to_string(min) + ".." +
                          std::to_string(max));
        return std::nullopt;
    }
    return n;
}

std::optional<bool> as_bool(const Value& v, Diagnostics& d) {
    const auto text = as_text(v, d);
    if (!text) return std::nullopt;
    if (*text == "true") return true;
    if (*text == "false") return false;
    d.error(v.at, v.name + " must be true or false, not '" + *text + "'");
    return std::nullopt;
}

}  // namespace optgate::policy::syntax
