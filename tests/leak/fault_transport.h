#pragma once

// A Transport that wraps the real one (TlsTransport / PlainTransport) and injects faults on a
// script: a small list of rules, each naming an operation, when it arms (after how many calls of
// that operation, after how many bytes read / written) and what it does for how many calls.
//
// Used through the server's TransportFactory hook: makeFaultFactory() gives every accepted
// connection its own FaultTransport running the same script, and one shared FaultLog through
// which the test sees what was injected and that every transport was destroyed.
//
// Threading: a FaultTransport lives on its connection's loop thread. FaultLog is thread-safe.

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "net/transport.h"
#include "server/worker.h"

namespace h2loop::test {

// The operation a rule watches. writev() counts as kWrite.
enum class FaultOp : uint8_t { kHandshake, kRead, kWrite };

enum class FaultAction : uint8_t {
  // Nothing transferred, the real call is not made: kWouldBlock with `want` (read/write), or
  // kWantRead / kWantWrite (handshake). The transport's pendingInterest() includes `want` until
  // the next real call of that operation. Never injected into a read while the real transport
  // holds input already (TLS: decrypted bytes pending), which no real transport would report as
  // would-block: the read goes through instead and the rule waits for the next call.
  kWouldBlock,
  // The real call, offered at most `max_bytes` (a write is never offered fewer bytes than the
  // last real write that blocked: the retry contract of Transport / OpenSSL).
  kShortIo,
  // kReset with `err` (default ECONNRESET) and no real call; handshake: kFailed with
  // failureStatus() == kReset.
  kReset,
  // kError with `err` (default EBADF) and no real call; handshake: kFailed, kError.
  kError,
  // ::close() the fd behind the connection's back, then make the real call, which finds the fd
  // gone (EBADF) and reports whatever the real transport makes of it. With `keep_dup`, the fd is
  // dup()ed first and the duplicate handed to the FaultLog (the test closes it), so the file
  // description and its epoll registration outlive the fd number.
  kCloseFd,
};

struct FaultRule {
  FaultOp op = FaultOp::kRead;
  FaultAction action = FaultAction::kWouldBlock;
  // The rule arms on a call of `op` once all three hold: that many calls of `op` went before,
  // and at least that many bytes were read / written successfully (by real calls).
  uint64_t after_calls = 0;
  uint64_t after_read_bytes = 0;
  uint64_t after_written_bytes = 0;
  // Once armed it applies to this many consecutive calls of `op` (-1: forever).
  int times = 1;
  // 0: the rule is spent after its `times` calls. >0: it re-arms `every` calls of `op` later.
  uint64_t every = 0;
  int err = 0;  // kReset / kError; 0: the action's default
  h2loop::net::Interest want =
      h2loop::net::Interest::kNone;  // kWouldBlock; kNone: the op's own direction
  size_t max_bytes = 1;              // kShortIo
  bool keep_dup = false;             // kCloseFd
};

// What the transports of one test did. Thread-safe.
class FaultLog {
 public:
  FaultLog() = default;
  ~FaultLog();
  FaultLog(const FaultLog&) = delete;
  FaultLog& operator=(const FaultLog&) = delete;

  void noteFired(FaultAction a) { fired_[static_cast<size_t>(a)].fetch_add(1); }
  [[nodiscard]] uint64_t fired(FaultAction a) const {
    return fired_[static_cast<size_t>(a)].load();
  }
  [[nodiscard]] uint64_t firedTotal() const;

  // Calls of `op` over all transports, injected or real.
  void noteCall(FaultOp op) { calls_[static_cast<size_t>(op)].fetch_add(1); }
  [[nodiscard]] uint64_t calls(FaultOp op) const { return calls_[static_cast<size_t>(op)].load(); }

  // An I/O call made on a transport after it had reported kReset / kError / a failed handshake.
  void noteCallAfterTerminal() { calls_after_terminal_.fetch_add(1); }
  [[nodiscard]] uint64_t callsAfterTerminal() const { return calls_after_terminal_.load(); }

  void noteCreated() { created_.fetch_add(1); }
  void noteDestroyed() { destroyed_.fetch_add(1); }
  [[nodiscard]] uint64_t created() const { return created_.load(); }
  [[nodiscard]] uint64_t destroyed() const { return destroyed_.load(); }

