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
    size_t events = 0;                // binds + grants the records ask for
};

ImportParse parse_import(std::string_view body, ImportFormat format, const Policy& policy, size_t max_errors = 20);

// Checks one record against `policy` (ids, purposes, addresses, duplicates
// within the record); empty when valid. Also used when the import commits
// under a policy reloaded since it was parsed.
std::string check_import_record(const ImportRecord& r, const Policy& policy);

}  // namespace optgate::consentd
