#include "net/plain_transport.h"

#include <limits.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include "net/socket_util.h"

namespace h2loop::net {

IoResult PlainTransport::failed(IoStatus status, int err, const char* op) {
  failure_reason_ = std::string(op) + ": " + errnoString(err);
  return IoResult{status, 0, err};
}

IoResult PlainTransport::read(uint8_t* buf, size_t len) {
  // recv() of 0 bytes returns 0, which would read as EOF.
  if (len == 0) return IoResult{IoStatus::kOk, 0, 0};
  for (;;) {
    ssize_t n = ::recv(fd_, buf, len, 0);
    if (n > 0) {
      read_blocked_ = Interest::kNone;
      return IoResult{IoStatus::kOk, static_cast<size_t>(n), 0};
    }
    if (n == 0) {
      read_blocked_ = Interest::kNone;
      failure_reason_ = "peer closed the connection";
      return IoResult{IoStatus::kEof, 0, 0};
    }
    const int err = errno;
    if (err == EINTR) continue;
    const IoStatus status = classifyErrno(err);
    if (status == IoStatus::kWouldBlock) {
      read_blocked_ = Interest::kRead;
      return IoResult{IoStatus::kWouldBlock, 0, 0, Interest::kRead};
    }
    read_blocked_ = Interest::kNone;
    return failed(status, err, "recv");
  }
}

IoResult PlainTransport::write(const uint8_t* buf, size_t len) {
  iovec one{const_cast<uint8_t*>(buf), len};
  return writev(&one, 1);
}

IoResult PlainTransport::writev(const struct iovec* iov, int iovcnt) {
  msghdr msg{};
  msg.msg_iov = const_cast<struct iovec*>(iov);
  msg.msg_iovlen = static_cast<size_t>(std::clamp(iovcnt, 0, IOV_MAX));
  size_t total = 0;
  for (size_t i = 0; i < msg.msg_iovlen; ++i)
    total += iov[i].iov_len;
  if (total == 0) return IoResult{IoStatus::kOk, 0, 0};
  for (;;) {
    ssize_t n = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
    if (n >= 0) {
      write_blocked_ = Interest::kNone;
      return IoResult{IoStatus::kOk, static_cast<size_t>(n), 0};
    }
    const int err = errno;
    if (err == EINTR) continue;
    const IoStatus status = classifyErrno(err);
    if (status == IoStatus::kWouldBlock) {
      write_blocked_ = Interest::kWrite;
      return IoResult{IoStatus::kWouldBlock, 0, 0, Interest::kWrite};
    }
    write_blocked_ = Interest::kNone;
    return failed(status, err, "sendmsg");
  }
}

void PlainTransport::shutdownWrite() {
  if (write_shut_ || fd_ < 0) return;
  write_shut_ = true;
  // ENOTCONN (peer already gone) is fine: there is nothing left to half-close.
  (void)::shutdown(fd_, SHUT_WR);
}

}  // namespace h2loop::net
