#include "packet_rig.hpp"

#include <cstring>

#include "fuzz_check.hpp"
#include "policy_fixture.hpp"  // tests/support: the sample policy

namespace optgate::fuzz {
namespace {

bool in_prefix(const uint8_t* a, const uint8_t* net, unsigned bits) {
    for (unsigned i = 0; i < bits; ++i) {
        const uint8_t m = uint8_t(0x80 >> (i % 8));
        if ((a[i / 8] & m) != (net[i / 8] & m)) return false;
    }
    return true;
}

const uint8_t kCgnat[4] = {100, 64, 0, 0};  // 100.64.0.0/10
const uint8_t kSub10[4] = {100, 64, 0, 10}, kSub11[4] = {100, 64, 0, 11};
const uint8_t kAdnet[4] = {203, 0, 113, 0}, kWeb[4] = {198, 51, 100, 0};
const uint8_t kBilling[4] = {203, 0, 113, 200};                                // 203.0.113.200/29
const uint8_t kSubV6[16] = {0x20, 0x01, 0x0d, 0xb8, 0x10, 0x00};               // 2001:db8:1000::/36
const uint8_t kSubV6Consent[16] = {0x20, 0x01, 0x0d, 0xb8, 0x10, 0x00, 0, 1};  // 2001:db8:1000:1::/64
const uint8_t kAdnetV6[16] = {0x20, 0x01, 0x0d, 0xb8, 0x00, 0xad};             // 2001:db8:ad::/48

}  // namespace

HttpStageConfig PacketRig::small_http() {
    HttpStageConfig c;
    c.flow_capacity = 64;
    c.host_buffers = 4;
    return c;
}

DisclosureConfig PacketRig::small_disclosures() {
    DisclosureConfig c;
    c.entries = 64;  // counting stays on: a pass verdict is counted as in the data plane
    return c;
}

ReassemblyConfig PacketRig::small_fragments() {
    ReassemblyConfig c;
    c.datagrams = 4;
    c.memory = size_t{128} << 10;  // any frame an input can hold (up to 64 KiB) fits whole
    c.decisions = 16;              // four sets: evictions are reached too
    return c;
}

DnsTcpStageConfig PacketRig::small_dns_tcp() {
    DnsTcpStageConfig c;
    c.flow_capacity = 64;
    return c;
}

PacketRig::PacketRig() {
    Policy p = test::sample_policy();
    p.tagging.passed = 10;
    p.tagging.stripped = 12;
    p.tagging.exempt = 14;
    p.encapsulations = kAllEncapsulations;  // fuzz_packet checks them against the inner packet alone
    filler_ = p.strip_filler;
    for (const auto& id : p.identifiers) {
        if (id.kind == Identifier::Kind::http_header)
            http_names_.push_back(ascii_lower(id.header));
        else
            dns_codes_.push_back(id.option_code);
    }
    std::string error;
    auto rt = Runtime::compile(std::move(p), &error);
    FUZZ_CHECK(rt, "the sample policy does not compile: " + error);
    auto table = enforcement_.make_table();
    const unsigned keylen = rt->policy().ipv6_key_length;
    auto key = [&](const char* a) { return SubscriberKey::make(*IpAddr::parse(a), keylen); };
    table->upsert(key("100.64.0.10"), 0b11);
    table->upsert(key("100.64.0.11"), 0b10);
    table->upsert(key("100.64.0.12"), 0);
    table->upsert(key("2001:db8:1000:1::"), 0b01);
    enforcement_.install(std::move(rt), std::move(table));
}

uint64_t PacketRig::now() const { return monotonic_ns(); }

bool PacketRig::must_strip(bool v6, const uint8_t* src, const uint8_t* dst) {
    if (v6) return in_prefix(src, kSubV6, 36) && !in_prefix(src, kSubV6Consent, 64);
    return in_prefix(src, kCgnat, 10) && std::memcmp(src, kSub10, 4) != 0 && std::memcmp(src, kSub11, 4) != 0 &&
           !in_prefix(dst, kBilling, 29);
}

bool PacketRig::must_pass(bool v6, const uint8_t* src, const uint8_t* dst) {
    if (v6) return in_prefix(src, kSubV6Consent, 64) && in_prefix(dst, kAdnetV6, 48);
    return std::memcmp(src, kSub10, 4) == 0 && (in_prefix(dst, kAdnet, 25) || in_prefix(dst, kWeb, 24));
}

bool run_one(Worker& w, Bytes& frame, uint64_t now, uint64_t ts_ns) {
    const size_t before = frame.size();
    PacketRef ref{frame.data(), uint32_t(frame.size()), ts_ns, Action::forward};
    w.process_burst(&ref, 1, now);
    FUZZ_CHECK(ref.len <= before, "the pipeline grew a frame from " + std::to_string(before) + " to " +
                                      std::to_string(ref.len) + " bytes");
    frame.resize(ref.len);
    return ref.action == Action::forward;
}

}  // namespace optgate::fuzz
