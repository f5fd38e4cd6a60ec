#include "consentd/commit_history.hpp"

#include <algorithm>

namespace optgate::consentd {

void CommitHistory::reset(uint64_t seq) {
    commits_.clear();
    bytes_ = 0;
    head_ = floor_ = seq;
}

void CommitHistory::append(Commit c) {
    head_ = c.seq;
    bytes_ += c.frames->size();
    commits_.push_back(std::move(c));
    while (!commits_.empty() && (commits_.size() > max_commits_ || bytes_ > max_bytes_)) {
        floor_ = commits_.front().seq;
        bytes_ -= commits_.front().frames->size();
        commits_.pop_front();
    }
    if (commits_.empty()) floor_ = head_;
}

void CommitHistory::clear() {
    commits_.clear();
    bytes_ = 0;
    floor_ = head_;
}

CommitHistory::const_iterator CommitHistory::after(uint64_t seq) const {
    return std::partition_point(commits_.begin(), commits_.end(), [&](const Commit& c) { return c.seq <= seq; });
}

const Commit* CommitHistory::find(uint64_t seq) const {
    const auto c = std::partition_point(commits_.begin(), commits_.end(), [&](const Commit& x) { return x.seq < seq; });
    return c != commits_.end() && c->seq == seq ? &*c : nullptr;
}

}  // namespace optgate::consentd
