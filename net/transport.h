#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace h2loop::net {

// Outcome class of one read/write on a transport. The connection closes at once on
// kEof (after flushing what it may), kReset and kError; it re-arms its watch on kWouldBlock.
enum class IoStatus : uint8_t {
  kOk,          // `bytes` were transferred (may be fewer than asked: partial write / short read)
  kWouldBlock,  // nothing transferred; wait for the readiness in `want` / pendingInterest()
  kEof,         // peer finished sending (recv()==0, TLS close_notify, or TLS FIN without it)
  kReset,       // peer is gone: ECONNRESET, EPIPE, ETIMEDOUT, ENOTCONN (never kWouldBlock!)
  kError,       // anything else: EBADF, TLS protocol error, ...; failureReason() says what
};

// Readiness a blocked operation needs. A bit set: kRead | kWrite == kReadWrite.
enum class Interest : uint8_t { kNone = 0, kRead = 1, kWrite = 2, kReadWrite = 3 };

constexpr Interest operator|(Interest a, Interest b) {
  return static_cast<Interest>(static_cast<uint8_t>(a) | static_cast<uint8_t>(b));
}
constexpr bool hasInterest(Interest set, Interest bit) {
  return (static_cast<uint8_t>(set) & static_cast<uint8_t>(bit)) != 0;
}

struct [[nodiscard]] IoResult {
  IoStatus status;
  size_t bytes;  // > 0 only with kOk (0 only when 0 bytes were asked for)
  int err;       // errno for kReset / kError from a syscall; 0 otherwise
  // With kWouldBlock: the readiness needed to make progress. A TLS read may need kWrite and a
  // TLS write may need kRead. kNone for every other status.
  Interest want = Interest::kNone;
};

enum class HandshakeStatus : uint8_t { kDone, kWantRead, kWantWrite, kFailed };

constexpr std::string_view toString(IoStatus s) {
  switch (s) {
    case IoStatus::kOk:
      return "ok";
    case IoStatus::kWouldBlock:
      return "would-block";
    case IoStatus::kEof:
      return "eof";
    case IoStatus::kReset:
      return "reset";
    case IoStatus::kError:
      return "error";
  }
  return "?";
}

constexpr std::string_view toString(HandshakeStatus s) {
  switch (s) {
    case HandshakeStatus::kDone:
      return "done";
    case HandshakeStatus::kWantRead:
      return "want-read";
    case HandshakeStatus::kWantWrite:
      return "want-write";
    case HandshakeStatus::kFailed:
      return "failed";
  }
  return "?";
}

// A non-blocking byte transport over one connected socket.
//
// Ownership: the transport does NOT own the fd; it never closes it. The connection closes the
// fd in its final destruction, after destroying the transport (destroying a transport whose fd
// was already closed is fine: the destructor makes no syscalls). The transport owns its TLS
// state, freed in its destructor on every path.
//
// Threading: a transport is used from one thread (its connection's loop) only.
//
// Protocol:
//   1. call handshake() until kDone (kWantRead/kWantWrite: wait for that readiness and call again;
//      kFailed: close, see failureStatus()/failureReason()). Plain transports are kDone at once.
//   2. read()/write()/writev() as readiness allows. After a kWouldBlock, register interest in
//      pendingInterest() (or the result's `want`) and retry the blocked operations when any
//      of it fires. After a read, if hasPendingInput() is true, read again before waiting: TLS may
//      hold already-decrypted bytes for which the socket will never become readable.
//   3. graceful end: shutdownWrite() once the output is flushed (pendingOutput() == 0 too).
//      Never after kReset/kError.
// A write that returned kWouldBlock (or wrote fewer bytes than offered) must be retried with
// the same unwritten bytes first and at least as many of them (they may be at a new address).
// kReset/kError/kEof are terminal for the direction; no call ever throws.
class Transport {
 public:
  virtual ~Transport() = default;
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  [[nodiscard]] virtual HandshakeStatus handshake() = 0;
  [[nodiscard]] virtual IoResult read(uint8_t* buf, size_t len) = 0;
  [[nodiscard]] virtual IoResult write(const uint8_t* buf, size_t len) = 0;
  // Gathered write: as write() over the concatenation of iov[0..iovcnt). Plain: one sendmsg().
  // TLS: small buffers are coalesced into one record (a copy of at most 16 KiB).
  [[nodiscard]] virtual IoResult writev(const struct iovec* iov, int iovcnt) = 0;

  // Union of the readiness needed by the operations whose last call blocked (handshake, read,
  // write), and kWrite while pendingOutput() > 0; kNone when nothing is blocked. A successful
  // call clears its own direction.
  [[nodiscard]] virtual Interest pendingInterest() const = 0;
  // True when input is buffered inside the transport (TLS: SSL_pending() > 0).
  [[nodiscard]] virtual bool hasPendingInput() const = 0;
  // Bytes the transport took (write() reported them written) that the socket has not taken
  // yet. TLS gathers the records of one write() and sends them with one send(); what the socket
  // does not take waits here, goes out before anything else, and makes write() try it first
  // and report kWouldBlock (want kWrite) while it still does not fit. Plain: always 0.
  [[nodiscard]] virtual size_t pendingOutput() const { return 0; }
  // Sends pending output: kOk when none remains, kWouldBlock (want kWrite) while some does,
  // kReset/kError when the socket failed.
  [[nodiscard]] virtual IoResult flushPendingOutput() { return IoResult{IoStatus::kOk, 0, 0}; }

  // Graceful half-close of our sending side: TLS sends close_notify once (a courtesy, only if the
  // handshake completed and no reset/error/fatal TLS alert was seen), then shutdown(SHUT_WR).
  // Idempotent. Does not wait for anything; errors are ignored.
  virtual void shutdownWrite() = 0;
  // Frees buffers an idle connection does not need. Cheap; call when the connection goes idle.
  virtual void releaseIdleBuffers() {}

  // "h2" after a TLS handshake negotiated it; empty for plain (h2c, prior knowledge).
  [[nodiscard]] virtual std::string_view alpnProtocol() const = 0;
  // The server name the client sent (TLS SNI); empty for plain or none sent.
  [[nodiscard]] virtual std::string_view serverName() const { return {}; }
  // Why the last terminal status (kFailed handshake, kEof, kReset, kError) happened, for logs,
  // e.g. "no ALPN h2 offered (client offered: http/1.1)", "tls: wrong version number",
  // "recv: Connection reset by peer". Empty while nothing went wrong.
  [[nodiscard]] virtual std::string_view failureReason() const = 0;
  // After handshake() returned kFailed: kReset (peer reset), kEof (peer closed) or kError.
  // kOk while the handshake has not failed.
  [[nodiscard]] virtual IoStatus failureStatus() const = 0;
  [[nodiscard]] virtual bool isTls() const = 0;

  [[nodiscard]] int fd() const { return fd_; }

 protected:
  explicit Transport(int fd) : fd_(fd) {}

  int fd_;
};

}  // namespace h2loop::net
