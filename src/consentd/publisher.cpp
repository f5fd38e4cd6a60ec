#include "consentd/publisher.hpp"

#include <boost/asio/post.hpp>

#include <openssl/crypto.h>

#include <algorithm>
#include <cstdio>
#include <random>

#include "consentd/log.hpp"
#include "consentd/sha256.hpp"
#include "proto/codec.hpp"

namespace optgate::consentd {

namespace asio = boost::asio;
using proto::Goodbye;

namespace {

Frames frames_of(std::string s) { return std::make_shared<const std::string>(std::move(s)); }

ChainMark mark_of(const Digest& d) {
    ChainMark m;
    std::copy_n(d.begin(), m.size(), m.begin());
    return m;
}

// A frame holding key bytes: cleared when the last data plane's queue lets
// go of it.
Frames secret_frames_of(std::string s) {
    auto* owned = new std::string(std::move(s));
    return Frames(owned, [owned](const std::string*) {
        if (!owned->empty()) OPENSSL_cleanse(owned->data(), owned->size());
        delete owned;
    });
}

}  // namespace

// ---- the ledger as a table source ----

void LedgerTableSource::snapshot(SnapshotSink& sink) {
    service_.snapshot([&](uint64_t seq, const Digest& head, const ConsentState& state) {
        sink.begin(seq, head, state.policy_ptr(), state.table_version());
        state.for_each_entry([&](const SubscriberKey& k, PurposeMask m) { sink.add(k, m); });
    });
}

Publisher::Publisher(asio::io_context& ioc, TableSource& source, DataPlaneConfig config, DisclosureSink* disclosures)
    : ioc_(ioc), source_(source), config_(std::move(config)), disclosures_(disclosures),
      history_(config_.history_commits, config_.history_bytes), heartbeat_timer_(ioc), key_timer_(ioc) {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx",
                  static_cast<unsigned long long>(std::random_device{}() ^ (uint64_t(std::random_device{}()) << 32)));
    instance_ = buf;
}

Publisher::~Publisher() { snapshot_thread_.join(); }

void Publisher::add_policy_document(const std::shared_ptr<const Policy>& policy, std::string name, std::string text) {
    // The stream id changes with the text: a data plane that resumes must
    // have the very policy consentd runs, and this very consentd's history.
    const std::string stream = to_hex(sha256(text)).substr(0, 16) + "@" + instance_;
    std::lock_guard lk(docs_mu_);
    std::erase_if(docs_, [](const auto& kv) { return kv.second.policy.expired(); });
    docs_[policy.get()] = PolicyDoc{policy, std::move(name), std::move(text), stream};
}

std::optional<Publisher::PolicyDoc> Publisher::document_for(const Policy* p) {
    std::lock_guard lk(docs_mu_);
    const auto it = docs_.find(p);
    if (it == docs_.end() || it->second.policy.expired()) return std::nullopt;
    return it->second;
}

// ---- the table: read from the ledger, mirrored, encoded ----

Publisher::TableRead Publisher::read_table() {
    struct Sink : SnapshotSink {
        TableRead r;
        void begin(uint64_t s, const std::optional<Digest>& head, const std::shared_ptr<const Policy>& p,
                   const std::string& tv) override {
            r.seq = s;
            if (head) r.mark = mark_of(*head);
            r.policy = p;
            r.table_version = tv;
        }
        void add(const SubscriberKey& k, PurposeMask m) override { r.entries.emplace_back(k, m); }
    } sink;
    source_.snapshot(sink);
    return std::move(sink.r);
}

std::shared_ptr<Publisher::Snapshot> Publisher::encode_snapshot(uint64_t seq, const std::string& stream_id,
                                                                const std::string& table_version,
                                                                const std::string& policy_name,
                                                                const std::string& policy_text,
                                                                const Entries& entries) {
    proto::SnapshotEncoder enc;
    for (const auto& [k, m] : entries) enc.add(k, m);
    std::vector<std::string> frames;
    if (!enc.finish(proto::SnapshotBegin{seq, 0, 0, stream_id, table_version, policy_name, policy_text}, frames))
        return nullptr;
    auto s = std::make_shared<Snapshot>();
    s->seq = seq;
    s->stream_id = stream_id;
    s->table_version = table_version;
    s->entries = enc.entries();
    for (auto& f : frames) {
        s->bytes += f.size();
        s->frames.push_back(frames_of(std::move(f)));
    }
    return s;
}

void Publisher::mirror_from(const Entries& entries) {
    size_t v4 = 0;
    for (const auto& e : entries) v4 += e.first.addr.family == Family::v4;
    mirror_ = std::make_unique<ConsentTable>(mirror_rcu_, v4);
    mirror_->reserve(v4, entries.size() - v4);
    for (const auto& [k, m] : entries) mirror_->upsert(k, m);
}

