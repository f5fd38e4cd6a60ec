// Link-fault propagation (docs/deploy.md#link-faults): a bump in the wire
// must not hide a dead link from the routers around it. When one port loses
// its link, the other is taken down, so that the router on that side sees
// carrier loss and fails over too; when the link comes back, both are up
// again. Driven by the monitor thread (never a worker): a look at both
// links every tick.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace optgate::dataplane {

// Whether a port's link is up. For a kernel-backed port (af_packet, tap:
// one with an interface index) the kernel's carrier counts too, as some
// drivers never update their link status after the start.
bool link_up(uint16_t port);
// Takes a port's link down or up: rte_eth_dev_set_link_down/up, or, for a
// kernel-backed port whose driver cannot, the interface's IFF_UP. Returns
// "" or why it failed.
std::string set_link(uint16_t port, bool up);

class LinkPropagation {
public:
    using Log = std::function<void(bool warning, const std::string& line)>;
    LinkPropagation(uint16_t subscriber, uint16_t internet, Log log);
    // Restores a port it took down (at a stop: the other side would
    // otherwise stay down until optgate runs again).
    ~LinkPropagation();
    LinkPropagation(const LinkPropagation&) = delete;
    LinkPropagation& operator=(const LinkPropagation&) = delete;

    // One look at both links; acts on a change. At the start, only once both
    // links were up, or after kStartGrace: NICs negotiate for a few seconds
    // after they start, and one side being first is not a fault.
    void tick();
    static constexpr std::chrono::seconds kStartGrace{10};

private:
    const uint16_t port_[2];  // [0] subscriber, [1] internet
    Log log_;
    int forced_ = -1;              // the port index taken down, while the other's link is down
    bool failure_logged_ = false;  // a port that cannot be taken down: said once
    bool armed_ = false;           // past the start (see tick)
    const std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

}  // namespace optgate::dataplane
