#include "packet_builder.hpp"

#include <arpa/inet.h>

#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

#include "inet_checksum.hpp"

namespace optgate::test {
namespace {

void append32(Bytes& b, uint32_t v) {
    append16(b, uint16_t(v >> 16));
    append16(b, uint16_t(v));
}
void append(Bytes& b, const uint8_t* p, size_t n) { b.insert(b.end(), p, p + n); }

std::array<uint8_t, 16> parse_addr(std::string_view text, int af) {
    std::array<uint8_t, 16> out{};
    std::string s(text);
    if (inet_pton(af, s.c_str(), out.data()) != 1)
        throw std::invalid_argument("PacketBuilder: not an " + std::string(af == AF_INET ? "IPv4" : "IPv6") +
                                    " address: '" + s + "'");
    return out;
}

// The known-wrong value corrupt_l4_checksum() stores (see the header).
uint16_t corrupted(uint16_t c) {
    uint16_t x = c ^ 0x00ff;
    return x != 0 ? x : uint16_t(c ^ 0xff00);
}

// Pad1 / PadN so that an options header (2 bytes + TLVs) ends on 8 bytes.
Bytes options_header(const Bytes& options) {
    size_t len = 2 + options.size();
    size_t pad = (8 - len % 8) % 8;
    size_t total = len + pad;
    if (total > 2048) throw std::invalid_argument("PacketBuilder: IPv6 options header longer than 2048 bytes");
    Bytes h{0, uint8_t(total / 8 - 1)};
    h.insert(h.end(), options.begin(), options.end());
    if (pad == 1) {
        h.push_back(0);  // Pad1
    } else if (pad >= 2) {
        h.push_back(1);  // PadN
        h.push_back(uint8_t(pad - 2));
        h.insert(h.end(), pad - 2, 0);
    }
    return h;
}

Bytes pad4(const Bytes& options, size_t limit, const char* what) {
    Bytes out = options;
    out.resize((out.size() + 3) / 4 * 4, 0);
    if (out.size() > limit) throw std::invalid_argument(std::string("PacketBuilder: ") + what + " options too long");
    return out;
}

}  // namespace

Mac Mac::parse(std::string_view text) {
    Mac m;
    auto hex = [&](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    bool ok = text.size() == 17;
    for (size_t i = 0; ok && i < 6; ++i) {
        int hi = hex(text[3 * i]), lo = hex(text[3 * i + 1]);
        if (hi < 0 || lo < 0 || (i < 5 && text[3 * i + 2] != ':' && text[3 * i + 2] != '-'))
            ok = false;
        else
            m.b[i] = uint8_t(hi << 4 | lo);
    }
    if (!ok) throw std::invalid_argument("Mac::parse: not a MAC address: '" + std::string(text) + "'");
    return m;
}

PacketBuilder& PacketBuilder::ether(Mac src, Mac dst) {
    src_mac_ = src.b;
    dst_mac_ = dst.b;
    return *this;
}

PacketBuilder& PacketBuilder::ethertype(uint16_t type) {
    ethertype_ = type;
    return *this;
}

PacketBuilder& PacketBuilder::vlan(uint16_t vid, uint16_t tpid, uint8_t pcp) {
    if (vid > 0x0fff || pcp > 7) throw std::invalid_argument("PacketBuilder::vlan: vid > 4095 or pcp > 7");
    vlans_.push_back({tpid, uint16_t(pcp << 13 | vid)});
    return *this;
}

PacketBuilder& PacketBuilder::ipv4(std::string_view src, std::string_view dst, Ipv4Options o) {
    if (o.frag_offset > 0x1fff) throw std::invalid_argument("PacketBuilder::ipv4: frag_offset > 8191");
    l3_ = L3::v4;
    src_ip_ = parse_addr(src, AF_INET);
    dst_ip_ = parse_addr(dst, AF_INET);
    v4_ = std::move(o);
    return *this;
}

PacketBuilder& PacketBuilder::ipv6(std::string_view src, std::string_view dst, Ipv6Options o) {
    if (o.flow_label > 0xfffff) throw std::invalid_argument("PacketBuilder::ipv6: flow_label > 20 bits");
    l3_ = L3::v6;
    src_ip_ = parse_addr(src, AF_INET6);
    dst_ip_ = parse_addr(dst, AF_INET6);
    v6_ = o;
    return *this;
}

PacketBuilder& PacketBuilder::ext_hop_by_hop(const Bytes& options) {
    ext_.push_back({kIp6HopByHop, options_header(options)});
    return *this;
}

PacketBuilder& PacketBuilder::ext_dest_opts(const Bytes& options) {
    ext_.push_back({kIp6DestOpts, options_header(options)});
    return *this;
}

PacketBuilder& PacketBuilder::ext_routing(uint8_t routing_type, uint8_t segments_left,
                                          const std::vector<std::string_view>& addresses) {
    size_t total = 8 + 16 * addresses.size();
    if (total > 2048) throw std::invalid_argument("PacketBuilder::ext_routing: too many addresses");
    Bytes h{0, uint8_t(total / 8 - 1), routing_type, segments_left, 0, 0, 0, 0};
    if (routing_type == 4 && !addresses.empty()) h[4] = uint8_t(addresses.size() - 1);  // last entry
    std::vector<std::array<uint8_t, 16>> parsed;
    parsed.reserve(addresses.size());
    for (auto a : addresses) {
        parsed.push_back(parse_addr(a, AF_INET6));
        append(h, parsed.back().data(), 16);
    }
    if (segments_left > 0 && !parsed.empty()) {
        if (routing_type == 0 || routing_type == 2) final_dst_ = parsed.back();
        if (routing_type == 4) final_dst_ = parsed.front();
    }
    ext_.push_back({kIp6Routing, std::move(h)});
    return *this;
}

PacketBuilder& PacketBuilder::ext_fragment(uint16_t offset8, bool more, uint32_t id) {
    if (offset8 > 0x1fff) throw std::invalid_argument("PacketBuilder::ext_fragment: offset8 > 8191");
    Bytes h{0, 0};
    append16(h, uint16_t(offset8 << 3 | (more ? 1 : 0)));
    append32(h, id);
    ext_.push_back({kIp6Fragment, std::move(h)});
    return *this;
}

PacketBuilder& PacketBuilder::protocol(uint8_t proto) {
    v4_.protocol = proto;
    v6_.next_header = proto;
    return *this;
}

PacketBuilder& PacketBuilder::tcp(uint16_t sport, uint16_t dport, TcpOptions o) {
    l4_ = L4::tcp;
    sport_ = sport;
    dport_ = dport;
    tcp_ = std::move(o);
    return *this;
}

PacketBuilder& PacketBuilder::udp(uint16_t sport, uint16_t dport, UdpOptions o) {
    l4_ = L4::udp;
    sport_ = sport;
    dport_ = dport;
    udp_ = o;
    return *this;
}

PacketBuilder& PacketBuilder::payload(Bytes bytes) {
    payload_ = std::move(bytes);
    return *this;
}

PacketBuilder& PacketBuilder::payload(std::string_view text) {
    payload_.assign(text.begin(), text.end());
    return *this;
}

PacketBuilder& PacketBuilder::trailer(Bytes bytes) {
    trailer_ = std::move(bytes);
    return *this;
}

PacketBuilder& PacketBuilder::corrupt_l4_checksum() {
    corrupt_l4_ = true;
    return *this;
}

Bytes PacketBuilder::build() const {
    if (l4_ != L4::none && l3_ == L3::none) throw std::logic_error("PacketBuilder: tcp()/udp() without ipv4()/ipv6()");
    if (!ext_.empty() && l3_ != L3::v6) throw std::logic_error("PacketBuilder: IPv6 extension headers without ipv6()");

    // Layer 4 first: IP lengths depend on it. Checksum field left zero for now.
    Bytes l4;
    uint8_t proto = l3_ == L3::v6 ? kIp6NoNext : 253;
    size_t csum_at = 0;  // checksum offset inside l4
    if (l4_ == L4::tcp) {
        proto = 6;
        Bytes opts = pad4(tcp_.options, 40, "TCP");
        size_t hl = 20 + opts.size();
        l4.reserve(hl + payload_.size());
        append16(l4, sport_);
        append16(l4, dport_);
        append32(l4, tcp_.seq);
        append32(l4, tcp_.ack);
        l4.push_back(uint8_t(tcp_.data_offset.value_or(uint8_t(hl / 4)) << 4));
        l4.push_back(tcp_.flags);
        append16(l4, tcp_.window);
        append16(l4, 0);
        append16(l4, tcp_.urgent);
        l4.insert(l4.end(), opts.begin(), opts.end());
        csum_at = 16;
    } else if (l4_ == L4::udp) {
        proto = 17;
        l4.reserve(8 + payload_.size());
        append16(l4, sport_);
        append16(l4, dport_);
        append16(l4, udp_.length.value_or(uint16_t(8 + payload_.size())));
        append16(l4, 0);
        csum_at = 6;
    }
    l4.insert(l4.end(), payload_.begin(), payload_.end());

    // The L3 header (IPv4 or IPv6 + extension headers).
    Bytes l3;
    const size_t addr_len = l3_ == L3::v4 ? 4 : 16;
    if (l3_ == L3::v4) {
        Bytes opts = pad4(v4_.options, 40, "IPv4");
        size_t hl = 20 + opts.size();
        l3.reserve(hl);
        l3.push_back(uint8_t(0x40 | (v4_.ihl.value_or(uint8_t(hl / 4)) & 0x0f)));
        l3.push_back(v4_.tos);
        append16(l3, v4_.total_length.value_or(uint16_t(hl + l4.size())));
        append16(l3, v4_.id);
        append16(l3, uint16_t((v4_.df ? 0x4000 : 0) | (v4_.mf ? 0x2000 : 0) | v4_.frag_offset));
        l3.push_back(v4_.ttl);
        l3.push_back(v4_.protocol.value_or(proto));
        append16(l3, 0);
        append(l3, src_ip_.data(), 4);
        append(l3, dst_ip_.data(), 4);
        l3.insert(l3.end(), opts.begin(), opts.end());
        uint16_t c = detail::inet_checksum(l3.data(), l3.size());
        put16(l3, 10, v4_.bad_checksum ? corrupted(c) : c);
    } else if (l3_ == L3::v6) {
        size_t ext_len = 0;
        for (const auto& e : ext_) ext_len += e.bytes.size();
        l3.reserve(40 + ext_len);
        append32(l3, uint32_t(6u << 28 | uint32_t(v6_.traffic_class) << 20 | v6_.flow_label));
        append16(l3, v6_.payload_length.value_or(uint16_t(ext_len + l4.size())));
        l3.push_back(v6_.next_header.value_or(ext_.empty() ? proto : ext_.front().type));
        l3.push_back(v6_.hop_limit);
        append(l3, src_ip_.data(), 16);
        append(l3, dst_ip_.data(), 16);
        for (size_t i = 0; i < ext_.size(); ++i) {
            size_t at = l3.size();
            l3.insert(l3.end(), ext_[i].bytes.begin(), ext_[i].bytes.end());
            l3[at] = i + 1 < ext_.size() ? ext_[i + 1].type : proto;
        }
    }

    if (l4_ != L4::none) {
        const uint8_t* dst = final_dst_ && l3_ == L3::v6 ? final_dst_->data() : dst_ip_.data();
        uint16_t c = detail::l4_checksum(src_ip_.data(), dst, addr_len, proto, l4.data(), l4.size());
        if (l4_ == L4::udp) {
            if (udp_.zero_checksum)
                c = 0;
            else if (c == 0)
                c = 0xffff;  // RFC 768: a computed 0 is sent as all ones
        }
        if (corrupt_l4_) c = corrupted(c);
        put16(l4, csum_at, c);
    }

    Bytes out;
    out.reserve(14 + 4 * vlans_.size() + l3.size() + l4.size() + trailer_.size());
    append(out, dst_mac_.data(), 6);
    append(out, src_mac_.data(), 6);
    for (const auto& t : vlans_) {
        append16(out, t.tpid);
        append16(out, t.tci);
    }
    uint16_t type = l3_ == L3::v4 ? 0x0800 : l3_ == L3::v6 ? 0x86dd : 0x88b5;
    append16(out, ethertype_.value_or(type));
    out.insert(out.end(), l3.begin(), l3.end());
    out.insert(out.end(), l4.begin(), l4.end());
    out.insert(out.end(), trailer_.begin(), trailer_.end());
    return out;
}

namespace {

// The EtherType after the Ethernet/VLAN header, and where the payload starts.
std::pair<uint16_t, size_t> ether_payload(const Bytes& frame) {
    size_t off = 12;
    if (frame.size() < 14) throw std::invalid_argument("ip_packet_of: frame shorter than Ethernet");
    uint16_t type = uint16_t(frame[off] << 8 | frame[off + 1]);
    while (type == kTpid8021Q || type == kTpid8021ad) {
        off += 4;
        if (frame.size() < off + 2) throw std::invalid_argument("ip_packet_of: truncated VLAN tag");
        type = uint16_t(frame[off] << 8 | frame[off + 1]);
    }
    return {type, off + 2};
}

uint16_t ip_ethertype(const Bytes& frame) {
    const uint16_t type = ether_payload(frame).first;
    if (type != 0x0800 && type != 0x86dd) throw std::invalid_argument("wrap: the inner frame is not IP");
    return type;
}

}  // namespace

Bytes ip_packet_of(const Bytes& frame) {
    const size_t at = ether_payload(frame).second;
    return Bytes(frame.begin() + long(at), frame.end());
}

Bytes wrap_pppoe(const Bytes& inner, uint16_t session, PacketBuilder outer) {
    const Bytes ip = ip_packet_of(inner);
    Bytes b{0x11, 0x00};
    append16(b, session);
    append16(b, uint16_t(2 + ip.size()));
    append16(b, ip_ethertype(inner) == 0x0800 ? 0x0021 : 0x0057);
    b.insert(b.end(), ip.begin(), ip.end());
    return outer.ethertype(0x8864).payload(std::move(b)).build();
}

Bytes wrap_mpls(const Bytes& inner, const std::vector<uint32_t>& labels, PacketBuilder outer) {
    if (labels.empty()) throw std::invalid_argument("wrap_mpls: no labels");
    Bytes b;
    for (size_t i = 0; i < labels.size(); ++i)
        append32(b, labels[i] << 12 | (i + 1 == labels.size() ? 0x100u : 0u) | 64u);  // TC 0, TTL 64
    const Bytes ip = ip_packet_of(inner);
    b.insert(b.end(), ip.begin(), ip.end());
    return outer.ethertype(0x8847).payload(std::move(b)).build();
}

Bytes wrap_gre(const Bytes& inner, PacketBuilder outer, GreOptions o) {
    Bytes b;
    append16(b, uint16_t((o.checksum ? 0x8000 : 0) | (o.key ? 0x2000 : 0) | (o.sequence ? 0x1000 : 0)));
    append16(b, o.ethernet ? 0x6558 : ip_ethertype(inner));
    if (o.checksum) append32(b, 0);
    if (o.key) append32(b, *o.key);
    if (o.sequence) append32(b, *o.sequence);
    const Bytes payload = o.ethernet ? inner : ip_packet_of(inner);
    b.insert(b.end(), payload.begin(), payload.end());
    if (o.checksum) put16(b, 4, detail::inet_checksum(b.data(), b.size()));
    return outer.protocol(47).payload(std::move(b)).build();
}

Bytes wrap_vxlan(const Bytes& inner, PacketBuilder outer, uint32_t vni) {
    Bytes b{0x08, 0, 0, 0};
    append32(b, vni << 8);
    b.insert(b.end(), inner.begin(), inner.end());
    return outer.payload(std::move(b)).build();
}

Bytes wrap_geneve(const Bytes& inner, PacketBuilder outer, uint32_t vni, GeneveOptions o) {
    if (o.options.size() % 4 || o.options.size() > 252) throw std::invalid_argument("wrap_geneve: options");
    Bytes b{uint8_t(o.options.size() / 4), 0};
    append16(b, o.ethernet ? 0x6558 : ip_ethertype(inner));
    append32(b, vni << 8);
    b.insert(b.end(), o.options.begin(), o.options.end());
    const Bytes payload = o.ethernet ? inner : ip_packet_of(inner);
    b.insert(b.end(), payload.begin(), payload.end());
    return outer.payload(std::move(b)).build();
}

Bytes wrap_gtpu(const Bytes& inner, PacketBuilder outer, GtpuOptions o) {
    const bool optional_fields = o.sequence || !o.extensions.empty();
    Bytes b{uint8_t(0x30 | (o.extensions.empty() ? 0 : 0x04) | (o.sequence ? 0x02 : 0)), o.message_type, 0, 0};
    append32(b, o.teid);
    if (optional_fields) {
        append16(b, o.sequence.value_or(0));
        b.push_back(0);                                // N-PDU number
        b.push_back(o.extensions.empty() ? 0 : 0x85);  // PDU session container type, as 5G uses
    }
    for (size_t i = 0; i < o.extensions.size(); ++i) {
        const Bytes& e = o.extensions[i];
        if ((e.size() + 2) % 4)
            throw std::invalid_argument("wrap_gtpu: extension not a multiple of 4 with its 2 bytes");
        b.push_back(uint8_t((e.size() + 2) / 4));
        b.insert(b.end(), e.begin(), e.end());
        b.push_back(i + 1 < o.extensions.size() ? 0x85 : 0);
    }
    const Bytes ip = ip_packet_of(inner);
    b.insert(b.end(), ip.begin(), ip.end());
    put16(b, 2, uint16_t(b.size() - 8));
    return outer.payload(std::move(b)).build();
}

Bytes wrap_l2tp(const Bytes& inner, PacketBuilder outer, L2tpOptions o) {
    Bytes b;
    append16(b, uint16_t((o.length ? 0x4000 : 0) | (o.sequence ? 0x0800 : 0) | (o.offset_pad ? 0x0200 : 0) | 2));
    if (o.length) append16(b, 0);
    append16(b, o.tunnel);
    append16(b, o.session);
    if (o.sequence) {
        append16(b, *o.sequence);
        append16(b, 0);
    }
    if (o.offset_pad) {
        append16(b, *o.offset_pad);
        b.insert(b.end(), *o.offset_pad, 0);
    }
    if (o.address_control) {
        b.push_back(0xff);
        b.push_back(0x03);
    }
    append16(b, ip_ethertype(inner) == 0x0800 ? 0x0021 : 0x0057);
    const Bytes ip = ip_packet_of(inner);
    b.insert(b.end(), ip.begin(), ip.end());
    if (o.length) put16(b, 2, uint16_t(b.size()));
    return outer.payload(std::move(b)).build();
}

}  // namespace optgate::test
