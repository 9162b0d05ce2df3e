#pragma once

// The event-loop interface of h2loop.
//
// One abstract Loop with what a server needs and nothing more: I/O watches,
// timers, a thread-safe post(), deferred deletion, run/stop and a cached
// monotonic clock. Backends (eventloop/libevent, eventloop/custom) implement
// the small protected contract at the bottom of Loop; no backend type ever
// appears in this header.
//
// Threading: a Loop and everything created from it (watches, timers,
// deferred deletions) belong to the thread that runs it. The only members
// callable from any thread are post(), stop(), stats() and isLoopThread():
// stats' counters are atomics written by the loop's thread alone
// (detail::LoopCounter), so a read never blocks or wakes the loop. Nothing
// else is synchronised. The loop's thread is bound by the first run(), or,
// for a loop someone else drives (libevent embedding: the application's
// thread runs event_base_dispatch and never calls run()), by the first
// callback the backend dispatches; bindToCurrentThread() hands it over.
// Before that any thread may set the loop up (a worker built on the main
// thread and started on its own). Debug builds (NDEBUG unset) abort with a
// message when a loop-affine call comes from another thread; release builds
// check nothing.
//
// Writing a backend for your own loop
// -----------------------------------
// Derive from Loop and implement the "backend contract" (five pure virtual
// members and one optional hook, each documented below), then instantiate the shared contract suite
// in tests/eventloop/loop_contract.h with your factory (one line, see
// tests/eventloop/backends_test.cc). The contract, in short:
//   * A watch is registered at creation; its interest can change any number of
//     times without re-registering it (backendModify).
//   * Readiness is delivered level-triggered: while an fd is readable and read
//     interest is set, the callback keeps being called, once per iteration.
//   * A watch that was closed (or destroyed) never receives another callback,
//     even for an event the backend already collected in the current batch.
//   * backendDetach never fails: an fd that is -1, already closed (EBADF) or
//     unknown to the kernel (ENOENT, EPERM) is reported, not treated as error.
//   * Timers fire once per arm(), in deadline order (ties: arming order); the
//     heap is shared code, the backend only sleeps until nextDeadline().
//   * After every callback the backend dispatches (I/O, timer, wake-up), it
//     calls drainDeferred() (dispatchIo and runExpiredTimers do it for you).
//   * Activations (IoWatch::activate) are run by the shared Loop::run(); a
//     backend that can be driven by someone else's loop (libevent embedding)
//     overrides backendActivated() to get runActivated() called soon.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string_view>
#include <thread>
#include <vector>

namespace h2loop::ev {

class TimerHeap;

using Clock = std::chrono::steady_clock;
using Duration = std::chrono::nanoseconds;

// Readiness and interest bits. Interest uses kRead/kWrite, and kHangup: an
// owner that holds its input back (interest kHangup without kRead) is not
// woken by pending data, yet learns that the peer closed (a FIN, even behind
// unread data; a RST). With libevent, only where the method has
// EV_FEATURE_EARLY_CLOSE (epoll), and a RST is not seen (libevent turns
// EPOLLHUP into EV_READ|EV_WRITE, without EV_CLOSED). Readiness may
// also carry kHangup (the peer closed its sending side, or both) and kError
// (socket error pending, e.g. after a RST). Both are reported under any
// non-empty interest, so an owner that paused reading (write interest only)
// still learns that its peer is gone; it must then act (read to the EOF, or
// close), since readiness is level-triggered. A callback that sees
// kHangup/kError should read: the read returns the precise reason (eof,
// reset). (libevent reports a FIN under write interest alone only with a
// method that has EV_FEATURE_EARLY_CLOSE, such as epoll.)
enum Events : uint32_t {
  kNone = 0,
  kRead = 1u << 0,
  kWrite = 1u << 1,
  kHangup = 1u << 2,
  kError = 1u << 3,
};

// What a logical close of a watch found. Whatever the outcome, the watch is
// closed afterwards and will never call back again; the owner's final
// destruction must follow on every outcome — none of them is a reason to stop.
enum class DetachOutcome {
  kDetached,       // the fd was valid and is no longer watched
  kFdInvalid,      // the watch was created on fd -1 (never registered)
  kFdGone,         // the fd had been closed behind the watch's back (EBADF/ENOENT/EPERM)
  kAlreadyClosed,  // close() had been called before: nothing to do
};

std::string_view toString(DetachOutcome outcome);

class Loop;

namespace detail {
// A counter with one writer (the loop's thread) and readers on any thread
// (Loop::stats()). The writer does a relaxed load and a relaxed store, never
// a read-modify-write, so on the hot path (a watch or timer per connection,
// an arm per request) it compiles to the same plain load/add/store as a
// size_t member: no locked instruction, no fence. Correct only because every
// write happens on the loop's thread (see "Threading" above).
class LoopCounter {
 public:
  void add(size_t n) {
    value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void sub(size_t n) {
    value_.store(value_.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
  }
  void set(size_t n) { value_.store(n, std::memory_order_relaxed); }
  [[nodiscard]] size_t get() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<size_t> value_{0};
};
}  // namespace detail

// A registration of interest in one fd. Created by Loop::watch(); owned by
// the caller through std::unique_ptr. It does not own the fd: the owner closes
// the fd, preferably after close() (closing first is tolerated: kFdGone).
//
// The callback may do anything, including destroying this watch (its captures
// stay valid until it returns), another watch, or handing its owner to
// Loop::deferredDelete(). Destroying a watch implies close().
class IoWatch final {
 public:
  using Callback = std::function<void(uint32_t ready)>;

