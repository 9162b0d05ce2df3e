#include "net/tls_transport.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include "net/socket_util.h"

namespace h2loop::net {

namespace {

// One TLS record's worth of plaintext: the most writev() copies per call. A write that blocks
// leaves at most one record pending inside OpenSSL, so a retry that offers min(unwritten, this)
// bytes always offers at least as many as are pending (OpenSSL's SSL_R_BAD_LENGTH rule).
constexpr size_t kCoalesceLimit = 16384;

std::string opensslReason(unsigned long e) {
  if (e == 0) return "unknown error";
  if (ERR_SYSTEM_ERROR(e)) return errnoString(ERR_GET_REASON(e));
  if (const char* r = ERR_reason_error_string(e); r != nullptr) return r;
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

}  // namespace

// ---- BIO: recv/send with MSG_NOSIGNAL on the connection's fd --------------------------------

BIO_METHOD* TlsTransport::bioMethod() {
  // Created once per process and never freed (it is still reachable at exit).
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
                                 "h2loop socket");
    if (m != nullptr) {
      BIO_meth_set_write_ex(m, &TlsTransport::bioWrite);
      BIO_meth_set_read_ex(m, &TlsTransport::bioRead);
      BIO_meth_set_ctrl(m, &TlsTransport::bioCtrl);
    }
    return m;
  }();
  return method;
}

int TlsTransport::bioWrite(BIO* bio, const char* data, size_t len, size_t* written) {
  auto* st = static_cast<BioState*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  TlsTransport& t = *st->owner;
  if (t.state_ == State::kEstablished) {
    // After the handshake this BIO never blocks, so OpenSSL never holds a half-written record:
    // records join the flight write() is gathering, or queue behind the pending output (an
    // alert or KeyUpdate written by SSL_read, close_notify), in order. OpenSSL counts them
    // written; write() / flushPendingOutput() deliver them.
    const auto* bytes = reinterpret_cast<const uint8_t*>(data);
    if (t.flight_ != nullptr) {
      t.flight_->insert(t.flight_->end(), bytes, bytes + len);
    } else {
      t.queueOutput(bytes, len);
      (void)t.sendPending();
    }
    *written = len;
    return 1;
  }
  for (;;) {
    ssize_t n = ::send(st->fd, data, len, MSG_NOSIGNAL);
    if (n >= 0) {
      *written = static_cast<size_t>(n);
      return 1;
    }
    if (errno == EINTR) continue;
    st->last_errno = errno;
    st->last_op = "send";
    if (errno == EAGAIN || errno == EWOULDBLOCK) BIO_set_retry_write(bio);
    *written = 0;
    return 0;
  }
}

int TlsTransport::bioRead(BIO* bio, char* data, size_t len, size_t* read_bytes) {
  auto* st = static_cast<BioState*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  *read_bytes = 0;
  for (;;) {
    ssize_t n = ::recv(st->fd, data, len, 0);
    if (n > 0) {
      *read_bytes = static_cast<size_t>(n);
      return 1;
    }
    if (n == 0) {
      // OpenSSL asks BIO_eof() to tell a TCP FIN from an error (unexpected-EOF detection).
      BIO_set_flags(bio, BIO_FLAGS_IN_EOF);
      return 0;
    }
    if (errno == EINTR) continue;
    st->last_errno = errno;
    st->last_op = "recv";
    if (errno == EAGAIN || errno == EWOULDBLOCK) BIO_set_retry_read(bio);
    return 0;
  }
}

long TlsTransport::bioCtrl(BIO* bio, int cmd, long /*num*/, void* ptr) {
  switch (cmd) {
    case BIO_CTRL_FLUSH:  // nothing is buffered here; OpenSSL treats <= 0 as failure
      return 1;
    case BIO_CTRL_EOF:
      return BIO_test_flags(bio, BIO_FLAGS_IN_EOF) != 0 ? 1 : 0;
    case BIO_C_GET_FD: {
      const int fd = static_cast<BioState*>(BIO_get_data(bio))->fd;
      if (ptr != nullptr) *static_cast<int*>(ptr) = fd;
      return fd;
    }
    default:  // push/pop, dup, pending, ktls, ...: not supported
      return 0;
  }
}

// ---- TlsTransport ----------------------------------------------------------------------------

