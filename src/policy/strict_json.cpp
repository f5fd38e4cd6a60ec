#include "policy/strict_json.hpp"

#include <boost/json/basic_parser_impl.hpp>
#include <boost/json/monotonic_resource.hpp>
#include <boost/json/value_stack.hpp>

#include <algorithm>
#include <cstddef>
#include <memory>
#include <unordered_set>
#include <vector>

#include "core/chars.hpp"

namespace optgate::policy {

namespace json = boost::json;

namespace {

// The keys of one open object, to refuse duplicates: a short list while the
// object is small (request bodies and consent-file lines have a handful of
// keys, and a list costs no allocation once reused), a hash set past 16 keys
// (a list made a 934 KiB body of 120k keys cost 21.6 s, issue 17).
class KeySet {
public:
    bool insert(const std::string& key) {
        if (many_.empty()) {
            if (std::find(few_.begin(), few_.end(), key) != few_.end()) return false;
            if (few_.size() < kFew) {
                few_.push_back(key);
                return true;
            }
            many_.insert(few_.begin(), few_.end());
        }
        return many_.insert(key).second;
    }
    void clear() {
        few_.clear();
        many_.clear();
    }

private:
    static constexpr size_t kFew = 16;
    std::vector<std::string> few_;
    std::unordered_set<std::string> many_;
};

// A basic_parser handler that builds the value like json::parser does and
// remembers each open object's keys to refuse duplicates. Reused from one
// document to the next (StrictJsonParser): its buffers are kept.
struct Builder {
    static constexpr std::size_t max_object_size = std::size_t(-1);
    static constexpr std::size_t max_array_size = std::size_t(-1);
    static constexpr std::size_t max_key_size = std::size_t(-1);
    static constexpr std::size_t max_string_size = std::size_t(-1);

    json::value_stack st;
    json::storage_ptr storage;  // where the value is built (default: the heap)
    std::vector<KeySet> keys;   // keys[0 .. depth): one per open object
    size_t depth = 0;
    std::string key;  // the key being read
    std::string duplicate;

    bool on_document_begin(json::error_code&) {
        st.reset(storage);
        depth = 0;
        key.clear();
        duplicate.clear();
        return true;
    }
    bool on_document_end(json::error_code&) { return true; }
    bool on_object_begin(json::error_code&) {
        if (depth == keys.size()) keys.emplace_back();
        keys[depth++].clear();
        return true;
    }
    bool on_object_end(std::size_t n, json::error_code&) {
        --depth;
        st.push_object(n);
        return true;
    }
    bool on_array_begin(json::error_code&) { return true; }
    bool on_array_end(std::size_t n, json::error_code&) {
        st.push_array(n);
        return true;
    }
    bool on_key_part(json::string_view s, std::size_t, json::error_code&) {
        key.append(s.data(), s.size());
        st.push_chars(s);
        return true;
    }
    bool on_key(json::string_view s, std::size_t, json::error_code& ec) {
        key.append(s.data(), s.size());
        if (!keys[depth - 1].insert(key)) {
            duplicate = key;
            ec = json::make_error_code(json::error::syntax);
            return false;
        }
        key.clear();
        st.push_key(s);
        return true;
    }
    bool on_string_part(json::string_view s, std::size_t, json::error_code&) {
        st.push_chars(s);
        return true;
    }
    bool on_string(json::string_view s, std::size_t, json::error_code&) {
        st.push_string(s);
        return true;
    }
    bool on_number_part(json::string_view, json::error_code&) { return true; }
    bool on_int64(std::int64_t i, json::string_view, json::error_code&) {
        st.push_int64(i);
        return true;
    }
    bool on_uint64(std::uint64_t u, json::string_view, json::error_code&) {
        st.push_uint64(u);
        return true;
    }
    bool on_double(double d, json::string_view, json::error_code&) {
        st.push_double(d);
        return true;
    }
    bool on_bool(bool b, json::error_code&) {
        st.push_bool(b);
        return true;
    }
    bool on_null(json::error_code&) {
        st.push_null();
        return true;
    }
    bool on_comment_part(json::string_view, json::error_code&) { return true; }
    bool on_comment(json::string_view, json::error_code&) { return true; }
};

json::parse_options strict_options() {
    json::parse_options opt;  // defaults: no comments, no trailing commas, valid UTF-8 only
    opt.max_depth = 16;
    return opt;
}

// Parses `text` as exactly one document; false with `error` set otherwise.
bool parse_one(json::basic_parser<Builder>& p, std::string_view text, std::string& error) {
    json::error_code ec;
    const std::size_t used = p.write_some(false, text.data(), text.size(), ec);
    if (!p.handler().duplicate.empty()) {
        error = "duplicate key '" + p.handler().duplicate + "'";
        return false;
    }
    if (ec) {
        error = "malformed JSON at byte " + std::to_string(used) + ": " + ec.message();
        return false;
    }
    if (used != text.size()) {
        error = "malformed JSON: unexpected content after the value at byte " + std::to_string(used);
        return false;
    }
    return true;
}

}  // namespace

// One document at a time: the value is built in a monotonic resource that
// is released before the next (its first 4 KiB inline, so a line of a few
// hundred bytes costs no allocation), and the parser's stacks are kept.
struct StrictJsonParser::Impl {
    json::basic_parser<Builder> p{strict_options()};
    alignas(std::max_align_t) unsigned char buffer[4096] = {};
    json::monotonic_resource memory{buffer, sizeof buffer};
    std::optional<json::value> value;  // in `memory` (a move keeps the storage; an assignment would copy)

