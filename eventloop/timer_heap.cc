#include "eventloop/timer_heap.h"

#include <utility>

namespace h2loop::ev {

bool TimerHeap::earlier(const Timer* a, const Timer* b) {
  if (a->deadline_ != b->deadline_) return a->deadline_ < b->deadline_;
  return a->sequence_ < b->sequence_;
}

void TimerHeap::place(size_t i, Timer* t) {
  heap_[i] = t;
  t->heap_index_ = i;
}

void TimerHeap::push(Timer* t) {
  heap_.push_back(t);
  t->heap_index_ = heap_.size() - 1;
  siftUp(heap_.size() - 1);
}

void TimerHeap::remove(Timer* t) {
  const size_t i = t->heap_index_;
  Timer* last = heap_.back();
  heap_.pop_back();
  if (last == t) return;
  place(i, last);
  if (!siftUp(i)) siftDown(i);
}

bool TimerHeap::siftUp(size_t i) {
  Timer* t = heap_[i];
  const size_t start = i;
  while (i > 0) {
    const size_t parent = (i - 1) / 2;
    if (!earlier(t, heap_[parent])) break;
    place(i, heap_[parent]);
    i = parent;
  }
  place(i, t);
  return i != start;
}

void TimerHeap::siftDown(size_t i) {
  Timer* t = heap_[i];
  const size_t n = heap_.size();
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= n) break;
    if (child + 1 < n && earlier(heap_[child + 1], heap_[child])) ++child;
    if (!earlier(heap_[child], t)) break;
    place(i, heap_[child]);
    i = child;
  }
  place(i, t);
}

}  // namespace h2loop::ev
