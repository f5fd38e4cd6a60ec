// Named counters, generated from one list (as VPP does with its error
// counters). Each packet-path thread owns one WorkerCounters; nothing is
// shared or atomic on the packet path. Readers (report, stats) sum workers.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace optgate {

// X(name, help). Names are stable: they appear in reports and metrics.
#define OPTGATE_COUNTERS(X)                                                                          \
    /* totals */                                                                                     \
    X(packets, "packets processed")                                                                  \
    X(forwarded, "packets forwarded (changed or not)")                                               \
    X(dropped, "packets dropped (see the drop reasons) or held for reassembly")                      \
    X(rewritten, "packets whose bytes were changed")                                                 \
    X(from_subscriber, "IP packets whose source is a subscriber prefix")                             \
    X(not_from_subscriber, "IP packets from other sources: not inspected")                           \
    X(no_policy_dropped, "packets dropped because no policy was installed yet (fail closed)")        \
    /* parse: forwarded unchanged */                                                                 \
    X(non_ip, "not IPv4/IPv6 (ARP, LLDP, ...): forwarded unchanged")                                 \
    X(truncated_l2, "frame shorter than its Ethernet/VLAN headers")                                  \
    X(too_many_vlan_tags, "more than two VLAN tags")                                                 \
    X(truncated_ipv4, "IPv4 header truncated")                                                       \
    X(bad_ipv4_header, "IPv4 version or header length invalid")                                      \
    X(bad_ipv4_length, "IPv4 total length inconsistent with the frame")                              \
    X(truncated_ipv6, "IPv6 header truncated")                                                       \
    X(bad_ipv6_header, "IPv6 version field is not 6")                                                \
    X(bad_ipv6_length, "IPv6 payload length inconsistent with the frame")                            \
    X(bad_ipv6_extension, "IPv6 extension header truncated or chain too long")                       \
    X(truncated_tcp, "TCP header truncated")                                                         \
    X(bad_tcp_header, "TCP data offset invalid")                                                     \
    X(truncated_udp, "UDP header truncated")                                                         \
    X(bad_udp_length, "UDP length inconsistent with the IP length")                                  \
    X(ipv4_fragment, "IPv4 fragments seen")                                                          \
    X(ipv6_fragment, "IPv6 fragments seen")                                                          \
    /* fragments (docs/pipeline.md#fragments) */                                                     \
    X(fragment_held, "fragments of datagrams to inspect copied into the reassembly store")           \
    X(fragment_reassembled, "datagrams reassembled and run through the stages as one packet")        \
    X(fragment_released, "datagrams whose held fragments were sent on unchanged (no inspection)")    \
    X(fragment_emitted, "frames sent from the reassembly store (re-fragmented, or released)")        \
    X(fragment_dropped, "fragments dropped on arrival: a reason below, or their datagram discarded") \
    X(fragment_duplicate, "exact duplicate fragments dropped (RFC 5722 section 4)")                  \
    X(fragment_overlap, "datagrams discarded: overlapping fragments (RFC 5722; IPv4 too)")           \
    X(fragment_tiny, "datagrams discarded: first fragment without the whole TCP/UDP header")         \
    X(fragment_malformed, "datagrams discarded: bad fragment length, past 65535 or the last one")    \
    X(fragment_timeout, "datagrams discarded: not whole within the reassembly timeout")              \
    X(fragment_store_full, "datagrams discarded: the worker's reassembly store had no room")         \
    /* encapsulations (docs/pipeline.md#encapsulations); per kind in Encapsulation order */          \
    X(encapsulated_inspected, "frames parsed through an enabled encapsulation to the inner packet")  \
    X(encapsulated_not_inspected_pppoe, "PPPoE sessions not looked into (off, or unparsable)")       \
    X(encapsulated_not_inspected_mpls, "MPLS frames not looked into (off, or unparsable)")           \
    X(encapsulated_not_inspected_gre, "GRE not looked into (off, or unparsable)")                    \
    X(encapsulated_not_inspected_l2tp, "L2TP (UDP 1701) not looked into (off, or unparsable)")       \
    X(encapsulated_not_inspected_vxlan, "VXLAN (UDP 4789) not looked into (off, or unparsable)")     \
    X(encapsulated_not_inspected_geneve, "Geneve (UDP 6081) not looked into (off, or unparsable)")   \
    X(encapsulated_not_inspected_gtpu, "GTP-U (UDP 2152) not looked into (off, or unparsable)")      \
    X(encapsulated_fragment_not_inspected, "fragments of or in an enabled tunnel: not reassembled")  \
    X(encapsulated_too_deep, "more than 4 encapsulation layers: forwarded unchanged")                \
    /* DNS stage */                                                                                  \
    X(dns_queries, "DNS queries from subscribers inspected")                                         \
    X(dns_not_query, "DNS messages with QR=1 on a DNS port: not inspected")                          \
    X(dns_with_identifiers, "DNS queries carrying identifier EDNS0 options")                         \
    X(dns_rewritten, "DNS queries whose identifier options were made Padding")                       \
    X(dns_malformed_header, "DNS message shorter than its header")                                   \
    X(dns_malformed_name, "DNS name truncated, too long or with a reserved label type")              \
    X(dns_malformed_record, "DNS record truncated or counts larger than the message")                \
    X(dns_multiple_opt, "more than one OPT record (RFC 6891 forbids it)")                            \
    X(dns_malformed_opt, "OPT record with a bad owner name or options that overrun it")              \
    /* DNS over TCP (docs/pipeline.md) */                                                            \
    X(dns_tcp_segments, "TCP segments with payload from subscribers to DNS ports")                   \
    X(dns_tcp_flows, "DNS-over-TCP flow entries made (SYN)")                                         \
    X(dns_tcp_rewritten, "segments whose identifier options were made Padding")                      \
    X(dns_tcp_padded_straddling, "non-identifier options made Padding: code cut across segments")    \
    X(dns_tcp_midstream_dropped, "segments of flows met without SYN, on a strip verdict: dropped")   \
    X(dns_tcp_out_of_order_dropped, "segments after a hole: dropped")                                \
    X(dns_tcp_retransmitted, "segments repeating bytes already seen: given the same rewrite")        \
    X(dns_tcp_retransmit_dropped, "retransmissions reaching back past the flow's record: dropped")   \
    X(dns_tcp_retransmit_inconsistent, "retransmissions with other bytes than forwarded: dropped")   \
    X(dns_tcp_retransmit_unverified, "retransmissions covering a forwarded segment in part")         \
    /* HTTP stage (docs/http.md) */                                                                  \
    X(http_segments, "TCP segments with payload from subscribers to HTTP ports")                     \
    X(http_requests, "HTTP/1.x request lines read")                                                  \
    X(http_requests_with_identifiers, "HTTP requests carrying identifier fields")                    \
    X(http_rewritten, "segments whose identifier values were overwritten")                           \
    X(http_flows, "HTTP flow entries made (SYN, or first segment seen mid-stream)")                  \
    X(http_flows_evicted, "live flows pushed out of a full pair of flow-table buckets")              \
    X(http_flow_table_full, "segments dropped: both buckets full of flows that must be kept")        \
    X(http_flows_reset, "flows forgotten on RST")                                                    \
    X(http_flows_reused, "flows restarted by a new SYN on the same 4-tuple")                         \
    X(http_midstream_flows, "flows first seen without SYN: conservative mode for their life")        \
    X(http_midstream_unseen, "segments with bytes from before a mid-stream flow's first one")        \
    X(http_retransmitted, "segments repeating bytes already seen: given the same rewrite")           \
    X(http_retransmit_dropped, "retransmissions reaching back past the flow's record: dropped")      \
    X(http_retransmit_inconsistent, "retransmissions with other bytes than forwarded: dropped")      \
    X(http_retransmit_unverified, "retransmissions covering a forwarded segment in part: dropped")   \
    X(http_out_of_order_dropped, "segments after a hole outside a known-length body: dropped")       \
    X(http_out_of_order_skipped, "segments after a hole inside a known-length body: hole skipped")   \
    X(http_conservative_flows, "flows that went to conservative mode (any reason)")                  \
    X(http_conservative_packets, "segments read in conservative mode")                               \
    X(http_policy_resync, "field names cut by a policy change: value scrubbed, conservative mode")   \
    X(http_host_no_buffer, "Host values split across segments with no free buffer: host unknown")    \
    X(http_error_request_line, "malformed request line: conservative mode")                          \
    X(http_error_header_line, "malformed field line (bad name, space before colon): conservative")   \
    X(http_error_bare_cr, "CR not followed by LF: conservative mode")                                \
    X(http_error_content_length, "invalid, conflicting or folded Content-Length, or with TE")        \
    X(http_error_transfer_encoding, "Transfer-Encoding not ending in chunked, or on HTTP/1.0")       \
    X(http_error_chunk, "malformed chunk size line or chunk data not followed by CRLF")              \
    X(http_bail_connect, "CONNECT requests: tunnel follows, conservative mode")                      \
    X(http_bail_upgrade, "requests with Upgrade (WebSocket, h2c): conservative mode")                \
    X(http_bail_h2, "HTTP/2 prior-knowledge prefaces: conservative mode")                            \
    X(http_bail_tls, "TLS records on an HTTP port: conservative mode")                               \
    X(http_bail_non_http, "other non-HTTP bytes where a request should start: conservative mode")    \
    X(http_gpc_requests, "requests carrying Sec-GPC: 1 (Global Privacy Control)")                    \
    X(http_gpc_stripped, "identifier lines stripped only because of Sec-GPC: 1 (consent held)")      \
    X(http_gpc_too_late, "Sec-GPC: 1 after an identifier it covers left in an earlier segment")      \
    X(http_pseudonymised, "identifier values replaced by the collector's pseudonym")                 \
    X(http_pseudonym_split, "pseudonym values not whole in one segment, or folded: stripped")        \
    X(http_pseudonym_unrecorded, "pseudonym values stripped: the flow records another key's")        \
    /* verdicts (one per decision on identifiers found) */                                           \
    X(verdict_pass_consent, "identifiers passed: subscriber consented to the collector's purpose")   \
    X(verdict_pass_exempt, "identifiers passed: destination is an exemption")                        \
    X(verdict_strip_not_subscriber, "identifiers stripped: source is not a subscriber")              \
    X(verdict_strip_unknown_subscriber, "identifiers stripped: subscriber not in the consent table") \
    X(verdict_strip_no_collector, "identifiers stripped: destination is not a collector")            \
    X(verdict_strip_no_consent, "identifiers stripped: no consent for the collector's purpose")      \
    X(verdict_strip_table_not_received, "identifiers stripped: no consent table received yet")       \
    X(verdict_strip_table_stale, "identifiers stripped: consent table older than the limit")         \
    X(verdict_strip_out_of_sync, "identifiers stripped: HTTP parser lost sync, host unknown")        \
    X(verdict_strip_gpc, "identifiers stripped: request sent Sec-GPC: 1, purpose honours it")        \
    X(verdict_pass_pseudonym, "identifiers passed as pseudonyms: consent, pseudonym collector")      \
    X(verdict_strip_no_pseudonym_key, "identifiers stripped: pseudonym collector, no key received")  \
    /* tagging */                                                                                    \
    X(tagged_passed, "packets to collectors tagged with the 'passed' DSCP")                          \
    X(tagged_stripped, "packets to collectors tagged with the 'stripped' DSCP")                      \
    X(tagged_exempt, "packets to exemptions tagged with the 'exempt' DSCP")                          \
    /* disclosure accounting (docs/pipeline.md#disclosure-accounting) */                             \
    X(disclosure_overflow, "identifier instances not in the disclosure counts: worker's table full")

