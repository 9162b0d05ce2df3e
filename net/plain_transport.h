#pragma once

#include <string>

#include "net/transport.h"

namespace h2loop::net {

// Cleartext TCP (h2c with prior knowledge): recv()/send()/sendmsg() with MSG_NOSIGNAL, so a write
// to a reset peer returns kReset instead of raising SIGPIPE. handshake() is kDone at once.
class PlainTransport final : public Transport {
 public:
  // Does not take ownership of fd (see Transport).
  explicit PlainTransport(int fd) : Transport(fd) {}

  [[nodiscard]] HandshakeStatus handshake() override { return HandshakeStatus::kDone; }
  [[nodiscard]] IoResult read(uint8_t* buf, size_t len) override;
  [[nodiscard]] IoResult write(const uint8_t* buf, size_t len) override;
  // At most IOV_MAX buffers are sent per call; the result counts what was sent.
  [[nodiscard]] IoResult writev(const struct iovec* iov, int iovcnt) override;

  [[nodiscard]] Interest pendingInterest() const override { return read_blocked_ | write_blocked_; }
  [[nodiscard]] bool hasPendingInput() const override { return false; }
  void shutdownWrite() override;

  [[nodiscard]] std::string_view alpnProtocol() const override { return {}; }
  [[nodiscard]] std::string_view failureReason() const override { return failure_reason_; }
  [[nodiscard]] IoStatus failureStatus() const override { return IoStatus::kOk; }
  [[nodiscard]] bool isTls() const override { return false; }

 private:
  IoResult failed(IoStatus status, int err, const char* op);

  Interest read_blocked_ = Interest::kNone;
  Interest write_blocked_ = Interest::kNone;
  bool write_shut_ = false;
  std::string failure_reason_;
};

}  // namespace h2loop::net
