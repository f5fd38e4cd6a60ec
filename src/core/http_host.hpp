// The request's Host, for collectors matched by hostname.
//
// A Host value that ends in the segment where it starts is read straight
// from the packet. Only a value split across segments needs its first part
// kept until the rest arrives: for that the HTTP stage has a small pool of
// 256-byte buffers (HostBuffers), borrowed by the flow for the few
// microseconds in between, so the flow entry holds a 2-byte slot number
// instead of a host. With no free buffer, or a value longer than a buffer,
// the request's host is "unknown": hostname-only collectors then never
// match and identifiers are stripped (fail closed, counted).
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <string_view>
#include <vector>

namespace optgate {

class HostBuffers {
public:
    static constexpr size_t kBytes = 256;

    explicit HostBuffers(size_t count);

    // A free buffer's slot (1-based), or 0 when none is free.
    uint16_t acquire() noexcept {
        if (free_.empty()) return 0;
        const uint16_t s = free_.back();
        free_.pop_back();
        len_[s] = 0;
        return s;
    }
    void release(uint16_t slot) noexcept {
        if (slot != 0) free_.push_back(slot);  // capacity reserved: never allocates
    }
    // Appends; returns false when the value would not fit (the slot keeps
    // what it had; the caller gives the host up).
    bool append(uint16_t slot, const uint8_t* p, size_t n) noexcept {
        if (len_[slot] + n > kBytes) return false;
        std::memcpy(&bytes_[size_t(slot) * kBytes + len_[slot]], p, n);
        len_[slot] = uint16_t(len_[slot] + n);
        return true;
    }
    std::string_view view(uint16_t slot) const noexcept {
        return {reinterpret_cast<const char*>(&bytes_[size_t(slot) * kBytes]), len_[slot]};
    }
    size_t free_count() const noexcept { return free_.size(); }
    size_t capacity() const noexcept { return len_.size() - 1; }

private:
    std::vector<uint8_t> bytes_;  // slot 0 unused
    std::vector<uint16_t> len_;
    std::vector<uint16_t> free_;
};

// Turns a raw Host field value into what collector hostname patterns are
// matched against: surrounding whitespace removed, lowercase, port removed,
// one trailing dot removed ("Ads.Example.COM.:8080" -> "ads.example.com").
// An IPv6 literal keeps its brackets ("[2001:db8::1]"). Writes into `out`
// (kBytes) and returns the view, or an empty view if the value is not a
// usable host (empty, whitespace or control bytes inside, bad port).
std::string_view normalize_host(std::string_view raw, char* out) noexcept;

}  // namespace optgate
