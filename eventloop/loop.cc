#include "eventloop/loop.h"

#include <cassert>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <utility>

#include "eventloop/timer_heap.h"

namespace h2loop::ev {

std::string_view toString(DetachOutcome outcome) {
  switch (outcome) {
    case DetachOutcome::kDetached:
      return "detached";
    case DetachOutcome::kFdInvalid:
      return "fd-invalid";
    case DetachOutcome::kFdGone:
      return "fd-gone";
    case DetachOutcome::kAlreadyClosed:
      return "already-closed";
  }
  return "unknown";
}

// ---- IoWatch ---------------------------------------------------------------

IoWatch::IoWatch(Loop& loop, int fd, uint32_t interest, Callback cb)
    : loop_(loop), fd_(fd), interest_(interest & (kRead | kWrite | kHangup)), cb_(std::move(cb)) {
  loop_.watches_.add(1);
}

IoWatch::~IoWatch() {
  loop_.checkLoopThread("IoWatch::~IoWatch()");
  if (destroyed_flag_) *destroyed_flag_ = true;
  close();
  loop_.watches_.sub(1);
}

int IoWatch::setInterest(uint32_t interest) {
  loop_.checkLoopThread("IoWatch::setInterest()");
  interest &= (kRead | kWrite | kHangup);
  if (closed_ || interest == interest_) return 0;
  if (!registered_) return registration_error_;
  int err = loop_.backendModify(this, interest);
  if (err == 0) interest_ = interest;
  return err;
}

DetachOutcome IoWatch::close() {
  loop_.checkLoopThread("IoWatch::close()");
  if (closed_) return DetachOutcome::kAlreadyClosed;
  closed_ = true;
  dropActivation();
  // No early return below: every branch ends with the watch closed and the
  // counters right, and the caller goes on to its final destruction.
  DetachOutcome outcome;
  if (registered_) {
    registered_ = false;
    loop_.registered_.sub(1);
    const int err = loop_.backendDetach(this);
    outcome = err == 0 ? DetachOutcome::kDetached : DetachOutcome::kFdGone;
  } else {
    outcome = fd_ < 0 ? DetachOutcome::kFdInvalid : DetachOutcome::kFdGone;
  }
  return outcome;
}

void IoWatch::activate(uint32_t ready) {
  loop_.checkLoopThread("IoWatch::activate()");
  if (closed_ || ready == 0) return;
  if (activated_ == 0) {
    activation_slot_ = loop_.activated_.size();
    loop_.activated_.push_back(this);
    const bool first = loop_.activations_pending_.get() == 0;
    loop_.activations_pending_.add(1);
    if (first) loop_.backendActivated();
  }
  activated_ |= ready;
}

void IoWatch::dropActivation() {
  if (activated_ == 0) return;
  activated_ = 0;
  loop_.activated_[activation_slot_] = nullptr;
  loop_.activations_pending_.sub(1);
}

// ---- Timer -----------------------------------------------------------------

Timer::Timer(Loop& loop, Callback cb) : loop_(loop), cb_(std::move(cb)) {
  loop_.timers_.add(1);
}

Timer::~Timer() {
  loop_.checkLoopThread("Timer::~Timer()");
  if (destroyed_flag_) *destroyed_flag_ = true;
  cancel();
  loop_.timers_.sub(1);
}

void Timer::arm(Duration after) {
  loop_.checkLoopThread("Timer::arm()");
  if (after < Duration::zero()) after = Duration::zero();
  TimerHeap& heap = *loop_.timer_heap_;
  const Timer* old_top = heap.empty() ? nullptr : heap.top();
  const Clock::time_point old_deadline = old_top ? old_top->deadline_ : Clock::time_point{};
  if (armed_) heap.remove(this);
  armed_ = true;
  deadline_ = loop_.now() + after;
  sequence_ = ++loop_.timer_sequence_;
  heap.push(this);
  loop_.armed_timers_.set(heap.size());
  if (heap.top() != old_top || heap.top()->deadline_ != old_deadline) {
    loop_.backendTimersChanged();
  }
}

void Timer::cancel() {
  loop_.checkLoopThread("Timer::cancel()");
  if (!armed_) return;
  armed_ = false;
  TimerHeap& heap = *loop_.timer_heap_;
  const bool was_top = heap.top() == this;
  heap.remove(this);
  loop_.armed_timers_.set(heap.size());
  if (was_top) loop_.backendTimersChanged();
}

// ---- Loop ------------------------------------------------------------------

Loop::Loop() : now_(Clock::now()), timer_heap_(std::make_unique<TimerHeap>()) {}

Loop::~Loop() {
  // Backends ran shutdownCommon() already; this catches a backend that forgot
  // (only deletions that need no backend can still run safely here).
  drainDeferred();
  assert(watches_.get() == 0 && "IoWatch outlived its Loop");
  assert(timers_.get() == 0 && "Timer outlived its Loop");
}

void Loop::shutdownCommon() {
  drainDeferred();
  std::vector<std::function<void()>> dropped;
  {
    std::lock_guard<std::mutex> lock(post_mutex_);
    dropped.swap(posted_);
  }
  dropped.clear();  // their captures may schedule deletions
  drainDeferred();
}

std::unique_ptr<IoWatch> Loop::watch(int fd, uint32_t interest, IoWatch::Callback cb) {
  checkLoopThread("Loop::watch()");
  std::unique_ptr<IoWatch> w(new IoWatch(*this, fd, interest, std::move(cb)));
  // A failed registration leaves the watch open but unregistered: it never
  // calls back, and its close() reports kFdInvalid / kFdGone like any other.
  if (fd < 0) {
    w->registration_error_ = EBADF;
    return w;
  }
  const int err = backendAdd(w.get(), w->interest_);
  if (err != 0) {
    w->registration_error_ = err;
    return w;
  }
  w->registered_ = true;
  registered_.add(1);
  return w;
}

std::unique_ptr<Timer> Loop::timer(Timer::Callback cb) {
  checkLoopThread("Loop::timer()");
  return std::unique_ptr<Timer>(new Timer(*this, std::move(cb)));
}

void Loop::post(std::function<void()> fn) {
  bool was_empty;
  {
    std::lock_guard<std::mutex> lock(post_mutex_);
    was_empty = posted_.empty();
    posted_.push_back(std::move(fn));
  }
  // The backend drains its wake-up signal before taking the queue, so a post
  // that finds the queue non-empty is always picked up by a pending pass.
  if (was_empty) backendWakeup();
}

void Loop::deferredDelete(std::unique_ptr<DeferredDeletable> object) {
  checkLoopThread("Loop::deferredDelete()");
  if (!object) return;
  deferred_.push_back(std::move(object));
  pending_deletions_.set(deferred_.size());
}

void Loop::drainDeferred() {
  checkLoopThread("Loop::drainDeferred()");
  if (draining_now_) return;  // a destructor deferring more: the outer drain loops
  draining_now_ = true;
  while (!deferred_.empty()) {
    draining_.swap(deferred_);
    pending_deletions_.set(deferred_.size());
    for (auto& object : draining_)
      object.reset();  // FIFO, one by one
    draining_.clear();
  }
  draining_now_ = false;
}

void Loop::run() {
  bindIfUnbound();
  checkLoopThread("Loop::run()");
  running_.store(true, std::memory_order_relaxed);
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(post_mutex_);
      if (stop_requested_) {
        stop_requested_ = false;
        break;
      }
    }
    updateNow();
    backendRunOnce(!hasPendingWork());
    runActivated();
    drainDeferred();
  }
  running_.store(false, std::memory_order_relaxed);
}

