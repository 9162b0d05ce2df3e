// A poll(2) backend for h2loop, as a worked example of putting h2loop on an
// event loop of your own. Everything a backend has to provide is in the
// "backend contract" section of eventloop/loop.h; everything else (watches,
// timers, post(), deferred deletion, activations, run()) is shared code.
//
// The shape of one iteration (backendRunOnce):
//   1. rebuild the pollfd array if registrations changed since the last one;
//   2. poll() until an fd is ready, a wake-up arrives, or the earliest timer
//      is due (nextDeadline());
//   3. hand each ready fd to dispatchIo(), run posted functions on a wake-up,
//      then runExpiredTimers();
//   4. free the records of watches detached during the batch.

#include "examples/poll_loop/poll_loop.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <system_error>
#include <vector>

// POLLRDHUP (the peer shut down its sending side) is a Linux extension.
// Without it a peer's FIN under write interest alone is only seen once the
// peer closes completely (POLLHUP).
#ifndef POLLRDHUP
#define POLLRDHUP 0
#endif

namespace pollex {
namespace {

namespace ev = h2loop::ev;
using ev::IoWatch;

short toPoll(uint32_t interest) {
  int events = 0;
  if (interest & ev::kRead) events |= POLLIN;
  if (interest & ev::kWrite) events |= POLLOUT;
  // kHangup is due under any non-empty interest (loop.h). POLLHUP and POLLERR
  // are always reported; POLLRDHUP only when asked for.
  if (events != 0 || (interest & ev::kHangup)) events |= POLLRDHUP;
  return static_cast<short>(events);
}

uint32_t fromPoll(short revents) {
  uint32_t ready = 0;
  if (revents & POLLIN) ready |= ev::kRead;
  if (revents & POLLOUT) ready |= ev::kWrite;
  if (revents & (POLLHUP | POLLRDHUP)) ready |= ev::kHangup;
  // POLLNVAL: the fd was closed behind the watch's back. The owner's next
  // read fails with EBADF and it closes the watch.
  if (revents & (POLLERR | POLLNVAL)) ready |= ev::kError;
  return ready;
}

// True unless the fd number is closed. poll() itself would accept a closed
// fd and only report POLLNVAL later, so registration checks it up front.
bool fdIsOpen(int fd) {
  return ::fcntl(fd, F_GETFD) != -1 || errno != EBADF;
}

class PollLoop final : public ev::Loop {
 public:
  PollLoop() {
    // The wake-up channel for post()/stop() from other threads. An eventfd is
    // one fd; elsewhere a non-blocking self-pipe does the same job.
    wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd_ < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
  }

  ~PollLoop() override {
    // First, while the backend is whole: pending deferred deletions may own
    // watches, which detach through backendDetach() as they go.
    shutdownCommon();
    freeDetached();  // every watch is gone by now (Loop's rule), so are their records
    ::close(wake_fd_);
  }

  std::string_view name() const override { return "poll"; }

 protected:
  // One record per registration, stored in the watch (backendRecord(w)).
  // poll() reports by position in the pollfd array; polled_ maps a position
  // back to this record, never straight to the IoWatch: a watch closed or
  // destroyed by an earlier callback of the same batch leaves its record
  // behind with watch == nullptr, and the record is freed after the batch.
  struct Reg {
    IoWatch* watch;           // nullptr once detached
    int fd;                   // poll() knows an fd only by its number
    uint32_t interest;        // kRead | kWrite | kHangup, or kNone (not polled)
    bool superseded = false;  // the number was taken over by a newer watch
  };

  int backendAdd(IoWatch* w, uint32_t interest) override {
    const int fd = w->fd();
    if (!fdIsOpen(fd)) return EBADF;
    if (static_cast<size_t>(fd) >= by_fd_.size()) by_fd_.resize(fd + 1, nullptr);
    // The number is watched already: its previous owner closed the fd behind
    // its watch's back and the number was reused. The new watch takes the
    // number over; the old one gets EBADF from now on and no more events.
    if (Reg* old = by_fd_[fd]) old->superseded = true;
    auto* reg = new Reg{w, fd, interest};
    by_fd_[fd] = reg;
    backendRecord(w) = reg;
    dirty_ = true;
    return 0;
  }

  int backendModify(IoWatch* w, uint32_t interest) override {
    auto* reg = static_cast<Reg*>(backendRecord(w));
    if (reg->superseded || !fdIsOpen(reg->fd)) return EBADF;
    reg->interest = interest;
    dirty_ = true;  // applied by the next rebuild(), before the next poll()
    return 0;
  }

