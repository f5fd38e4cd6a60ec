// fuzz_radius: the fuzz bytes as one RADIUS datagram for consentd's
// accounting listener (src/consentd/radius_packet.hpp).
//
// Invariants:
//  - decode() returns a packet or a reason, never both; a packet is exactly
//    its Length field's bytes, 20..4096, within the datagram;
//  - a reference walk written here (not the decoder's) agrees on whether
//    the attributes tile the packet, and for_each() visits exactly the
//    attributes it finds, each value inside the packet;
//  - find() and find_vendor() return values inside the packet, never empty;
//    typed values keep their shape (an IPv6 prefix has no bits past its
//    length);
//  - the Request Authenticator check: false for the bytes as they come
//    unless they carry the right MD5; after the packet is signed here with
//    OpenSSL's MD5 (and its Message-Authenticator with HMAC-MD5), both
//    checks pass, and flipping any one byte of the signed packet fails one of them
//    or the decode;
//  - the Accounting-Response is 20 bytes: code 5, the request's Identifier,
//    length 20.
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstring>
#include <string>
#include <vector>

#include "consentd/radius_packet.hpp"
#include "support/fuzz_check.hpp"

using namespace optgate;
namespace radius = optgate::consentd::radius;

namespace {

constexpr std::string_view kSecret = "fuzz-secret-0123456789";

// Attribute count if the attributes tile bytes [20, length) exactly, else -1.
int reference_walk(const uint8_t* d, size_t length) {
    int n = 0;
    size_t at = 20;
    while (at < length) {
        if (at + 2 > length || d[at + 1] < 2 || at + d[at + 1] > length) return -1;
        at += d[at + 1];
        ++n;
    }
    return n;
}

void sign(std::vector<uint8_t>& p, size_t ma_at) {
    unsigned len = 0;
    if (ma_at) {
        std::memset(p.data() + 4, 0, 16);
        std::memset(p.data() + ma_at, 0, 16);
        uint8_t mac[16];
        HMAC(EVP_md5(), kSecret.data(), int(kSecret.size()), p.data(), p.size(), mac, &len);
        std::memcpy(p.data() + ma_at, mac, 16);
    }
    std::memset(p.data() + 4, 0, 16);
    std::vector<uint8_t> in(p);
    in.insert(in.end(), kSecret.begin(), kSecret.end());
    uint8_t md[16];
    EVP_Digest(in.data(), in.size(), md, &len, EVP_md5(), nullptr);
    std::memcpy(p.data() + 4, md, 16);
}

bool inside(std::span<const uint8_t> v, std::span<const uint8_t> whole) {
    return v.data() >= whole.data() && v.data() + v.size() <= whole.data() + whole.size();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::span<const uint8_t> in(data, size);
    radius::Malformed why{};
    const auto p = radius::decode(in, why);
    FUZZ_CHECK(bool(p) == (why == radius::Malformed::none), "packet and reason disagree");
    const size_t length = size >= 4 ? size_t(data[2]) << 8 | data[3] : 0;
    const bool shape_ok = size >= 20 && length >= 20 && length <= 4096 && size >= length;
    const int ref = shape_ok ? reference_walk(data, length) : -1;
    if (!p) {
        // The only other refusal: a Message-Authenticator of the wrong length, or two.
        if (ref >= 0)
            FUZZ_CHECK(why == radius::Malformed::bad_message_authenticator_length, std::string(to_string(why)));
        return 0;
    }
    FUZZ_CHECK(shape_ok && ref >= 0, "accepted a packet the reference walk refuses");
    FUZZ_CHECK(p->bytes().data() == data && p->bytes().size() == length, "packet is not its Length bytes");
    int n = 0;
    p->for_each([&](const radius::Attribute& a) {
        ++n;
        FUZZ_CHECK(inside(a.value, p->bytes()), "attribute value outside the packet");
        if (a.type == radius::message_authenticator) FUZZ_CHECK(a.value.size() == 16, "Message-Authenticator size");
    });
    FUZZ_CHECK(n == ref, "for_each saw " + std::to_string(n) + " attributes, the reference " + std::to_string(ref));
    for (unsigned t = 0; t < 256; ++t)
        if (const auto v = p->find(uint8_t(t))) {
            FUZZ_CHECK(!v->empty() && inside(*v, p->bytes()), "find() value");
            if (const auto prefix = radius::ipv6_prefix(*v)) {
                FUZZ_CHECK(prefix->len <= 128 && prefix->addr.masked(prefix->len) == prefix->addr, "prefix host bits");
            }
            if (const auto i = radius::integer(*v)) FUZZ_CHECK(v->size() == 4, "integer size");
        }
    if (const auto v = p->find_vendor(uint32_t(data[0]), data[1]))
        FUZZ_CHECK(!v->empty() && inside(*v, p->bytes()), "find_vendor() value");

    radius::request_authenticator_ok(*p, kSecret);
    radius::message_authenticator_ok(*p, kSecret);
    const auto answer = radius::accounting_response(*p, kSecret);
    FUZZ_CHECK(
        answer[0] == radius::kAccountingResponse && answer[1] == p->identifier() && answer[2] == 0 && answer[3] == 20,
        "Accounting-Response header");

    // Signed here, the same bytes must authenticate; one flipped byte must not.
    std::vector<uint8_t> signed_packet(data, data + length);
    sign(signed_packet, p->message_authenticator_at());
    radius::Malformed why2{};
    const auto s = radius::decode(signed_packet, why2);
    FUZZ_CHECK(s && radius::request_authenticator_ok(*s, kSecret) && radius::message_authenticator_ok(*s, kSecret),
               "a packet signed with the secret does not authenticate");
    const size_t flip = size_t(data[1]) * 7 % length;
    signed_packet[flip] ^= 0x01;
    const auto f = radius::decode(signed_packet, why2);
    FUZZ_CHECK(!f || !radius::request_authenticator_ok(*f, kSecret) || !radius::message_authenticator_ok(*f, kSecret),
               "a flipped byte at " + std::to_string(flip) + " still authenticates");
    return 0;
}
