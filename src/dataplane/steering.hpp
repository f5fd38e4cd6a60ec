// Which worker a frame belongs to, so that both directions of a flow meet
// the same worker's HTTP flow table and fragment reassembly store.
//
// The hash is Toeplitz with the symmetric key (0x6d5a repeated), the one the
// ports are given in RSS mode: swapping source and destination (addresses
// and ports together) gives the same hash, and software steering lands a
// flow on the worker a NIC would have picked. Inputs, like the NIC's RSS
// types: TCP and UDP hash addresses and ports; other IP traffic and every
// IPv4 fragment hash addresses only (later fragments carry no ports);
// non-IP frames (ARP, LLDP) go to worker 0.
//
// Encapsulated frames (docs/pipeline.md#encapsulations): when the policy
// looks into an encapsulation, a frame that carries it hashes on its inner
// flow, parsed by the core's parser, so both directions of an inner flow
// meet on one worker whatever the outer headers say (VXLAN's and GTP-U's
// outer source ports differ by direction; PPPoE has no IP header outside).
// Only frames that may be encapsulated (PPPoE/MPLS EtherTypes, GRE, UDP to
// a tunnel port) are parsed twice; native frames cost what they did.
#pragma once

#include <rte_thash.h>

#include <array>
#include <cstdint>

#include "core/big_endian.hpp"
#include "core/packet.hpp"

namespace optgate::dataplane {

class FlowSteering {
public:
    static constexpr size_t kKeyLen = 40;
    // The symmetric RSS key (also what rss mode programs into the NIC).
    static const std::array<uint8_t, kKeyLen>& symmetric_key() noexcept {
        // Aligned for rte_convert_rss_key, which reads it as uint32_t words
        // (UBSan found the misaligned load).
        alignas(uint32_t) static const std::array<uint8_t, kKeyLen> key = [] {
            std::array<uint8_t, kKeyLen> k{};
            for (size_t i = 0; i < kKeyLen; i += 2) {
                k[i] = 0x6d;
                k[i + 1] = 0x5a;
            }
            return k;
        }();
        return key;
    }

    FlowSteering() {
        rte_convert_rss_key(reinterpret_cast<const uint32_t*>(symmetric_key().data()),
                            reinterpret_cast<uint32_t*>(be_key_.data()), kKeyLen);
    }

    // The flow hash of an Ethernet frame (0 for non-IP frames).
    // The flow hash of an Ethernet frame (0 for non-IP frames).
    // `encapsulations`: those the policy looks into (Enforcement::encapsulations()).
    uint32_t hash(const uint8_t* frame, uint32_t len, EncapsulationSet encapsulations = 0) const noexcept {
        using big_endian::load16;
        using big_endian::load32;
        uint32_t off = 12;
        if (len < off + 2) return 0;
        uint16_t type = load16(frame + off);
        off += 2;
        for (int tags = 0; tags < 2 && (type == 0x8100 || type == 0x88a8); ++tags) {
            if (len < off + 4) return 0;
            type = load16(frame + off + 2);
            off += 4;
        }
        if (encapsulations && may_be_encapsulated(frame, len, type, off)) [[unlikely]] {
            ParsedPacket p;
            if (parse_packet(frame, len, p, encapsulations).ok && p.encapsulations) return hash_inner(p);
        }
        uint32_t tuple[10];
        if (type == 0x0800) {
            if (len < off + 20) return 0;
            const uint8_t* ip = frame + off;
            const uint32_t ihl = uint32_t(ip[0] & 0x0f) * 4;
            tuple[0] = load32(ip + 12);
            tuple[1] = load32(ip + 16);
            const bool fragment = (load16(ip + 6) & 0x3fff) != 0;
            const uint8_t proto = ip[9];
            if (!fragment && (proto == 6 || proto == 17) && ihl >= 20 && len >= off + ihl + 4) {
                tuple[2] = uint32_t(load16(ip + ihl)) << 16 | load16(ip + ihl + 2);
                return rte_softrss_be(tuple, 3, be_key_.data());
            }
            return rte_softrss_be(tuple, 2, be_key_.data());
        }
        if (type == 0x86dd) {
            if (len < off + 40) return 0;
            const uint8_t* ip = frame + off;
            for (size_t i = 0; i < 8; ++i) tuple[i] = load32(ip + 8 + 4 * i);
            // Ports only when TCP or UDP follows the fixed header directly;
            // with extension headers the flow hashes on addresses alone
            // (both directions of a flow carry the same kind of chain).
            const uint8_t next = ip[6];
            if ((next == 6 || next == 17) && len >= off + 44) {
                tuple[8] = uint32_t(load16(ip + 40)) << 16 | load16(ip + 42);
                return rte_softrss_be(tuple, 9, be_key_.data());
            }
            return rte_softrss_be(tuple, 8, be_key_.data());
        }
        return 0;
    }

private:
    // A cheap look at the outer headers: could the parser find a tunnel here?
    static bool may_be_encapsulated(const uint8_t* frame, uint32_t len, uint16_t type, uint32_t off) noexcept {
        using big_endian::load16;
        if (type == 0x8864 || type == 0x8847 || type == 0x8848) return true;
        uint8_t proto = 0;
        uint32_t l4 = 0;
        if (type == 0x0800 && len >= off + 20) {
            proto = frame[off + 9];
            l4 = off + uint32_t(frame[off] & 0x0f) * 4;
        } else if (type == 0x86dd && len >= off + 40) {
            proto = frame[off + 6];  // tunnels behind IPv6 extension headers hash on the outer packet
            l4 = off + 40;
        }
        if (proto == kProtoGre) return true;
        return proto == kProtoUdp && len >= l4 + 4 && udp_tunnel(load16(frame + l4), load16(frame + l4 + 2));
    }

    // The inner packet's flow, as hash() would hash it were it native.
    uint32_t hash_inner(const ParsedPacket& p) const noexcept {
        using big_endian::load32;
        uint32_t tuple[9];
        const unsigned words = p.family == Family::v4 ? 1 : 4;
        for (unsigned i = 0; i < words; ++i) {
            tuple[i] = load32(p.src + size_t(4) * i);
            tuple[words + i] = load32(p.dst + size_t(4) * i);
        }
        uint32_t n = 2 * words;
        if (p.has_l4 && !p.fragment && (p.l4_proto == kProtoTcp || p.l4_proto == kProtoUdp))
            tuple[n++] = uint32_t(p.src_port) << 16 | p.dst_port;
        return rte_softrss_be(tuple, n, be_key_.data());
    }

    alignas(8) std::array<uint8_t, kKeyLen> be_key_{};
};

}  // namespace optgate::dataplane
