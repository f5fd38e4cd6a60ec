#include "consentd/checkpoint_writer.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <boost/asio/post.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "consentd/event.hpp"
#include "consentd/ledger.hpp"
#include "consentd/log.hpp"

namespace optgate::consentd {

CheckpointWriter::CheckpointWriter(boost::asio::io_context& ioc, const std::string& database, CheckpointConfig config)
    : ioc_(ioc), config_(std::move(config)), key_(CheckpointKey::load_private(config_.key)),
      db_(database, Database::Mode::read_only), timer_(ioc) {
    check_schema(db_);
    hash_at_ = db_.prepare("SELECT hash FROM events WHERE seq = ?1");
    const auto tail = read_checkpoint_tail(config_.file);
    uint64_t head = 0;
    {
        auto st = db_.prepare("SELECT max(seq) FROM events");
        if (st.step() && !st.is_null(0)) head = uint64_t(st.int64(0));
    }
    if (tail.last) {
        const Checkpoint& c = *tail.last;
        const std::string hint = " (optgatectl verify-ledger " + database + " --checkpoints " + config_.file + ")";
        if (c.seq > head)
            throw std::runtime_error("the ledger ends at event " + std::to_string(head) + ", but " + config_.file +
                                     " holds a checkpoint of event " + std::to_string(c.seq) + " signed at " + c.time +
                                     ": signed events were removed" + hint);
        hash_at_.bind(1, int64_t(c.seq));
        const std::string hash = hash_at_.step() ? std::string(hash_at_.text(0)) : std::string();
        hash_at_.reset();
        if (hash != c.head)
            throw std::runtime_error("event " + std::to_string(c.seq) + " of the ledger has hash " + hash + ", but " +
                                     config_.file + " holds " + c.head + " for it, signed at " + c.time +
                                     ": the ledger was rewritten" + hint);
        latest_ = c;
    }
    fd_ = ::open(config_.file.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw std::runtime_error("cannot open " + config_.file + ": " + std::strerror(errno));
    // Whoever verifies finds the public key of what follows in the file
    // (and pins it with --public-key).
    if (tail.key_id != key_.id()) append_line(key_line(key_));
}

CheckpointWriter::~CheckpointWriter() {
    if (fd_ >= 0) ::close(fd_);
}

void CheckpointWriter::start(uint64_t head_seq) {
    head_ = head_seq;
    arm();
}

void CheckpointWriter::stop(uint64_t head_seq) {
    timer_.cancel();
    head_ = std::max(head_, head_seq);
    if (head_ > (latest_ ? latest_->seq : 0)) write(head_);
}

void CheckpointWriter::on_signed(std::function<void(const Checkpoint&)> fn) {
    on_signed_ = std::move(fn);
    if (on_signed_ && latest_) on_signed_(*latest_);
}

void CheckpointWriter::on_commit(uint64_t seq, const std::vector<proto::TableChange>&, const ChainHashes&) {
    boost::asio::post(ioc_, [this, seq] { note(seq); });
}

void CheckpointWriter::on_resync(uint64_t seq, const Digest&, const std::shared_ptr<const Policy>&,
                                 const std::string&) {
    boost::asio::post(ioc_, [this, seq] { note(seq); });
}

void CheckpointWriter::note(uint64_t seq) {
    if (seq <= head_) return;
    head_ = seq;
    if (head_ - (latest_ ? latest_->seq : 0) >= config_.every_events) write(head_);
}

void CheckpointWriter::arm() {
    timer_.expires_after(config_.every);
    timer_.async_wait([this](boost::system::error_code ec) {
        if (ec) return;
        if (head_ > (latest_ ? latest_->seq : 0)) write(head_);
        arm();
    });
}

void CheckpointWriter::write(uint64_t seq) {
    try {
        hash_at_.bind(1, int64_t(seq));
        if (!hash_at_.step()) throw std::runtime_error("the ledger has no event " + std::to_string(seq));
        std::string head(hash_at_.text(0));
        hash_at_.reset();
        auto c = sign_checkpoint(key_, seq, std::move(head), format_utc_ms(std::chrono::system_clock::now()));
        append_line(c.line());
        latest_ = std::move(c);
        if (on_signed_) on_signed_(*latest_);
    } catch (const std::exception& e) {
        hash_at_.reset();
        // The next commit or tick tries again; the ledger itself is unaffected.
        log_error("checkpoint of event " + std::to_string(seq) + " not written: " + e.what());
    }
}

void CheckpointWriter::append_line(const std::string& line) {
    const std::string text = line + "\n";
    // O_APPEND: one write() of a line is one record, after every earlier one.
    const ssize_t n = ::write(fd_, text.data(), text.size());
    if (n != ssize_t(text.size()))
        throw std::runtime_error("cannot append to " + config_.file + ": " +
                                 (n < 0 ? std::strerror(errno) : "short write"));
    if (::fsync(fd_) != 0) throw std::runtime_error("cannot fsync " + config_.file + ": " + std::strerror(errno));
}

}  // namespace optgate::consentd
