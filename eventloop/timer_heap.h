#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "eventloop/loop.h"

namespace h2loop::ev {

// Binary min-heap of armed timers ordered by (deadline, arming sequence), so
// timers with equal deadlines fire in arming order on every backend. Each
// timer knows its heap position, so removal is O(log n). Loop-thread only.
class TimerHeap {
 public:
  void push(Timer* t);
  void remove(Timer* t);
  [[nodiscard]] bool empty() const { return heap_.empty(); }
  [[nodiscard]] Timer* top() const { return heap_.front(); }
  [[nodiscard]] size_t size() const { return heap_.size(); }

 private:
  static bool earlier(const Timer* a, const Timer* b);
  void place(size_t i, Timer* t);
  bool siftUp(size_t i);
  void siftDown(size_t i);

  std::vector<Timer*> heap_;
};

}  // namespace h2loop::ev
