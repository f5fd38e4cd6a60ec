// Port setup for the data plane: resolving a port by id or device name,
// choosing how flows are steered to workers, and configuring queues.
#pragma once

#include <rte_mempool.h>

#include <cstdint>
#include <string>

#include "dataplane/config.hpp"

namespace optgate::dataplane {

// Port id of "3" or of a device name ("net_pcap0", "0000:3b:00.0");
// throws std::runtime_error naming what exists.
uint16_t resolve_port(const std::string& text);

struct QueuePlan {
    Steering steering = Steering::software;  // rss or software (one worker: software, no rings)
    uint16_t rx_queues = 1;                  // per port
    uint16_t tx_queues = 1;                  // per port; == workers: every worker sends directly
    std::string why;                         // one line for the log: why this steering
};

// Decides steering and queue counts for `workers` workers over both ports.
// Throws if `wanted` is rss and a port cannot do it.
QueuePlan plan_queues(uint16_t subscriber, uint16_t internet, unsigned workers, Steering wanted);

// Configures and starts one port per the plan (RSS with the symmetric key
// in rss mode).
void setup_port(uint16_t port, const QueuePlan& plan, const Config& c, rte_mempool* pool);

}  // namespace optgate::dataplane
