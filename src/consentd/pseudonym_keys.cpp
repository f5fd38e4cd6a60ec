#include "consentd/pseudonym_keys.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "core/chars.hpp"

namespace optgate::consentd {

namespace {

// One line per key: "ROTATE_DAYS PERIOD HEX COLLECTOR" (the name last: the
// rest of the line, whatever characters the policy allows in it).
constexpr const char* kHeader = "# optgate consentd pseudonym keys (docs/consentd.md): secret, keep mode 0600\n";

void clear(PseudonymKey& k) noexcept { OPENSSL_cleanse(k.data(), k.size()); }

// Clears a string that held key text before it is freed.
void clear(std::string& s) noexcept {
    if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
}

uint64_t period_of(uint64_t now, unsigned rotate_days) { return now / (uint64_t(rotate_days) * 86400); }

std::runtime_error io_error(const std::string& what, const std::string& path) {
    return std::runtime_error("cannot " + what + " " + path + ": " + std::strerror(errno));
}

}  // namespace

PseudonymKeyStore::PseudonymKeyStore(std::string path, UnixClock unix_now)
    : path_(std::move(path)), unix_now_(std::move(unix_now)) {
    if (!unix_now_) unix_now_ = [] { return uint64_t(::time(nullptr)); };
    struct stat st {};
    if (::stat(path_.c_str(), &st) != 0) {
        if (errno == ENOENT) return;  // no key made yet
        throw io_error("read", path_);
    }
    if (st.st_mode & 077)
        throw std::runtime_error(path_ + " holds secret keys but group or others may access it: chmod 600 it");
    std::ifstream in(path_);
    if (!in) throw io_error("read", path_);
    std::string line;
    int line_no = 0;
    while (std::getline(in, line)) {
        ++line_no;
        if (line.empty() || line[0] == '#') continue;
        // The line is never repeated in an error: it holds a key.
        const auto bad = [&] {
            clear(line);
            return std::runtime_error(path_ + ":" + std::to_string(line_no) +
                                      ": not 'ROTATE_DAYS PERIOD KEY COLLECTOR' (32 lower-case hex digits)");
        };
        std::istringstream fields(line);
        PeriodKey k;
        std::string hex;
        if (!(fields >> k.rotate_days >> k.period >> hex) || k.rotate_days < Collector::kMinRotateDays ||
            k.rotate_days > Collector::kMaxRotateDays || hex.size() != 2 * k.key.size())
            throw bad();
        for (size_t i = 0; i < k.key.size(); ++i) {
            const int hi = hex_chars::lower_value(hex[2 * i]), lo = hex_chars::lower_value(hex[2 * i + 1]);
            if (hi < 0 || lo < 0) throw bad();
            k.key[i] = uint8_t(hi << 4 | lo);
        }
        clear(hex);
        fields.get();  // the space before the name
        std::getline(fields, k.collector);
        clear(line);
        if (k.collector.empty()) throw bad();
        keys_.push_back(std::move(k));
    }
}

PseudonymKeyStore::~PseudonymKeyStore() {
    for (auto& k : keys_) clear(k.key);
}

std::vector<PeriodKey> PseudonymKeyStore::keys_for(const Policy& policy) {
    const uint64_t now = unix_now_();
    std::vector<PeriodKey> next = keys_;
    bool changed = false;
    // Keys of periods that ended go: their pseudonyms cannot be made again.
    std::erase_if(next, [&](PeriodKey& k) {
        if (now < k.not_after()) return false;
        clear(k.key);
        changed = true;
        return true;
    });
    std::vector<PeriodKey> out;
    for (const auto& c : policy.collectors) {
        if (c.deliver != Collector::Delivery::pseudonym) continue;
        const uint64_t current = period_of(now, c.rotate_days);
        for (const uint64_t period : {current, current + 1}) {
            auto it = std::find_if(next.begin(), next.end(), [&](const PeriodKey& k) {
                return k.collector == c.name && k.rotate_days == c.rotate_days && k.period == period;
            });
            if (it == next.end()) {
                PeriodKey k{c.name, c.rotate_days, period, {}};
                if (RAND_bytes(k.key.data(), int(k.key.size())) != 1) {
                    for (auto& x : next) clear(x.key);
                    throw std::runtime_error("RAND_bytes failed: no pseudonym key made");
                }
                next.push_back(std::move(k));
                it = next.end() - 1;
                changed = true;
            }
            out.push_back(*it);
        }
    }
    if (changed) {
        std::swap(keys_, next);
        try {
            save();
        } catch (...) {
            std::swap(keys_, next);
            for (auto& x : next) clear(x.key);
            for (auto& x : out) clear(x.key);
            throw;
        }
    }
    for (auto& x : next) clear(x.key);
    return out;
}

uint64_t PseudonymKeyStore::next_change(const Policy& policy) const {
    const uint64_t now = unix_now_();
    uint64_t earliest = 0;
    for (const auto& c : policy.collectors) {
        if (c.deliver != Collector::Delivery::pseudonym) continue;
        const uint64_t len = uint64_t(c.rotate_days) * 86400;
        const uint64_t end = (period_of(now, c.rotate_days) + 1) * len;
        if (!earliest || end < earliest) earliest = end;
    }
    return earliest;
}

void PseudonymKeyStore::save() const {
    std::string text = kHeader;
    for (const auto& k : keys_) {
        text += std::to_string(k.rotate_days) + " " + std::to_string(k.period) + " ";
        hex_chars::append_lower(text, k.key);
        text += " " + k.collector + "\n";
    }
    const std::string tmp = path_ + ".tmp";
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        clear(text);
        throw io_error("create", tmp);
    }
    // A temporary file left by an older umask: the mode must be 0600 before
    // a key is in it.
    bool ok = ::fchmod(fd, 0600) == 0;
    for (size_t off = 0; ok && off < text.size();) {
        const ssize_t n = ::write(fd, text.data() + off, text.size() - off);
        if (n < 0 && errno == EINTR) continue;
        ok = n > 0;
        if (ok) off += size_t(n);
    }
    ok = ok && ::fsync(fd) == 0;
    const int saved = errno;
    ::close(fd);
    clear(text);
    errno = saved;
    if (!ok) throw io_error("write", tmp);
    if (::rename(tmp.c_str(), path_.c_str()) != 0) throw io_error("replace", path_);
    // The rename is durable once the directory is.
    const std::string dir = std::filesystem::path(path_).parent_path().string();
    const int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) throw io_error("open the directory of", path_);
    const bool synced = ::fsync(dfd) == 0;
    ::close(dfd);
    if (!synced) throw io_error("fsync the directory of", path_);
}

}  // namespace optgate::consentd