  IoWatch(const IoWatch&) = delete;
  IoWatch& operator=(const IoWatch&) = delete;
  ~IoWatch();

  // Changes the interest (kRead | kWrite | kHangup, or kNone to pause). Cheap when
  // unchanged. No effect after close(). Returns 0, or the errno of a backend
  // that could not apply it (EBADF: the fd is gone; the owner should close).
  int setInterest(uint32_t interest);
  [[nodiscard]] uint32_t interest() const { return interest_; }
  [[nodiscard]] int fd() const { return fd_; }
  [[nodiscard]] bool closed() const { return closed_; }
  // errno of the failed registration (EBADF for fd -1), 0 when registered.
  [[nodiscard]] int registrationError() const { return registration_error_; }

  // Logical close: detaches from the backend if the fd is still valid; an
  // invalid or vanished fd is reported in the outcome, never an early return.
  // Idempotent. After it returns the callback is never called again.
  DetachOutcome close();

  // Delivers `ready` to the callback on the next loop iteration whether or
  // not the fd is ready (libev's ev_feed_event, libevent's event_active).
  // For input that waits in user space where the kernel cannot report it
  // (TLS records already read into the SSL object). Bits of repeated calls
  // before the delivery are merged; one delivery per iteration at most, so a
  // callback that re-activates itself cannot starve I/O or timers. A closed
  // watch drops its pending activation. No effect after close().
  void activate(uint32_t ready);
  [[nodiscard]] bool activated() const { return activated_ != 0; }

 private:
  friend class Loop;
  IoWatch(Loop& loop, int fd, uint32_t interest, Callback cb);
  void dropActivation();

  Loop& loop_;
  int fd_;
  uint32_t interest_;
  bool closed_ = false;
  bool registered_ = false;
  int registration_error_ = 0;
  Callback cb_;
  bool* destroyed_flag_ = nullptr;  // set while the callback runs
  void* backend_ = nullptr;         // the backend's per-registration record
  uint32_t activated_ = 0;          // readiness queued by activate()
  size_t activation_slot_ = 0;      // its slot in Loop::activated_ while queued
};

// A one-shot timer that can be re-armed. Created by Loop::timer(). Arming an
// armed timer moves its deadline. cancel() and destruction are safe anywhere,
// including inside the timer's own callback.
class Timer final {
 public:
  using Callback = std::function<void()>;

  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;
  ~Timer();

  void arm(Duration after);
  void cancel();
  [[nodiscard]] bool armed() const { return armed_; }
  [[nodiscard]] Clock::time_point deadline() const { return deadline_; }
  // Arming order, used by backends to break deadline ties (FIFO).
  [[nodiscard]] uint64_t sequence() const { return sequence_; }