void Loop::stop() {
  {
    std::lock_guard<std::mutex> lock(post_mutex_);
    stop_requested_ = true;
  }
  backendWakeup();
}

bool Loop::isLoopThread() const {
  const std::thread::id bound = loop_thread_.load(std::memory_order_acquire);
  return bound == std::thread::id{} || bound == std::this_thread::get_id();
}

void Loop::bindToCurrentThread() {
  assert((!running_.load(std::memory_order_relaxed) || isLoopThread()) &&
         "bindToCurrentThread() while run() is active on another thread");
  loop_thread_.store(std::this_thread::get_id(), std::memory_order_release);
}

void Loop::bindIfUnbound() {
  // One relaxed load per dispatch; the store happens once per loop.
  if (loop_thread_.load(std::memory_order_relaxed) == std::thread::id{}) {
    loop_thread_.store(std::this_thread::get_id(), std::memory_order_release);
  }
}

void Loop::checkLoopThread([[maybe_unused]] const char* what) const {
#ifndef NDEBUG
  if (!isLoopThread()) offLoopThread(what);
#endif
}

void Loop::offLoopThread(const char* what) const {
  // No name(): this may run inside ~Loop, where the backend is gone.
  std::ostringstream msg;
  msg << "h2loop: " << what << " called off the loop's thread (bound to thread "
      << loop_thread_.load() << ", called from thread " << std::this_thread::get_id() << ")\n";
  std::fputs(msg.str().c_str(), stderr);
  std::abort();
}