bool Publisher::snapshot_usable(const Snapshot& s) const {
    // Usable while every commit after it is still in the history.
    return s.stream_id == stream_id_ && history_.covers(s.seq);
}

bool Publisher::snapshot_worth_reusing(const Snapshot& s) const {
    if (!snapshot_usable(s)) return false;
    // After a large commit (an import), an old snapshot plus that commit is
    // more to send and apply than a new snapshot, and may not fit the queue.
    size_t after = 0;
    for (auto it = history_.after(s.seq); it != history_.end(); ++it) after += it->frames->size();
    return after <= std::max<size_t>(1u << 20, s.bytes / 4) && after < config_.max_queue_bytes / 2;
}

void Publisher::start() {
    const auto t0 = Clock::now();
    TableRead r = read_table();
    const auto doc = document_for(r.policy.get());
    if (!doc) throw std::runtime_error("no policy text for the running policy");
    history_.reset(r.seq, r.mark);
    stream_id_ = doc->stream_id;
    table_version_ = r.table_version;
    policy_name_ = doc->name;
    policy_text_ = doc->text;
    mirror_from(r.entries);
    policy_ = r.policy;
    refresh_keys();
    // The first snapshot, ready for the first hello.
    snapshot_ = encode_snapshot(r.seq, stream_id_, table_version_, policy_name_, policy_text_, r.entries);
    if (!snapshot_)
        throw std::runtime_error("the policy " + policy_name_ + " is larger than the protocol carries (" +
                                 std::to_string(proto::kMaxPolicyBytes) + " bytes)");
    snapshot_->build_time = Clock::now() - t0;
    counters_.snapshot_build_seconds.observe(snapshot_->build_time.count());
    started_ = true;
    heartbeat();
}

void Publisher::stop() {
    if (stopping_) return;
    stopping_ = true;
    heartbeat_timer_.cancel();
    key_timer_.cancel();
    for (auto& [id, dp] : dataplanes_) dp.link->close(Goodbye::Code::shutdown, "consentd is stopping");
    waiters_.stop();
}

void Publisher::request_snapshot() {
    if (stopping_) return;
    if (snapshot_ && snapshot_worth_reusing(*snapshot_)) {
        for (auto& [id, dp] : dataplanes_)
            if (dp.greeted && dp.awaiting_snapshot) deliver_snapshot(dp);
        return;
    }
    // Reloading the mirror (a policy changed the table): asked again then.
    if (building_ || !mirror_) return;
    building_ = true;
    // Copy the mirror here (a scan of flat arrays), encode on the snapshot
    // thread: the ledger and the API carry on meanwhile.
    const auto t0 = Clock::now();
    auto entries = std::make_shared<Entries>();
    entries->reserve(mirror_->size());
    mirror_->for_each([&](const SubscriberKey& k, PurposeMask m) { entries->emplace_back(k, m); });
    asio::post(snapshot_thread_, [this, t0, entries, seq = history_.head(), stream = stream_id_, tv = table_version_,
                                  name = policy_name_, text = policy_text_] {
        auto snap = encode_snapshot(seq, stream, tv, name, text, *entries);
        if (snap) snap->build_time = Clock::now() - t0;
        asio::post(ioc_, [this, snap = std::move(snap)]() mutable { on_snapshot_built(std::move(snap)); });
    });
}

void Publisher::on_snapshot_built(std::shared_ptr<Snapshot> s) {
    building_ = false;
    if (stopping_) return;
    if (!s) {
        log_error("data planes: the policy " + policy_name_ + " is larger than the protocol carries (" +
                  std::to_string(proto::kMaxPolicyBytes) + " bytes); cannot send a snapshot");
        for (auto& [id, dp] : dataplanes_)
            if (dp.awaiting_snapshot)
                dp.link->close(Goodbye::Code::shutdown, "consentd cannot build a snapshot; see its log");
        return;
    }
    counters_.snapshot_build_seconds.observe(s->build_time.count());
    // A build that raced a policy change or a history trim is dropped; the
    // next one will do.
    if (!snapshot_usable(*s)) {
        snapshot_.reset();
    } else {
        snapshot_ = std::move(s);
        // Fresh: whoever waits gets it, whatever came after it.
        for (auto& [id, dp] : dataplanes_)
            if (dp.greeted && dp.awaiting_snapshot) deliver_snapshot(dp);
    }
    bool waiting = false;
    for (const auto& [id, dp] : dataplanes_) waiting = waiting || (dp.greeted && dp.awaiting_snapshot);
    if (waiting) request_snapshot();
}

