#include "leak/fault_transport.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "net/socket_util.h"

namespace h2loop::test {

using h2loop::net::HandshakeStatus;
using h2loop::net::Interest;
using h2loop::net::IoResult;
using h2loop::net::IoStatus;

// ---- FaultLog ----------------------------------------------------------------------------------

FaultLog::~FaultLog() {
  closeDups();
}

uint64_t FaultLog::firedTotal() const {
  uint64_t total = 0;
  for (const auto& f : fired_)
    total += f.load();
  return total;
}

void FaultLog::noteAccepted(int fd) {
  std::lock_guard<std::mutex> lock(mutex_);
  accepted_.push_back(fd);
}

std::vector<int> FaultLog::acceptedFds() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return accepted_;
}

void FaultLog::keepDup(int fd) {
  std::lock_guard<std::mutex> lock(mutex_);
  dups_.push_back(fd);
}

size_t FaultLog::dupCount() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return dups_.size();
}

void FaultLog::closeDups() {
  std::vector<int> dups;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    dups.swap(dups_);
  }
  for (int fd : dups)
    ::close(fd);
}

// ---- FaultTransport ----------------------------------------------------------------------------

namespace {

net::Interest ownDirection(FaultOp op) {
  return op == FaultOp::kWrite ? net::Interest::kWrite : net::Interest::kRead;
}

const char* opName(FaultOp op) {
  switch (op) {
    case FaultOp::kHandshake:
      return "handshake";
    case FaultOp::kRead:
      return "read";
    case FaultOp::kWrite:
      return "write";
  }
  return "?";
}

}  // namespace

FaultTransport::FaultTransport(std::unique_ptr<h2loop::net::Transport> inner,
                               std::vector<FaultRule> rules, std::shared_ptr<FaultLog> log)
    : net::Transport(inner->fd()),
      inner_(std::move(inner)),
      rules_(std::move(rules)),
      states_(rules_.size()),
      log_(std::move(log)) {
  injected_blocked_.fill(net::Interest::kNone);
  for (size_t i = 0; i < rules_.size(); ++i)
    states_[i].arm_at_call = rules_[i].after_calls;
  log_->noteCreated();
}

FaultTransport::~FaultTransport() {
  inner_.reset();
  log_->noteDestroyed();
}

const FaultRule* FaultTransport::decide(FaultOp op) {
  const size_t o = static_cast<size_t>(op);
  const uint64_t call = calls_[o]++;
  log_->noteCall(op);
  for (size_t i = 0; i < rules_.size(); ++i) {
    const FaultRule& rule = rules_[i];
    RuleState& st = states_[i];
    if (rule.op != op || st.spent) continue;
    if (op == FaultOp::kRead && rule.action == FaultAction::kWouldBlock &&
        inner_->hasPendingInput()) {
      continue;
    }
    if (!st.active) {
      if (call < st.arm_at_call || read_bytes_ < rule.after_read_bytes ||
          written_bytes_ < rule.after_written_bytes) {
        continue;
      }
      st.active = true;
      st.remaining = rule.times;
    }
    if (st.remaining > 0 && --st.remaining == 0) {
      st.active = false;
      if (rule.every > 0) {
        st.arm_at_call = call + 1 + rule.every;
      } else {
        st.spent = true;
      }
    }
    log_->noteFired(rule.action);
    return &rule;
  }
  return nullptr;
}

void FaultTransport::closeFd(const FaultRule& rule) {
  if (fd_closed_) return;
  fd_closed_ = true;
  if (rule.keep_dup) {
    const int dup = ::fcntl(fd_, F_DUPFD_CLOEXEC, 0);
    if (dup >= 0) log_->keepDup(dup);
  }
  // Behind the connection's back: it still believes it owns fd_. The real call that follows
  // finds the number closed (EBADF), and so does the watch at detach.
  ::close(fd_);
}

void FaultTransport::noteTerminal(net::IoStatus status) {
  if (status == net::IoStatus::kReset || status == net::IoStatus::kError) terminal_ = true;
}

void FaultTransport::checkTerminal() {
  if (terminal_) log_->noteCallAfterTerminal();
}

net::IoResult FaultTransport::injectIo(FaultOp op, const FaultRule& rule) {
  const size_t o = static_cast<size_t>(op);
  switch (rule.action) {
    case FaultAction::kWouldBlock: {
      const net::Interest want = rule.want != net::Interest::kNone ? rule.want : ownDirection(op);
      injected_blocked_[o] = want;
      return net::IoResult{net::IoStatus::kWouldBlock, 0, 0, want};
    }
    case FaultAction::kReset:
    case FaultAction::kError: {
      const bool reset = rule.action == FaultAction::kReset;
      const int err = rule.err != 0 ? rule.err : (reset ? ECONNRESET : EBADF);
      const net::IoStatus status = reset ? net::IoStatus::kReset : net::IoStatus::kError;
      if (op == FaultOp::kHandshake) injected_failure_ = status;
      injected_reason_ =
          std::string("injected: ") + opName(op) + ": " + h2loop::net::errnoString(err);
      injected_blocked_[o] = net::Interest::kNone;
      terminal_ = true;
      return net::IoResult{status, 0, err};
    }
    default:
      break;
  }
  return net::IoResult{net::IoStatus::kError, 0,
                       EINVAL};  // not reached: the callers handle the others
}

