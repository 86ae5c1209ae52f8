// A FIFO of T in one array that grows by doubling and allocates nothing until the first push.
//
// Why not std::deque: libstdc++'s deque allocates its map and a 512-byte node when it is
// constructed, empty or not. Every client has an outbound queue, and an idle client's queue
// is empty (or holds the welcome once), so that was ~600 bytes per connection for nothing.
// A ring of 4 relay units is 96 bytes, and it keeps its storage once grown, so a busy queue
// does not allocate per message.
#pragma once

#include <cstddef>
#include <memory>
#include <utility>

namespace framecast::io {

template <class T>
class ring {
public:
    ring() = default;
    ring(const ring&) = delete;
    ring& operator=(const ring&) = delete;
    ring(ring&& o) noexcept
        : data_(std::move(o.data_)), cap_(std::exchange(o.cap_, 0)),
          head_(std::exchange(o.head_, 0)), size_(std::exchange(o.size_, 0)) {}
    ring& operator=(ring&& o) noexcept {
        data_ = std::move(o.data_);
        cap_ = std::exchange(o.cap_, 0);
        head_ = std::exchange(o.head_, 0);
        size_ = std::exchange(o.size_, 0);
        return *this;
    }

    bool empty() const noexcept { return size_ == 0; }
    std::size_t size() const noexcept { return size_; }
    std::size_t capacity() const noexcept { return cap_; }

    T& operator[](std::size_t i) noexcept { return data_[(head_ + i) & (cap_ - 1)]; }
    const T& operator[](std::size_t i) const noexcept { return data_[(head_ + i) & (cap_ - 1)]; }
    T& front() noexcept { return data_[head_]; }
    const T& front() const noexcept { return data_[head_]; }

    void push_back(T v) {
        if (size_ == cap_) grow();
        data_[(head_ + size_) & (cap_ - 1)] = std::move(v);
        ++size_;
    }

    void pop_front() noexcept {
        data_[head_] = T{};  // release what the element holds now, not when the slot is reused
        head_ = (head_ + 1) & (cap_ - 1);
        --size_;
    }

    // Removes the element at `i`, keeping the order of the others; O(i), meant for small i.
    void erase(std::size_t i) noexcept {
        for (; i > 0; --i) (*this)[i] = std::move((*this)[i - 1]);
        pop_front();
    }

private:
    void grow() {
        const std::size_t cap = cap_ == 0 ? 4 : cap_ * 2;
        auto data = std::make_unique<T[]>(cap);
        for (std::size_t i = 0; i < size_; ++i) data[i] = std::move((*this)[i]);
        data_ = std::move(data);
        cap_ = cap;
        head_ = 0;
    }

    std::unique_ptr<T[]> data_;
    std::size_t cap_ = 0;  // 0 or a power of two
    std::size_t head_ = 0;
    std::size_t size_ = 0;
};

}  // namespace framecast::io