void Publisher::reload_mirror() {
    if (reloading_) {
        reload_again_ = true;
        return;
    }
    reloading_ = true;
    asio::post(snapshot_thread_, [this] {
        auto r = read_table();
        asio::post(ioc_, [this, r = std::move(r)] { on_table_read(r); });
    });
}

void Publisher::on_table_read(const TableRead& r) {
    reloading_ = false;
    if (stopping_) return;
    // Another table change meanwhile, or commits after the read already gone
    // from the history: read again.
    if (reload_again_ || r.table_version != table_version_ || !history_.covers(r.seq)) {
        reload_again_ = false;
        reload_mirror();
        return;
    }
    mirror_from(r.entries);
    // Then the commits after the read, from the history's frames.
    for (auto it = history_.after(r.seq); it != history_.end(); ++it) {
        const std::string& bytes = *it->frames;
        size_t off = 0;
        while (off < bytes.size()) {
            const auto d = proto::decode({reinterpret_cast<const uint8_t*>(bytes.data()) + off, bytes.size() - off},
                                         proto::Direction::to_client);
            if (d.status != proto::DecodeStatus::frame) break;  // our own frames: cannot happen
            off += d.consumed;
            proto::for_each_change(std::get<proto::Delta>(d.frame).changes, [&](const proto::TableChange& c) {
                if (c.op == proto::TableChange::Op::erase)
                    mirror_->erase(c.key);
                else
                    mirror_->upsert(c.key, c.purposes);
            });
        }
    }
    request_snapshot();
}

void Publisher::deliver_snapshot(DataPlane& dp) {
    const Snapshot& s = *snapshot_;
    dp.awaiting_snapshot = false;
    for (const auto& f : s.frames)
        if (dp.link->send(f, false) == DataPlaneLink::SendResult::closed) return;
    dp.sent_seq = s.seq;
    ++dp.snapshots;
    ++counters_.snapshots_sent;
    // Then every commit after it, from the history.
    for (auto it = history_.after(s.seq); it != history_.end() && !dp.awaiting_snapshot; ++it) {
        send(dp, it->frames);
        if (!dp.awaiting_snapshot) dp.sent_seq = it->seq;
    }
    send_token(dp);
}

void Publisher::resync(DataPlane& dp) {
    if (dp.awaiting_snapshot) return;
    ++dp.resyncs;
    ++counters_.resyncs;
    log_warning("data plane " + dp.name + " (" + dp.address + ") fell behind by more than " +
                std::to_string(config_.max_queue_bytes) + " queued bytes: resending the whole table");
    dp.awaiting_snapshot = true;
    // The freshest table: a stale cached one could overflow it again with
    // the history after it.
    if (snapshot_ && snapshot_->seq < history_.head()) snapshot_.reset();
    asio::post(ioc_, [this] { request_snapshot(); });
}

void Publisher::send(DataPlane& dp, const Frames& f) {
    if (dp.link->send(f, true) == DataPlaneLink::SendResult::overflow) resync(dp);
}

// ---- resume tokens (docs/protocol.md, "Resuming at another consentd") ----

std::optional<std::string> Publisher::resume_token(uint64_t seq) const {
    const auto mark = history_.mark_at(seq);
    if (!mark) return std::nullopt;
    // The policy text's part of the stream id (the rest names this
    // process), and the chain at seq: "r1:<16 hex>:<32 hex>", 52 bytes.
    const std::string_view policy = std::string_view(stream_id_).substr(0, stream_id_.find('@'));
    return "r1:" + std::string(policy) + ":" + to_hex(*mark);
}

Frames Publisher::token_frame(uint64_t seq) const {
    const auto token = resume_token(seq);
    std::string out;
    if (!token || !proto::encode(out, proto::ResumeToken{seq, *token})) return nullptr;
    return frames_of(std::move(out));
}

void Publisher::send_token(DataPlane& dp) {
    if (!dp.wants_tokens || dp.awaiting_snapshot) return;
    if (auto f = token_frame(dp.sent_seq)) send(dp, f);
}

// ---- the ledger's feed ----

void Publisher::on_commit(uint64_t seq, const std::vector<proto::TableChange>& changes, const ChainHashes& chain) {
    // On the ledger's sync thread, once the commit is durable: encode once, post
    // (with a copy of the changes, for the mirror).
    std::string out;
    proto::encode_commit(out, seq, changes);
    Commit c{seq, frames_of(std::move(out)), Clock::now(), {}};
    c.chain.reserve(chain.size());
    for (const auto& h : chain) c.chain.push_back(mark_of(h));
    auto shared = std::make_shared<const std::vector<proto::TableChange>>(changes);
    asio::post(ioc_, [this, c = std::move(c), shared] { on_commit_io(c, shared); });
}

