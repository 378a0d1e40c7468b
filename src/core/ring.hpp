#pragma once

#include <atomic>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/codec.hpp"

namespace stagelog::detail {

// A single-producer single-consumer ring of variable-sized records (codec.hpp). The producer is
// the thread that owns it; the consumer is the backend thread. A record never wraps: when it
// does not fit before the end, a Pad record fills the gap.
//
// Order of calls: the producer reserves (try_reserve) and then commits the record it reserved
// last, once; a failed reservation is never committed. The consumer peeks and then pops the
// record it peeked. The asserts check this in Debug builds; release compiles them out.
class Ring {
 public:
  // capacity: a power of two, at least twice the largest record. The memory is touched here,
  // on the thread's first event, not on the hot path's first lap.
  explicit Ring(std::size_t capacity)
      : buffer_(new std::byte[capacity]()), capacity_(capacity), mask_(capacity - 1) {
    assert(capacity >= 2 * sizeof(RecordHeader) && (capacity & (capacity - 1)) == 0);
    assert(reinterpret_cast<std::uintptr_t>(buffer_.get()) % alignof(RecordHeader) == 0);
  }

  std::size_t capacity() const noexcept { return capacity_; }

  // Producer: room for `bytes` (a whole record: a multiple of kRecordAlign, at most
  // capacity / 2) or nullptr when full. The room is aligned for a RecordHeader.
  std::byte* try_reserve(std::size_t bytes) noexcept {
    assert(bytes >= sizeof(RecordHeader) && bytes % kRecordAlign == 0);
    assert(bytes <= capacity_ / 2);  // Else it might never fit after a Pad.
    std::uint64_t offset = write_pos_ & mask_;
    std::uint64_t pad = offset + bytes > capacity_ ? capacity_ - offset : 0;
    std::uint64_t total = pad + bytes;
    if (write_pos_ + total - cached_read_ > capacity_) {
      cached_read_ = read_.load(std::memory_order_acquire);
      if (write_pos_ + total - cached_read_ > capacity_) {
#ifndef NDEBUG
        pending_ = 0;  // What commit() asserts on: nothing reserved.
#endif
        return nullptr;
      }
    }
    if (pad != 0) encode_pad(buffer_.get() + offset, pad);
    pending_ = total;
    return buffer_.get() + ((write_pos_ + pad) & mask_);
  }

  // Producer: publishes the record reserved last, which the caller has written whole.
  void commit() noexcept {
    assert(pending_ != 0);  // A successful try_reserve() came first, and was not committed.
    write_pos_ += pending_;
    write_.store(write_pos_, std::memory_order_release);
#ifndef NDEBUG
    pending_ = 0;
#endif
  }

  // Consumer: the next record, or nullptr when there is none yet.
  const RecordHeader* peek() noexcept {
    for (;;) {
      if (read_pos_ == cached_write_) {
        cached_write_ = write_.load(std::memory_order_acquire);
        if (read_pos_ == cached_write_) return nullptr;
      }
      auto* header = reinterpret_cast<const RecordHeader*>(buffer_.get() + (read_pos_ & mask_));
      assert(header->size >= kRecordAlign && header->size % kRecordAlign == 0);
      assert(read_pos_ + header->size <= cached_write_);  // Published whole.
      if (header->type != RecordType::Pad) return header;
      read_pos_ += header->size;
    }
  }

  // Consumer: releases the record peek() returned.
  void pop(const RecordHeader* header) noexcept {
    assert(reinterpret_cast<const std::byte*>(header) == buffer_.get() + (read_pos_ & mask_));
    assert(read_pos_ + header->size <= cached_write_);
    read_pos_ += header->size;
    read_.store(read_pos_, std::memory_order_release);
  }

  // Consumer: position of the next record to read, and of the end of what is published.
  std::uint64_t read_position() const noexcept { return read_pos_; }
  std::uint64_t published() const noexcept { return write_.load(std::memory_order_acquire); }

  // After fork() in the child: forget what the parent had not yet consumed.
  void discard_unread() noexcept {
    read_pos_ = cached_write_ = write_.load(std::memory_order_acquire);
    read_.store(read_pos_, std::memory_order_release);
  }

 private:
  std::unique_ptr<std::byte[]> buffer_;
  std::size_t capacity_;
  std::uint64_t mask_;
  alignas(64) std::atomic<std::uint64_t> write_{0};
  alignas(64) std::atomic<std::uint64_t> read_{0};
  alignas(64) std::uint64_t write_pos_ = 0;  // Producer only.
  std::uint64_t cached_read_ = 0;
  std::uint64_t pending_ = 0;  // Bytes try_reserve() reserved, pad included; 0: none (Debug).
  alignas(64) std::uint64_t read_pos_ = 0;  // Consumer only.
  std::uint64_t cached_write_ = 0;
};

}  // namespace stagelog::detail
