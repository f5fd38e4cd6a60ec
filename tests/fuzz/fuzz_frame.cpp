// fuzz_frame: the fuzz bytes as a stream of control-protocol frames
// (src/proto/codec.hpp), decoded in both directions, frame after frame.
//
// Invariants, for every frame decoded:
//  - it re-encodes to exactly the bytes it was decoded from (every field
//    of every frame type is kept by decoding, so no type needs the weaker
//    decode(encode(decode(x))) == decode(x));
//  - every shorter prefix of those bytes decodes as "need more", asking for
//    more than the prefix and no more than the frame;
// and decoding reports `needed` beyond what it was given when it asks for
// more, and never consumes bytes on an error.
#include <algorithm>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "proto/codec.hpp"
#include "support/fuzz_check.hpp"
#include "support/reference.hpp"

using namespace optgate;
using namespace optgate::proto;

namespace {

std::string reencode(const Frame& frame) {
    std::string out;
    bool ok = false;
    std::visit(
        [&](const auto& f) {
            using T = std::decay_t<decltype(f)>;
            if constexpr (std::is_same_v<T, SnapshotChunk> || std::is_same_v<T, Delta>) {
                std::vector<TableChange> changes;
                const EntryList& list = [&]() -> const EntryList& {
                    if constexpr (std::is_same_v<T, SnapshotChunk>)
                        return f.entries;
                    else
                        return f.changes;
                }();
                for_each_change(list, [&](const TableChange& c) { changes.push_back(c); });
                FUZZ_CHECK(changes.size() == list.count, "for_each_change visited " + std::to_string(changes.size()) +
                                                             " of " + std::to_string(list.count) + " entries");
                if constexpr (std::is_same_v<T, SnapshotChunk>)
                    ok = encode_snapshot_chunk(out, changes);
                else
                    ok = encode_delta(out, f.seq, f.final, changes);
            } else if constexpr (std::is_same_v<T, Stats>) {
                std::vector<StatEntry> entries;
                for_each_stat(f, [&](const StatView& v) {
                    entries.push_back(
                        {std::string(v.name), v.value, v.kind, std::string(v.label_name), std::string(v.label_value)});
                });
                FUZZ_CHECK(entries.size() == f.count, "for_each_stat visited " + std::to_string(entries.size()) +
                                                          " of " + std::to_string(f.count) + " entries");
                ok = encode_stats(out, entries);
            } else if constexpr (std::is_same_v<T, Disclosure>) {
                std::vector<DisclosureEntry> entries;
                for_each_disclosure(f, [&](const DisclosureView& v) { entries.push_back(v.entry()); });
                FUZZ_CHECK(entries.size() == f.count, "for_each_disclosure visited " + std::to_string(entries.size()) +
                                                          " of " + std::to_string(f.count) + " entries");
                ok = encode_disclosure(out, f, entries);
            } else if constexpr (std::is_same_v<T, PseudonymKeys>) {
                std::vector<PseudonymKeyView> keys;
                for_each_pseudonym_key(f, [&](const PseudonymKeyView& v) { keys.push_back(v); });
                FUZZ_CHECK(keys.size() == f.count, "for_each_pseudonym_key visited " + std::to_string(keys.size()) +
                                                       " of " + std::to_string(f.count) + " entries");
                ok = encode_pseudonym_keys(out, keys);
            } else {
                ok = encode(out, f);
            }
        },
        frame);
    FUZZ_CHECK(ok, "the encoder refused a frame the decoder accepted");
    return out;
}

void check_stream(std::span<const uint8_t> bytes, Direction dir) {
    for (int frames = 0; frames < 64 && !bytes.empty(); ++frames) {
        const DecodeResult r = decode(bytes, dir);
        if (r.status == DecodeStatus::need_more) {
            FUZZ_CHECK(r.needed > bytes.size(), "need_more, but needed " + std::to_string(r.needed) +
                                                    " <= " + std::to_string(bytes.size()) + " bytes given");
            return;
        }
        if (r.status == DecodeStatus::error) {
            FUZZ_CHECK(r.error != DecodeError::none && r.consumed == 0,
                       "an error without a reason, or consuming bytes");
            return;
        }
        FUZZ_CHECK(r.consumed >= kHeaderSize && r.consumed <= bytes.size(), "consumed " + std::to_string(r.consumed));
        const std::string again = reencode(r.frame);
        const std::span<const uint8_t> orig = bytes.first(r.consumed);
        FUZZ_CHECK(again.size() == orig.size() && std::equal(orig.begin(), orig.end(), again.begin(),
                                                             [](uint8_t a, char b) { return a == uint8_t(b); }),
                   std::string("frame type ") + std::string(to_string(r.type)) + " re-encodes differently:\n" +
                       fuzz::hex(orig.data(), orig.size()) + "\nre-encoded:\n" +
                       fuzz::hex(reinterpret_cast<const uint8_t*>(again.data()), again.size()));
        // Prefixes: the header's end, a few inside the payload, the last byte.
        for (size_t cut :
             {size_t(0), size_t(1), kHeaderSize - 1, kHeaderSize, kHeaderSize + 1, r.consumed / 2, r.consumed - 1}) {
            if (cut >= r.consumed) continue;
            const DecodeResult p = decode(orig.first(cut), dir);
            FUZZ_CHECK(p.status == DecodeStatus::need_more && p.needed > cut && p.needed <= r.consumed,
                       "a " + std::to_string(cut) + "-byte prefix of a " + std::to_string(r.consumed) +
                           "-byte frame does not decode as need_more within the frame");
        }
        bytes = bytes.subspan(r.consumed);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::span<const uint8_t> bytes(data, size);
    check_stream(bytes, Direction::to_server);
    check_stream(bytes, Direction::to_client);
    return 0;
}