void Publisher::on_resync(uint64_t seq, const Digest& head, const std::shared_ptr<const Policy>& policy,
                          const std::string& table_version) {
    publish_policy(seq, policy, table_version, true, head);
}

void Publisher::on_policy(uint64_t seq, const std::shared_ptr<const Policy>& policy, const std::string& table_version) {
    publish_policy(seq, policy, table_version, false);
}

void Publisher::publish_policy(uint64_t seq, const std::shared_ptr<const Policy>& policy,
                               const std::string& table_version, bool table_changed, std::optional<Digest> head) {
    const auto doc = document_for(policy.get());
    if (!doc) {
        log_error("data planes: a policy was installed without its text; data planes keep the previous one");
        return;
    }
    Frames update;
    if (!table_changed) {
        std::string out;
        if (!proto::encode(out, proto::PolicyUpdate{seq, doc->stream_id, table_version, doc->name, doc->text})) {
            log_error("data planes: the policy " + doc->name + " is larger than the protocol carries");
            return;
        }
        update = frames_of(std::move(out));
    }
    std::optional<ChainMark> mark;
    if (head) mark = mark_of(*head);
    asio::post(ioc_, [this, seq, doc = *doc, table_version, update, table_changed, mark] {
        on_policy_io(seq, doc, table_version, update, table_changed, mark);
    });
}

void Publisher::on_commit_io(const Commit& c, const std::shared_ptr<const std::vector<proto::TableChange>>& changes) {
    if (!started_ || stopping_ || c.seq <= history_.head()) return;  // already in the first snapshot
    if (mirror_)
        for (const auto& ch : *changes) {
            if (ch.op == proto::TableChange::Op::erase)
                mirror_->erase(ch.key);
            else
                mirror_->upsert(ch.key, ch.purposes);
        }
    history_.append(c);
    // For the data planes that take tokens: the commit's frames and its
    // token in one buffer (one write, as for the others), built once.
    Frames with_token;
    bool built = false;
    for (auto& [id, dp] : dataplanes_) {
        if (!dp.greeted || dp.awaiting_snapshot || c.seq <= dp.sent_seq) continue;
        if (dp.wants_tokens && !built) {
            built = true;
            if (const auto token = token_frame(c.seq)) {
                std::string both;
                both.reserve(c.frames->size() + token->size());
                both.append(*c.frames).append(*token);
                with_token = frames_of(std::move(both));
            }
        }
        send(dp, dp.wants_tokens && with_token ? with_token : c.frames);
        if (!dp.awaiting_snapshot) dp.sent_seq = c.seq;
    }
}

void Publisher::on_policy_io(uint64_t seq, PolicyDoc doc, std::string table_version, const Frames& update,
                             bool table_changed, std::optional<ChainMark> mark) {
    if (!started_ || stopping_) return;
    const bool same_text = doc.stream_id == stream_id_ && table_version == table_version_;
    if (same_text && !table_changed) return;  // the same text again
    if (same_text)
        // The ledger read its state again (a commit in doubt adopted, a
        // state read again after a failure, a follower catching up after
        // it was the writer): the table may differ from what the data
        // planes hold by changes they never got as commits.
        log_info("data planes: the ledger's state was read again at seq " + std::to_string(seq) +
                 ": every data plane gets the whole table");
    else
        log_info(std::string("data planes: new policy (") +
                 (table_changed ? "the table's meaning changed: every data plane gets the whole table"
                                : "same table meaning: data planes swap the policy") +
                 ") at seq " + std::to_string(seq));
    stream_id_ = std::move(doc.stream_id);
    table_version_ = std::move(table_version);
    policy_name_ = std::move(doc.name);
    policy_text_ = std::move(doc.text);
    // Keys first: a data plane holds keys of collectors its policy does not
    // have yet, so the new policy finds the keys of its new collectors.
    if (auto p = doc.policy.lock()) policy_ = std::move(p);
    refresh_keys();
    snapshot_.reset();
    if (table_changed) {
        // Deltas from before cannot be applied to a table of the new
        // meaning, and the ledger recomputed every entry: read it again.
        // The stream goes on from the ledger's head, which is past the
        // history's when the ledger took commits it never published.
        if (seq > history_.head() || (seq == history_.head() && mark))
            history_.reset(seq, mark);
        else
            history_.reset(history_.head(), history_.mark_at(history_.head()));
        mirror_.reset();
        reload_mirror();
    }
    bool need_snapshot = false;
    for (auto& [id, dp] : dataplanes_) {
        if (!dp.greeted) continue;
        if (table_changed || dp.awaiting_snapshot) {
            dp.awaiting_snapshot = true;
            need_snapshot = true;
        } else {
            send(dp, update);
            send_token(dp);  // the one it had named the policy before
        }
    }
    if (need_snapshot) request_snapshot();
}

