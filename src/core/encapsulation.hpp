// The encapsulations optgate can look into (docs/pipeline.md#encapsulations):
// a set the policy enables (`encapsulations:`), which the parser follows to
// the inner Ethernet/IP packet. Plain data, shared by the policy loader, the
// parser and the data plane's steering.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace optgate {

// X(name, what). Names are the policy's spelling; order is the bit order.
#define OPTGATE_ENCAPSULATIONS(X)                                   \
    X(pppoe, "PPPoE session (EtherType 0x8864), PPP IPv4/IPv6")     \
    X(mpls, "MPLS label stack (0x8847/0x8848), IP after the stack") \
    X(gre, "GRE version 0 (IP protocol 47): IPv4, IPv6, Ethernet")  \
    X(l2tp, "L2TPv2 data messages (UDP 1701) carrying PPP")         \
    X(vxlan, "VXLAN (UDP 4789): inner Ethernet")                    \
    X(geneve, "Geneve (UDP 6081): Ethernet, IPv4, IPv6")            \
    X(gtpu, "GTP-U G-PDUs (UDP 2152): IPv4, IPv6")

enum class Encapsulation : uint8_t {
#define OPTGATE_X(name, what) name,
    OPTGATE_ENCAPSULATIONS(OPTGATE_X)
#undef OPTGATE_X
        count_
};

inline constexpr unsigned kEncapsulationCount = unsigned(Encapsulation::count_);

// A set of encapsulations: bit i is Encapsulation(i).
using EncapsulationSet = uint8_t;
static_assert(kEncapsulationCount <= 8, "EncapsulationSet holds one bit per encapsulation");

inline constexpr EncapsulationSet encapsulation_bit(Encapsulation e) noexcept {
    return EncapsulationSet(1u << unsigned(e));
}

// PPPoE is on unless the policy says otherwise: it is the most common
// subscriber encapsulation, and a PPPoE access network would otherwise be
// silently not inspected at all.
inline constexpr EncapsulationSet kDefaultEncapsulations = encapsulation_bit(Encapsulation::pppoe);
inline constexpr EncapsulationSet kAllEncapsulations = EncapsulationSet((1u << kEncapsulationCount) - 1);

std::string_view encapsulation_name(Encapsulation e) noexcept;
std::optional<Encapsulation> encapsulation_from_name(std::string_view name) noexcept;

}  // namespace optgate
