// optgate's own Prometheus endpoint (docs/dataplane.md#prometheus): plain
// HTTP, GET /metrics, on one thread of the control side, never a worker
// lcore. Scraping the data plane itself keeps its metrics visible exactly
// when consentd, which also shows them, is unreachable.
//
// One connection at a time, each with a deadline and a bounded request: a
// slow or hostile client delays a scrape, it cannot take memory or threads.
// Meant for loopback (the default) or a management network; no TLS, no
// authentication. DPDK-free.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <thread>

namespace optgate::dataplane {

class MetricsServer {
public:
    // The whole exposition, rendered for each scrape on the server's thread.
    using Render = std::function<std::string()>;

    // Binds ADDRESS:PORT (an IPv4 or IPv6 literal; port 0: any) and starts
    // serving; throws std::runtime_error saying why it cannot.
    MetricsServer(const std::string& address, uint16_t port, Render render);
    ~MetricsServer();  // stops serving, ends the connection being served
    MetricsServer(const MetricsServer&) = delete;
    MetricsServer& operator=(const MetricsServer&) = delete;

    uint16_t port() const noexcept { return port_; }

private:
    void serve() noexcept;
    void answer(int fd);

    Render render_;
    int listen_fd_ = -1;
    int stop_fd_ = -1;  // eventfd: readable once the destructor runs
    uint16_t port_ = 0;
    std::thread thread_;
};

}  // namespace optgate::dataplane
