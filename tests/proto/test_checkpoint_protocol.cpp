// Signed ledger checkpoints over the protocol (docs/protocol.md,
// "Checkpoints"): consentd's publisher with a fake ledger and data planes on
// the real client library. A data plane that asks gets the latest checkpoint
// on connect and every new one, keeps the newest that verifies, refuses and
// counts the rest; one that does not ask (older) gets none; a consentd older
// than the features frame refuses it once and the client stops asking.
#include <doctest/doctest.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include <atomic>
#include <cstdio>

#include "consentd/dataplane_stats.hpp"
#include "older_consentd.hpp"
#include "proto/checkpoint_record.hpp"
#include "publisher_rig.hpp"
#include "raw_client.hpp"

using namespace optgate;
using namespace optgate::test_proto;
using proto::CheckpointKey;
using proto::CheckpointRecord;

namespace {

// A key pair as `openssl genpkey -algorithm ed25519` and `openssl pkey
// -pubout` write them: {private key file, public key file}.
std::pair<std::string, std::string> new_key(const TempDir& dir, const std::string& name) {
    EVP_PKEY* k = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
    REQUIRE(k);
    const std::string priv = dir.file(name + ".key"), pub = dir.file(name + ".pub");
    FILE* f = std::fopen(priv.c_str(), "w");
    REQUIRE(f);
    CHECK(PEM_write_PrivateKey(f, k, nullptr, nullptr, 0, nullptr, nullptr) == 1);
    std::fclose(f);
    f = std::fopen(pub.c_str(), "w");
    REQUIRE(f);
    CHECK(PEM_write_PUBKEY(f, k) == 1);
    std::fclose(f);
    EVP_PKEY_free(k);
    return {priv, pub};
}

std::string head(char c) { return std::string(64, c); }

CheckpointRecord sign(const CheckpointKey& key, uint64_t seq, char head_digit = 'a') {
    return proto::sign_checkpoint(key, seq, head(head_digit), "2026-12-05T06:00:00.000Z");
}

void publish(Rig& rig, uint64_t seq, const std::string& line) {
    rig.on_io([&] { rig.publisher->publish_checkpoint(seq, line); });
}

// The checkpoint seq consentd lists for a data plane (GET /v1/dataplanes).
boost::json::value listed_checkpoint(Rig& rig, const std::string& name) {
    for (const auto& d : rig.dataplanes())
        if (d.name == name) return consentd::to_json(d).at("checkpoint_seq");
    return "absent";
}

}  // namespace

TEST_CASE("a data plane gets the latest checkpoint on connect and each new one; both sides report its seq") {
    Rig rig;
    const auto priv_pub = new_key(rig.dir, "checkpoint");
    const std::string priv = priv_pub.first, pub = priv_pub.second;  // named: clang 14 cannot capture a binding
    const auto key = CheckpointKey::load_private(priv);
    const auto first = sign(key, 7);
    rig.on_io([&] { rig.publisher->enable_checkpoints(); });
    publish(rig, first.seq, first.line());
    CHECK(rig.metric("consentd_dataplane_checkpoint_seq") == 7);

    DataPlane d(rig.endpoint(), "edge-1", 50ms, std::nullopt,
                [&](proto::ControlClient::Options& o) { o.checkpoint_public_key = pub; });
    d.client.set_stats_source(nullptr, 50ms);
    d.client.start();
    REQUIRE(d.client.wait_synced(kPatience));
    // The latest comes before the answer to features.
    REQUIRE(d.client.wait_features(kPatience));
    auto s = d.client.status();
    CHECK(s.checkpoint_seq == 7);
    CHECK(s.checkpoint_line == first.line());
    CHECK(s.checkpoint_verified);
    CHECK(s.checkpoints_kept == 1);
    CHECK(s.checkpoints_refused == 0);
    CHECK(s.checkpoint_received_unix_ms > 0);

    const auto second = sign(key, 12, 'b');
    publish(rig, second.seq, second.line());
    REQUIRE(eventually([&] { return d.client.status().checkpoint_seq == 12; }));
    CHECK(d.client.status().checkpoint_line == second.line());
    CHECK(d.client.status().checkpoints_kept == 2);
    CHECK(d.logged().find("ledger checkpoint: " + second.line()) != std::string::npos);
    // consentd sees it in the data plane's stats: /metrics and /v1/dataplanes.
    CHECK(rig.metric("consentd_dataplane_checkpoint_seq") == 12);
    REQUIRE(eventually([&] {
        return rig.metrics().find("optgate_dp_control_checkpoint_seq{dataplane=\"edge-1\"} 12\n") != std::string::npos;
    }));
    REQUIRE(eventually([&] { return listed_checkpoint(rig, "edge-1") == 12; }));
    CHECK(d.client.status().connects == 1);
}

