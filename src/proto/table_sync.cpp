#include "proto/table_sync.hpp"

#include <string.h>
#include <time.h>

#include "policy/loader.hpp"
#include "proto/codec.hpp"

namespace optgate::proto {

namespace {

TableSync::Step fail(std::string error, Goodbye::Code code = Goodbye::Code::protocol_error) {
    TableSync::Step s;
    s.ok = false;
    s.code = code;
    s.error = std::move(error);
    return s;
}

// Applies one change to a table; returns false if the table refused it.
bool apply(ConsentTable& t, const TableChange& c, unsigned ipv6_key_length) {
    const SubscriberKey key = SubscriberKey::make(c.key.addr, ipv6_key_length);
    if (c.op == TableChange::Op::erase) {
        t.erase(key);
        return true;
    }
    return t.upsert(key, c.purposes);
}

// Applies a list of changes. Each one lands on a random slot of a large
// array, a cache miss: the slots of a batch are prefetched first, so that
// the misses overlap instead of following each other.
void apply_all(ConsentTable& t, const EntryList& list, unsigned ipv6_key_length, uint64_t& refused) {
    constexpr size_t kBatch = 16;
    TableChange batch[kBatch];
    size_t n = 0;
    auto flush = [&] {
        for (size_t i = 0; i < n; ++i) {
            const IpAddr& a = batch[i].key.addr;
            if (a.family == Family::v4) {
                t.prefetch_v4(a.v4_host_order());
            } else {
                uint64_t hi = 0, lo = 0;
                ConsentTable::split_v6(a.bytes.data(), hi, lo, ipv6_key_length);
                t.prefetch_v6(hi, lo);
            }
        }
        for (size_t i = 0; i < n; ++i)
            if (!apply(t, batch[i], ipv6_key_length)) ++refused;
        n = 0;
    };
    for_each_change(list, [&](const TableChange& c) {
        batch[n++] = c;
        if (n == kBatch) flush();
    });
    flush();
}

// Key material is cleared where it is freed (explicit_bzero: not optimised away).
void clear_key(PseudonymKey& k) noexcept { explicit_bzero(k.data(), k.size()); }
void clear_keys(Policy& p) noexcept {
    for (auto& c : p.collectors)
        if (c.pseudonym_key) clear_key(*c.pseudonym_key);
}

}  // namespace

TableSync::TableSync(Enforcement& enforcement, UnixClock unix_now)
    : enforcement_(enforcement), unix_now_(std::move(unix_now)) {
    if (!unix_now_) unix_now_ = [] { return uint64_t(::time(nullptr)); };
}

TableSync::~TableSync() {
    for (auto& k : keys_) clear_key(k.key);
}

void TableSync::set_keys(Policy& policy, uint64_t now) const {
    for (auto& c : policy.collectors) {
        if (c.deliver != Collector::Delivery::pseudonym) continue;
        const HeldKey* best = nullptr;
        for (const auto& k : keys_)
            if (k.collector == c.name && k.not_before <= now && now < k.not_after &&
                (!best || k.not_before > best->not_before))
                best = &k;
        if (best)
            c.pseudonym_key = best->key;
        else
            c.pseudonym_key.reset();
    }
}

void TableSync::install_keeping_table(std::shared_ptr<const Runtime> runtime) {
    const ConsentTable& old = *enforcement_.table();
    auto table = enforcement_.make_table(old.size_v4());
    table->reserve(old.size_v4(), old.size_v6());
    old.for_each([&](const SubscriberKey& k, PurposeMask m) { table->upsert(k, m); });
    enforcement_.install(std::move(runtime), std::move(table));
}

void TableSync::tick() {
    const uint64_t now = unix_now_();
    std::erase_if(keys_, [&](HeldKey& k) {
        if (now < k.not_after) return false;
        clear_key(k.key);
        return true;
    });
    const auto runtime = enforcement_.runtime();
    if (!runtime || !enforcement_.table()) return;
    Policy policy = runtime->policy();
    set_keys(policy, now);
    bool same = true;
    for (size_t i = 0; i < policy.collectors.size(); ++i)
        same = same && policy.collectors[i].pseudonym_key == runtime->policy().collectors[i].pseudonym_key;
    if (same) {
        clear_keys(policy);
        return;
    }
    // It compiled before with other keys; keys change nothing compile checks.
    std::string error;
    auto next = Runtime::compile(policy, &error);
    clear_keys(policy);
    if (!next) return;
    install_keeping_table(std::move(next));
    ++key_installs_;
}

TableSync::Step TableSync::on_keys(const PseudonymKeys& f) {
    if (state_ == State::awaiting_welcome) return fail("pseudonym keys before welcome");
    for (auto& k : keys_) clear_key(k.key);
    keys_.clear();
    for_each_pseudonym_key(f, [&](const PseudonymKeyView& v) {
        HeldKey k;
        k.collector = std::string(v.collector);
        k.not_before = v.not_before_unix_s;
        k.not_after = v.not_after_unix_s;
        std::copy(v.key.begin(), v.key.end(), k.key.begin());
        keys_.push_back(std::move(k));
    });
    tick();
    return Step{};
}

std::shared_ptr<const Runtime> TableSync::compile(std::string_view text, std::string_view name,
                                                  std::string& error) const {
    try {
        auto loaded = policy::load_policy_text(text,
                                               name.empty() ? std::string("<consentd policy>") : std::string(name));
        set_keys(loaded.policy, unix_now_());
        auto runtime = Runtime::compile(loaded.policy, &error);
        clear_keys(loaded.policy);
        if (!runtime) error = std::string(name) + ": " + error;
        return runtime;
    } catch (const policy::PolicyError& e) {
        error = e.what();
        while (!error.empty() && error.back() == '\n') error.pop_back();
        return nullptr;
    }
}

bool TableSync::bootstrap(std::string_view yaml, const std::string& name, std::string& error) {
    auto runtime = compile(yaml, name, error);
    if (!runtime) return false;
    enforcement_.install(std::move(runtime), enforcement_.make_table());
    return true;
}

void TableSync::connection_started() noexcept {
    state_ = State::awaiting_welcome;
    pending_.reset();
    partial_seq_ = 0;
}

TableSync::Step TableSync::on_frame(const Frame& frame, uint64_t now_mono_ns) {
    // Any frame is contact; it keeps a consentd table fresh. A local
    // bootstrap table stays "not received" until a snapshot replaces it.
    if (has_table_) enforcement_.heard_from_control(now_mono_ns);
    return std::visit(
        [&](const auto& f) -> Step {
            using T = std::decay_t<decltype(f)>;
            if constexpr (std::is_same_v<T, Welcome>) {
                if (state_ != State::awaiting_welcome) return fail("welcome after the connection started");
                head_seq_ = f.head_seq;
                heartbeat_interval_ms_ = f.heartbeat_interval_ms;
                if (f.mode == Welcome::Mode::resume) {
                    if (!has_table_) return fail("consentd offered to resume, but no table was ever received");
                    state_ = State::streaming;
                    Step s;
                    s.ack = true;
                    return s;
                }
                state_ = State::awaiting_snapshot;
                return Step{};
            } else if constexpr (std::is_same_v<T, SnapshotBegin>) {
                return on_snapshot_begin(f);
            } else if constexpr (std::is_same_v<T, SnapshotChunk>) {
                return on_snapshot_chunk(f);
            } else if constexpr (std::is_same_v<T, SnapshotEnd>) {
                return on_snapshot_end(f);
            } else if constexpr (std::is_same_v<T, Delta>) {
                return on_delta(f);
            } else if constexpr (std::is_same_v<T, PolicyUpdate>) {
                return on_policy(f);
            } else if constexpr (std::is_same_v<T, Heartbeat>) {
                if (state_ == State::awaiting_welcome) return fail("heartbeat before welcome");
                head_seq_ = std::max(head_seq_, f.head_seq);
                Step s;
                s.ack = true;  // liveness, and our applied seq
                return s;
            } else if constexpr (std::is_same_v<T, PseudonymKeys>) {
                return on_keys(f);
            } else if constexpr (std::is_same_v<T, ResumeToken>) {
                return on_resume_token(f);
            } else if constexpr (std::is_same_v<T, Goodbye>) {
                Step s;
                s.closed = true;
                s.code = f.code;
                s.error = std::string(f.message);
                return s;
            } else {
                return fail(std::string(to_string(FrameType::hello)) + "/ack frames go to consentd, not from it");
            }
        },
        frame);
}

TableSync::Step TableSync::on_snapshot_begin(const SnapshotBegin& f) {
    // Allowed after a snapshot welcome, and as a resync at any point of the
    // stream (consentd restarts it after a policy change or when this data
    // plane fell behind): what was half-received is dropped.
    if (state_ == State::awaiting_welcome) return fail("snapshot before welcome");
    pending_.reset();
    partial_seq_ = 0;
    resume_token_.clear();  // for a table about to be replaced
    std::string error;
    auto runtime = compile(f.policy_text, f.policy_name, error);
    if (!runtime)
        return fail("the policy from consentd does not load here; keeping the installed state: " + error,
                    Goodbye::Code::policy_rejected);
    auto p = std::make_unique<Pending>();
    p->seq = f.seq;
    p->expected = uint64_t(f.v4_entries) + f.v6_entries;
    p->stream_id = std::string(f.stream_id);
    p->table_version = std::string(f.table_version);
    p->runtime = std::move(runtime);
    p->table = enforcement_.make_table(f.v4_entries);
    p->table->reserve(f.v4_entries, f.v6_entries);
    pending_ = std::move(p);
    state_ = State::in_snapshot;
    return Step{};
}

TableSync::Step TableSync::on_snapshot_chunk(const SnapshotChunk& f) {
    if (state_ != State::in_snapshot) return fail("snapshot chunk outside a snapshot");
    Pending& p = *pending_;
    if (p.received + f.entries.count > p.expected) return fail("snapshot holds more entries than announced");
    apply_all(*p.table, f.entries, p.runtime->policy().ipv6_key_length, refused_);
    p.received += f.entries.count;
    return Step{};
}

TableSync::Step TableSync::on_snapshot_end(const SnapshotEnd& f) {
    if (state_ != State::in_snapshot) return fail("snapshot end outside a snapshot");
    Pending& p = *pending_;
    if (f.seq != p.seq) return fail("snapshot end names another sequence than its begin");
    if (f.entries != p.expected || p.received != p.expected)
        return fail("snapshot entry counts do not add up (announced " + std::to_string(p.expected) + ", received " +
                    std::to_string(p.received) + ", end says " + std::to_string(f.entries) + ")");
    enforcement_.install(std::move(p.runtime), std::move(p.table));
    applied_seq_ = p.seq;
    stream_id_ = std::move(p.stream_id);
    table_version_ = std::move(p.table_version);
    head_seq_ = std::max(head_seq_, applied_seq_);
    pending_.reset();
    has_table_ = true;
    // The snapshot is contact too (the frame was counted before the table
    // existed).
    enforcement_.heard_from_control(monotonic_ns());
    state_ = State::streaming;
    ++snapshots_;
    tick();  // keys that came while the snapshot did
    Step s;
    s.ack = true;
    s.installed = true;
    return s;
}

TableSync::Step TableSync::on_delta(const Delta& f) {
    if (state_ != State::streaming) return fail("delta before the table was synchronised");
    if (partial_seq_ ? f.seq != partial_seq_ : f.seq <= applied_seq_)
        return fail("delta sequence " + std::to_string(f.seq) + " out of order (applied " +
                    std::to_string(applied_seq_) + ")");
    ConsentTable* t = enforcement_.table();
    const auto runtime = enforcement_.runtime();
    apply_all(*t, f.changes, runtime->policy().ipv6_key_length, refused_);
    if (!f.final) {
        partial_seq_ = f.seq;
        return Step{};
    }
    partial_seq_ = 0;
    applied_seq_ = f.seq;
    head_seq_ = std::max(head_seq_, applied_seq_);
    ++deltas_;
    Step s;
    s.ack = true;
    return s;
}

TableSync::Step TableSync::on_policy(const PolicyUpdate& f) {
    if (state_ != State::streaming || partial_seq_) return fail("policy update outside the stream");
    if (f.seq > applied_seq_) return fail("policy update ahead of the deltas applied");
    if (f.table_version != table_version_) return fail("policy update changes the table version without a snapshot");
    std::string error;
    auto runtime = compile(f.policy_text, f.policy_name, error);
    if (!runtime)
        return fail("the policy from consentd does not load here; keeping the installed state: " + error,
                    Goodbye::Code::policy_rejected);
    // Same table meaning: copy the installed table next to the new policy.
    install_keeping_table(std::move(runtime));
    stream_id_ = std::string(f.stream_id);
    resume_token_.clear();  // it named the policy before this one
    Step s;
    s.installed = true;
    s.ack = true;
    return s;
}

TableSync::Step TableSync::on_resume_token(const ResumeToken& f) {
    // consentd sends it right after the frames that bring the table to its
    // sequence: anywhere else, its idea of this table is not ours.
    if (state_ != State::streaming || partial_seq_) return fail("resume token outside the stream");
    if (f.seq != applied_seq_)
        return fail("resume token for sequence " + std::to_string(f.seq) + ", but the table is at " +
                    std::to_string(applied_seq_));
    resume_token_ = std::string(f.token);
    resume_token_seq_ = f.seq;
    return Step{};
}

}  // namespace optgate::proto