TlsTransport::TlsTransport(const TlsContext& context, int fd)
    : Transport(fd),
      allow_missing_alpn_(context.options().allow_missing_alpn),
      http1_(context.options().http1) {
  bio_state_.owner = this;
  bio_state_.fd = fd;
  ERR_clear_error();
  BIO_METHOD* method = bioMethod();
  BIO* bio = method != nullptr ? BIO_new(method) : nullptr;
  ssl_ = bio != nullptr ? SSL_new(context.get()) : nullptr;
  if (ssl_ == nullptr) {
    BIO_free(bio);
    state_ = State::kFailed;
    failure_status_ = IoStatus::kError;
    failure_reason_ = "tls: cannot create the connection: " + opensslReason(ERR_peek_error());
    fatal_ = true;
    ERR_clear_error();
    return;
  }
  BIO_set_data(bio, &bio_state_);
  BIO_set_init(bio, 1);
  SSL_set_bio(ssl_, bio, bio);  // the SSL owns the BIO (one reference for both directions)
  SSL_set_app_data(ssl_, this);
  SSL_set_accept_state(ssl_);
}

TlsTransport::~TlsTransport() {
  // No SSL_shutdown here: the peer may be gone and the fd may already be closed. SSL_free makes
  // no syscalls through our BIO.
  SSL_free(ssl_);
}

void TlsTransport::noteHandshakeFailure(SSL* ssl, std::string reason) {
  auto* self = static_cast<TlsTransport*>(SSL_get_app_data(ssl));
  if (self != nullptr && self->noted_reason_.empty()) self->noted_reason_ = std::move(reason);
}

void TlsTransport::beginCall() {
  // A stale error left on this thread by another connection would make SSL_get_error lie.
  ERR_clear_error();
  bio_state_.last_errno = 0;
  bio_state_.last_op = nullptr;
}

TlsTransport::Failure TlsTransport::classify(int ret) {
  const int saved_errno = bio_state_.last_errno;
  const char* op = bio_state_.last_op != nullptr ? bio_state_.last_op : "socket";
  const int code = SSL_get_error(ssl_, ret);
  Failure f{IoStatus::kError, Interest::kNone, 0};
  switch (code) {
    case SSL_ERROR_WANT_READ:
      f = {IoStatus::kWouldBlock, Interest::kRead, 0};
      break;
    case SSL_ERROR_WANT_WRITE:
      f = {IoStatus::kWouldBlock, Interest::kWrite, 0};
      break;
    case SSL_ERROR_ZERO_RETURN:
      f = {IoStatus::kEof, Interest::kNone, 0};
      failure_reason_ = "peer sent close_notify";
      break;
    case SSL_ERROR_SYSCALL: {
      fatal_ = true;
      if (saved_errno == 0) {
        // EOF in violation of the protocol, reported the OpenSSL 1.1.1 way.
        f = {IoStatus::kEof, Interest::kNone, 0};
        failure_reason_ = "peer closed the connection without close_notify";
        break;
      }
      IoStatus status = classifyErrno(saved_errno);
      // The BIO sets retry flags for EAGAIN, so this cannot be a would-block; never report one.
      if (status == IoStatus::kWouldBlock) status = IoStatus::kError;
      f = {status, Interest::kNone, saved_errno};
      failure_reason_ = std::string(op) + ": " + errnoString(saved_errno);
      break;
    }
    case SSL_ERROR_SSL: {
      fatal_ = true;
      const unsigned long e = ERR_peek_error();
      if (ERR_GET_LIB(e) == ERR_LIB_SSL &&
          ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        f = {IoStatus::kEof, Interest::kNone, 0};
        failure_reason_ = "peer closed the connection without close_notify";
        break;
      }
      f = {IoStatus::kError, Interest::kNone, 0};
      failure_reason_ = !noted_reason_.empty() ? noted_reason_ : "tls: " + opensslReason(e);
      break;
    }
    default:
      fatal_ = true;
      f = {IoStatus::kError, Interest::kNone, 0};
      failure_reason_ = "tls: unexpected SSL_get_error " + std::to_string(code);
      break;
  }
  ERR_clear_error();
  return f;
}