// ---- sessions ----

Publisher::Admission Publisher::admissible(std::string_view name, std::string_view identity) const {
    if (!source_.in_step()) return Admission::out_of_step;
    bool replaces = false;
    for (const auto& [id, dp] : dataplanes_) {
        if (!dp.greeted || dp.name != name) continue;
        if (dp.identity != identity) return Admission::identity_conflict;
        replaces = true;
    }
    return replaces || dataplanes_.size() < config_.max_dataplanes ? Admission::ok : Admission::full;
}

uint64_t Publisher::attach(DataPlaneLink* link, std::string address, std::string identity) {
    const uint64_t id = next_id_++;
    DataPlane dp;
    dp.id = id;
    dp.link = link;
    dp.address = std::move(address);
    dp.identity = std::move(identity);
    dp.connected_since = std::chrono::system_clock::now();
    dp.last_heard = Clock::now();
    dataplanes_.emplace(id, std::move(dp));
    return id;
}

void Publisher::hello(uint64_t id, const proto::Hello& h) {
    const auto it = dataplanes_.find(id);
    if (it == dataplanes_.end()) return;
    DataPlane& dp = it->second;
    if (dp.greeted) {
        ++counters_.protocol_errors;
        dp.link->close(Goodbye::Code::protocol_error, "hello twice");
        return;
    }
    dp.greeted = true;
    dp.name = std::string(h.name);
    dp.last_heard = Clock::now();
    disconnected_.reconnected(dp.name);
    // A data plane that reconnects before its old connection timed out: the
    // old one is dead weight (and would hold up ?wait=enforced). Only the
    // same identity gets here (admissible()): an impostor never replaces it.
    for (auto& [other_id, other] : dataplanes_)
        if (other_id != id && other.greeted && other.name == dp.name && other.identity == dp.identity)
            other.link->close(Goodbye::Code::replaced, "a newer connection from data plane " + dp.name);
    // The same stream (this consentd, this policy), or a token naming this
    // policy and the chain hash that this consentd's ledger has at
    // last_seq (another consentd of the ledger, or this one before a
    // restart): either way, the table is the ledger's as of last_seq.
    const bool covered = !stopping_ && history_.covers(h.last_seq);
    const bool same_stream = covered && h.stream_id == stream_id_;
    const bool by_token = covered && !same_stream && h.stream_id.starts_with("r1:") &&
                          resume_token(h.last_seq) == std::optional<std::string>(h.stream_id);
    const bool resume = same_stream || by_token;
    if (by_token) ++counters_.token_resumes;
    log_info("data plane " + dp.name + " connected from " + dp.address + ": " +
             (resume ? "resuming after seq " + std::to_string(h.last_seq) + (by_token ? " (by its resume token)" : "")
                     : "sending the table (it has seq " + std::to_string(h.last_seq) + ")"));
    std::string out;
    proto::encode(out, proto::Welcome{history_.head(), uint32_t(config_.heartbeat_interval.count()),
                                      resume ? proto::Welcome::Mode::resume : proto::Welcome::Mode::snapshot});
    if (dp.link->send(frames_of(std::move(out)), false) == DataPlaneLink::SendResult::closed) return;
    if (resume) {
        // Its table is this stream's as of last_seq; otherwise it has
        // nothing until the snapshot is installed.
        dp.applied_seq = dp.sent_seq = h.last_seq;
        for (auto c = history_.after(h.last_seq); c != history_.end() && !dp.awaiting_snapshot; ++c) {
            send(dp, c->frames);
            if (!dp.awaiting_snapshot) dp.sent_seq = c->seq;
        }
    } else {
        dp.awaiting_snapshot = true;
        request_snapshot();
    }
}

