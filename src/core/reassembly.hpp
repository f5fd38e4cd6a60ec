// IP fragment reassembly for the datagrams optgate must read
// (docs/pipeline.md#fragments).
//
// A fragmented datagram from a subscriber that could carry an identifier
// (TCP to an HTTP port, UDP to a DNS port, or a port not known yet because
// its first fragment has not arrived) never passes unread: its fragments are
// copied here and consumed. When the datagram is whole, the worker rebuilds
// it as one packet (assemble()), runs it through the ordinary stages, and
// cuts the result again at the largest fragment size it arrived in
// (refragment()), emitting the frames through the driver's emit hook. When
// the first fragment shows the datagram needs no inspection, the fragments
// held so far are emitted unchanged (release()) and the rest pass as they
// come. Discarded, each counted: overlapping fragments (RFC 5722; IPv4 too,
// as Linux does), a first fragment without the whole TCP/UDP header (RFC
// 1858 tiny fragments, RFC 7112), fragments past 65535 bytes or
// inconsistent with the last one, datagrams not whole within the timeout
// (IPv4 30 s, IPv6 60 s: RFC 8200), and fragments the store has no room for.
// An exact duplicate (same offset and length) is dropped alone (RFC 5722 §4).
//
// Memory, all at construction, fixed: `datagrams` slots of about 2.1 KiB
// (offsets bitmaps), fragment copies in 512-byte blocks up to `memory`
// bytes, a 4-way table of 8192 datagram decisions (256 KiB), and two
// 70 KiB scratch frames. Nothing is allocated, nothing throws afterwards.
// Datagrams are found through a chained hash index; expired ones are freed
// by a sweep that looks at two slots per lookup (all of them when no slot
// is free) and when their own next fragment comes.
//
// Cost (callgrind, optgate-bench --fragments): about 6,400 instructions per
// datagram of 4.5 fragments on top of the datagram's own inspection; nothing
// measurable on unfragmented packets (docs/benchmarks.md, "Fragments").
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/counters.hpp"
#include "core/packet.hpp"

namespace optgate {

struct ReassemblyConfig {
    size_t datagrams = 256;           // held at once, per worker
    size_t memory = size_t{4} << 20;  // bytes of fragment copies, per worker
    size_t decisions = 8192;          // datagrams whose pass/drop is remembered for late fragments (4-way sets, 2^n)
    uint64_t ipv4_timeout_ns = 30ull * 1000000000ull;  // RFC 791 leaves it to the host; Linux uses 30 s
    uint64_t ipv6_timeout_ns = 60ull * 1000000000ull;  // RFC 8200 §4.5
};

// Frames the core makes itself (re-fragmented datagrams, released fragments).
// `index`: the position, in the burst the driver handed over, of the frame
// whose arrival caused them; the driver sends them right after that frame's
// place in its output, on the path that frame would take. The bytes are
// valid only during the call. Called in non-decreasing `index` order.
using EmitFn = void (*)(void* user, const uint8_t* frame, uint32_t len, uint32_t index) noexcept;

struct Emitter {
    EmitFn fn = nullptr;  // none: emitted frames are lost (counted as emitted all the same)
    void* user = nullptr;
    uint32_t index = 0;
    void operator()(const uint8_t* frame, uint32_t len) const noexcept {
        if (fn) fn(user, frame, len, index);
    }
};

class Reassembly {
public:
    // What classify knows about a fragment from a subscriber.
    enum class Need : uint8_t {
        none,     // needs no inspection (first fragment to another port, or a protocol never inspected)
        inspect,  // first fragment of an inspected datagram
        unknown,  // later fragment of a datagram that may need it (first fragment not seen)
        tiny,     // first fragment without its whole TCP/UDP header: discard the datagram
    };
    enum class Step : uint8_t { forward, drop, held, complete };

    static constexpr uint32_t kBlockBytes = 512;
    static constexpr uint32_t kMaxFrame = 70 * 1024;  // a rebuilt datagram: L2 + 65535 + IPv6 header

    explicit Reassembly(const ReassemblyConfig& config = {});
    ~Reassembly();
    Reassembly(const Reassembly&) = delete;
    Reassembly& operator=(const Reassembly&) = delete;

    // Takes one fragment. On `complete`, `datagram` names the whole one for
    // assemble(); the fragment's own frame is consumed either way unless
    // `forward`. Releases held fragments through `emit` when a first
    // fragment says no inspection is needed.
    Step accept(const uint8_t* frame, const ParsedPacket& p, Need need, uint64_t now_ns, WorkerCounters& c,
                const Emitter& emit, uint32_t& datagram) noexcept;