enum class Counter : uint16_t {
#define OPTGATE_X(name, help) name,
    OPTGATE_COUNTERS(OPTGATE_X)
#undef OPTGATE_X
        count_
};

inline constexpr size_t kCounterCount = size_t(Counter::count_);

std::string_view counter_name(Counter c) noexcept;
std::string_view counter_help(Counter c) noexcept;

// Per-collector and per-identifier counters are indexed by the position in
// the compiled policy; bounded so that a worker never allocates.
inline constexpr size_t kMaxCollectors = 1024;  // collectors + exemptions
inline constexpr size_t kMaxIdentifiers = 256;

struct alignas(64) WorkerCounters {
    std::array<uint64_t, kCounterCount> value{};
    // Identifiers (header lines or EDNS0 options) by destination:
    // index = collector index, or collectors.size() + exemption index;
    // the last slot is "no collector".
    std::array<uint64_t, kMaxCollectors + 1> destination_stripped{};
    std::array<uint64_t, kMaxCollectors + 1> destination_passed{};
    std::array<uint64_t, kMaxIdentifiers> identifier_stripped{};
    std::array<uint64_t, kMaxIdentifiers> identifier_passed{};

    void add(Counter c, uint64_t n = 1) noexcept { value[size_t(c)] += n; }
    uint64_t get(Counter c) const noexcept { return value[size_t(c)]; }
    void accumulate(const WorkerCounters& other) noexcept;
};

}  // namespace optgate
