// Consent receipts (docs/receipts.md): what a subscriber keeps of a grant or
// a revoke, following the Kantara Consent Receipt v1.1 and ISO/IEC TS 27560
// consent records. A receipt is a function of the ledger alone: the event
// (its hash is the receipt id) and the policy history's record in force at
// it (policy_history.hpp). The API answers it, and verify-ledger --receipt
// builds it again from a ledger file and compares every field.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include "consentd/event.hpp"
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

}  // namespace optgate::consentd
