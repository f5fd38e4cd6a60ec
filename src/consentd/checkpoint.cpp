#include "consentd/checkpoint.hpp"

#include <openssl/pem.h>

#include <cstdio>
#include <fstream>
#include <stdexcept>

#include "consentd/ledger.hpp"
#include "consentd/sha256.hpp"

namespace optgate::consentd {

namespace {

constexpr std::string_view kRecord = "optgate-checkpoint-v1";
constexpr std::string_view kKeyLine = "optgate-checkpoint-key-v1";
constexpr size_t kSignatureBytes = 64, kPublicBytes = 32;

std::string hex(std::string_view bytes) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(bytes.size() * 2);
    for (const unsigned char c : bytes) {
        out += digits[c >> 4];
        out += digits[c & 15];
    }
    return out;
}

std::optional<std::string> unhex(std::string_view text) {
    auto nibble = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        return -1;
    };
    if (text.size() % 2) return std::nullopt;
    std::string out;
    for (size_t i = 0; i < text.size(); i += 2) {
        const int hi = nibble(text[i]), lo = nibble(text[i + 1]);
        if (hi < 0 || lo < 0) return std::nullopt;
        out += char(hi << 4 | lo);
    }
    return out;
}

struct MdCtx {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    MdCtx() = default;
    MdCtx(const MdCtx&) = delete;
    MdCtx& operator=(const MdCtx&) = delete;
    ~MdCtx() { EVP_MD_CTX_free(ctx); }
};

EVP_PKEY* read_pem(const std::string& path, bool want_private) {
    FILE* f = std::fopen(path.c_str(), "r");
    if (!f) throw std::runtime_error("cannot read the key file " + path);
    EVP_PKEY* k = PEM_read_PrivateKey(f, nullptr, nullptr, nullptr);
    if (!k && !want_private) {
        std::rewind(f);
        k = PEM_read_PUBKEY(f, nullptr, nullptr, nullptr);
    }
    std::fclose(f);
    if (!k)
        throw std::runtime_error(path + " holds no " + (want_private ? "private key" : "key") +
                                 " in PEM (make one with: openssl genpkey -algorithm ed25519 -out " + path + ")");
    if (EVP_PKEY_id(k) != EVP_PKEY_ED25519) {
        EVP_PKEY_free(k);
        throw std::runtime_error(path + " is not an Ed25519 key (openssl genpkey -algorithm ed25519)");
    }
    return k;
}

// "name=value" as the n-th space-separated field; nullopt otherwise.
std::optional<std::string_view> field(std::string_view line, std::string_view name, size_t& at) {
    if (at >= line.size() || line[at] != ' ') return std::nullopt;
    ++at;
    if (line.substr(at, name.size()) != name || line.substr(at + name.size(), 1) != "=") return std::nullopt;
    at += name.size() + 1;
    const size_t end = std::min(line.find(' ', at), line.size());
    const auto v = line.substr(at, end - at);
    at = end;
    return v;
}

bool is_hex_id(std::string_view s) { return s.size() == 16 && unhex(s); }

}  // namespace

CheckpointKey::CheckpointKey(EVP_PKEY* key) : key_(key, Free{}) {
    raw_public_.resize(kPublicBytes);
    size_t len = raw_public_.size();
    if (EVP_PKEY_get_raw_public_key(key, reinterpret_cast<unsigned char*>(raw_public_.data()), &len) != 1 ||
        len != kPublicBytes)
        throw std::runtime_error("cannot read the Ed25519 public key");
    id_ = to_hex(sha256(raw_public_)).substr(0, 16);
}

CheckpointKey CheckpointKey::load_private(const std::string& path) { return CheckpointKey(read_pem(path, true)); }
CheckpointKey CheckpointKey::load_public(const std::string& path) { return CheckpointKey(read_pem(path, false)); }

