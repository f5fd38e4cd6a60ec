// Consent receipts (docs/receipts.md): what a subscriber keeps of a grant or
// a revoke, following the Kantara Consent Receipt v1.1 and ISO/IEC TS 27560
// consent records. A receipt is a function of the ledger alone: the event
// (its hash is the receipt id) and the policy history's record in force at
// it (policy_history.hpp). The API answers it, and verify-ledger --receipt
// builds it again from a ledger file and compares every field.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include "consentd/event.hpp"
#include "consentd/ledger_reader.hpp"
#include "consentd/policy_history.hpp"
#include "core/policy.hpp"

namespace optgate::consentd {

inline constexpr std::string_view kReceiptVersion = "optgate-receipt-1";

struct ReceiptSource {
    Event event;                                 // a grant or a revoke
    std::shared_ptr<const PolicyRecord> record;  // in force at the event; null: before the history
    std::shared_ptr<const Policy> policy;        // the record's policy; null when its text is not recorded
};

boost::json::object build_receipt(const ReceiptSource& s);

// A recorded policy text, loaded again with the policy loader. Throws
// std::runtime_error when it does not load.
std::shared_ptr<const Policy> load_recorded_policy(const PolicyRecord& r);

// The first field where `given` differs from `expected`, named by its path
// ("purpose.benefit", "third_parties[0].name"), with both values; "" when
// they are equal.
std::string receipt_difference(const boost::json::value& given, const boost::json::value& expected);

// A receipt read from the ledger: the one reading behind the API's
// GET /v1/subscribers/{id}/receipts/{seq} and the privacy page's download,
// so both give the same receipt. Keeps the recorded policies it parsed.
// Used by one thread, like its LedgerReader.
class ReceiptReader {
public:
    enum class Status : uint8_t {
        found,
        unknown_subscriber,   // no event names the subscriber
        unknown_event,        // no event `seq`
        other_subscriber,     // event `seq` names another subscriber
        not_a_consent_event,  // event `seq` is the subscriber's, but not a grant or a revoke
    };
    struct Result {
        Status status = Status::unknown_event;
        Action action{};              // not_a_consent_event: what the event is
        boost::json::object receipt;  // found
    };

    explicit ReceiptReader(LedgerReader& reader) : reader_(reader) {}

    // Throws when the ledger cannot be read or the recorded policy does not load.
    Result read(const std::string& subscriber, uint64_t seq);

private:
    LedgerReader& reader_;
    std::map<uint64_t, std::shared_ptr<const Policy>> recorded_policies_;  // by policy history record id
};

}  // namespace optgate::consentd
