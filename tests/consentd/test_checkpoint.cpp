// Signed checkpoints (checkpoint.hpp): a line signs and parses back, any
// altered byte fails its signature, malformed lines and wrong keys are named.
#include <doctest/doctest.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include <cstdio>
#include <fstream>

#include "consentd/checkpoint.hpp"
#include "fixture.hpp"

using namespace optgate::consentd;
using optgate::consentd::test::TempDir;

namespace {

// What `openssl genpkey -algorithm ed25519 -out FILE` writes.
std::string new_key(const TempDir& dir, const std::string& name) {
    auto path = dir.file(name);
    EVP_PKEY* k = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
    REQUIRE(k);
    FILE* f = std::fopen(path.c_str(), "w");
    REQUIRE(f);
    CHECK(PEM_write_PrivateKey(f, k, nullptr, nullptr, 0, nullptr, nullptr) == 1);
    std::fclose(f);
    EVP_PKEY_free(k);
    return path;
}

const std::string kHead(64, 'a');

}  // namespace

TEST_CASE("a checkpoint line signs, parses back and verifies; an altered one does not") {
    TempDir dir;
    const auto key = CheckpointKey::load_private(new_key(dir, "key.pem"));
    CHECK(key.id().size() == 16);
    const auto c = sign_checkpoint(key, 42, kHead, "2026-12-05T02:40:00.123Z");
    const std::string line = c.line();
    CHECK(line.starts_with("optgate-checkpoint-v1 seq=42 head=" + kHead +
                           " time=2026-12-05T02:40:00.123Z key=" + key.id() + " sig="));

    std::string why;
    const auto parsed = parse_checkpoint_line(line, why);
    REQUIRE(parsed);
    REQUIRE(parsed->checkpoint);
    CHECK(parsed->checkpoint->seq == 42);
    CHECK(parsed->checkpoint->line() == line);
    CHECK(key.verify(parsed->checkpoint->signed_text(), parsed->checkpoint->signature));

    std::string altered = line;
    altered.replace(altered.find("seq=42"), 6, "seq=43");
    const auto other = parse_checkpoint_line(altered, why);
    REQUIRE(other);
    CHECK_FALSE(key.verify(other->checkpoint->signed_text(), other->checkpoint->signature));

    // The key line carries the public key: it verifies without the private one.
    const auto k = parse_checkpoint_line(key_line(key), why);
    REQUIRE(k);
    REQUIRE(k->key);
    CHECK(k->key->id() == key.id());
    CHECK(k->key->verify(c.signed_text(), c.signature));
    CHECK_THROWS(k->key->sign("x"));

    // Another key: another id, and the signature does not verify.
    const auto stranger = CheckpointKey::load_private(new_key(dir, "other.pem"));
    CHECK(stranger.id() != key.id());
    CHECK_FALSE(stranger.verify(c.signed_text(), c.signature));
}

TEST_CASE("malformed checkpoint lines and key files are named") {
    TempDir dir;
    const auto key = CheckpointKey::load_private(new_key(dir, "key.pem"));
    const std::string line = sign_checkpoint(key, 7, kHead, "t").line();
    std::string why;
    for (const std::string& bad : {std::string("hello"), line + " extra=1", line.substr(0, line.size() - 2),
                                   std::string("optgate-checkpoint-v1 seq=x head=") + kHead,
                                   std::string("optgate-checkpoint-key-v1 key=0011223344556677 public=00")}) {
        CAPTURE(bad);
        CHECK_FALSE(parse_checkpoint_line(bad, why));
        CHECK_FALSE(why.empty());
    }
    // A key line whose id is not its key's.
    std::string kl = key_line(key);
    kl.replace(kl.find("key=") + 4, 16, "0000000000000000");
    CHECK_FALSE(parse_checkpoint_line(kl, why));
    CHECK(why == "a key line whose key= is not its public key's id");

    const auto not_key = dir.file("not-a-key");
    std::ofstream(not_key) << "hello\n";
    CHECK_THROWS_WITH(CheckpointKey::load_private(not_key),
                      doctest::Contains("holds no private key in PEM (make one with: openssl genpkey"));
    CHECK_THROWS_WITH(CheckpointKey::load_private(dir.file("missing")), doctest::Contains("cannot read the key file"));
}