 private:
  friend class Loop;
  friend class TimerHeap;
  Timer(Loop& loop, Callback cb);

  Loop& loop_;
  Callback cb_;
  bool armed_ = false;
  Clock::time_point deadline_{};
  uint64_t sequence_ = 0;
  size_t heap_index_ = 0;
  bool* destroyed_flag_ = nullptr;  // set while the callback runs
};

// Base of anything handed to Loop::deferredDelete().
class DeferredDeletable {
 public:
  virtual ~DeferredDeletable() = default;
};

struct LoopStats {
  size_t watches = 0;              // live IoWatch objects (closed or not)
  size_t registered = 0;           // watches still registered with the backend
  size_t timers = 0;               // live Timer objects
  size_t armed_timers = 0;         // of which armed
  size_t pending_deletions = 0;    // objects waiting in the deferred-delete list
  size_t pending_posts = 0;        // functions waiting to run from post()
  size_t pending_activations = 0;  // watches with an undelivered activate()
};

class Loop {
 public:
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;
  // Runs every pending deferred deletion (including ones scheduled by those
  // deletions) and discards posted functions that never ran. Watches and
  // timers must be gone by then (they reference the loop); owners handed to
  // deferredDelete() take theirs with them.
  virtual ~Loop();

  // Loop-affine (debug builds assert isLoopThread()): watch(), timer(),
  // deferredDelete(), run(), drainDeferred(), and IoWatch::setInterest /
  // close / activate, Timer::arm / cancel and both destructors. Any thread:
  // post(), stop(), stats(), isLoopThread(), bindToCurrentThread().

  // Watches `fd` with `interest`. On a registration failure (fd -1, EBADF)
  // the watch is still returned, unregistered (it never calls back), with
  // registrationError() set: its owner closes through the same path as every
  // other, and close() reports kFdInvalid or kFdGone.
  [[nodiscard]] std::unique_ptr<IoWatch> watch(int fd, uint32_t interest, IoWatch::Callback cb);
  [[nodiscard]] std::unique_ptr<Timer> timer(Timer::Callback cb);

  // Runs `fn` on the loop's thread, soon, in posting order. Callable from any
  // thread (including the loop's own); wakes the loop.
  void post(std::function<void()> fn);

  // Destroys `object` after the current callback returns, first in first out.
  // Objects scheduled while the list drains are destroyed in the same drain.
  void deferredDelete(std::unique_ptr<DeferredDeletable> object);

  // Runs until stop(). Returns immediately if stop() was called before (the
  // request is consumed). The first call binds the loop to the calling
  // thread; later calls must come from that thread.
  void run();
  // Makes run() return after the current callback. Any thread.
  void stop();

  // Monotonic time cached at the start of each iteration.
  [[nodiscard]] Clock::time_point now() const { return now_; }
  void updateNow() { now_ = Clock::now(); }

  [[nodiscard]] virtual std::string_view name() const = 0;
  // Any thread, lock-free except pending_posts (the post mutex). Each field
  // is exact at the instant it is read; fields are read one after another,
  // so while the loop runs they need not describe the same instant (e.g.
  // armed_timers may count a timer created after `timers` was read).
  [[nodiscard]] LoopStats stats() const;

  // Runs the deferred deletions now. Backends call it after each callback;
  // it is public for embedders that drive the loop themselves.
  void drainDeferred();

  // True when the calling thread may make loop-affine calls: the loop's
  // thread is not bound yet (set-up), or it is the calling thread. Any
  // thread.
  [[nodiscard]] bool isLoopThread() const;
  // Makes the calling thread the loop's thread: hands the loop over once
  // its thread is done with it, e.g. to the thread that joined a worker and
  // now destroys it, or to the thread that will dispatch an embedded base.
  // The previous thread's last use must happen-before this call (join) and
  // it must not touch the loop again. Debug builds assert that run() is not
  // active on another thread.
  void bindToCurrentThread();

 protected:
  Loop();

  // ---- backend contract -------------------------------------------------
  // Each backend keeps its own per-watch and per-timer record and maps the
  // IoWatch*/Timer* to it. All calls happen on the loop thread.

