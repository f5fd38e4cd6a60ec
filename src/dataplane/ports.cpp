#include "dataplane/ports.hpp"

#include <rte_ethdev.h>

#include <stdexcept>
#include <vector>

#include "dataplane/steering.hpp"

namespace optgate::dataplane {

namespace {

constexpr uint64_t kRssTypes = RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP;

std::string port_label(uint16_t port) {
    char name[RTE_ETH_NAME_MAX_LEN] = "?";
    rte_eth_dev_get_name_by_port(port, name);
    return "port " + std::to_string(port) + " (" + name + ")";
}

rte_eth_dev_info info_of(uint16_t port) {
    rte_eth_dev_info info{};
    const int rc = rte_eth_dev_info_get(port, &info);
    if (rc != 0) throw std::runtime_error(port_label(port) + ": no device info: " + rte_strerror(-rc));
    return info;
}

}  // namespace

uint16_t resolve_port(const std::string& text) {
    uint16_t id = 0;
    bool numeric = !text.empty() && text.size() <= 5;
    for (char ch : text) numeric = numeric && ch >= '0' && ch <= '9';
    if (numeric) {
        const unsigned long n = std::stoul(text);
        if (n < RTE_MAX_ETHPORTS && rte_eth_dev_is_valid_port(uint16_t(n))) return uint16_t(n);
    } else if (rte_eth_dev_get_port_by_name(text.c_str(), &id) == 0) {
        return id;
    }
    std::string known;
    uint16_t p = 0;
    RTE_ETH_FOREACH_DEV(p) known += (known.empty() ? "" : ", ") + port_label(p);
    throw std::runtime_error("port '" + text + "' does not exist; ports: " + (known.empty() ? "none" : known) +
                             " (EAL options -a/--vdev make ports)");
}

QueuePlan plan_queues(uint16_t subscriber, uint16_t internet, unsigned workers, Steering wanted) {
    QueuePlan plan;
    if (workers == 1) {
        plan.why = "one worker polls both ports";
        return plan;
    }
    std::string rss_problem;
    for (uint16_t port : {subscriber, internet}) {
        const auto info = info_of(port);
        if ((info.flow_type_rss_offloads & kRssTypes) == 0)
            rss_problem = port_label(port) + " has no RSS";
        else if (info.max_rx_queues < workers || info.max_tx_queues < workers)
            rss_problem = port_label(port) + " has " + std::to_string(info.max_rx_queues) + " rx / " +
                          std::to_string(info.max_tx_queues) + " tx queues for " + std::to_string(workers) + " workers";
        if (!rss_problem.empty()) break;
    }
    if (wanted == Steering::rss && !rss_problem.empty())
        throw std::runtime_error("steering: rss asked for, but " + rss_problem);
    if (wanted != Steering::software && rss_problem.empty()) {
        plan.steering = Steering::rss;
        plan.rx_queues = plan.tx_queues = uint16_t(workers);
        plan.why = "RSS with a symmetric key, one rx and tx queue per worker on each port";
        return plan;
    }
    plan.steering = Steering::software;
    plan.rx_queues = 1;
    bool direct_tx = true;
    for (uint16_t port : {subscriber, internet}) direct_tx = direct_tx && info_of(port).max_tx_queues >= workers;
    plan.tx_queues = direct_tx ? uint16_t(workers) : 1;
    plan.why = std::string("software: ") + (wanted == Steering::software ? "asked for" : rss_problem) +
               "; each port's poller hashes frames to workers over rings" +
               (direct_tx ? ", one tx queue per worker" : ", transmit through the poller's ring (one tx queue)");
    return plan;
}

void setup_port(uint16_t port, const QueuePlan& plan, const Config& c, rte_mempool* pool) {
    const auto info = info_of(port);
    rte_eth_conf conf{};
    std::vector<uint8_t> key;
    if (plan.steering == Steering::rss && plan.rx_queues > 1) {
        // The symmetric key repeated to the device's key size: the 16-bit
        // period is what makes the hash symmetric, whatever the length.
        const auto& k = FlowSteering::symmetric_key();
        key.resize(info.hash_key_size ? info.hash_key_size : k.size());
        for (size_t i = 0; i < key.size(); ++i) key[i] = k[i % 2];
        conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
        conf.rx_adv_conf.rss_conf.rss_key = key.data();
        conf.rx_adv_conf.rss_conf.rss_key_len = uint8_t(key.size());
        conf.rx_adv_conf.rss_conf.rss_hf = info.flow_type_rss_offloads & kRssTypes;
    }
    const std::string label = port_label(port);
    int rc = rte_eth_dev_configure(port, plan.rx_queues, plan.tx_queues, &conf);
    if (rc < 0) throw std::runtime_error(label + ": configure failed: " + rte_strerror(-rc));
    uint16_t rxd = c.rx_descriptors, txd = c.tx_descriptors;
    rte_eth_dev_adjust_nb_rx_tx_desc(port, &rxd, &txd);
    const int s = rte_eth_dev_socket_id(port);
    const unsigned socket = s < 0 ? rte_socket_id() : unsigned(s);
    for (uint16_t q = 0; q < plan.rx_queues; ++q) {
        rc = rte_eth_rx_queue_setup(port, q, rxd, socket, nullptr, pool);
        if (rc < 0) throw std::runtime_error(label + ": rx queue " + std::to_string(q) + ": " + rte_strerror(-rc));
    }
    for (uint16_t q = 0; q < plan.tx_queues; ++q) {
        rc = rte_eth_tx_queue_setup(port, q, txd, socket, nullptr);
        if (rc < 0) throw std::runtime_error(label + ": tx queue " + std::to_string(q) + ": " + rte_strerror(-rc));
    }
    rc = rte_eth_dev_start(port);
    if (rc < 0) throw std::runtime_error(label + ": start failed: " + rte_strerror(-rc));
    rte_eth_promiscuous_enable(port);  // an inline box sees frames for other MACs; not all vdevs support it
}

}  // namespace optgate::dataplane
