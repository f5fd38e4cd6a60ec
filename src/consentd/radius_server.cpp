#include "consentd/radius_server.hpp"

#include <boost/asio/post.hpp>

#include "consentd/binding_address.hpp"
#include "consentd/log.hpp"
#include "policy/values.hpp"

namespace optgate::consentd {

namespace asio = boost::asio;
using asio::ip::udp;

namespace {

IpAddr ip_of(const udp::endpoint& e) {
    const auto a = e.address();
    if (a.is_v4()) {
        const auto b = a.to_v4().to_bytes();
        return IpAddr::from_v4(b.data());
    }
    const auto b = a.to_v6().to_bytes();
    return IpAddr::from_v6(b.data());
}

std::string_view status_name(uint32_t s) {
    switch (s) {
    case radius::start: return "start";
    case radius::stop: return "stop";
    case radius::interim_update: return "interim_update";
    case radius::accounting_on: return "accounting_on";
    case radius::accounting_off: return "accounting_off";
    default: return "other";
    }
}

// The NAS a session belongs to, as the packet names it: sessions are unique
// per NAS (RFC 2866 §5.5), and a proxy forwards for many NASes under one
// client.
std::string nas_of(const radius::Packet& p) {
    if (const auto v = p.find(radius::nas_identifier)) return "id:" + std::string(radius::text(*v));
    if (const auto v = p.find(radius::nas_ip_address); v && radius::ipv4_address(*v))
        return "ip:" + radius::ipv4_address(*v)->to_string();
    if (const auto v = p.find(radius::nas_ipv6_address); v && radius::ipv6_address(*v))
        return "ip:" + radius::ipv6_address(*v)->to_string();
    return "";
}

// Sets the `bits` bits after the first `from` bits of `a` to `value`.
IpAddr with_bits(IpAddr a, unsigned from, unsigned bits, uint32_t value) {
    for (unsigned i = 0; i < bits; ++i)
        if (value >> (bits - 1 - i) & 1) {
            const unsigned p = from + i;
            a.bytes[p / 8] |= uint8_t(0x80u >> (p % 8));
        }
    return a;
}

}  // namespace

RadiusServer::RadiusServer(asio::io_context& ioc, LedgerService& service, Metrics& metrics, const RadiusConfig& config)
    : ioc_(ioc), service_(service), metrics_(metrics), config_(config),
      socket_(ioc, udp::endpoint(asio::ip::make_address(config.address), config.port)) {
    // A BNG that restarts sends thousands of requests at once; while this
    // thread waits for the CPU they queue in the socket. Ask for 8 MiB: the
    // kernel grants at most net.core.rmem_max (docs/radius.md).
    boost::system::error_code ec;
    socket_.set_option(asio::socket_base::receive_buffer_size(8 << 20), ec);
    metrics_.add_renderer(this, [this](std::string& out) { render_metrics(out); });
}

RadiusServer::~RadiusServer() { metrics_.remove_renderer(this); }

void RadiusServer::stop() {
    stopped_ = true;
    boost::system::error_code ec;
    socket_.close(ec);
}

void RadiusServer::receive() {
    socket_.async_receive_from(asio::buffer(buffer_), from_, [this](boost::system::error_code ec, size_t n) {
        if (stopped_ || ec == asio::error::operation_aborted) return;
        if (!ec) {
            handle(std::span<const uint8_t>(buffer_.data(), n), from_);
            // Whatever else queued meanwhile (a BNG sends in bursts), read
            // at once rather than through the io_context one by one; bounded
            // so that the API and the answers get their turn. The socket
            // stays blocking (the answers' send_to must not drop): read only
            // what is queued.
            for (int i = 0; i < 64 && !stopped_ && socket_.available(ec) > 0 && !ec; ++i) {
                n = socket_.receive_from(asio::buffer(buffer_), from_, 0, ec);
                if (ec) break;
                handle(std::span<const uint8_t>(buffer_.data(), n), from_);
            }
        }
        receive();
    });
}

void RadiusServer::handle(std::span<const uint8_t> datagram, const Endpoint& from) {
    const RadiusClient* client = config_.client_for(ip_of(from));
    if (!client) {
        count_drop("(unknown)", "unknown_client");
        return;
    }
    radius::Malformed why{};
    const auto p = radius::decode(datagram, why);
    if (!p) {
        count_drop(client->name, to_string(why));
        return;
    }
    if (p->code() != radius::kAccountingRequest) {
        count_drop(client->name, "not_accounting_request");
        return;
    }
    if (!radius::request_authenticator_ok(*p, client->secret)) {
        count_drop(client->name, "bad_authenticator");
        return;
    }
    if (!radius::message_authenticator_ok(*p, client->secret)) {
        count_drop(client->name, "bad_message_authenticator");
        return;
    }
    // RFC 5080 §2.2.2: a duplicate is the same source, Identifier and
    // Request Authenticator (the authenticator covers the content).
    std::string key(reinterpret_cast<const char*>(from.data()), from.size());
    key.push_back(char(p->identifier()));
    key.append(reinterpret_cast<const char*>(p->authenticator().data()), 16);
    expire();
    if (const auto it = cache_.find(key); it != cache_.end()) {
        {
            std::lock_guard lk(counters_mu_);
            ++counters_[client->name].retransmissions;
        }
        if (it->second.answered) {
            boost::system::error_code ec;
            socket_.send_to(asio::buffer(it->second.answer), from, 0, ec);
        }
        return;  // still pending: its answer goes out when it is durable
    }
    const auto status_value = p->find(radius::acct_status_type);
    const auto status = status_value ? radius::integer(*status_value) : std::nullopt;
    if (!status) {
        count_drop(client->name, "no_status_type");
        return;
    }
    {
        std::lock_guard lk(counters_mu_);
        ++counters_[client->name].requests[std::string(status_name(*status))];
    }
    std::string skip, drop;
    auto change = change_for(*p, *client, *status, skip, drop);
    if (!drop.empty()) {
        count_drop(client->name, drop);
        return;
    }
    const auto answer = radius::accounting_response(*p, client->secret);
    if (!change) {
        count_skip(client->name, skip);
        remember(key);
        finish(key, from, *client, answer, nullptr);
        return;
    }
    if (!skip.empty()) count_skip(client->name, skip);  // some addresses left out, others bound
    if (pending_ >= config_.max_pending) {
        count_drop(client->name, "overload");  // the client retransmits
        return;
    }
    ++pending_;
    remember(key);
    service_.submit(std::move(*change), "radius:" + client->name, [this, key, from, client, answer](Outcome o) mutable {
        complete(Completed{std::move(key), from, client, answer, std::move(o)});
    });
}

void RadiusServer::complete(Completed c) {
    bool first = false;
    {
        std::lock_guard lk(completed_mu_);
        first = completed_.empty();
        completed_.push_back(std::move(c));
    }
    if (first) asio::post(ioc_, [this] { send_completed(); });
}

void RadiusServer::send_completed() {
    std::vector<Completed> done;
    {
        std::lock_guard lk(completed_mu_);
        done.swap(completed_);
    }
    for (const auto& c : done) {
        --pending_;
        finish(c.key, c.to, *c.client, c.answer, &c.outcome);
    }
}

std::optional<SessionChange> RadiusServer::change_for(const radius::Packet& p, const RadiusClient& client,
                                                      uint32_t status, std::string& skip, std::string& drop) {
    SessionChange c;
    c.session.client = client.name;
    c.session.nas = nas_of(p);
    c.source = "radius:" + client.name;
    if (status == radius::accounting_on || status == radius::accounting_off) {
        c.kind = SessionChange::Kind::release_nas;
        return c;
    }
    if (status != radius::start && status != radius::interim_update && status != radius::stop) {
        skip = "other_status";  // tunnel accounting, Failed, unknown values: nothing to bind
        return std::nullopt;
    }
    const auto session = p.find(radius::acct_session_id);
    if (!session) {
        drop = "no_session_id";  // RFC 2866 §5.5: required in every accounting request
        return std::nullopt;
    }
    c.session.session_id = std::string(radius::text(*session));
    c.kind = status == radius::stop ? SessionChange::Kind::release : SessionChange::Kind::bind;

    // The session's addresses, as binding keys under today's policy.
    const auto policy = service_.policy();
    const unsigned key_length = policy->ipv6_key_length;
    std::string outside;
    auto add = [&](const Prefix& key) {
        AddressProblem problem = AddressProblem::none;
        std::string error;
        const AddressText a{key, false};
        const auto b = c.kind == SessionChange::Kind::release ? binding_for_unbind(a, *policy, error)
                                                              : binding_for_bind(a, *policy, problem, error);
        if (b)
            c.bindings.push_back(*b);
        else
            outside = "not_subscriber_address";
    };
    auto add_v6 = [&](const Prefix& prefix) {
        if (prefix.len >= key_length) {
            add(Prefix{prefix.addr.masked(key_length), uint8_t(key_length)});
            return;
        }
        // A delegated prefix shorter than a key (a /56 to a home, keys /64):
        // every key it covers is bound, up to max_delegated_keys.
        const unsigned bits = key_length - prefix.len;
        if (bits > 16 || (size_t(1) << bits) > config_.max_delegated_keys) {
            outside = "prefix_too_short";
            return;
        }
        for (uint32_t i = 0; i < (uint32_t(1) << bits); ++i)
            add(Prefix{with_bits(prefix.addr, prefix.len, bits, i), uint8_t(key_length)});
    };
    p.for_each([&](const radius::Attribute& a) {
        switch (a.type) {
        case radius::framed_ip_address:
            if (const auto ip = radius::ipv4_address(a.value)) {
                // RFC 2865 §5.8: 255.255.255.255 and 255.255.255.254 are
                // instructions to the NAS, not addresses.
                if (ip->v4_host_order() < 0xfffffffe && ip->v4_host_order() != 0) add(Prefix{*ip, 32});
            }
            break;
        case radius::framed_ipv6_address:
            if (const auto ip = radius::ipv6_address(a.value)) add_v6(Prefix{*ip, 128});
            break;
        case radius::framed_ipv6_prefix:
        case radius::delegated_ipv6_prefix:
            if (const auto prefix = radius::ipv6_prefix(a.value)) add_v6(*prefix);
            break;
        default: break;
        }
    });
    skip = outside;
    if (c.kind == SessionChange::Kind::release) return c;  // also what the session holds beyond the Stop's addresses
    if (c.bindings.empty()) {
        if (skip.empty()) skip = "no_address";
        return std::nullopt;
    }

    const auto& rule = config_.subscriber;
    const auto value = rule.attribute == radius::vendor_specific ? p.find_vendor(rule.vendor, rule.vendor_type)
                                                                 : p.find(rule.attribute);
    if (!value) {
        skip = "no_subscriber";
        return std::nullopt;
    }
    std::string name(radius::text(*value));
    if (rule.match) {
        std::smatch m;
        if (std::regex_match(name, m, *rule.match)) name = m.format(rule.replace);
    }
    if (!policy::syntax::is_subscriber_id(name)) {
        skip = "bad_subscriber";
        return std::nullopt;
    }
    c.subscriber = std::move(name);
    return c;
}

void RadiusServer::finish(const std::string& key, const Endpoint& to, const RadiusClient& client,
                          const std::array<uint8_t, radius::kHeaderBytes>& answer, const Outcome* o) {
    const auto it = cache_.find(key);
    if (o && o->status != Outcome::Status::ok) {
        // Not recorded (the commit failed, or consentd is stopping): no
        // answer, and forget the request so that its retransmission is tried
        // again.
        if (it != cache_.end()) cache_.erase(it);
        // A follower (docs/scale-out.md): the NAS sends it to its next server.
        count_drop(client.name, o->code == "not_writer" ? "not_writer" : "ledger_unavailable");
        return;
    }
    if (it != cache_.end()) {
        it->second.answered = true;
        it->second.answer = answer;
    }
    boost::system::error_code ec;
    socket_.send_to(asio::buffer(answer), to, 0, ec);
    std::lock_guard lk(counters_mu_);
    auto& c = counters_[client.name];
    ++c.responses;
    if (o) {
        c.bound += o->bound;
        c.unbound += o->unbound;
    }
}

void RadiusServer::remember(const std::string& key) {
    const auto now = std::chrono::steady_clock::now();
    cache_[key] = Cached{false, {}, now};
    cache_order_.emplace_back(key, now);
    while (cache_.size() > config_.retransmit_cache && !cache_order_.empty()) {
        const auto it = cache_.find(cache_order_.front().first);
        if (it != cache_.end() && it->second.at == cache_order_.front().second) cache_.erase(it);
        cache_order_.pop_front();
    }
}

void RadiusServer::expire() {
    const auto oldest = std::chrono::steady_clock::now() - config_.retransmit_window;
    while (!cache_order_.empty() && cache_order_.front().second < oldest) {
        const auto it = cache_.find(cache_order_.front().first);
        // Pending entries stay: their answer is still to come.
        if (it != cache_.end() && it->second.at == cache_order_.front().second && it->second.answered) cache_.erase(it);
        cache_order_.pop_front();
    }
}

void RadiusServer::count_drop(const std::string& client, std::string_view reason) {
    std::lock_guard lk(counters_mu_);
    auto& c = counters_[client].drops;
    const auto it = c.find(reason);
    if (it != c.end())
        ++it->second;
    else
        c.emplace(std::string(reason), 1);
}

void RadiusServer::count_skip(const std::string& client, std::string_view reason) {
    std::lock_guard lk(counters_mu_);
    auto& c = counters_[client].skips;
    const auto it = c.find(reason);
    if (it != c.end())
        ++it->second;
    else
        c.emplace(std::string(reason), 1);
}

void RadiusServer::render_metrics(std::string& out) const {
    std::lock_guard lk(counters_mu_);
    auto family = [&](std::string_view name, std::string_view help, auto&& each) {
        metric_header(out, name, "counter", help);
        for (const auto& [client, c] : counters_) each(client, c);
    };
    auto sample = [&](std::string_view name, const std::string& client, std::string_view label, std::string_view value,
                      uint64_t n) {
        out.append(name).append("{client=\"").append(client).append("\"");
        if (!label.empty()) out.append(",").append(label).append("=\"").append(value).append("\"");
        out.append("} ").append(std::to_string(n)).append("\n");
    };
    family("consentd_radius_requests_total", "Authenticated accounting requests by client and Acct-Status-Type.",
           [&](const std::string& client, const ClientCounters& c) {
               for (const auto& [status, n] : c.requests)
                   sample("consentd_radius_requests_total", client, "status", status, n);
           });
    family("consentd_radius_responses_total", "Accounting-Responses sent (each after its events were durable).",
           [&](const std::string& client, const ClientCounters& c) {
               if (client != "(unknown)") sample("consentd_radius_responses_total", client, "", "", c.responses);
           });
    family("consentd_radius_retransmissions_total",
           "Retransmitted requests answered from the cache (or waiting for their original): no new event.",
           [&](const std::string& client, const ClientCounters& c) {
               if (client != "(unknown)")
                   sample("consentd_radius_retransmissions_total", client, "", "", c.retransmissions);
           });
    family("consentd_radius_bindings_total", "Bind and unbind events made by accounting requests.",
           [&](const std::string& client, const ClientCounters& c) {
               if (client == "(unknown)") return;
               sample("consentd_radius_bindings_total", client, "action", "bind", c.bound);
               sample("consentd_radius_bindings_total", client, "action", "unbind", c.unbound);
           });
    family("consentd_radius_drops_total", "Requests dropped without an answer, by reason.",
           [&](const std::string& client, const ClientCounters& c) {
               for (const auto& [reason, n] : c.drops)
                   sample("consentd_radius_drops_total", client, "reason", reason, n);
           });
    family("consentd_radius_skipped_total", "Requests answered without binding (some or all of) their addresses.",
           [&](const std::string& client, const ClientCounters& c) {
               for (const auto& [reason, n] : c.skips)
                   sample("consentd_radius_skipped_total", client, "reason", reason, n);
           });
}

}  // namespace optgate::consentd