void Publisher::ack(uint64_t id, uint64_t seq) {
    const auto it = dataplanes_.find(id);
    if (it == dataplanes_.end()) return;
    DataPlane& dp = it->second;
    const auto now = Clock::now();
    dp.last_heard = now;
    if (!dp.greeted || seq > dp.sent_seq) {
        ++counters_.protocol_errors;
        dp.link->close(
            Goodbye::Code::protocol_error,
            dp.greeted ? "acknowledged seq " + std::to_string(seq) + ", which was never sent" : "ack before hello");
        return;
    }
    dp.last_ack = std::chrono::system_clock::now();
    if (seq > dp.applied_seq) {
        // Commit-to-acknowledgement latency of what this ack covers (the
        // newest 64 commits at most: a snapshot catch-up is not latency).
        auto first = history_.after(dp.applied_seq);
        auto last = std::partition_point(first, history_.end(), [&](const Commit& c) { return c.seq <= seq; });
        if (last - first > 64) first = last - 64;
        for (auto c = first; c != last; ++c)
            counters_.observe_enforcement(dp.name, std::chrono::duration<double>(now - c->committed).count());
        dp.applied_seq = seq;
        dp.acked_at = now;
        dp.told_peers = false;
    }
    // The other consentd hear of it from its first acknowledgement (a
    // table at seq 0 too), then of every advance.
    if (peers_ && !dp.told_peers) {
        peers_->applied(dp.name, dp.address, dp.applied_seq);
        dp.told_peers = true;
    }
    waiters_.acknowledged(id, dp.applied_seq);
}

void Publisher::stats(uint64_t id, const proto::Stats& s) {
    const auto it = dataplanes_.find(id);
    if (it == dataplanes_.end()) return;
    DataPlane& dp = it->second;
    if (!dp.greeted) {
        ++counters_.protocol_errors;
        dp.link->close(Goodbye::Code::protocol_error, "stats before hello");
        return;
    }
    const auto now = Clock::now();
    dp.last_heard = now;
    // One copy of the frame's entries, already validated and sorted.
    auto r = std::make_shared<StatsReport>();
    r->count = s.count;
    r->bytes.assign(reinterpret_cast<const char*>(s.bytes.data()), s.bytes.size());
    r->received = now;
    dp.stats = std::move(r);
    ++counters_.stats_reports;
}

void Publisher::features(uint64_t id, const proto::Features& f) {
    const auto it = dataplanes_.find(id);
    if (it == dataplanes_.end()) return;
    DataPlane& dp = it->second;
    if (!dp.greeted) {
        ++counters_.protocol_errors;
        dp.link->close(Goodbye::Code::protocol_error, "features before hello");
        return;
    }
    dp.last_heard = Clock::now();
    // Everything asked for goes before the answer: once the client has the
    // answer, it has the latest checkpoint and the current keys.
    proto::FeaturesAck answer;
    if ((f.flags & proto::Features::kCheckpoints) && checkpoints_on_) {
        dp.wants_checkpoints = true;
        answer.flags |= proto::Features::kCheckpoints;
        if (checkpoint_ && dp.link->send(*checkpoint_, false) == DataPlaneLink::SendResult::closed) return;
    }
    if (f.flags & proto::Features::kResumeTokens) {
        answer.flags |= proto::Features::kResumeTokens;
        if (!dp.wants_tokens) {
            dp.wants_tokens = true;
            // For the table it has, or will have once what was queued is
            // applied (none while a snapshot is owed: it comes after it).
            send_token(dp);
        }
    }
    if (f.flags & proto::Features::kPseudonymKeys) {
        answer.flags |= proto::Features::kPseudonymKeys;
        if (!dp.wants_keys) {
            dp.wants_keys = true;
            // Always sent, an empty set if need be: it is how the data plane
            // knows it has every key there is.
            if (!keys_frame_) {
                std::string out;
                proto::encode_pseudonym_keys(out, {});
                keys_frame_ = frames_of(std::move(out));
            }
            if (dp.link->send(keys_frame_, false) == DataPlaneLink::SendResult::closed) return;
        }
    }
    std::string out;
    proto::encode(out, answer);
    dp.link->send(frames_of(std::move(out)), false);
}

void Publisher::publish_checkpoint(uint64_t seq, const std::string& line) {
    std::string out;
    if (!proto::encode(out, proto::Checkpoint{seq, line})) {
        log_error("checkpoint of event " + std::to_string(seq) + " cannot travel to data planes (malformed line)");
        return;
    }
    checkpoint_ = frames_of(std::move(out));
    counters_.checkpoint_seq = seq;
    // Unbounded: a few hundred bytes every `every_events` or `every`.
    for (auto& [id, dp] : dataplanes_)
        if (dp.greeted && dp.wants_checkpoints) dp.link->send(*checkpoint_, false);
}

void Publisher::detach(uint64_t id, const std::string& why) {
    const auto it = dataplanes_.find(id);
    if (it == dataplanes_.end()) return;
    if (it->second.greeted) {
        const DataPlane& dp = it->second;
        log_info("data plane " + dp.name + " (" + dp.address + ") disconnected: " + why);
        ++counters_.disconnects;
        // Kept for operators (up 0, last stats) unless a newer connection
        // with its name is here already (replaced).
        const bool back = std::any_of(dataplanes_.begin(), dataplanes_.end(), [&](const auto& kv) {
            return kv.first != id && kv.second.greeted && kv.second.name == dp.name;
        });
        if (!back && !stopping_) {
            disconnected_.disconnected(dp.name, dp.address, dp.stats);
        }
        if (!back && peers_) peers_->gone(dp.name);
    }
    dataplanes_.erase(it);
    waiters_.disconnected(id);
}

