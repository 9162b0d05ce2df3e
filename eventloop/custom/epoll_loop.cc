#include "eventloop/custom/epoll_loop.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <system_error>
#include <vector>

namespace h2loop::ev {
namespace {

uint32_t toEpoll(uint32_t interest) {
  uint32_t events = 0;
  if (interest & kRead) events |= EPOLLIN;
  if (interest & kWrite) events |= EPOLLOUT;
  // The peer's FIN is reported under any interest (see kHangup in loop.h),
  // and alone under kHangup.
  if (events != 0 || (interest & kHangup)) events |= EPOLLRDHUP;
  return events;
}

uint32_t fromEpoll(uint32_t events) {
  uint32_t ready = 0;
  if (events & (EPOLLIN | EPOLLPRI)) ready |= kRead;
  if (events & EPOLLOUT) ready |= kWrite;
  if (events & (EPOLLHUP | EPOLLRDHUP)) ready |= kHangup;
  if (events & EPOLLERR) ready |= kError;
  return ready;
}

bool vanished(int err) {
  return err == ENOENT || err == EBADF || err == EPERM;
}

class EpollLoop final : public Loop {
 public:
  EpollLoop() {
    epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd_ < 0) throw std::system_error(errno, std::generic_category(), "epoll_create1");
    wakefd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wakefd_ < 0) {
      const int err = errno;
      ::close(epoll_fd_);
      throw std::system_error(err, std::generic_category(), "eventfd");
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = &wake_marker_;
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wakefd_, &ev) != 0) {
      const int err = errno;
      ::close(wakefd_);
      ::close(epoll_fd_);
      throw std::system_error(err, std::generic_category(), "epoll_ctl(eventfd)");
    }
    events_.resize(256);
  }

  ~EpollLoop() override {
    shutdownCommon();
    freeZombies();
    for (Reg* reg : orphans_)
      delete reg;
    ::close(wakefd_);
    ::close(epoll_fd_);
  }

  std::string_view name() const override { return "epoll"; }

 protected:
  // One record per registration. epoll_event.data.ptr points here, never at
  // the IoWatch, so an event collected for a watch that was closed earlier in
  // the same batch finds watch == nullptr and is dropped. Detached records are
  // freed only after the batch.
  struct Reg {
    IoWatch* watch;
    int fd;
    bool in_kernel;  // false once the fd number was taken over by a new watch
  };

  int backendAdd(IoWatch* w, uint32_t interest) override {
    const int fd = w->fd();
    epoll_event ev{};
    ev.events = toEpoll(interest);
    auto* reg = new Reg{w, fd, true};
    ev.data.ptr = reg;
    int rc = ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
    if (rc != 0 && errno == EEXIST) {
      // The fd number is still in the kernel's set under an older record: its
      // previous owner closed it behind its watch's back and the number was
      // reused. The new watch takes the slot over; the old one is told kFdGone.
      rc = ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev);
    }
    if (rc != 0) {
      const int err = errno;
      delete reg;
      return err;
    }
    if (static_cast<size_t>(fd) >= by_fd_.size()) by_fd_.resize(fd + 1, nullptr);
    if (Reg* old = by_fd_[fd]) old->in_kernel = false;
    by_fd_[fd] = reg;
    backendRecord(w) = reg;
    return 0;
  }

  int backendModify(IoWatch* w, uint32_t interest) override {
    auto* reg = static_cast<Reg*>(backendRecord(w));
    if (!reg->in_kernel) return EBADF;
    epoll_event ev{};
    ev.events = toEpoll(interest);
    ev.data.ptr = reg;
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, reg->fd, &ev) == 0) return 0;
    if (errno == ENOENT && ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, reg->fd, &ev) == 0) return 0;
    return errno;
  }

  int backendDetach(IoWatch* w) override {
    auto* reg = static_cast<Reg*>(backendRecord(w));
    backendRecord(w) = nullptr;
    reg->watch = nullptr;
    int result = 0;
    if (!reg->in_kernel) {
      result = EBADF;  // another watch owns this fd number now: leave it alone
    } else {
      if (::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, reg->fd, nullptr) != 0) {
        const int err = errno;
        result = vanished(err) ? err : 0;
      }
      by_fd_[reg->fd] = nullptr;
    }
    if (result == EBADF) {
      // The fd number is gone but the kernel may still hold the registration
      // (a dup of the fd keeps the file description alive) and report it with
      // this record's address: keep the record, inert, until the loop ends.
      orphans_.push_back(reg);
    } else {
      zombies_.push_back(reg);
    }
    return result;
  }

  void backendRunOnce(bool may_block) override {
    int timeout = 0;
    if (may_block) timeout = timeoutMs();
    const int n =
        ::epoll_wait(epoll_fd_, events_.data(), static_cast<int>(events_.size()), timeout);
    updateNow();
    for (int i = 0; i < n; ++i) {
      void* ptr = events_[i].data.ptr;
      if (ptr == &wake_marker_) {
        uint64_t value;
        while (::read(wakefd_, &value, sizeof value) > 0) {
        }
        runPosted();
        continue;
      }
      auto* reg = static_cast<Reg*>(ptr);
      if (reg->watch != nullptr) dispatchIo(reg->watch, fromEpoll(events_[i].events));
    }
    if (n == static_cast<int>(events_.size()) && events_.size() < 4096) {
      events_.resize(events_.size() * 2);
    }
    runExpiredTimers();
    freeZombies();
  }

  void backendWakeup() override {
    const uint64_t one = 1;
    ssize_t rc;
    do {
      rc = ::write(wakefd_, &one, sizeof one);
    } while (rc < 0 && errno == EINTR);
    // EAGAIN means the counter is saturated: the loop is awake anyway.
  }

 private:
  int timeoutMs() const {
    const Clock::time_point* deadline = nextDeadline();
    if (deadline == nullptr) return -1;
    const auto left = *deadline - now();
    if (left <= Duration::zero()) return 0;
    // Round up: waking early would only spin until the deadline.
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
    return static_cast<int>(std::min<int64_t>(ms, 60'000));
  }

  void freeZombies() {
    for (Reg* reg : zombies_)
      delete reg;
    zombies_.clear();
  }

  int epoll_fd_ = -1;
  int wakefd_ = -1;
  char wake_marker_ = 0;
  std::vector<epoll_event> events_;
  std::vector<Reg*> by_fd_;
  std::vector<Reg*> zombies_;  // detached this batch, freed after it
  std::vector<Reg*> orphans_;  // detached with EBADF, freed with the loop
};

}  // namespace

std::unique_ptr<Loop> makeEpollLoop() {
  return std::make_unique<EpollLoop>();
}

}  // namespace h2loop::ev
