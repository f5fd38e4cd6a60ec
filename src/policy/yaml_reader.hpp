// Typed, located reading of YAML for every configuration file (the policy
// and consent loaders, consentd, optgate).
//
// Nothing here throws for a problem in the document: every problem becomes a
// Diagnostic with the file, line and column of the offending node, and the
// loaders keep going so that one run reports all of them. Diagnostics throws
// PolicyError at the end if any error was recorded.
#pragma once

#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policy/loader.hpp"

// policy::syntax: see values.hpp.
namespace optgate::policy::syntax {

struct Location {
    int line = 0;  // 1-based; 0: the file as a whole
    int column = 0;
};

class Diagnostics {
public:
    explicit Diagnostics(std::string file) : file_(std::move(file)) {}

    void error(Location at, std::string message);
    void warning(Location at, std::string message);
    size_t error_count() const noexcept { return errors_.size(); }
    const std::string& file() const noexcept { return file_; }

    // Throws PolicyError (errors and warnings, in file order) if any error.
    void throw_if_errors() const;
    // Warnings in file order.
    std::vector<Diagnostic> warnings() const;

private:
    std::string file_;
    std::vector<Diagnostic> errors_, warnings_;
};

// Reads a whole file; throws PolicyError naming the file if it cannot.
std::string read_file(const std::string& path);
// Opens a file to read it a piece at a time; throws like read_file.
std::ifstream open_file(const std::string& path);

// Parses one YAML document. On a syntax error, an empty file or several
// documents, records the error and returns nullopt.
std::optional<YAML::Node> parse_document(std::string_view text, Diagnostics& d);

// A node with where to point at it. For a null node yaml-cpp's mark is the
// next token's, so `at` is the key's location instead.
struct Value {
    YAML::Node node;
    Location at;
    std::string name;  // quoted key name for messages: "'ports'"
};

Location location_of(const YAML::Node& n);
// "a map", "a list", "text", "empty"
std::string_view kind_of(const YAML::Node& n);

// The text under `key` when `n` is a map holding it as non-empty text (the
// first one, if repeated). Never throws, unlike yaml-cpp's operator[].
std::optional<std::string> text_under(const YAML::Node& n, std::string_view key);

// A map with a fixed set of keys. Reports non-text keys, duplicate keys and
// unknown keys (with a "did you mean" suggestion) on construction.
class MapReader {
public:
    // `owner` names the map in messages ("collector 'ads'", "the policy").
    MapReader(const Value& v, std::string owner, std::vector<std::string_view> known, Diagnostics& d);

    bool is_map() const noexcept { return is_map_; }
    const Value& value() const noexcept { return value_; }
    const std::string& owner() const noexcept { return owner_; }
    std::optional<Value> get(std::string_view key) const;
    // Like get(), and reports a missing key at the map.
    std::optional<Value> require(std::string_view key) const;

private:
    Value value_;
    std::string owner_;
    Diagnostics& d_;
    bool is_map_ = false;
    struct Entry {
        std::string key;
        Location key_at;
        Value value;
    };
    std::vector<Entry> entries_;
};

// The entries of a map whose keys are names chosen by the operator
// (purposes). Reports non-map values, non-text and duplicate keys.
struct NamedEntry {
    std::string name;
    Location name_at;
    Value value;
};
std::vector<NamedEntry> named_entries(const Value& v, Diagnostics& d);

// Typed conversions: each reports a wrong type (or an empty value where one
// is required) at the node and returns nullopt.
std::optional<std::string> as_text(const Value& v, Diagnostics& d, bool allow_empty = false);
std::optional<std::vector<Value>> as_list(const Value& v, Diagnostics& d);
std::optional<std::vector<std::string>> as_text_list(const Value& v, Diagnostics& d, bool allow_empty_list);
std::optional<uint64_t> as_integer(const Value& v, Diagnostics& d, uint64_t min, uint64_t max);
// `true` or `false` (YAML 1.2 core schema; not yes/no/on/off, which YAML 1.1
// read as booleans and 1.2 as text).
std::optional<bool> as_bool(const Value& v, Diagnostics& d);
// "500ms", "30s", "2m", "1h" (values.hpp parse_duration), within [min, max].
std::optional<std::chrono::milliseconds> as_duration(const Value& v, Diagnostics& d,
                                                     std::chrono::milliseconds min = std::chrono::milliseconds(0),
                                                     std::chrono::milliseconds max = std::chrono::milliseconds::max());
// A path from a config file: relative paths are taken from `base_dir`.
std::string resolve_path(const std::string& path, const std::string& base_dir);

}  // namespace optgate::policy::syntax
