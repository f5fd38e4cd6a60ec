#include "consentd/checkpoint.hpp"

#include <cstdio>
#include <fstream>
#include <stdexcept>

#include "consentd/ledger.hpp"
#include "consentd/sha256.hpp"

namespace optgate::consentd {

CheckpointTail read_checkpoint_tail(const std::string& file) {
    CheckpointTail t;
    std::ifstream in(file, std::ios::binary);
    if (!in) return t;
    std::string line, why;
    for (size_t n = 1; std::getline(in, line); ++n) {
        auto l = parse_checkpoint_line(line, why);
        if (!l) {
            std::string where = file;
            where.append(":").append(std::to_string(n)).append(": ").append(why);
            throw std::runtime_error(where);
        }
        if (l->key) t.key_id = l->key->id();
        if (l->checkpoint) t.last = std::move(l->checkpoint);
    }
    return t;
}

CheckpointReport verify_checkpoints(const std::string& database, const std::string& file,
                                    const std::optional<CheckpointKey>& pinned) {
    CheckpointReport r;
    auto fail = [&](size_t n, const std::string& problem) {
        r.problem = file + ":" + std::to_string(n) + ": " + problem;
        return r;
    };
    try {
        std::ifstream in(file, std::ios::binary);
        if (!in) {
            r.problem = "cannot read " + file;
            return r;
        }
        Database db(database, Database::Mode::read_only);
        check_schema(db);
        db.begin_read();  // one snapshot
        uint64_t head_seq = 0;
        {
            auto st = db.prepare("SELECT max(seq) FROM events");
            if (st.step() && !st.is_null(0)) head_seq = uint64_t(st.int64(0));
        }
        auto at = db.prepare("SELECT hash FROM events WHERE seq = ?1");
        std::vector<CheckpointKey> keys;  // from the key lines so far
        std::string line, why;
        uint64_t previous = 0;
        size_t n = 0;
        while (std::getline(in, line)) {
            ++n;
            const auto l = parse_checkpoint_line(line, why);
            if (!l) return fail(n, why);
            if (l->key) {
                if (pinned && l->key->id() != pinned->id())
                    return fail(n, "a key line for key " + l->key->id() + ", not the given public key " + pinned->id());
                keys.push_back(*l->key);
                r.key_ids.push_back(l->key->id());
                continue;
            }
            const Checkpoint& c = *l->checkpoint;
            const CheckpointKey* key = nullptr;
            if (pinned) {
                if (c.key_id != pinned->id())
                    return fail(n, "checkpoint of event " + std::to_string(c.seq) + " is signed by key " + c.key_id +
                                       ", not the given public key " + pinned->id());
                key = &*pinned;
            } else {
                for (const auto& k : keys)
                    if (k.id() == c.key_id) key = &k;
                if (!key) return fail(n, "checkpoint signed by key " + c.key_id + " with no key line before it");
            }
            if (!key->verify(c.signed_text(), c.signature))
                return fail(n, "the signature of the checkpoint of event " + std::to_string(c.seq) +
                                   " does not verify: the line was altered or not signed by key " + key->id());
            if (c.seq < previous)
                return fail(n, "checkpoint of event " + std::to_string(c.seq) + " follows one of event " +
                                   std::to_string(previous));
            previous = c.seq;
            if (c.seq > head_seq)
                return fail(n, "TRUNCATED: the ledger ends at event " + std::to_string(head_seq) + ", but event " +
                                   std::to_string(c.seq) + " was signed at " + c.time);
            at.bind(1, int64_t(c.seq));
            const bool found = at.step();
            const std::string hash = found ? std::string(at.text(0)) : std::string();
            at.reset();
            if (!found)
                return fail(n, "TRUNCATED: the ledger has no event " + std::to_string(c.seq) + ", signed at " + c.time);
            if (hash != c.head)
                return fail(n, "REWRITTEN: event " + std::to_string(c.seq) + " has hash " + hash + ", but " + c.head +
                                   " was signed at " + c.time);
            ++r.checkpoints;
            r.latest = c;
        }
        db.exec("COMMIT");
    } catch (const std::exception& e) {
        r.problem = e.what();
        return r;
    }
    r.ok = true;
    return r;
}

}  // namespace optgate::consentd
