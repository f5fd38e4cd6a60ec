#include "dataplane/link.hpp"

#include <rte_ethdev.h>

#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace optgate::dataplane {

namespace {

constexpr const char* kRole[2] = {"subscriber", "internet"};

// The kernel interface behind a port ("" if none), e.g. af_packet's.
std::string kernel_interface(uint16_t port) {
    rte_eth_dev_info info{};
    if (rte_eth_dev_info_get(port, &info) != 0 || info.if_index == 0) return {};
    char name[IF_NAMESIZE] = {};
    return if_indextoname(info.if_index, name) ? name : "";
}

// The interface's flags (SIOCGIFFLAGS), and changed per `set`/`clear`;
// -errno on failure.
int interface_flags(const std::string& ifname, short set = 0, short clear = 0) {
    const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, ifname.c_str(), IF_NAMESIZE - 1);
    int rc = ::ioctl(fd, SIOCGIFFLAGS, &ifr);
    if (rc == 0 && (set || clear)) {
        ifr.ifr_flags = short((ifr.ifr_flags | set) & ~clear);
        rc = ::ioctl(fd, SIOCSIFFLAGS, &ifr);
    }
    const int result = rc < 0 ? -errno : int(unsigned(ifr.ifr_flags) & 0xffff);
    ::close(fd);
    return result;
}

}  // namespace

bool link_up(uint16_t port) {
    rte_eth_link link{};
    if (rte_eth_link_get_nowait(port, &link) != 0 || link.link_status != RTE_ETH_LINK_UP) return false;
    const std::string ifname = kernel_interface(port);
    if (ifname.empty()) return true;
    const int flags = interface_flags(ifname);
    return flags >= 0 && (flags & IFF_UP) && (flags & IFF_RUNNING);
}

std::string set_link(uint16_t port, bool up) {
    const int rc = up ? rte_eth_dev_set_link_up(port) : rte_eth_dev_set_link_down(port);
    if (rc == 0) return {};
    const std::string ifname = kernel_interface(port);
    if (rc != -ENOTSUP || ifname.empty()) return rte_strerror(-rc);
    const int flags = up ? interface_flags(ifname, IFF_UP, 0) : interface_flags(ifname, 0, IFF_UP);
    return flags < 0 ? ifname + ": " + std::strerror(-flags) : "";
}

LinkPropagation::LinkPropagation(uint16_t subscriber, uint16_t internet, Log log)
    : port_{subscriber, internet}, log_(std::move(log)) {}

LinkPropagation::~LinkPropagation() {
    if (forced_ >= 0) set_link(port_[forced_], true);
}

void LinkPropagation::tick() {
    if (forced_ >= 0) {
        // Only the other port's link matters now: ours is down on purpose.
        const int other = 1 - forced_;
        if (!link_up(port_[other])) return;
        const std::string why = set_link(port_[forced_], true);
        log_(!why.empty(), std::string("link up again on the ") + kRole[other] + " port: " +
                               (why.empty() ? std::string("the ") + kRole[forced_] + " port is up again"
                                            : std::string("cannot bring the ") + kRole[forced_] + " port up: " + why));
        forced_ = -1;
        return;
    }
    const bool up[2] = {link_up(port_[0]), link_up(port_[1])};
    if (!armed_) {
        if (!(up[0] && up[1]) && std::chrono::steady_clock::now() - start_ < kStartGrace) return;
        armed_ = true;
    }
    if (up[0] == up[1]) return;  // both up, or both down: nothing to tell either side
    const int down = up[0] ? 1 : 0;
    const int other = 1 - down;
    const std::string why = set_link(port_[other], false);
    if (!why.empty()) {
        if (!failure_logged_)
            log_(true, std::string("link down on the ") + kRole[down] + " port; cannot take the " + kRole[other] +
                           " port down: " + why);
        failure_logged_ = true;
        return;  // tried again next tick
    }
    failure_logged_ = false;
    log_(true, std::string("link down on the ") + kRole[down] + " port: the " + kRole[other] +
                   " port is taken down until it is back (link propagation)");
    forced_ = other;
}

}  // namespace optgate::dataplane