HandshakeStatus TlsTransport::handshake() {
  if (state_ == State::kEstablished) return HandshakeStatus::kDone;
  if (state_ == State::kFailed) return HandshakeStatus::kFailed;
  beginCall();
  const int ret = SSL_do_handshake(ssl_);
  if (ret == 1) {
    handshake_blocked_ = Interest::kNone;
    const unsigned char* proto = nullptr;
    unsigned int proto_len = 0;
    SSL_get0_alpn_selected(ssl_, &proto, &proto_len);
    alpn_ = std::string_view(reinterpret_cast<const char*>(proto), proto_len);
    // The context's callbacks refuse anything else during the handshake; this is a backstop.
    if (alpn_ != "h2" && !(alpn_ == "http/1.1" && http1_) &&
        !(alpn_.empty() && (allow_missing_alpn_ || http1_))) {
      state_ = State::kFailed;
      failure_status_ = IoStatus::kError;
      failure_reason_ = "no ALPN h2 negotiated";
      return HandshakeStatus::kFailed;
    }
    state_ = State::kEstablished;
    return HandshakeStatus::kDone;
  }
  const Failure f = classify(ret);
  if (f.status == IoStatus::kWouldBlock) {
    handshake_blocked_ = f.want;
    return f.want == Interest::kWrite ? HandshakeStatus::kWantWrite : HandshakeStatus::kWantRead;
  }
  handshake_blocked_ = Interest::kNone;
  state_ = State::kFailed;
  failure_status_ = f.status;
  fatal_ = true;  // also for close_notify mid-handshake: the session is unusable
  failure_reason_ = "TLS handshake: " + failure_reason_;
  return HandshakeStatus::kFailed;
}

IoResult TlsTransport::read(uint8_t* buf, size_t len) {
  if (ssl_ == nullptr) return IoResult{IoStatus::kError, 0, 0};
  if (len == 0) return IoResult{IoStatus::kOk, 0, 0};
  beginCall();
  size_t n = 0;
  const int ret = SSL_read_ex(ssl_, buf, len, &n);
  if (ret == 1) {
    read_blocked_ = Interest::kNone;
    return IoResult{IoStatus::kOk, n, 0};
  }
  const Failure f = classify(ret);
  read_blocked_ = f.status == IoStatus::kWouldBlock ? f.want : Interest::kNone;
  return IoResult{f.status, 0, f.err, f.want};
}