    // The document in `value`; empty with `error` set otherwise.
    bool parse(std::string_view text, std::string& error) {
        value.reset();
        memory.release();
        p.reset();
        p.handler().storage = json::storage_ptr(&memory);
        if (!parse_one(p, text, error)) return false;
        value.emplace(p.handler().st.release());
        return true;
    }
};

StrictJsonParser::StrictJsonParser() : impl_(std::make_unique<Impl>()) {}
StrictJsonParser::~StrictJsonParser() = default;

const json::value* StrictJsonParser::parse(std::string_view text, std::string& error) {
    return impl_->parse(text, error) ? &*impl_->value : nullptr;
}

std::optional<json::value> parse_json_strict(std::string_view text, std::string& error) {
    json::basic_parser<Builder> p(strict_options());
    if (!parse_one(p, text, error)) return std::nullopt;
    return p.handler().st.release();
}

bool is_printable_ascii(std::string_view s) noexcept { return std::all_of(s.begin(), s.end(), ascii::is_printable); }

JsonFields::JsonFields(const json::value& v, std::initializer_list<std::string_view> known) : obj_(v.if_object()) {
    if (!obj_) {
        error_ = "the body must be a JSON object";
        return;
    }
    for (const auto& kv : *obj_) {
        const std::string_view k(kv.key().data(), kv.key().size());
        if (std::find(known.begin(), known.end(), k) == known.end()) {
            error_ = "unknown field '" + std::string(k) + "' (expected:";
            for (auto name : known) error_ += " " + std::string(name);
            error_ += ")";
            return;
        }
    }
}

const json::value* JsonFields::field(std::string_view key, bool required) {
    if (!ok()) return nullptr;
    const auto* v = obj_->if_contains(json::string_view(key.data(), key.size()));
    if (!v && required) error_ = "missing field '" + std::string(key) + "'";
    return v;
}

std::optional<std::string> JsonFields::text(std::string_view key, bool required, size_t max_len) {
    const auto* v = field(key, required);
    if (!v) return std::nullopt;
    const auto* s = v->if_string();
    if (!s) {
        error_ = "field '" + std::string(key) + "' must be a string";
        return std::nullopt;
    }
    const std::string_view t(s->data(), s->size());
    if (t.empty() || t.size() > max_len || !is_printable_ascii(t)) {
        error_ = "field '" + std::string(key) + "' must be 1.." + std::to_string(max_len) +
                 " printable ASCII characters";
        return std::nullopt;
    }
    return std::string(t);
}

std::optional<std::vector<std::string>> JsonFields::text_list(std::string_view key, bool required, size_t max_len) {
    const auto* v = field(key, required);
    if (!v) return std::nullopt;
    const auto* a = v->if_array();
    if (!a) {
        error_ = "field '" + std::string(key) + "' must be a list of strings";
        return std::nullopt;
    }
    std::vector<std::string> out;
    out.reserve(a->size());
    for (const auto& item : *a) {
        const auto* s = item.if_string();
        const std::string_view t = s ? std::string_view(s->data(), s->size()) : std::string_view();
        if (!s || t.empty() || t.size() > max_len || !is_printable_ascii(t)) {
            error_ = "field '" + std::string(key) + "' must be a list of strings of 1.." + std::to_string(max_len) +
                     " printable ASCII characters";
            return std::nullopt;
        }
        out.emplace_back(t);
    }
    return out;
}

}  // namespace optgate::policy