TEST_CASE("refused checkpoints: seq going back, another head at the same seq, a bad or foreign signature") {
    Rig rig;
    const auto priv_pub = new_key(rig.dir, "checkpoint");
    const std::string priv = priv_pub.first, pub = priv_pub.second;  // named: clang 14 cannot capture a binding
    const auto key = CheckpointKey::load_private(priv);
    const auto stranger = CheckpointKey::load_private(new_key(rig.dir, "stranger").first);
    rig.on_io([&] { rig.publisher->enable_checkpoints(); });
    DataPlane d(rig.endpoint(), "edge-1", 50ms, std::nullopt,
                [&](proto::ControlClient::Options& o) { o.checkpoint_public_key = pub; });
    d.client.start();
    REQUIRE(d.client.wait_synced(kPatience));
    REQUIRE(d.client.wait_features(kPatience));
    CHECK(d.client.status().checkpoint_seq == 0);  // none signed yet

    const auto kept = sign(key, 20);
    publish(rig, kept.seq, kept.line());
    REQUIRE(eventually([&] { return d.client.status().checkpoint_seq == 20; }));

    // Each refusal is counted and logged; the kept one stays.
    uint64_t refused = 0;
    const auto refuses = [&](const CheckpointRecord& c, const std::string& line, const std::string& why) {
        publish(rig, c.seq, line);
        ++refused;
        REQUIRE(eventually([&] { return d.client.status().checkpoints_refused == refused; }));
        CHECK_MESSAGE(d.logged().find(why) != std::string::npos, d.logged());
        CHECK(d.client.status().checkpoint_seq == 20);
        CHECK(d.client.status().checkpoint_line == kept.line());
    };
    const auto back = sign(key, 19);
    refuses(back, back.line(), "goes back from the one of event 20");
    const auto rewritten = sign(key, 20, 'c');
    refuses(rewritten, rewritten.line(), "but the one kept for it has");
    const auto foreign = sign(stranger, 30);
    refuses(foreign, foreign.line(), "not the configured public key");
    // One digit of the head changed after signing.
    auto altered = sign(key, 31).line();
    altered[altered.find("head=") + 5] = 'b';
    refuses(sign(key, 31), altered, "does not verify");
    // A record whose seq is not the frame's.
    const auto other_seq = sign(key, 32);
    publish(rig, 33, other_seq.line());
    ++refused;
    REQUIRE(eventually([&] { return d.client.status().checkpoints_refused == refused; }));

    // The connection was never in question.
    CHECK(d.client.status().connects == 1);
    const auto next = sign(key, 40);
    publish(rig, next.seq, next.line());
    REQUIRE(eventually([&] { return d.client.status().checkpoint_seq == 40; }));
}

TEST_CASE("without a public key checkpoints are kept unverified; a repeat is neither kept again nor refused") {
    Rig rig;
    const auto priv_pub = new_key(rig.dir, "checkpoint");
    const std::string priv = priv_pub.first, pub = priv_pub.second;  // named: clang 14 cannot capture a binding
    const auto key = CheckpointKey::load_private(priv);
    rig.on_io([&] { rig.publisher->enable_checkpoints(); });
    const auto c = sign(key, 5);
    publish(rig, c.seq, c.line());
    DataPlane d(rig.endpoint(), "edge-1");
    d.client.start();
    REQUIRE(d.client.wait_synced(kPatience));
    REQUIRE(d.client.wait_features(kPatience));
    CHECK(d.client.status().checkpoint_seq == 5);
    CHECK_FALSE(d.client.status().checkpoint_verified);
    // After a reconnect consentd sends the same one again.
    REQUIRE(rig.on_io([&] { return rig.publisher->disconnect("edge-1", "test"); }));
    REQUIRE(eventually([&] { return d.client.status().connects == 2 && d.client.status().connected; }));
    REQUIRE(d.client.wait_features(kPatience));
    const auto s = d.client.status();
    CHECK(s.checkpoints_kept == 1);
    CHECK(s.checkpoints_refused == 0);
    CHECK(s.checkpoint_seq == 5);
}