bool Loop::hasPendingWork() const {
  if (!deferred_.empty() || activations_pending_.get() != 0) return true;
  std::lock_guard<std::mutex> lock(post_mutex_);
  return !posted_.empty() || stop_requested_;
}

LoopStats Loop::stats() const {
  LoopStats s;
  s.watches = watches_.get();
  s.registered = registered_.get();
  s.timers = timers_.get();
  s.armed_timers = armed_timers_.get();
  s.pending_deletions = pending_deletions_.get();
  s.pending_activations = activations_pending_.get();
  std::lock_guard<std::mutex> lock(post_mutex_);
  s.pending_posts = posted_.size();
  return s;
}

// The callable is moved out for the duration of the call, so a callback that
// destroys its own watch or timer can go on using its captures; it is moved
// back only if the object survived.
void Loop::dispatchIo(IoWatch* w, uint32_t ready) {
  bindIfUnbound();
  checkLoopThread("Loop::dispatchIo()");
  if (!w->closed_) {
    IoWatch::Callback cb = std::move(w->cb_);
    bool destroyed = false;
    w->destroyed_flag_ = &destroyed;
    cb(ready);
    if (!destroyed) {
      w->destroyed_flag_ = nullptr;
      w->cb_ = std::move(cb);
    }
  }
  drainDeferred();
}

void Loop::runExpiredTimers() {
  bindIfUnbound();
  checkLoopThread("Loop::runExpiredTimers()");
  TimerHeap& heap = *timer_heap_;
  if (heap.empty()) return;
  const uint64_t horizon = timer_sequence_;
  while (!heap.empty()) {
    Timer* t = heap.top();
    if (t->deadline_ > now_ || t->sequence_ > horizon) break;
    heap.remove(t);
    armed_timers_.set(heap.size());
    t->armed_ = false;
    Timer::Callback cb = std::move(t->cb_);
    bool destroyed = false;
    t->destroyed_flag_ = &destroyed;
    cb();
    if (!destroyed) {
      t->destroyed_flag_ = nullptr;
      t->cb_ = std::move(cb);
    }
    drainDeferred();
  }
}

void Loop::runActivated() {
  bindIfUnbound();
  checkLoopThread("Loop::runActivated()");
  // Only the slots queued before this call: a watch that re-activates itself
  // waits for the next iteration, after the next poll for I/O.
  const size_t batch = activated_.size();
  for (size_t i = 0; i < batch; ++i) {
    IoWatch* w = activated_[i];
    if (w == nullptr) continue;  // dropped by close()
    activated_[i] = nullptr;
    const uint32_t ready = w->activated_;
    w->activated_ = 0;
    activations_pending_.sub(1);
    dispatchIo(w, ready);
  }
  // Queued meanwhile: move to the front, slots renumbered.
  activated_.erase(activated_.begin(), activated_.begin() + static_cast<std::ptrdiff_t>(batch));
  for (size_t i = 0; i < activated_.size(); ++i) {
    if (activated_[i] != nullptr) activated_[i]->activation_slot_ = i;
  }
}

const Clock::time_point* Loop::nextDeadline() const {
  return timer_heap_->empty() ? nullptr : &timer_heap_->top()->deadline_;
}

void Loop::runPosted() {
  bindIfUnbound();
  checkLoopThread("Loop::runPosted()");
  std::vector<std::function<void()>> batch;
  {
    std::lock_guard<std::mutex> lock(post_mutex_);
    batch.swap(posted_);
  }
  for (auto& fn : batch) {
    fn();
    fn = nullptr;  // release captures now, in order
    drainDeferred();
  }
}

}  // namespace h2loop::ev