  // Registers `w` (w->fd() >= 0) for `interest`. Returns 0 or errno.
  virtual int backendAdd(IoWatch* w, uint32_t interest) = 0;
  // Changes the interest of a registered watch. Returns 0 or errno.
  virtual int backendModify(IoWatch* w, uint32_t interest) = 0;
  // Unregisters `w`; `w` must not be called back afterwards, even for events
  // already collected. Returns 0, or EBADF/ENOENT/EPERM when the fd vanished.
  virtual int backendDetach(IoWatch* w) = 0;
  // Timers live in a heap shared by all backends (TimerHeap). A backend only
  // has to wake up by nextDeadline() and call runExpiredTimers(). Called
  // whenever the earliest deadline changed; a backend that computes its
  // timeout before each wait (epoll) need not override it.
  virtual void backendTimersChanged() {}
  // Blocks for events (at most until nextDeadline()) and dispatches them once
  // (one iteration): dispatchIo() per ready watch, runPosted() on wake-up,
  // runExpiredTimers() after the I/O. `may_block` is false when work is
  // already pending.
  virtual void backendRunOnce(bool may_block) = 0;
  // Wakes a backendRunOnce() blocked on another thread. Any thread.
  virtual void backendWakeup() = 0;
  // Called when the first activation is queued. Loop::run() delivers them
  // after each backendRunOnce() (and does not block while any is queued); a
  // backend whose base may be run by an embedding application instead makes
  // sure runActivated() is called soon (libevent: event_active).
  virtual void backendActivated() {}

  // ---- for backends ------------------------------------------------------
  // Delivers readiness to `w` unless it was closed meanwhile; then drains.
  void dispatchIo(IoWatch* w, uint32_t ready);
  // Fires the timers whose deadline is <= now(), earliest first, each
  // followed by a drain. Timers armed meanwhile wait for the next call, so a
  // zero-delay re-arm cannot spin.
  void runExpiredTimers();
  // Earliest armed deadline, or nullptr when no timer is armed.
  [[nodiscard]] const Clock::time_point* nextDeadline() const;
  // Runs the functions queued by post(); called by the backend on wake-up.
  void runPosted();
  // Delivers the activations queued before the call, in activation order.
  void runActivated();
  // Backends call this first thing in their destructor, while the backend is
  // still whole: it runs the deferred deletions (their owners' watches and
  // timers detach through the backend) and drops posted functions.
  void shutdownCommon();
  [[nodiscard]] bool hasPendingWork() const;

  static void*& backendRecord(IoWatch* w) { return w->backend_; }

 private:
  friend class IoWatch;
  friend class Timer;
  // Debug builds: aborts with `what` unless isLoopThread(). Release: nothing.
  void checkLoopThread(const char* what) const;
  [[noreturn]] void offLoopThread(const char* what) const;
  // Binds the calling thread if none is bound yet: at run(), and at every
  // dispatch (an embedded loop is never run(); its first callback binds it).
  void bindIfUnbound();

  std::atomic<std::thread::id> loop_thread_{};  // std::thread::id{}: not bound yet
  std::atomic<bool> running_{false};            // inside run()
  Clock::time_point now_;
  // Read by stats() on any thread; written on the loop's thread only.
  detail::LoopCounter watches_;
  detail::LoopCounter registered_;
  detail::LoopCounter timers_;
  detail::LoopCounter armed_timers_;       // mirrors timer_heap_->size()
  detail::LoopCounter pending_deletions_;  // mirrors deferred_.size()
  uint64_t timer_sequence_ = 0;
  std::unique_ptr<TimerHeap> timer_heap_;

  std::vector<std::unique_ptr<DeferredDeletable>> deferred_;
  std::vector<std::unique_ptr<DeferredDeletable>> draining_;
  bool draining_now_ = false;

  // Queued by IoWatch::activate, in order; a dropped activation leaves a
  // null slot (O(1)), swept by the next runActivated().
  std::vector<IoWatch*> activated_;
  detail::LoopCounter activations_pending_;  // non-null slots

  mutable std::mutex post_mutex_;
  std::vector<std::function<void()>> posted_;  // guarded by post_mutex_
  bool stop_requested_ = false;                // guarded by post_mutex_
};

}  // namespace h2loop::ev
