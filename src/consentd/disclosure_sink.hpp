// Where consentd's data-plane sessions hand disclosure reports
// (docs/transparency.md): the seam between the protocol (dataplane_session)
// and the store that attributes counts to subscribers (disclosures).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "core/disclosure_report.hpp"

namespace optgate::consentd {

struct DisclosureReport {
    std::string dataplane;  // the hello name
    // A report's identity: `reporter` is random per data-plane process start,
    // `seq` counts that process's reports from 1. The same (dataplane,
    // reporter, seq) arriving twice (a resend after a lost ack) is counted once.
    uint64_t reporter = 0;
    uint64_t seq = 0;
    DisclosureBatch batch;
};

class DisclosureSink {
public:
    virtual ~DisclosureSink() = default;
    // Any thread. `done(true)` once the report is durable (or was already:
    // a repeat), `done(false)` if it could not be stored (retry later). Called
    // exactly once, on a thread of the sink's choosing: post it to your own
    // executor. Only after done(true) may the data plane be told "acked".
    virtual void submit(DisclosureReport report, std::function<void(bool stored)> done) = 0;
};

}  // namespace optgate::consentd
