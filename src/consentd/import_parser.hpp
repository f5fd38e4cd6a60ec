// POST /v1/import bodies: NDJSON or CSV records of subscribers, their
// addresses and their consents (docs/consentd.md, "Import formats").
//
// The whole body is parsed and validated against the policy before anything
// is written: an import with any bad record changes nothing, and the errors
// name their lines.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "consentd/binding_address.hpp"
#include "core/policy.hpp"

namespace optgate::consentd {

enum class ImportFormat { ndjson, csv };

struct ImportRecord {
    size_t line = 0;
    std::string subscriber;
    std::vector<AddressText> addresses;
    std::vector<std::string> consents;  // purpose names granted
    std::string source;                 // "import" when the record has none
    std::optional<std::string> notice_version;
};

struct ImportParse {
    std::vector<ImportRecord> records;
    std::vector<std::string> errors;  // "line N: message", at most max_errors
    size_t events = 0;                // binds + grants the records ask for (0 with errors)
};

// A body is cut at newlines into parts of at least kImportPartBytes (so
// from twice that), one a core (at most kImportMaxParts), and the parts
// read at once; the result is the same, error for error, as one reader's.
// `parts` other than 0 sets how many (the tests).
inline constexpr size_t kImportPartBytes = size_t(4) << 20;
inline constexpr size_t kImportMaxParts = 4;
ImportParse parse_import(std::string_view body, ImportFormat format, const Policy& policy, size_t max_errors = 20,
                         size_t parts = 0);

// How many parts parse_import reads a body of `body_bytes` in.
size_t import_parts(size_t body_bytes);

// Checks one record against `policy` (ids, purposes, addresses, duplicates
// within the record); empty when valid. Also used when the import commits
// under a policy reloaded since it was parsed.
std::string check_import_record(const ImportRecord& r, const Policy& policy);

}  // namespace optgate::consentd
