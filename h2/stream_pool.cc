#include "h2/stream_pool.h"

#include <cassert>

namespace h2loop::h2 {

void StreamPool::Deleter::operator()(Stream* s) const {
  delete s;
}

StreamPool::StreamPool(size_t capacity) : capacity_(capacity) {
  all_.reserve(capacity);
  free_.reserve(capacity);
}

StreamPool::~StreamPool() {
  // Streams still referenced (an application's handle outlived the server)
  // are orphaned instead of freed under their holders: closed, they delete
  // themselves on their last release, wherever that happens (the holder
  // serialises it with the pool's destruction; see http::detail::Anchor).
  for (auto& s : all_) {
    if (s->refs_ != 0) {
      s->pool_ = nullptr;
      (void)s.release();
    }
  }
}

Stream* StreamPool::acquire() {
  Stream* s = nullptr;
  if (!free_.empty()) {
    s = free_.back();
    free_.pop_back();
  } else if (all_.size() < capacity_) {
    all_.emplace_back(new Stream(this));
    s = all_.back().get();
  } else {
    ++refused_;
    return nullptr;
  }
  assert(s->refs_ == 0);
  s->refs_ = 1;
  ++in_use_;
  ++total_acquired_;
  if (in_use_ > high_water_) high_water_ = in_use_;
  return s;
}

void StreamPool::recycle(Stream* s) {
  assert(in_use_ > 0);
  s->recycle();
  --in_use_;
  free_.push_back(s);
}

}  // namespace h2loop::h2
