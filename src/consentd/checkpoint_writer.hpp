// consentd's side of the signed checkpoints (checkpoint.hpp; docs/consentd.md,
// "Signed checkpoints"): after every `every_events` events, and every `every`
// while the head moved, the head (seq, hash) is signed and appended to the
// checkpoint file, fsync'd; once more when consentd stops.
//
// Runs on the io_context thread: commits only post their head to it, so the
// writer thread never waits for a signature or an fsync.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <functional>
#include <optional>
#include <string>

#include "consentd/checkpoint.hpp"
#include "consentd/database.hpp"
#include "consentd/ledger_service.hpp"

namespace optgate::consentd {

class CheckpointWriter : public TableListener {
public:
    // Loads the key and reads the file's end. Throws std::runtime_error when
    // the key is unusable, the file malformed, or the ledger (at `head_seq`)
    // is shorter than, or differs at, the file's last checkpoint: consentd
    // refuses to start on a ledger that lost or rewrote signed events.
    CheckpointWriter(boost::asio::io_context& ioc, const std::string& database, CheckpointConfig config);
    ~CheckpointWriter() override;
    CheckpointWriter(const CheckpointWriter&) = delete;
    CheckpointWriter& operator=(const CheckpointWriter&) = delete;

    void start(uint64_t head_seq);
    // Cancels the timer and signs `head_seq` if the head moved; after the
    // ledger's writer stopped and the io_context ran its last handler.
    void stop(uint64_t head_seq);

    // Called on the io_context thread with every checkpoint written (the
    // publisher sends it to data planes); at once with the latest one, if any.
    void on_signed(std::function<void(const Checkpoint&)> fn);

    // The latest checkpoint written (or found in the file); io_context thread.
    const std::optional<Checkpoint>& latest() const noexcept { return latest_; }
    const std::string& key_id() const noexcept { return key_.id(); }

    void on_commit(uint64_t seq, const std::vector<proto::TableChange>& changes, const ChainHashes& chain) override;
    void on_resync(uint64_t seq, const Digest& head, const std::shared_ptr<const Policy>& policy,
                   const std::string& table_version) override;

private:
    void note(uint64_t seq);
    void arm();
    void write(uint64_t seq);
    void append_line(const std::string& line);

    boost::asio::io_context& ioc_;
    CheckpointConfig config_;
    CheckpointKey key_;
    Database db_;  // read-only: the hash at a seq
    Statement hash_at_;
    int fd_ = -1;
    boost::asio::steady_timer timer_;
    std::optional<Checkpoint> latest_;
    std::function<void(const Checkpoint&)> on_signed_;
    uint64_t head_ = 0;  // the latest committed seq heard of
};

}  // namespace optgate::consentd
