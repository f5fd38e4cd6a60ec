// A consentd from before some optional frames (stats, disclosure reports,
// features), reduced to what the data plane's client meets: it welcomes,
// sends a one-entry table, heartbeats every 50 ms however busy the peer keeps
// it, and refuses a frame type it does not know on its header with
// goodbye(protocol error), as consentd does. One connection at a time.
#pragma once

#include <doctest/doctest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <string>
#include <thread>
#include <vector>

#include "proto/codec.hpp"
#include "proto/endpoint.hpp"
#include "proto_fixture.hpp"

namespace optgate::test_proto {

class OlderConsentd {
public:
    // `unknown`: the frame types this version refuses.
    OlderConsentd(const std::string& path, std::initializer_list<proto::FrameType> unknown)
        : path_(path), fd_(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
        for (const auto t : unknown) unknown_[size_t(t)] = true;
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
        REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        REQUIRE(::listen(fd_, 4) == 0);
        thread_ = std::thread([this] { serve(); });
    }
    ~OlderConsentd() {
        stop_ = true;
        ::shutdown(fd_, SHUT_RDWR);
        thread_.join();
        ::close(fd_);
    }
    OlderConsentd(const OlderConsentd&) = delete;
    OlderConsentd& operator=(const OlderConsentd&) = delete;

    // Where a data plane reaches it.
    proto::Endpoint endpoint() const {
        proto::Endpoint ep;
        ep.kind = proto::Endpoint::Kind::unix_socket;
        ep.path = path_;
        return ep;
    }

    // Frames of type `t` refused (unknown to it) and taken (known).
    int refused(proto::FrameType t) const { return refused_[size_t(t)]; }
    int taken(proto::FrameType t) const { return taken_[size_t(t)]; }
    int refused_total() const { return refused_total_; }

    std::atomic<int> connections{0};
    std::atomic<int> acks_after_refusal{0};  // acks (heartbeats answered) once something was refused

    // Set before the client starts: on the first connection it stops
    // reading (the client's next write fails), sends the table, and calls
    // this before answering the rest of what the client sent with it.
    std::function<void()> deaf_after_table;

private:
    void serve() {
        while (!stop_) {
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, 50) <= 0) continue;
            const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
            if (c < 0) continue;
            ++connections;
            talk(c);
            ::close(c);
        }
    }

    void talk(int c) {
        using namespace std::chrono_literals;
        std::string in;
        bool greeted = false;
        auto last_heartbeat = std::chrono::steady_clock::now();
        while (!stop_) {
            if (greeted && std::chrono::steady_clock::now() - last_heartbeat >= 50ms) {
                std::string hb;
                proto::encode(hb, proto::Heartbeat{1, 0});
                send(c, hb);
                last_heartbeat = std::chrono::steady_clock::now();
            }
            pollfd p{c, POLLIN, 0};
            if (::poll(&p, 1, 50) <= 0) continue;
            char buf[65536];
            const ssize_t n = ::recv(c, buf, sizeof buf, 0);
            if (n <= 0) return;
            in.append(buf, size_t(n));
            for (;;) {
                // What this version does not know, it refuses on the header.
                if (in.size() >= 4 && unknown_[uint8_t(in[3])]) {
                    ++refused_[uint8_t(in[3])];
                    ++refused_total_;
                    std::string g;
                    proto::encode(
                        g, proto::Goodbye{proto::Goodbye::Code::protocol_error, "malformed frame: unknown frame type"});
                    send(c, g);
                    return;
                }
                const auto r = proto::decode(bytes_of(in), proto::Direction::to_server);
                if (r.status != proto::DecodeStatus::frame) break;
                ++taken_[uint8_t(in[3])];
                in.erase(0, r.consumed);
                if (std::holds_alternative<proto::Hello>(r.frame) && !greeted) {
                    greeted = true;
                    const bool deaf = deaf_after_table && connections == 1;
                    if (deaf) ::shutdown(c, SHUT_RD);
                    send(c, welcome_and_table());
                    if (deaf) deaf_after_table();
                } else if (std::holds_alternative<proto::Ack>(r.frame) && refused_total_ > 0) {
                    ++acks_after_refusal;
                }
            }
        }
    }

    static void send(int c, const std::string& s) { (void)!::send(c, s.data(), s.size(), MSG_NOSIGNAL); }

    static std::string welcome_and_table() {
        std::string out;
        proto::encode(out, proto::Welcome{1, 100, proto::Welcome::Mode::snapshot});
        proto::SnapshotEncoder enc;
        enc.add(key("100.64.0.10"), 1);
        std::vector<std::string> frames;
        REQUIRE(enc.finish(proto::SnapshotBegin{1, 0, 0, "old@1", "tv", "p.yaml", kPolicyYaml}, frames));
        for (const auto& f : frames) out += f;
        return out;
    }

    std::string path_;
    std::array<bool, 256> unknown_{};
    std::array<std::atomic<int>, 256> refused_{}, taken_{};
    std::atomic<int> refused_total_{0};
    int fd_ = -1;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

}  // namespace optgate::test_proto