    // The whole datagram as one frame in the scratch buffer (L2 header of
    // its first fragment, IP header with the fragment fields cleared and
    // lengths and IPv4 checksum fixed). Returns its length, 0 if it cannot
    // be one packet (then finish() it: it is discarded, counted).
    uint32_t assemble(uint32_t datagram, WorkerCounters& c) noexcept;
    uint8_t* scratch() noexcept { return frame_.get(); }
    // Cuts the (processed) scratch frame into fragments no larger than the
    // datagram's largest, and emits them; whole if it fits that size.
    void refragment(uint32_t datagram, uint32_t len, WorkerCounters& c, const Emitter& emit) noexcept;
    // Frees the datagram's slot (whatever assemble() and refragment() did).
    void finish(uint32_t datagram, uint64_t now_ns) noexcept;

    size_t held_datagrams() const noexcept { return live_; }
    size_t free_bytes() const noexcept { return size_t(free_blocks_) * kBlockBytes; }

private:
    static constexpr uint32_t kNone = ~0u;
    static constexpr size_t kUnits = 65536 / 8;  // offsets, in 8-byte units
    static constexpr size_t kWords = kUnits / 64;
    struct Datagram;
    struct Fragment {
        uint32_t next = kNone;  // next fragment of the datagram, in arrival order
        uint32_t frame_len = 0;
        uint32_t data_at = 0;  // frame offset of the fragment data
        uint32_t offset = 0;   // in the datagram
        uint32_t len = 0;
    };
    enum class Decision : uint8_t { none, pass, drop };
    struct Decided {
        uint64_t key = 0;
        uint64_t expires_ns = 0;
        Decision decision = Decision::none;
    };
    static constexpr size_t kDecisionWays = 4;

    static uint64_t key_of(const ParsedPacket& p) noexcept;
    uint64_t timeout(Family f) const noexcept {
        return f == Family::v4 ? config_.ipv4_timeout_ns : config_.ipv6_timeout_ns;
    }
    Decision decided(uint64_t key, uint64_t now) const noexcept;
    void decide(uint64_t key, Decision d, uint64_t expires) noexcept;

    uint32_t find(const ParsedPacket& p, uint64_t key, uint64_t now, WorkerCounters& c) noexcept;
    bool expire_if_due(uint32_t d, uint64_t now, WorkerCounters& c) noexcept;
    uint32_t& bucket(uint64_t key) noexcept { return bucket_[key & bucket_mask_]; }
    uint32_t make(const ParsedPacket& p, uint64_t key, uint64_t now, WorkerCounters& c) noexcept;
    Step hold(uint32_t d, const uint8_t* frame, const ParsedPacket& p, WorkerCounters& c) noexcept;
    // Frees a slot and its blocks; `decision` (pass/drop) is remembered.
    void discard(uint32_t d, Decision decision, uint64_t now) noexcept;
    void free_fragments(Datagram& g) noexcept;
    uint32_t store(const uint8_t* frame, uint32_t len) noexcept;
    void copy_out(uint32_t block, uint32_t from, uint32_t len, uint8_t* to) const noexcept;
    void release(uint32_t d, uint64_t now, WorkerCounters& c, const Emitter& emit) noexcept;

    const ReassemblyConfig config_;
    const uint32_t slots_;
    const uint32_t blocks_;
    std::unique_ptr<uint64_t[]> hash_;  // per slot, 0: free
    const uint32_t bucket_mask_;
    std::unique_ptr<uint32_t[]> bucket_;     // first slot of each hash chain
    std::unique_ptr<uint32_t[]> chain_;      // next slot in the same chain
    std::unique_ptr<uint32_t[]> free_slot_;  // stack of free slots
    uint32_t free_slots_ = 0;
    uint32_t hand_ = 0;  // the expiry sweep's next slot
    std::unique_ptr<Datagram[]> datagrams_;
    std::unique_ptr<uint8_t[]> bytes_;        // blocks_ x kBlockBytes
    std::unique_ptr<uint32_t[]> next_block_;  // chain of a fragment's blocks, and the free list
    std::unique_ptr<Fragment[]> fragments_;   // by a fragment's first block
    uint32_t free_block_ = kNone;
    uint32_t free_blocks_ = 0;
    size_t live_ = 0;
    const uint32_t decision_set_mask_;
    std::unique_ptr<Decided[]> decided_;  // (decision_set_mask_ + 1) x kDecisionWays
    std::unique_ptr<uint8_t[]> frame_;    // the rebuilt datagram
    std::unique_ptr<uint8_t[]> out_;      // one emitted frame
};

}  // namespace optgate