bool Publisher::disconnect(const std::string& name, const std::string& reason) {
    bool found = false;
    for (auto& [id, dp] : dataplanes_)
        if (dp.greeted && dp.name == name) {
            dp.link->close(Goodbye::Code::shutdown, reason);
            found = true;
        }
    return found;
}

// ---- pseudonym keys ----

void Publisher::refresh_keys() {
    key_timer_.cancel();
    if (!keys_ || !policy_ || stopping_) return;
    std::vector<PeriodKey> keys;
    try {
        keys = keys_->keys_for(*policy_);
    } catch (const std::exception& e) {
        // Data planes keep the keys they have, each until its period ends.
        log_error(std::string("pseudonym keys: ") + e.what() + "; retrying in 10 s");
        key_timer_.expires_after(std::chrono::seconds(10));
        key_timer_.async_wait([this](boost::system::error_code ec) {
            if (!ec) refresh_keys();
        });
        return;
    }
    std::vector<proto::PseudonymKeyView> views;
    views.reserve(keys.size());
    for (const auto& k : keys)
        views.push_back(
            {k.collector, k.not_before(), k.not_after(), std::span<const uint8_t, proto::kPseudonymKeyBytes>(k.key)});
    std::string out;
    const bool encoded = proto::encode_pseudonym_keys(out, views);
    for (auto& k : keys) OPENSSL_cleanse(k.key.data(), k.key.size());
    if (!encoded) {
        // The policy loader bounds collector names and counts; not reached.
        log_error("pseudonym keys: more keys or longer collector names than the protocol carries");
        return;
    }
    if (keys_frame_ && *keys_frame_ == out) {
        OPENSSL_cleanse(out.data(), out.size());
    } else {
        keys_frame_ = secret_frames_of(std::move(out));
        for (auto& [id, dp] : dataplanes_)
            if (dp.greeted && dp.wants_keys) dp.link->send(keys_frame_, false);
    }
    // At the end of the earliest current period, the next key becomes the
    // current one and the one after it is made.
    const uint64_t change = keys_->next_change(*policy_);
    if (!change) return;
    const auto now = uint64_t(
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count());
    key_timer_.expires_after(std::chrono::seconds(change > now ? change - now : 0) + std::chrono::seconds(1));
    key_timer_.async_wait([this](boost::system::error_code ec) {
        if (!ec) refresh_keys();
    });
}

// ---- heartbeats ----

void Publisher::heartbeat() {
    if (stopping_) return;
    disconnected_.forget();
    fence();
    expire_remotes();
    const auto now = Clock::now();
    const auto wall = std::chrono::system_clock::now();
    std::string out;
    proto::encode(
        out, proto::Heartbeat{
                 history_.head(),
                 uint64_t(std::chrono::duration_cast<std::chrono::milliseconds>(wall.time_since_epoch()).count())});
    const Frames f = frames_of(std::move(out));
    // A data plane acknowledges every heartbeat; ten missed (at least 5 s)
    // and it is gone, whatever TCP thinks.
    const auto silence = std::max<Clock::duration>(10 * config_.heartbeat_interval, std::chrono::seconds(5));
    for (auto& [id, dp] : dataplanes_) {
        if (!dp.greeted) continue;
        if (now - dp.last_heard > silence) {
            dp.link->close(Goodbye::Code::timeout,
                           "nothing heard for " + std::to_string(age_ms(dp.last_heard, now)) + " ms");
            continue;
        }
        if (dp.awaiting_snapshot) continue;
        send(dp, f);
        dp.last_heartbeat = wall;
    }
    heartbeat_timer_.expires_after(config_.heartbeat_interval);
    heartbeat_timer_.async_wait([this](boost::system::error_code ec) {
        if (!ec) heartbeat();
    });
}

// ---- fencing (docs/scale-out.md, "Fencing") ----