TEST_CASE("a data plane that does not ask (older) gets no checkpoint; consentd without checkpoints answers none") {
    SUBCASE("older data plane") {
        Rig rig;
        const auto priv_pub = new_key(rig.dir, "checkpoint");
        const std::string priv = priv_pub.first, pub = priv_pub.second;  // named: clang 14 cannot capture a binding
        const auto key = CheckpointKey::load_private(priv);
        rig.on_io([&] { rig.publisher->enable_checkpoints(); });
        const auto c = sign(key, 3);
        publish(rig, c.seq, c.line());
        RawClient raw(rig.config.socket);
        std::string hello;
        proto::encode(hello, proto::Hello{"old-edge", 0, ""});
        REQUIRE(raw.write(hello));
        REQUIRE(eventually([&] { return rig.dataplanes().size() == 1; }));
        // A checkpoint signed now, then a commit: frames go in order, so
        // one sent to it would come before that commit's delta.
        const auto later = sign(key, 4);
        publish(rig, later.seq, later.line());
        const uint64_t seq = rig.ledger.upsert("100.64.0.10", 1);
        std::string in;
        bool delta_seen = false, checkpoint_seen = false;
        const auto end = std::chrono::steady_clock::now() + kPatience;
        while (!delta_seen && std::chrono::steady_clock::now() < end) {
            bool closed = false;
            in += raw.read_all(20ms, closed);
            REQUIRE_FALSE(closed);
            for (;;) {
                const auto r = proto::decode(
                    std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(in.data()), in.size()),
                    proto::Direction::to_client);
                REQUIRE(r.status != proto::DecodeStatus::error);
                if (r.status != proto::DecodeStatus::frame) break;
                in.erase(0, r.consumed);
                checkpoint_seen = checkpoint_seen || std::holds_alternative<proto::Checkpoint>(r.frame) ||
                                  std::holds_alternative<proto::FeaturesAck>(r.frame);
                if (const auto* dl = std::get_if<proto::Delta>(&r.frame)) delta_seen = dl->seq == seq;
            }
        }
        CHECK(delta_seen);
        CHECK_FALSE(checkpoint_seen);
    }
    SUBCASE("consentd without checkpoints") {
        Rig rig;  // enable_checkpoints() never called
        rig.on_io([&] { rig.publisher->publish_checkpoint(9, "optgate-checkpoint-v1 seq=9"); });
        DataPlane d(rig.endpoint(), "edge-1");
        d.client.start();
        REQUIRE(d.client.wait_synced(kPatience));
        REQUIRE(d.client.wait_features(kPatience));
        CHECK(d.client.status().checkpoint_seq == 0);
        CHECK(d.client.status().checkpoints_kept == 0);
        CHECK(d.client.status().checkpoints_refused == 0);
    }
}

TEST_CASE("a consentd older than the features frame refuses it once; the client stops asking and stays in sync") {
    TempDir dir;
    OlderConsentd old(dir.file("old.sock"), {proto::FrameType::features});
    DataPlane d(old.endpoint(), "edge-1");
    d.client.set_stats_source(nullptr, 0ms);  // no stats: only features can be refused
    d.client.start();
    REQUIRE(eventually([&] { return d.logged().find("does not know the features frame") != std::string::npos; }));
    CHECK(d.client.wait_features(kPatience));  // settled: nothing to wait for
    REQUIRE(eventually([&] { return old.connections >= 2 && old.acks_after_refusal >= 5; }));
    // However many connections a busy machine costs (idle limits), one
    // features frame in all; in sync without keys (pseudonym collectors
    // strip) and without checkpoints.
    CHECK(old.refused(proto::FrameType::features) == 1);
    CHECK(old.refused_total() == 1);
    CHECK(eventually([&] { return d.client.status().connected && d.client.status().synced; }));
    CHECK(d.client.status().checkpoint_seq == 0);
    CHECK(d.client.status().pseudonym_keys == 0);
}

TEST_CASE("consentd refuses features and stops reading: the client's failed ack does not hide the goodbye") {
    // consentd sends its goodbye and closes; the client, acknowledging the
    // table it just applied, writes to a closed end before it reads the
    // goodbye. It must still learn that features were refused, or it asks
    // again on every connection and never keeps one.
    TempDir dir;
    OlderConsentd old(dir.file("old.sock"), {proto::FrameType::features});
    DataPlane d(old.endpoint(), "edge-1");
    d.client.set_stats_source(nullptr, 0ms);
    // The client has applied the table, so it writes its ack next (to a
    // socket that no longer reads) before it reads what follows.
    old.deaf_after_table = [&] { (void)eventually([&] { return d.client.status().snapshots >= 1; }); };
    d.client.start();
    REQUIRE(eventually([&] { return d.logged().find("does not know the features frame") != std::string::npos; }));
    CHECK(d.logged().find("cannot write to consentd") == std::string::npos);  // the goodbye is the reason given
    REQUIRE(eventually([&] { return old.connections >= 2 && old.acks_after_refusal >= 5; }));
    CHECK(old.refused(proto::FrameType::features) == 1);
}
