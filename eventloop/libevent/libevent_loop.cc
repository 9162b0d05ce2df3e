#include "eventloop/libevent/libevent_loop.h"

#include <event2/event.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>
#include <system_error>

namespace h2loop::ev {
namespace {

class LibeventLoop final : public Loop {
 public:
  LibeventLoop(event_base* base, bool owned) : base_(base), owned_(owned) {
    if (base_ == nullptr) throw std::runtime_error("event_base_new failed");
    early_close_ = (event_base_get_features(base_) & EV_FEATURE_EARLY_CLOSE) != 0;
    wakefd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wakefd_ < 0) {
      const int err = errno;
      if (owned_) event_base_free(base_);
      throw std::system_error(err, std::generic_category(), "eventfd");
    }
    wake_ev_ = event_new(base_, wakefd_, EV_READ | EV_PERSIST, &LibeventLoop::onWake, this);
    timer_ev_ = event_new(base_, -1, 0, &LibeventLoop::onTimer, this);
    activate_ev_ = event_new(base_, -1, 0, &LibeventLoop::onActivate, this);
    if (wake_ev_ == nullptr || timer_ev_ == nullptr || activate_ev_ == nullptr ||
        event_add(wake_ev_, nullptr) != 0) {
      if (wake_ev_) event_free(wake_ev_);
      if (timer_ev_) event_free(timer_ev_);
      if (activate_ev_) event_free(activate_ev_);
      ::close(wakefd_);
      if (owned_) event_base_free(base_);
      throw std::runtime_error("libevent: cannot register the wake-up event");
    }
  }

  ~LibeventLoop() override {
    shutdownCommon();
    event_free(timer_ev_);  // event_free deletes a pending event first
    event_free(activate_ev_);
    event_free(wake_ev_);
    ::close(wakefd_);
    if (owned_) event_base_free(base_);
  }

  std::string_view name() const override { return "libevent"; }

 protected:
  // One record per registration; the events point at it, not at the IoWatch.
  struct Reg {
    LibeventLoop* loop;
    IoWatch* watch;
    event* rd;
    event* wr;
    event* cl;  // EV_CLOSED alone: kHangup interest (null without early close)
  };

  int backendAdd(IoWatch* w, uint32_t interest) override {
    const int fd = w->fd();
    if (::fcntl(fd, F_GETFD) < 0) return errno;  // libevent would accept a dead fd silently
    auto* reg = new Reg{this, w, nullptr, nullptr, nullptr};
    reg->rd = event_new(base_, fd, EV_READ | EV_PERSIST, &LibeventLoop::onIo, reg);
    // The peer's FIN under write interest alone (kHangup in loop.h): EV_CLOSED
    // (EPOLLRDHUP), where the base's method supports it. Under read
    // interest the FIN is readable anyway.
    const short closed = early_close_ ? EV_CLOSED : 0;
    reg->wr = event_new(base_, fd, EV_WRITE | closed | EV_PERSIST, &LibeventLoop::onIo, reg);
    if (early_close_)
      reg->cl = event_new(base_, fd, EV_CLOSED | EV_PERSIST, &LibeventLoop::onIo, reg);
    if (reg->rd == nullptr || reg->wr == nullptr || (early_close_ && reg->cl == nullptr)) {
      freeReg(reg);
      return ENOMEM;
    }
    backendRecord(w) = reg;
    const int err = apply(reg, kNone, interest);
    if (err != 0) {
      backendRecord(w) = nullptr;
      freeReg(reg);
    }
    return err;
  }

  int backendModify(IoWatch* w, uint32_t interest) override {
    return apply(static_cast<Reg*>(backendRecord(w)), w->interest(), interest);
  }

  int backendDetach(IoWatch* w) override {
    auto* reg = static_cast<Reg*>(backendRecord(w));
    backendRecord(w) = nullptr;
    // libevent treats EBADF/ENOENT from epoll_ctl(DEL) as success and says
    // nothing, so ask the fd itself whether it still exists.
    const int result = ::fcntl(w->fd(), F_GETFD) < 0 && errno == EBADF ? EBADF : 0;
    // event_free() also removes the events from libevent's active queue, so
    // a callback already collected in this batch is never delivered.
    freeReg(reg);
    return result;
  }