  // fd numbers accepted (in order), for tests that act on the server's socket themselves.
  void noteAccepted(int fd);
  [[nodiscard]] std::vector<int> acceptedFds() const;

  // Duplicates kept by kCloseFd with keep_dup. closeDups() closes them (also done on destruction).
  void keepDup(int fd);
  [[nodiscard]] size_t dupCount() const;
  void closeDups();

 private:
  static constexpr size_t kActions = static_cast<size_t>(FaultAction::kCloseFd) + 1;
  std::array<std::atomic<uint64_t>, kActions> fired_{};
  std::array<std::atomic<uint64_t>, 3> calls_{};
  std::atomic<uint64_t> calls_after_terminal_{0};
  std::atomic<uint64_t> created_{0};
  std::atomic<uint64_t> destroyed_{0};
  mutable std::mutex mutex_;
  std::vector<int> accepted_;  // guarded by mutex_
  std::vector<int> dups_;      // guarded by mutex_
};

class FaultTransport final : public h2loop::net::Transport {
 public:
  FaultTransport(std::unique_ptr<h2loop::net::Transport> inner, std::vector<FaultRule> rules,
                 std::shared_ptr<FaultLog> log);
  ~FaultTransport() override;

  [[nodiscard]] h2loop::net::HandshakeStatus handshake() override;
  [[nodiscard]] h2loop::net::IoResult read(uint8_t* buf, size_t len) override;
  [[nodiscard]] h2loop::net::IoResult write(const uint8_t* buf, size_t len) override;
  [[nodiscard]] h2loop::net::IoResult writev(const struct iovec* iov, int iovcnt) override;

  [[nodiscard]] h2loop::net::Interest pendingInterest() const override;
  [[nodiscard]] bool hasPendingInput() const override { return inner_->hasPendingInput(); }
  [[nodiscard]] size_t pendingOutput() const override { return inner_->pendingOutput(); }
  [[nodiscard]] h2loop::net::IoResult flushPendingOutput() override {
    return inner_->flushPendingOutput();
  }
  // Not passed on once the fd was closed behind the connection's back (the number may have been
  // reused by then): counted as a call after a terminal status instead.
  void shutdownWrite() override;
  void releaseIdleBuffers() override { inner_->releaseIdleBuffers(); }

  [[nodiscard]] std::string_view alpnProtocol() const override { return inner_->alpnProtocol(); }
  [[nodiscard]] std::string_view failureReason() const override;
  [[nodiscard]] h2loop::net::IoStatus failureStatus() const override;
  [[nodiscard]] bool isTls() const override { return inner_->isTls(); }

 private:
  struct RuleState {
    bool spent = false;
    bool active = false;
    int remaining = 0;
    uint64_t arm_at_call = 0;
  };
  static constexpr size_t kOps = 3;

  // The rule that applies to this call of `op` (nullptr: none); counts the call.
  const FaultRule* decide(FaultOp op);
  void closeFd(const FaultRule& rule);
  void noteTerminal(h2loop::net::IoStatus status);
  void checkTerminal();
  h2loop::net::IoResult injectIo(FaultOp op, const FaultRule& rule);
  h2loop::net::IoResult afterRealWrite(h2loop::net::IoResult r, size_t offered);

  std::unique_ptr<h2loop::net::Transport> inner_;
  std::vector<FaultRule> rules_;
  std::vector<RuleState> states_;
  std::shared_ptr<FaultLog> log_;
  std::array<uint64_t, kOps> calls_{};
  uint64_t read_bytes_ = 0;
  uint64_t written_bytes_ = 0;
  std::array<h2loop::net::Interest, kOps> injected_blocked_{};
  size_t write_retry_min_ = 0;  // bytes offered to the last real write that blocked
  bool fd_closed_ = false;
  bool terminal_ = false;
  h2loop::net::IoStatus injected_failure_ = h2loop::net::IoStatus::kOk;
  std::string injected_reason_;
};

// What a factory does besides wrapping: close_fd_on_accept closes the accepted fd before the
// connection even registers it (its watch registration fails with EBADF).
struct FaultPlan {
  std::vector<FaultRule> rules{};
  bool close_fd_on_accept = false;
};

// A TransportFactory wrapping makeDefaultTransport() in a FaultTransport running `plan`.
server::TransportFactory makeFaultFactory(FaultPlan plan, std::shared_ptr<FaultLog> log);

}  // namespace h2loop::test