void Publisher::fence() {
    if (source_.in_step()) {
        if (fenced_) log_info("in step with the ledger again: taking data planes");
        fenced_ = false;
        return;
    }
    size_t closed = 0;
    for (auto& [id, dp] : dataplanes_) {
        if (!dp.greeted) continue;
        // One goodbye, then nothing: its table goes stale unless another
        // consentd (the next in its list) serves it.
        dp.link->close(Goodbye::Code::shutdown,
                       "consentd cannot confirm that it holds the whole ledger (docs/scale-out.md, \"Fencing\"): "
                       "connect to another");
        ++closed;
    }
    if (!fenced_) {
        fenced_ = true;
        ++counters_.fences;
        log_warning("out of step with the ledger: closed " + std::to_string(closed) +
                    " data planes, refusing them until the ledger confirms this consentd's table");
    }
}

// ---- ?wait=enforced ----

void Publisher::wait_enforced(uint64_t seq, std::chrono::milliseconds timeout,
                              std::function<void(EnforcementReport)> done) {
    std::vector<EnforcementWaiters::DataPlane> greeted;
    for (const auto& [id, dp] : dataplanes_)
        if (dp.greeted) greeted.push_back({id, dp.name, dp.address, {}, dp.applied_seq, dp.acked_at});
    for (const auto& [key, r] : remotes_)
        greeted.push_back({r.id, r.name, r.address, r.instance, r.applied_seq, r.acked_at});
    waiters_.wait(seq, greeted, timeout, std::move(done));
}

// ---- the other consentd's data planes (peer_link.hpp) ----

void Publisher::peer_report(const PeerLink::Report& r) {
    const auto key = std::make_pair(r.instance_id, r.name);
    auto it = remotes_.find(key);
    if (r.gone) {
        if (it == remotes_.end()) return;
        const uint64_t id = it->second.id;
        remotes_.erase(it);
        waiters_.disconnected(id);
        return;
    }
    const auto now = Clock::now();
    if (it == remotes_.end()) {
        Remote fresh;
        fresh.id = kRemoteId | next_remote_++;
        it = remotes_.emplace(key, std::move(fresh)).first;
    }
    Remote& x = it->second;
    x.instance = r.instance;
    x.name = r.name;
    x.address = r.address;
    x.heard = now;
    if (r.applied_seq > x.applied_seq) {
        x.applied_seq = r.applied_seq;
        x.acked_at = now;
    }
    waiters_.acknowledged(x.id, x.applied_seq);
}

void Publisher::expire_remotes() {
    const auto now = Clock::now();
    for (auto it = remotes_.begin(); it != remotes_.end();) {
        if (now - it->second.heard <= PeerLink::kSilence) {
            ++it;
            continue;
        }
        const uint64_t id = it->second.id;
        it = remotes_.erase(it);
        waiters_.disconnected(id);  // its consentd is gone, or cut off: it fences its data planes
    }
}

// ---- status ----

std::vector<DataPlaneInfo> Publisher::dataplanes() const {
    const auto now = Clock::now();
    std::vector<DataPlaneInfo> out;
    for (const auto& [id, dp] : dataplanes_) {
        if (!dp.greeted) continue;
        DataPlaneInfo i;
        i.id = id;
        i.name = dp.name;
        i.address = dp.address;
        i.connected_since = dp.connected_since;
        i.synced = !dp.awaiting_snapshot;
        i.applied_seq = dp.applied_seq;
        i.lag = history_.head() > dp.applied_seq ? history_.head() - dp.applied_seq : 0;
        i.last_ack = dp.last_ack;
        i.last_heartbeat = dp.last_heartbeat;
        i.snapshots = dp.snapshots;
        i.resyncs = dp.resyncs;
        i.stats = dp.stats;
        if (dp.stats) i.stats_age_ms = age_ms(dp.stats->received, now);
        out.push_back(std::move(i));
    }
    return out;
}

std::vector<DataPlaneInfo> Publisher::disconnected_dataplanes() const { return disconnected_.list(); }

void Publisher::render_metrics(std::string& out) const {
    DataPlaneMetrics m{counters_};
    m.history_commits = history_.size();
    m.fenced = fenced_;
    m.peer_dataplanes = remotes_.size();
    m.waits_enforced = waiters_.answered(EnforcementReport::Status::enforced);
    m.waits_timeout = waiters_.answered(EnforcementReport::Status::timeout);
    m.waits_none = waiters_.answered(EnforcementReport::Status::no_dataplanes);
    // One per name: the newest connection (ids ascend), else the gone one.
    const auto now = Clock::now();
    for (const auto& [id, dp] : dataplanes_)
        if (dp.greeted) {
            ++m.connected;
            m.sources[dp.name] = {true, dp.stats.get()};
        }
    disconnected_.for_each(now, [&](const std::string& name, const StatsReport* stats) {
        m.sources.try_emplace(name, DataPlaneMetrics::Source{false, stats});
    });
    render_dataplane_metrics(out, m, now);
}

}  // namespace optgate::consentd