  // Never fails: the outcome only says whether the fd was still there.
  int backendDetach(IoWatch* w) override {
    auto* reg = static_cast<Reg*>(backendRecord(w));
    backendRecord(w) = nullptr;
    reg->watch = nullptr;  // an event already collected for it is dropped
    // poll() holds no kernel-side registration, so there is nothing to undo;
    // what is left is to tell whether the fd vanished behind our back. (A
    // number closed and reused by an fd nobody watches looks open: poll()
    // cannot tell the difference, epoll can.)
    const bool gone = reg->superseded || !fdIsOpen(reg->fd);
    if (!reg->superseded) by_fd_[reg->fd] = nullptr;
    detached_.push_back(reg);  // polled_ may still point at it: free later
    dirty_ = true;
    return gone ? EBADF : 0;
  }

  // No backendTimersChanged() override: the timeout is computed from
  // nextDeadline() right before every poll(), and a timer can only be armed
  // on the loop's thread, i.e. never while poll() sleeps.

  void backendRunOnce(bool may_block) override {
    if (dirty_) rebuild();
    const int n = ::poll(pfds_.data(), pfds_.size(), may_block ? timeoutMs() : 0);
    updateNow();
    // n < 0 is EINTR (a signal): no I/O this time, timers still run below.
    // Callbacks may add, modify and detach watches: that only touches the
    // records and dirty_, never pfds_/polled_, so this walk stays valid.
    for (size_t i = 0; n > 0 && i < pfds_.size(); ++i) {
      const short revents = pfds_[i].revents;
      if (revents == 0) continue;
      if (i == 0) {  // the wake-up fd
        drainWakeup();
        runPosted();
        continue;
      }
      Reg* reg = polled_[i];
      // Closed during this batch (watch == nullptr), or its number taken over
      // by another watch: the event is stale, drop it.
      if (reg->watch != nullptr && !reg->superseded) {
        dispatchIo(reg->watch, fromPoll(revents));  // also drains deferred deletions
      }
    }
    runExpiredTimers();
    freeDetached();  // the batch is over: nothing refers to these records now
  }

  // Any thread: post() and stop() call it. A write to an eventfd is
  // thread-safe; the shared code makes sure nothing posted is missed (it
  // only wakes on an empty queue, and we drain before runPosted()).
  void backendWakeup() override {
    const uint64_t one = 1;
    ssize_t rc;
    do {
      rc = ::write(wake_fd_, &one, sizeof one);
    } while (rc < 0 && errno == EINTR);
    // EAGAIN means the counter is saturated: the loop is awake anyway.
  }

 private:
  // Slot 0 is the wake-up fd, then every watch with a non-empty interest. A
  // paused watch (kNone) is left out entirely, otherwise poll() would still
  // report POLLHUP/POLLERR for it. O(highest fd) per change: plenty for an
  // example; a busier loop would patch pfds_ in place.
  void rebuild() {
    pfds_.clear();
    polled_.clear();
    pfds_.push_back({wake_fd_, POLLIN, 0});
    polled_.push_back(nullptr);
    for (Reg* reg : by_fd_) {
      if (reg == nullptr || reg->interest == ev::kNone) continue;
      pfds_.push_back({reg->fd, toPoll(reg->interest), 0});
      polled_.push_back(reg);
    }
    dirty_ = false;
  }

  void drainWakeup() {
    uint64_t value;
    while (::read(wake_fd_, &value, sizeof value) > 0) {
    }
  }

  // poll() waits in milliseconds; -1 is forever.
  int timeoutMs() const {
    const ev::Clock::time_point* deadline = nextDeadline();
    if (deadline == nullptr) return -1;
    const auto left = *deadline - now();
    if (left <= ev::Duration::zero()) return 0;
    // Round up: waking early would only spin until the deadline.
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
    return static_cast<int>(std::min<int64_t>(ms, 60'000));
  }

  void freeDetached() {
    for (Reg* reg : detached_)
      delete reg;
    detached_.clear();
  }

  int wake_fd_ = -1;
  std::vector<Reg*> by_fd_;  // fd number -> the watch that owns it now
  bool dirty_ = true;        // by_fd_ or an interest changed since rebuild()
  std::vector<pollfd> pfds_;
  std::vector<Reg*> polled_;    // polled_[i] is the record of pfds_[i]
  std::vector<Reg*> detached_;  // detached since the last batch ended
};

}  // namespace

std::unique_ptr<h2loop::ev::Loop> makePollLoop() {
  return std::make_unique<PollLoop>();
}

}  // namespace pollex
