#pragma once

#include <openssl/types.h>

#include <string>
#include <vector>

#include "net/tls_context.h"
#include "net/transport.h"

struct bio_method_st;  // BIO_METHOD, from <openssl/bio.h>

namespace h2loop::net {

// Server side of a TLS connection on a connected, non-blocking socket.
//
// The SSL object talks to the socket through a small BIO of our own (recv / send with
// MSG_NOSIGNAL) instead of SSL_set_fd's socket BIO: OpenSSL's BIO uses write(), which raises
// SIGPIPE on a reset connection, and an embedding application should not have to ignore SIGPIPE.
// The BIO also records the errno of the failing syscall, so a reset is classified from the
// real errno rather than from whatever errno holds after OpenSSL returns.
//
// Classification (see IoStatus): SSL_ERROR_WANT_READ/WANT_WRITE -> kWouldBlock with that
// interest (a read may want a write and vice versa); SSL_ERROR_ZERO_RETURN (close_notify) ->
// kEof; a TCP FIN without close_notify ("unexpected eof", SSL_ERROR_SSL in OpenSSL 3, or
// SSL_ERROR_SYSCALL with errno 0 in 1.1.1 style) -> kEof too: it is an orderly TCP close, and
// HTTP/2 framing detects truncation on its own; SSL_ERROR_SYSCALL with ECONNRESET/EPIPE/... ->
// kReset; other SSL_ERROR_SSL -> kError, failureReason() = "tls: <OpenSSL reason>".
//
// Ownership: does not own the fd (see Transport). Owns the SSL object, freed in the destructor
// without SSL_shutdown. Not movable: the SSL object points back at this.
class TlsTransport final : public Transport {
 public:
  // `context` must outlive this transport. Never throws; if SSL_new fails, every call fails
  // with kError / kFailed and failureReason() says so.
  TlsTransport(const TlsContext& context, int fd);
  ~TlsTransport() override;

  // Idempotent once finished (kDone / kFailed are sticky). Refuses, with kFailed, a completed
  // handshake that did not select "h2" (unless TlsOptions::allow_missing_alpn and no ALPN).
  [[nodiscard]] HandshakeStatus handshake() override;
  // Call only after handshake() returned kDone.
  [[nodiscard]] IoResult read(uint8_t* buf, size_t len) override;
  // Encrypts up to kFlightLimit bytes of records (16 KiB of payload each) and sends them with
  // one send(); what the socket does not take becomes pendingOutput(). With pending output,
  // first sends that, and returns kWouldBlock (want kWrite) if it still does not all fit.
  [[nodiscard]] IoResult write(const uint8_t* buf, size_t len) override;
  [[nodiscard]] IoResult writev(const struct iovec* iov, int iovcnt) override;

  [[nodiscard]] Interest pendingInterest() const override {
    return handshake_blocked_ | read_blocked_ | write_blocked_ |
           (pendingOutput() > 0 ? Interest::kWrite : Interest::kNone);
  }
  [[nodiscard]] bool hasPendingInput() const override;
  [[nodiscard]] size_t pendingOutput() const override { return pending_.size() - pending_sent_; }
  [[nodiscard]] IoResult flushPendingOutput() override;

  // The most one record adds to a flight: 16 KiB of payload plus header, type and tag (22 bytes
  // in TLS 1.3, 29 in TLS 1.2 with AES-GCM), with room to spare.
  static constexpr size_t kMaxRecord = 16384 + 256;
  // Ciphertext gathered per write() before its one send(): four full records.
  static constexpr size_t kFlightLimit = 4 * kMaxRecord;
  void shutdownWrite() override;
  void releaseIdleBuffers() override;

  [[nodiscard]] std::string_view alpnProtocol() const override { return alpn_; }
  [[nodiscard]] std::string_view serverName() const override;
  [[nodiscard]] std::string_view failureReason() const override { return failure_reason_; }
  [[nodiscard]] IoStatus failureStatus() const override { return failure_status_; }
  [[nodiscard]] bool isTls() const override { return true; }

  // For logs, after the handshake: e.g. "TLSv1.3", "TLS_AES_128_GCM_SHA256". Empty before.
  [[nodiscard]] std::string_view protocolVersion() const;
  [[nodiscard]] std::string_view cipherName() const;

  // For TlsContext's handshake callbacks: records why the handshake is about to fail, so that
  // failureReason() can say "no ALPN h2 offered" rather than OpenSSL's generic reason.
  static void noteHandshakeFailure(SSL* ssl, std::string reason);

 private:
  // State shared with the BIO callbacks.
  struct BioState {
    TlsTransport* owner = nullptr;
    int fd = -1;
    int last_errno = 0;             // errno of the last failed recv/send; 0 = none / EOF
    const char* last_op = nullptr;  // "recv" or "send"
  };
  static bio_method_st* bioMethod();
  static int bioWrite(BIO* bio, const char* data, size_t len, size_t* written);
  static int bioRead(BIO* bio, char* data, size_t len, size_t* read_bytes);
  static long bioCtrl(BIO* bio, int cmd, long num, void* ptr);

  enum class State : uint8_t { kHandshaking, kEstablished, kFailed };
  struct Failure {
    IoStatus status;
    Interest want;
    int err;
  };

  // Classifies a failed SSL_* call (ret <= 0), sets failure_reason_ for terminal outcomes and
  // clears the thread's error queue.
  Failure classify(int ret);
  void beginCall();
  // Sends pending_ until done or the socket is full: kOk, kWouldBlock, or kReset/kError (then
  // fatal_, failure_reason_ and the BIO's errno are set).
  IoStatus sendPending();
  // Records a failed send() (errno err) as terminal; returns kReset or kError.
  IoStatus sendFailed(int err);
  // Queues ciphertext behind what is pending (post-handshake BIO writes).
  void queueOutput(const uint8_t* data, size_t len);

  SSL* ssl_ = nullptr;
  BioState bio_state_;
  State state_ = State::kHandshaking;
  bool allow_missing_alpn_ = false;
  bool http1_ = false;
  bool fatal_ = false;  // a reset / I/O error / fatal alert happened: never SSL_shutdown
  bool write_shut_ = false;
  Interest handshake_blocked_ = Interest::kNone;
  Interest read_blocked_ = Interest::kNone;
  Interest write_blocked_ = Interest::kNone;
  IoStatus failure_status_ = IoStatus::kOk;
  std::string_view alpn_;  // points into the SSL object
  std::string failure_reason_;
  std::string noted_reason_;      // from noteHandshakeFailure()
  std::vector<uint8_t> staging_;  // writev() coalescing buffer, released when idle
  // Post-handshake ciphertext not yet sent (from pending_sent_ on); released when empty and
  // idle. While write() gathers a flight, it goes to the thread's flight buffer instead and
  // only what the socket leaves over is copied here.
  std::vector<uint8_t> pending_;
  size_t pending_sent_ = 0;
  std::vector<uint8_t>* flight_ = nullptr;  // set only inside write()
};

}  // namespace h2loop::net