  void backendTimersChanged() override {
    const Clock::time_point* deadline = nextDeadline();
    if (deadline == nullptr) {
      event_del(timer_ev_);
      return;
    }
    // Already programmed to fire at or before the new earliest deadline:
    // leave it. libevent takes an event that expired in this pass off its
    // active list when it is added again, so a watch that is ready on every
    // pass and re-arms a timer from its callback would starve that timer
    // forever. An early wake-up is harmless (onTimer runs nothing expired
    // and programs the next deadline).
    if (event_pending(timer_ev_, EV_TIMEOUT, nullptr) != 0 && programmed_ <= *deadline) return;
    programmed_ = *deadline;
    auto left = *deadline - Clock::now();
    if (left < Duration::zero()) left = Duration::zero();
    const auto us = std::chrono::ceil<std::chrono::microseconds>(left).count();
    timeval tv{static_cast<time_t>(us / 1'000'000), static_cast<suseconds_t>(us % 1'000'000)};
    event_add(timer_ev_, &tv);
  }

  void backendRunOnce(bool may_block) override {
    // ONCE alone, or ONCE|NONBLOCK: NONBLOCK alone keeps looping while a
    // level-triggered fd stays ready.
    event_base_loop(base_, may_block ? EVLOOP_ONCE : EVLOOP_ONCE | EVLOOP_NONBLOCK);
  }

  void backendWakeup() override {
    const uint64_t one = 1;
    ssize_t rc;
    do {
      rc = ::write(wakefd_, &one, sizeof one);
    } while (rc < 0 && errno == EINTR);
  }

  // An application running the base itself (embedding) never calls
  // Loop::run(): a zero timeout has libevent deliver the activations on its
  // next pass. Not event_active(): libevent runs events activated from a
  // callback in the same pass, so a watch re-activating itself would spin.
  void backendActivated() override {
    static const timeval kZero{0, 0};
    event_add(activate_ev_, &kZero);
  }

 private:
  int apply(Reg* reg, uint32_t from, uint32_t to) {
    if ((from ^ to) & kRead) {
      if ((to & kRead) ? event_add(reg->rd, nullptr) : event_del(reg->rd)) return EBADF;
    }
    if ((from ^ to) & kWrite) {
      if ((to & kWrite) ? event_add(reg->wr, nullptr) : event_del(reg->wr)) return EBADF;
    }
    if (((from ^ to) & kHangup) && reg->cl != nullptr) {
      if ((to & kHangup) ? event_add(reg->cl, nullptr) : event_del(reg->cl)) return EBADF;
    }
    return 0;
  }

  static void freeReg(Reg* reg) {
    if (reg->rd) event_free(reg->rd);
    if (reg->wr) event_free(reg->wr);
    if (reg->cl) event_free(reg->cl);
    delete reg;
  }

  static void onIo(evutil_socket_t, short what, void* arg) {
    auto* reg = static_cast<Reg*>(arg);
    LibeventLoop* loop = reg->loop;
    uint32_t ready = 0;
    if (what & EV_READ) ready |= kRead;
    if (what & EV_WRITE) ready |= kWrite;
    if (what & EV_CLOSED) ready |= kHangup;
    loop->updateNow();
    // `reg` may be freed by the callback; only `loop` is used afterwards.
    loop->dispatchIo(reg->watch, ready);
  }

  static void onWake(evutil_socket_t fd, short, void* arg) {
    auto* loop = static_cast<LibeventLoop*>(arg);
    uint64_t value;
    while (::read(fd, &value, sizeof value) > 0) {
    }
    loop->updateNow();
    loop->runPosted();
  }

  static void onActivate(evutil_socket_t, short, void* arg) {
    auto* loop = static_cast<LibeventLoop*>(arg);
    loop->updateNow();
    loop->runActivated();
  }

  static void onTimer(evutil_socket_t, short, void* arg) {
    auto* loop = static_cast<LibeventLoop*>(arg);
    loop->updateNow();
    loop->runExpiredTimers();
    // Program the next deadline (also when nothing had expired yet because
    // libevent's clock woke us a little early).
    loop->backendTimersChanged();
  }

  event_base* base_;
  bool owned_;
  int wakefd_ = -1;
  event* wake_ev_ = nullptr;
  event* timer_ev_ = nullptr;
  event* activate_ev_ = nullptr;
  Clock::time_point programmed_{};  // the deadline timer_ev_ was last added for
  bool early_close_ = false;
};

}  // namespace

std::unique_ptr<Loop> makeLibeventLoop() {
  event_config* cfg = event_config_new();
  if (cfg == nullptr) throw std::runtime_error("event_config_new failed");
  // Precise monotonic time, so timers do not fire up to a tick early.
  event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
  event_base* base = event_base_new_with_config(cfg);
  event_config_free(cfg);
  return std::make_unique<LibeventLoop>(base, true);
}

std::unique_ptr<Loop> makeLibeventLoop(event_base* base) {
  return std::make_unique<LibeventLoop>(base, false);
}

}  // namespace h2loop::ev
