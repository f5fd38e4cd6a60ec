// optgatectl copy-ledger FROM TO: a ledger copied into another store, the
// way an ISP moves from one consentd on SQLite to several on PostgreSQL
// (docs/scale-out.md, "Moving a ledger to PostgreSQL"), or back.
//
// 1. FROM is verified whole (verify_ledger): a damaged ledger is not copied,
//    and TO is not touched.
// 2. TO is opened as a ledger (created when new; on PostgreSQL that takes
//    the writer's lock, so no consentd may be running on it) and must hold
//    no event.
// 3. In one transaction: every event appended again through Ledger::append,
//    which computes its hash from the previous one; an event whose hash
//    differs from FROM's stops the copy (the chain is checked on arrival).
//    The derived rows come from those appends. The side tables (the policy
//    history, disclosure counts and reports, RADIUS sessions) are copied row
//    by row.
// 4. TO is verified whole, and its head must be FROM's head.
//
// Either store on either side: a locator as database.hpp reads it.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace optgate::consentd {

struct CopyReport {
    bool ok = false;
    std::string problem;  // why not, when !ok
    uint64_t events = 0;
    std::string head_hash;
    std::map<std::string, uint64_t> rows;  // side table -> rows copied
};

CopyReport copy_ledger(const std::string& from, const std::string& to);

}  // namespace optgate::consentd
