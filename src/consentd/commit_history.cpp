#include "consentd/commit_history.hpp"

#include <algorithm>

namespace optgate::consentd {

void CommitHistory::reset(uint64_t seq, std::optional<ChainMark> mark) {
    commits_.clear();
    marks_.clear();
    bytes_ = 0;
    head_ = floor_ = seq;
    marks_from_ = seq + 1;
    if (mark) {
        marks_.push_back(*mark);
        marks_from_ = seq;
    }
}

void CommitHistory::append(Commit c) {
    // The marks go on from the head's, or start again after it; a commit
    // whose marks are not all known ends them until the next reset.
    if (c.seq > head_ && c.chain.size() == c.seq - head_) {
        if (marks_.empty() || marks_from_ + marks_.size() - 1 != head_) {
            marks_.clear();
            marks_from_ = head_ + 1;
        }
        marks_.insert(marks_.end(), c.chain.begin(), c.chain.end());
    } else {
        marks_.clear();
        marks_from_ = c.seq + 1;
    }
    c.chain = {};
    head_ = c.seq;
    bytes_ += c.frames->size();
    commits_.push_back(std::move(c));
    while (!commits_.empty() &&
           (commits_.size() > max_commits_ || bytes_ + marks_.size() * sizeof(ChainMark) > max_bytes_)) {
        floor_ = commits_.front().seq;
        bytes_ -= commits_.front().frames->size();
        commits_.pop_front();
        drop_marks_below_floor();
    }
    if (commits_.empty()) floor_ = head_;
    drop_marks_below_floor();
}

void CommitHistory::drop_marks_below_floor() {
    // No data plane resumes below the floor.
    while (!marks_.empty() && marks_from_ < floor_) {
        marks_.pop_front();
        ++marks_from_;
    }
}

CommitHistory::const_iterator CommitHistory::after(uint64_t seq) const {
    return std::partition_point(commits_.begin(), commits_.end(), [&](const Commit& c) { return c.seq <= seq; });
}

std::optional<ChainMark> CommitHistory::mark_at(uint64_t seq) const {
    if (!covers(seq) || seq < marks_from_ || seq - marks_from_ >= marks_.size()) return std::nullopt;
    return marks_[seq - marks_from_];
}

const Commit* CommitHistory::find(uint64_t seq) const {
    const auto c = std::partition_point(commits_.begin(), commits_.end(), [&](const Commit& x) { return x.seq < seq; });
    return c != commits_.end() && c->seq == seq ? &*c : nullptr;
}

}  // namespace optgate::consentd