namespace {

// Sends data[off..len) until done or the socket is full. kOk / kWouldBlock, or the failure's
// errno in `err` (kError status for the caller to classify).
IoStatus sendFrom(int fd, const uint8_t* data, size_t len, size_t& off, int& err) {
  while (off < len) {
    const ssize_t n = ::send(fd, data + off, len - off, MSG_NOSIGNAL);
    if (n > 0) {
      off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return IoStatus::kWouldBlock;
    err = n < 0 ? errno : EPIPE;
    return IoStatus::kError;
  }
  return IoStatus::kOk;
}

}  // namespace

void TlsTransport::queueOutput(const uint8_t* data, size_t len) {
  if (pending_sent_ == pending_.size()) {
    pending_.clear();
    pending_sent_ = 0;
  }
  pending_.insert(pending_.end(), data, data + len);
}

IoStatus TlsTransport::sendPending() {
  int err = 0;
  const IoStatus s = sendFrom(fd_, pending_.data(), pending_.size(), pending_sent_, err);
  if (s == IoStatus::kOk) {
    pending_.clear();
    pending_sent_ = 0;
    return s;
  }
  if (s == IoStatus::kWouldBlock) return s;
  return sendFailed(err);
}

IoStatus TlsTransport::sendFailed(int err) {
  bio_state_.last_errno = err;
  bio_state_.last_op = "send";
  fatal_ = true;
  failure_reason_ = "send: " + errnoString(err);
  const IoStatus c = classifyErrno(err);
  return c == IoStatus::kWouldBlock || c == IoStatus::kOk ? IoStatus::kError : c;
}

IoResult TlsTransport::flushPendingOutput() {
  if (pendingOutput() == 0) return IoResult{IoStatus::kOk, 0, 0};
  const IoStatus s = sendPending();
  if (s == IoStatus::kOk) return IoResult{IoStatus::kOk, 0, 0};
  if (s == IoStatus::kWouldBlock) return IoResult{IoStatus::kWouldBlock, 0, 0, Interest::kWrite};
  return IoResult{s, 0, bio_state_.last_errno};
}

IoResult TlsTransport::write(const uint8_t* buf, size_t len) {
  if (ssl_ == nullptr) return IoResult{IoStatus::kError, 0, 0};
  if (len == 0) return IoResult{IoStatus::kOk, 0, 0};
  if (pendingOutput() > 0) {
    // What the socket left over goes first; nothing new is encrypted until it is out.
    const IoResult r = flushPendingOutput();
    if (r.status != IoStatus::kOk) return r;
  }
  beginCall();
  if (state_ != State::kEstablished) {  // outside the protocol; OpenSSL reports the error
    size_t n = 0;
    const int ret = SSL_write_ex(ssl_, buf, len, &n);
    if (ret == 1) return IoResult{IoStatus::kOk, n, 0};
    const Failure f = classify(ret);
    return IoResult{f.status, 0, f.err, f.want};
  }
  // Gather up to kFlightLimit bytes of records (SSL_MODE_ENABLE_PARTIAL_WRITE: one record per
  // SSL_write_ex) in the thread's flight buffer, then one send() for all of them: a 10 MiB
  // response goes out in 64 KiB sends instead of 16 KiB ones, a pass of small responses in one.
  static thread_local std::vector<uint8_t> flight;
  flight.clear();
  flight.reserve(kFlightLimit);
  flight_ = &flight;
  size_t total = 0;
  int ret = 1;
  while (total < len && flight.size() + kMaxRecord <= kFlightLimit) {
    size_t n = 0;
    ret = SSL_write_ex(ssl_, buf + total, len - total, &n);
    if (ret != 1) break;
    total += n;
  }
  flight_ = nullptr;
  Failure f{IoStatus::kOk, Interest::kNone, 0};
  if (ret != 1) f = classify(ret);

  size_t off = 0;
  int err = 0;
  const IoStatus sent = sendFrom(fd_, flight.data(), flight.size(), off, err);
  if (sent == IoStatus::kOk || sent == IoStatus::kWouldBlock) {
    // Only what the socket did not take is copied (rare: a full socket).
    if (off < flight.size()) queueOutput(flight.data() + off, flight.size() - off);
  } else {
    return IoResult{sendFailed(err), 0, err};
  }
  if (total > 0) {
    write_blocked_ = Interest::kNone;
    return IoResult{IoStatus::kOk, total, 0};
  }
  write_blocked_ = f.status == IoStatus::kWouldBlock ? f.want : Interest::kNone;
  return IoResult{f.status, 0, f.err, f.want};
}

IoResult TlsTransport::writev(const struct iovec* iov, int iovcnt) {
  int first = 0;
  while (first < iovcnt && iov[first].iov_len == 0)
    ++first;
  if (first == iovcnt) return IoResult{IoStatus::kOk, 0, 0};
  // A single buffer, or a first buffer of a record or more: no copy.
  if (first == iovcnt - 1 || iov[first].iov_len >= kCoalesceLimit) {
    return write(static_cast<const uint8_t*>(iov[first].iov_base), iov[first].iov_len);
  }
  staging_.clear();
  staging_.reserve(kCoalesceLimit);
  for (int i = first; i < iovcnt && staging_.size() < kCoalesceLimit; ++i) {
    const size_t take = std::min(iov[i].iov_len, kCoalesceLimit - staging_.size());
    const auto* base = static_cast<const uint8_t*>(iov[i].iov_base);
    staging_.insert(staging_.end(), base, base + take);
  }
  return write(staging_.data(), staging_.size());
}

bool TlsTransport::hasPendingInput() const {
  // SSL_has_pending, not SSL_pending: with read-ahead, whole records may
  // wait in the SSL object's raw buffer, not yet decrypted.
  return ssl_ != nullptr && SSL_has_pending(ssl_) == 1;
}

void TlsTransport::shutdownWrite() {
  if (write_shut_) return;
  write_shut_ = true;
  if (fd_ < 0) return;
  if (ssl_ != nullptr && state_ == State::kEstablished && !fatal_) {
    // Courtesy close_notify for a live peer: one attempt, never retried or waited for.
    beginCall();
    (void)SSL_shutdown(ssl_);
    ERR_clear_error();
  }
  (void)::shutdown(fd_, SHUT_WR);
}

void TlsTransport::releaseIdleBuffers() {
  // OpenSSL's own record buffers are released by SSL_MODE_RELEASE_BUFFERS.
  std::vector<uint8_t>().swap(staging_);
  if (pendingOutput() == 0) {
    std::vector<uint8_t>().swap(pending_);
    pending_sent_ = 0;
  }
}

std::string_view TlsTransport::protocolVersion() const {
  if (ssl_ == nullptr || state_ != State::kEstablished) return {};
  return SSL_get_version(ssl_);
}

std::string_view TlsTransport::cipherName() const {
  if (ssl_ == nullptr || state_ != State::kEstablished) return {};
  const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl_);
  return cipher != nullptr ? SSL_CIPHER_get_name(cipher) : std::string_view{};
}

std::string_view TlsTransport::serverName() const {
  const char* name =
      ssl_ != nullptr ? SSL_get_servername(ssl_, TLSEXT_NAMETYPE_host_name) : nullptr;
  return name != nullptr ? std::string_view(name) : std::string_view{};
}

}  // namespace h2loop::net
