#include "proto/checkpoint_record.hpp"

#include <openssl/pem.h>

#include <algorithm>
#include <cstdio>
#include <stdexcept>

#include "core/chars.hpp"

namespace optgate::proto {

namespace {

constexpr std::string_view kRecord = "optgate-checkpoint-v1";
constexpr std::string_view kKeyLine = "optgate-checkpoint-key-v1";
constexpr size_t kSignatureBytes = 64, kPublicBytes = 32;

std::optional<std::string> unhex(std::string_view text) {
    if (text.size() % 2) return std::nullopt;
    std::string out;
    for (size_t i = 0; i < text.size(); i += 2) {
        const int hi = hex_chars::lower_value(text[i]), lo = hex_chars::lower_value(text[i + 1]);
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

std::string sha256(std::string_view data) {
    std::string d(32, '\0');
    unsigned int len = 0;
    if (EVP_Digest(data.data(), data.size(), reinterpret_cast<unsigned char*>(d.data()), &len, EVP_sha256(), nullptr) !=
            1 ||
        len != d.size())
        throw std::runtime_error("SHA-256 failed");
    return d;
}

}  // namespace

CheckpointKey::CheckpointKey(EVP_PKEY* key) : key_(key, Free{}) {
    raw_public_.resize(kPublicBytes);
    size_t len = raw_public_.size();
    if (EVP_PKEY_get_raw_public_key(key, reinterpret_cast<unsigned char*>(raw_public_.data()), &len) != 1 ||
        len != kPublicBytes)
        throw std::runtime_error("cannot read the Ed25519 public key");
    id_ = hex_chars::lower(sha256(raw_public_)).substr(0, 16);
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

std::string CheckpointRecord::signed_text() const {
    return std::string(kRecord) + " seq=" + std::to_string(seq) + " head=" + head + " time=" + time + " key=" + key_id;
}

std::string CheckpointRecord::line() const { return signed_text() + " sig=" + hex_chars::lower(signature); }

CheckpointRecord sign_checkpoint(const CheckpointKey& key, uint64_t seq, std::string head, std::string time) {
    CheckpointRecord c{seq, std::move(head), std::move(time), key.id(), {}};
    c.signature = key.sign(c.signed_text());
    return c;
}

std::string key_line(const CheckpointKey& key) {
    return std::string(kKeyLine) + " key=" + key.id() + " public=" + hex_chars::lower(key.raw_public());
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
    CheckpointRecord c;
    const auto seq = field(line, "seq", at);
    const auto head = field(line, "head", at);
    const auto time = field(line, "time", at);
    const auto key = field(line, "key", at);
    const auto sig = field(line, "sig", at);
    const auto raw_sig = sig ? unhex(*sig) : std::nullopt;
    if (!seq || seq->empty() || seq->size() > 19 || seq->find_first_not_of("0123456789") != std::string_view::npos ||
        !head || head->size() != 64 || !unhex(*head) || !time || time->empty() || !key || !is_hex_id(*key) ||
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

CheckpointWitness::Result CheckpointWitness::offer(uint64_t frame_seq, std::string_view line, uint64_t now_unix_ms,
                                                   std::string& why) {
    const auto refuse = [&](std::string what) {
        why = std::move(what);
        ++refused_;
        return Result::refused;
    };
    std::string problem;
    const auto parsed = parse_checkpoint_line(line, problem);
    if (!parsed || !parsed->checkpoint)
        return refuse("not a checkpoint record: " + (parsed ? std::string("a key line") : problem));
    const CheckpointRecord& c = *parsed->checkpoint;
    if (c.seq != frame_seq)
        return refuse("the record's seq " + std::to_string(c.seq) + " is not the frame's " + std::to_string(frame_seq));
    if (key_) {
        if (c.key_id != key_->id())
            return refuse("checkpoint of event " + std::to_string(c.seq) + " is signed by key " + c.key_id +
                          ", not the configured public key " + key_->id());
        if (!key_->verify(c.signed_text(), c.signature))
            return refuse("the signature of the checkpoint of event " + std::to_string(c.seq) + " does not verify");
    }
    if (latest_) {
        if (c.seq < latest_->seq)
            return refuse("checkpoint of event " + std::to_string(c.seq) + " goes back from the one of event " +
                          std::to_string(latest_->seq) + " (a ledger rolled back?)");
        if (c.seq == latest_->seq) {
            if (c.head != latest_->head)
                return refuse("checkpoint of event " + std::to_string(c.seq) + " has head " + c.head +
                              ", but the one kept for it has " + latest_->head + " (a ledger rewritten?)");
            return Result::repeated;
        }
    }
    latest_ = c;
    line_ = std::string(line);
    received_unix_ms_ = now_unix_ms;
    ++kept_;
    return Result::kept;
}

}  // namespace optgate::proto