net::HandshakeStatus FaultTransport::handshake() {
  checkTerminal();
  const size_t o = static_cast<size_t>(FaultOp::kHandshake);
  const FaultRule* rule = decide(FaultOp::kHandshake);
  if (rule != nullptr) {
    switch (rule->action) {
      case FaultAction::kWouldBlock: {
        const net::Interest want =
            rule->want != net::Interest::kNone ? rule->want : net::Interest::kRead;
        injected_blocked_[o] = want;
        return want == net::Interest::kWrite ? net::HandshakeStatus::kWantWrite
                                             : net::HandshakeStatus::kWantRead;
      }
      case FaultAction::kReset:
      case FaultAction::kError:
        (void)injectIo(FaultOp::kHandshake, *rule);
        return net::HandshakeStatus::kFailed;
      case FaultAction::kCloseFd:
        closeFd(*rule);
        break;
      case FaultAction::kShortIo:
        break;  // nothing to shorten in a handshake call
    }
  }
  injected_blocked_[o] = net::Interest::kNone;
  const net::HandshakeStatus hs = inner_->handshake();
  if (hs == net::HandshakeStatus::kFailed) terminal_ = true;
  return hs;
}

net::IoResult FaultTransport::read(uint8_t* buf, size_t len) {
  checkTerminal();
  const size_t o = static_cast<size_t>(FaultOp::kRead);
  const FaultRule* rule = decide(FaultOp::kRead);
  if (rule != nullptr) {
    switch (rule->action) {
      case FaultAction::kWouldBlock:
      case FaultAction::kReset:
      case FaultAction::kError:
        return injectIo(FaultOp::kRead, *rule);
      case FaultAction::kShortIo:
        len = std::min(len, std::max<size_t>(rule->max_bytes, 1));
        break;
      case FaultAction::kCloseFd:
        closeFd(*rule);
        break;
    }
  }
  injected_blocked_[o] = net::Interest::kNone;
  net::IoResult r = inner_->read(buf, len);
  if (r.status == net::IoStatus::kOk) read_bytes_ += r.bytes;
  noteTerminal(r.status);
  return r;
}

net::IoResult FaultTransport::afterRealWrite(net::IoResult r, size_t offered) {
  if (r.status == net::IoStatus::kOk) {
    written_bytes_ += r.bytes;
    write_retry_min_ = 0;
  } else if (r.status == net::IoStatus::kWouldBlock) {
    write_retry_min_ = std::max(write_retry_min_, offered);
  }
  noteTerminal(r.status);
  return r;
}

net::IoResult FaultTransport::write(const uint8_t* buf, size_t len) {
  checkTerminal();
  const size_t o = static_cast<size_t>(FaultOp::kWrite);
  const FaultRule* rule = decide(FaultOp::kWrite);
  if (rule != nullptr) {
    switch (rule->action) {
      case FaultAction::kWouldBlock:
      case FaultAction::kReset:
      case FaultAction::kError:
        return injectIo(FaultOp::kWrite, *rule);
      case FaultAction::kShortIo:
        len = std::min(len, std::max({rule->max_bytes, write_retry_min_, size_t{1}}));
        break;
      case FaultAction::kCloseFd:
        closeFd(*rule);
        break;
    }
  }
  injected_blocked_[o] = net::Interest::kNone;
  return afterRealWrite(inner_->write(buf, len), len);
}

net::IoResult FaultTransport::writev(const struct iovec* iov, int iovcnt) {
  checkTerminal();
  const size_t o = static_cast<size_t>(FaultOp::kWrite);
  const FaultRule* rule = decide(FaultOp::kWrite);
  size_t limit = SIZE_MAX;
  if (rule != nullptr) {
    switch (rule->action) {
      case FaultAction::kWouldBlock:
      case FaultAction::kReset:
      case FaultAction::kError:
        return injectIo(FaultOp::kWrite, *rule);
      case FaultAction::kShortIo:
        limit = std::max({rule->max_bytes, write_retry_min_, size_t{1}});
        break;
      case FaultAction::kCloseFd:
        closeFd(*rule);
        break;
    }
  }
  injected_blocked_[o] = net::Interest::kNone;
  // The first `limit` bytes of the gathered buffers.
  std::vector<struct iovec> cut;
  size_t offered = 0;
  for (int i = 0; i < iovcnt && offered < limit; ++i) {
    const size_t take = std::min(iov[i].iov_len, limit - offered);
    cut.push_back({iov[i].iov_base, take});
    offered += take;
  }
  return afterRealWrite(inner_->writev(cut.data(), static_cast<int>(cut.size())), offered);
}

net::Interest FaultTransport::pendingInterest() const {
  net::Interest interest = inner_->pendingInterest();
  for (net::Interest i : injected_blocked_)
    interest = interest | i;
  return interest;
}

void FaultTransport::shutdownWrite() {
  if (fd_closed_) {
    log_->noteCallAfterTerminal();
    return;
  }
  checkTerminal();
  inner_->shutdownWrite();
}

std::string_view FaultTransport::failureReason() const {
  if (!injected_reason_.empty()) return injected_reason_;
  return inner_->failureReason();
}

net::IoStatus FaultTransport::failureStatus() const {
  if (injected_failure_ != net::IoStatus::kOk) return injected_failure_;
  return inner_->failureStatus();
}

server::TransportFactory makeFaultFactory(FaultPlan plan, std::shared_ptr<FaultLog> log) {
  return [plan = std::move(plan), log = std::move(log)](
             int fd,
             const h2loop::net::TlsContext* tls) -> std::unique_ptr<h2loop::net::Transport> {
    log->noteAccepted(fd);
    if (plan.close_fd_on_accept) ::close(fd);
    return std::make_unique<FaultTransport>(server::makeDefaultTransport(fd, tls), plan.rules, log);
  };
}

}  // namespace h2loop::test