std::optional<CheckpointKey> CheckpointKey::from_raw_public(std::string_view raw) {
    if (raw.size() != kPublicBytes) return std::nullopt;
    EVP_PKEY* k = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr,
                                              reinterpret_cast<const unsigned char*>(raw.data()), raw.size());
    if (!k) return std::nullopt;
    return CheckpointKey(k);
}

std::string CheckpointKey::sign(std::string_view message) const {
    MdCtx c;
    std::string sig(kSignatureBytes, '\0');
    size_t len = sig.size();
    // Ed25519 hashes the message itself: no digest (nullptr), one shot.
    if (!c.ctx || EVP_DigestSignInit(c.ctx, nullptr, nullptr, nullptr, key_.get()) != 1 ||
        EVP_DigestSign(c.ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                       reinterpret_cast<const unsigned char*>(message.data()), message.size()) != 1 ||
        len != kSignatureBytes)
        throw std::runtime_error("cannot sign with the checkpoint key (is it a private key?)");
    return sig;
}

bool CheckpointKey::verify(std::string_view message, std::string_view signature) const {
    MdCtx c;
    return c.ctx && signature.size() == kSignatureBytes &&
           EVP_DigestVerifyInit(c.ctx, nullptr, nullptr, nullptr, key_.get()) == 1 &&
           EVP_DigestVerify(c.ctx, reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
                            reinterpret_cast<const unsigned char*>(message.data()), message.size()) == 1;
}

std::string Checkpoint::signed_text() const {
    return std::string(kRecord) + " seq=" + std::to_string(seq) + " head=" + head + " time=" + time + " key=" + key_id;
}

std::string Checkpoint::line() const { return signed_text() + " sig=" + hex(signature); }

Checkpoint sign_checkpoint(const CheckpointKey& key, uint64_t seq, std::string head, std::string time) {
    Checkpoint c{seq, std::move(head), std::move(time), key.id(), {}};
    c.signature = key.sign(c.signed_text());
    return c;
}

std::string key_line(const CheckpointKey& key) {
    return std::string(kKeyLine) + " key=" + key.id() + " public=" + hex(key.raw_public());
}

std::optional<CheckpointLine> parse_checkpoint_line(std::string_view line, std::string& why) {
    const auto bad = [&](std::string what) -> std::optional<CheckpointLine> {
        why = std::move(what);
        return std::nullopt;
    };
    CheckpointLine out;
    size_t at = line.find(' ');
    const auto kind = line.substr(0, at);
    if (kind == kKeyLine) {
        const auto id = field(line, "key", at);
        const auto pub = field(line, "public", at);
        const auto raw = pub ? unhex(*pub) : std::nullopt;
        if (!id || !raw || at != line.size()) return bad("a malformed key line");
        out.key = CheckpointKey::from_raw_public(*raw);
        if (!out.key) return bad("a key line whose public key is not an Ed25519 key");
        if (out.key->id() != *id) return bad("a key line whose key= is not its public key's id");
        return out;
    }
    if (kind != kRecord) return bad("neither a checkpoint nor a key line");
    Checkpoint c;
    const auto seq = field(line, "seq", at);
    const auto head = field(line, "head", at);
    const auto time = field(line, "time", at);
    const auto key = field(line, "key", at);
    const auto sig = field(line, "sig", at);
    const auto raw_sig = sig ? unhex(*sig) : std::nullopt;
    if (!seq || seq->empty() || seq->size() > 19 || seq->find_first_not_of("0123456789") != std::string_view::npos ||
        !head || !digest_from_hex(*head) || head->size() != 64 || !time || time->empty() || !key || !is_hex_id(*key) ||
        !raw_sig || raw_sig->size() != kSignatureBytes || at != line.size())
        return bad("a malformed checkpoint line");
    c.seq = std::stoull(std::string(*seq));
    c.head = *head;
    c.time = *time;
    c.key_id = *key;
    c.signature = *raw_sig;
    out.checkpoint = std::move(c);
    return out;
}

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
        db.exec("BEGIN");  // one snapshot
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
