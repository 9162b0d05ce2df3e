#include "server/connection.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <ctime>

#include "net/socket_util.h"
#include "server/http1_protocol.h"
#include "server/http2_protocol.h"
#include "server/worker.h"

namespace h2loop::server {
namespace {

using namespace std::chrono_literals;

// Reads per readiness event before giving other connections a turn.
constexpr int kReadBudget = 8;
// produce+flush rounds per event (each up to the high watermark).
constexpr int kWriteBudget = 8;

// RFC 9113 §3.4: what an HTTP/2 client sends first.
constexpr std::string_view kHttp2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
constexpr std::string_view kSwitchingToH2c =
    "HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n";

}  // namespace

Connection::Connection(Worker& worker, int fd, std::unique_ptr<net::Transport> transport)
    : worker_(worker),
      settings_(worker.settings()),
      fd_(fd),
      transport_(std::move(transport)),
      out_(worker.config().output_high_watermark, worker.config().output_low_watermark,
           &worker.blockCache()) {
  accepted_at_ = worker_.loop().now();
  last_activity_ = accepted_at_;
}

// The single final destruction. Every close reason ends here, exactly once.
// Each resource is freed under its own check; nothing returns early.
Connection::~Connection() {
  // Requests first: the protocol ends each one still open (the worker's
  // Service releases what it attached), while everything else is alive.
  protocol_.reset();
  worker_.publishGauges();
  timer_.reset();
  if (watch_) watch_->close();
  watch_.reset();
  transport_.reset();  // frees the SSL object; makes no syscall on the fd
  if (fd_ >= 0 && !fd_gone_) {
    if (abortive_) (void)net::setLingerZero(fd_);
    ::close(fd_);
  }
  fd_ = -1;
  worker_.counters().output_buffered_bytes.add(-static_cast<int64_t>(reported_buffered_));
  worker_.connectionDestroyed(this);
}

void Connection::start() {
  watch_ = worker_.loop().watch(fd_, ev::kRead, [this](uint32_t ready) { onEvent(ready); });
  timer_ = worker_.loop().timer([this] { onTimer(); });
  if (watch_->registrationError() != 0) {
    spdlog::warn("connection fd {}: cannot watch: {}", fd_,
                 net::errnoString(watch_->registrationError()));
    close(CloseReason::kIoError, true);
    return;
  }
  if (!config().proxy_protocol_from.empty() && !checkProxySource()) return;
  armTimer();
  handshakeStep();
}

bool Connection::checkProxySource() {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(fd_, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    // Gone already (reset before we looked).
    close(CloseReason::kPeerReset, true);
    return false;
  }
  peer_ = net::formatAddress(ss);
  if (!net::anyContains(config().proxy_protocol_from, reinterpret_cast<const sockaddr*>(&ss))) {
    worker_.counters().proxy_rejected[static_cast<size_t>(ProxyReject::kUntrustedSource)].add(1);
    spdlog::warn(
        "connection fd {} from {}: refused: the PROXY protocol is required and {} is not a "
        "trusted source (--proxy-protocol-from)",
        fd_, peer_, peer_);
    close(CloseReason::kProxyProtocol, true);
    return false;
  }
  proxy_ = std::make_unique<net::ProxyHeaderReader>();
  return true;
}

bool Connection::proxyStep() {
  using S = net::ProxyHeaderReader::Status;
  const S st = proxy_->read(fd_);
  auto reject = [&](ProxyReject why, CloseReason reason, bool abortive, std::string_view what) {
    worker_.counters().proxy_rejected[static_cast<size_t>(why)].add(1);
    spdlog::warn("connection fd {} from {}: refused: {} (PROXY protocol required)", fd_, peer_,
                 what);
    close(reason, abortive);
    return false;
  };
  switch (st) {
    case S::kDone: {
      const net::ProxyHeader& h = proxy_->header();
      if (!h.local) peer_ = net::formatAddress(h.source);
      spdlog::debug("connection fd {}: PROXY v{} header: client {}", fd_, h.version, peer_);
      worker_.counters().proxy_accepted.add(1);
      proxy_.reset();
      return true;
    }
    case S::kWouldBlock:
      (void)watch_->setInterest(ev::kRead);
      return false;
    case S::kInvalid:
      return reject(ProxyReject::kMalformed, CloseReason::kProxyProtocol, true,
                    fmt::format("bad PROXY header: {}", proxy_->error()));
    case S::kEof:
      return reject(
          ProxyReject::kEof, CloseReason::kPeerEof, false,
          fmt::format("closed after {} bytes, before a complete PROXY header", proxy_->received()));
    case S::kReset:
    case S::kError:
      return reject(ProxyReject::kEof,
                    st == S::kReset ? CloseReason::kPeerReset : CloseReason::kIoError, true,
                    fmt::format("recv: {}, before a complete PROXY header",
                                net::errnoString(proxy_->lastErrno())));
  }
  return false;
}

void Connection::close(CloseReason reason, bool abortive) {
  if (state_ == State::kClosed) return;
  const State was = state_;
  state_ = State::kClosed;
  abortive_ = abortive;
  worker_.counters().closed[static_cast<size_t>(reason)].add(1);
  const ev::DetachOutcome outcome = watch_ ? watch_->close() : ev::DetachOutcome::kFdInvalid;
  // The fd vanished under us (closed elsewhere, maybe reused): never close
  // that number again. Final destruction goes on regardless.
  if (outcome == ev::DetachOutcome::kFdGone) fd_gone_ = true;
  if (timer_) timer_->cancel();
  const std::string_view why = transport_ ? transport_->failureReason() : std::string_view{};
  if (reason == CloseReason::kCompleted || reason == CloseReason::kPeerEof ||
      reason == CloseReason::kPeerReset || reason == CloseReason::kShutdown ||
      reason == CloseReason::kIdleTimeout || reason == CloseReason::kLimit) {
    spdlog::debug("connection fd {} closed: {} (state {}, watch {})", fd_, toString(reason),
                  static_cast<int>(was), ev::toString(outcome));
  } else {
    spdlog::info("connection fd {} closed: {}{}{} (watch {})", fd_, toString(reason),
                 why.empty() ? "" : ": ", why, ev::toString(outcome));
  }
  worker_.loop().deferredDelete(std::unique_ptr<ev::DeferredDeletable>(this));
}

void Connection::drain() {
  if (state_ == State::kHandshake || (state_ == State::kActive && (!got_input_ || !protocol_))) {
    // Nothing in flight: the client has not even sent its preface.
    close(CloseReason::kShutdown, false);
    return;
  }
  if (state_ != State::kActive || !protocol_) return;
  // A drain that completes counts as completed; kShutdown is kept for the
  // connections the drain timeout cuts off.
  state_ = State::kDraining;
  protocol_->shutdownNotice();
  writeOutput();
  if (!open()) return;
  // The final GOAWAY about one round trip later, via the timer (armTimer
  // keeps this deadline whatever else re-arms it meanwhile).
  goaway_at_ = worker_.loop().now() + config().goaway_delay;
  armTimer();
}

void Connection::armTimer() {
  const ServerConfig& cfg = config();
  ev::Duration d;
  switch (state_) {
    case State::kHandshake:
      d = cfg.handshake_timeout;
      break;
    case State::kLingering:
      d = cfg.linger_timeout;
      break;
    case State::kDraining:
      if (!goaway_sent_) {
        d = std::max(ev::Duration::zero(), goaway_at_ - worker_.loop().now());
        break;
      }
      [[fallthrough]];
    default:
      timer_for_write_ = wantsToWrite();
      d = timer_for_write_ ? ev::Duration(cfg.write_timeout) : ev::Duration(cfg.idle_timeout);
      if (reading_head_) {
        d = std::min(
            d, std::max(ev::Duration::zero(),
                        ev::Duration(head_since_ + cfg.header_timeout - worker_.loop().now())));
      }
      break;
  }
  timer_->arm(d);
}

// Lazy timeouts: activity only moves last_activity_; the timer re-arms
// itself for the remainder when it finds the deadline moved.
void Connection::onTimer() {
  const ServerConfig& cfg = config();
  const auto now = worker_.loop().now();
  switch (state_) {
    case State::kHandshake:
      if (proxy_) {
        worker_.counters().proxy_rejected[static_cast<size_t>(ProxyReject::kTimeout)].add(1);
        spdlog::warn(
            "connection fd {} from {}: refused: no complete PROXY header within the handshake "
            "timeout ({} bytes of it came)",
            fd_, peer_, proxy_->received());
      }
      close(CloseReason::kHandshakeTimeout, true);
      return;
    case State::kLingering:
      // The client kept the connection open past the bound: reset it.
      if (now >= linger_until_) {
        close(end_reason_, true);
      } else {
        lingerStep();  // our FIN is due
      }
      return;
    case State::kDraining:
      if (!goaway_sent_) {
        goaway_sent_ = true;
        protocol_->goaway();
        writeOutput();
        if (open()) afterIo();
        return;
      }
      break;
    default:
      break;
  }
  if (!open()) return;
  // HTTP/1.1 slowloris: a head that trickles in keeps the connection busy,
  // never idle; its own deadline ends it.
  if (reading_head_ && protocol_ && now >= head_since_ + cfg.header_timeout) {
    reading_head_ = false;
    endFor(CloseReason::kHeaderTimeout);
    protocol_->headerTimeout();
    writeOutput();
    if (open()) afterIo();
    return;
  }
  const bool writing = wantsToWrite();
  const ev::Duration limit =
      writing ? ev::Duration(cfg.write_timeout) : ev::Duration(cfg.idle_timeout);
  const auto deadline = last_activity_ + limit;
  if (now < deadline) {
    auto next = deadline;
    if (reading_head_) next = std::min(next, head_since_ + cfg.header_timeout);
    timer_->arm(next - now);
    return;
  }
  if (writing) {
    close(CloseReason::kWriteTimeout, true);
    return;
  }
  // Idle: GOAWAY first, then a graceful close once it is flushed.
  if (protocol_ && !goaway_sent_) {
    goaway_sent_ = true;
    state_ = State::kDraining;
    endFor(CloseReason::kIdleTimeout);
    protocol_->goaway();
    writeOutput();
    if (!open()) return;
    if (protocol_->activeStreams() == 0) {
      beginLingeringClose(Linger::kWaitForClient);
      return;
    }
    timer_->arm(cfg.write_timeout);
    return;
  }
  close(CloseReason::kIdleTimeout, true);
}

void Connection::wakeWriter() {
  if (in_io_ || !watch_ || state_ == State::kClosed || state_ == State::kHandshake) return;
  // Back on the next turn of the loop, as if writable: produce and write.
  watch_->activate(ev::kWrite);
}

std::string Connection::peerAddress() const {
  if (peer_.empty() && !fd_gone_) peer_ = net::peerAddress(fd_);
  return peer_;
}

std::string_view Connection::httpDate() {
  return worker_.httpDate();
}

void Connection::onEvent(uint32_t ready) {
  in_io_ = true;
  struct Reset {
    bool& flag;
    ~Reset() { flag = false; }
  } reset{in_io_};
  switch (state_) {
    case State::kHandshake:
      handshakeStep();
      // The client's FIN mid-handshake: whatever it sent before is consumed
      // above; a handshake still waiting can never finish (the client's
      // Finished needs our whole flight first). Closing now also keeps a
      // level-triggered hang-up from calling us on every iteration while
      // our flight waits for a full socket.
      if ((ready & (ev::kHangup | ev::kError)) && state_ == State::kHandshake) {
        close(CloseReason::kPeerEof, false);
      }
      return;
    case State::kLingering:
      onLingerEvent();
      return;
    case State::kClosed:
      return;
    default:
      break;
  }
  // The peer closed (a FIN, perhaps behind unread data; a RST) while its
  // input is held back: reading on to find the end would buffer what the
  // bound keeps out. Like an EOF read, it ends the connection.
  if ((ready & (ev::kHangup | ev::kError)) && protocol_ && protocol_->inputPaused()) {
    const int err = net::socketError(fd_);
    close(err == ECONNRESET || err == EPIPE ? CloseReason::kPeerReset : CloseReason::kPeerEof,
          false);
    return;
  }
  // A TLS read may have blocked on writability (and a write on readability):
  // retry reading on either readiness then.
  const bool read_blocked_on_write =
      transport_->isTls() && (ready & ev::kWrite) &&
      net::hasInterest(transport_->pendingInterest(), net::Interest::kWrite);
  if ((ready & ev::kWrite) && !flush()) return;
  // A peer's FIN (or RST) is read at once, even under backpressure: the EOF
  // closes the connection now, not at the write timeout.
  if ((ready & (ev::kRead | ev::kHangup | ev::kError)) || read_blocked_on_write) {
    readInput();
    if (!open()) return;
  }
  writeOutput();
  if (open()) afterIo();
}

void Connection::handshakeStep() {
  // The PROXY header comes before anything the transport (TLS) or the protocol sniff may see.
  if (proxy_ && !proxyStep()) return;
  const net::HandshakeStatus hs = transport_->handshake();
  switch (hs) {
    case net::HandshakeStatus::kDone:
      startSession();
      return;
    case net::HandshakeStatus::kWantRead:
      (void)watch_->setInterest(ev::kRead);
      return;
    case net::HandshakeStatus::kWantWrite:
      (void)watch_->setInterest(ev::kWrite);
      return;
    case net::HandshakeStatus::kFailed: {
      const net::IoStatus st = transport_->failureStatus();
      close(st == net::IoStatus::kReset ? CloseReason::kPeerReset
            : st == net::IoStatus::kEof ? CloseReason::kPeerEof
                                        : CloseReason::kTlsError,
            st != net::IoStatus::kEof);
      return;
    }
  }
}

void Connection::startSession() {
  state_ = State::kActive;
  last_activity_ = worker_.loop().now();
  const ServerConfig& cfg = config();
  // TLS: ALPN decided (h2; http/1.1 or none: HTTP/1.1). Cleartext with
  // HTTP/1.1 on: the first bytes decide (feed()); without: h2c only.
  if (transport_->isTls() || !cfg.http1) {
    const bool http2 = !cfg.http1 || transport_->alpnProtocol() == "h2";
    if (!makeProtocol(http2)) return;
  }
  armTimer();
  // The server preface (SETTINGS) goes out at once; input may already be
  // buffered inside TLS from the handshake's last read.
  readInput();
  if (!open()) return;
  writeOutput();
  if (open()) afterIo();
}

std::unique_ptr<Http2Protocol> Connection::newHttp2() {
  http::detail::ConnectionView& view = *this;
  auto h2 = std::make_unique<Http2Protocol>(worker_.pool(), config().session,
                                            worker_.sessionAllocator(), worker_.service(), view);
  if (!h2->valid()) {
    spdlog::error("connection fd {}: cannot create session: {}", fd_, h2->lastError());
    close(CloseReason::kIoError, true);
    return nullptr;
  }
  return h2;
}

bool Connection::makeProtocol(bool http2) {
  if (http2) {
    protocol_ = newHttp2();
    return protocol_ != nullptr;
  }
  http::detail::ConnectionView& view = *this;
  h1::SessionConfig c = config().http1_session;
  c.scheme = transport_->isTls() ? "https" : "http";
  c.allow_h2c_upgrade = c.allow_h2c_upgrade && !transport_->isTls();
  c.date = [this] { return worker_.httpDate(); };
  protocol_ = std::make_unique<Http1Protocol>(worker_.pool(), c, worker_.service(), view);
  worker_.counters().http1_connections.add(1);
  return true;
}

ProtocolStatus Connection::feed(const uint8_t* data, size_t len) {
  if (protocol_) return protocol_->receive(data, len);
  // Undecided (cleartext): the HTTP/2 preface, or HTTP/1.1. A prefix of the
  // preface waits for more.
  const std::string_view in(reinterpret_cast<const char*>(data), len);
  std::string_view seen = in;
  if (!sniffed_.empty()) {
    sniffed_.append(in);
    seen = sniffed_;
  }
  const size_t n = std::min(seen.size(), kHttp2Preface.size());
  const bool http2 = seen.substr(0, n) == kHttp2Preface.substr(0, n);
  if (http2 && seen.size() < kHttp2Preface.size()) {
    if (sniffed_.empty()) sniffed_.assign(in);
    return ProtocolStatus::kOk;
  }
  if (!makeProtocol(http2)) return ProtocolStatus::kOk;  // closed
  if (sniffed_.empty()) return protocol_->receive(data, len);
  std::string first;
  first.swap(sniffed_);
  return protocol_->receive(reinterpret_cast<const uint8_t*>(first.data()), first.size());
}

bool Connection::afterProtocol() {
  if (protocol_->upgradeRequested() && !switchToHttp2()) return false;
  const bool head = protocol_->readingHead();
  if (head != reading_head_) {
    reading_head_ = head;
    if (head) {
      head_since_ = worker_.loop().now();
      if (state_ == State::kActive) armTimer();
    }
  }
  return open();
}

bool Connection::switchToHttp2() {
  auto& h1 = static_cast<Http1Protocol&>(*protocol_).session();
  std::string payload;
  if (!Http2Protocol::decodeSettings(h1.upgradeSettings(), payload)) {
    h1.refuseUpgrade("invalid HTTP2-Settings in an h2c upgrade");
    return true;
  }
  std::unique_ptr<Http2Protocol> h2 = newHttp2();
  if (!h2) return false;
  std::string rest;
  h2::Stream* request = h1.takeUpgrade(rest);
  // 101 first: what HTTP/2 produces follows it in the same output.
  if (!out_.append(reinterpret_cast<const uint8_t*>(kSwitchingToH2c.data()),
                   kSwitchingToH2c.size())) {
    spdlog::warn("connection fd {}: no room for the 101 of an h2c upgrade", fd_);
  }
  Http2Protocol& http2 = *h2;
  protocol_ = std::move(h2);  // the HTTP/1.1 session is done
  reading_head_ = false;
  if (!http2.upgrade(payload, request)) {
    spdlog::info("connection fd {}: h2c upgrade refused: {}", fd_, http2.lastError());
    close(CloseReason::kProtocolError, true);
    return false;
  }
  spdlog::debug("connection fd {}: upgraded to h2c", fd_);
  worker_.counters().h2c_upgrades.add(1);
  if (rest.empty()) return true;
  if (protocol_->receive(reinterpret_cast<const uint8_t*>(rest.data()), rest.size()) !=
      ProtocolStatus::kOk) {
    spdlog::warn("connection fd {}: protocol failed: {}", fd_, protocol_->lastError());
    close(CloseReason::kProtocolError, true);
    return false;
  }
  return true;
}

void Connection::readInput() {
  uint8_t* buf = worker_.readBuffer();
  // Assume we stop early; the kernel-drained exits below clear it.
  input_pending_ = true;
  if (protocol_ && protocol_->inputPaused()) return;
  for (int i = 0; i < kReadBudget; ++i) {
    net::IoResult r = transport_->read(buf, Worker::kReadBufferSize);
    if (r.status == net::IoStatus::kWouldBlock) {
      input_pending_ = false;
      return;
    }
    if (r.status != net::IoStatus::kOk) {
      closeOnIo(r.status, "read");
      return;
    }
    last_activity_ = worker_.loop().now();
    got_input_ = true;
    if (feed(buf, r.bytes) != ProtocolStatus::kOk) {
      // Our own failure (out of memory, a callback that failed): nothing
      // sensible can be sent any more.
      spdlog::warn("connection fd {}: protocol failed: {}", fd_, protocol_->lastError());
      close(CloseReason::kProtocolError, true);
      return;
    }
    if (!open()) return;
    if (protocol_) {
      if (!afterProtocol()) return;
      // A connection error (its answer queued), or nothing more the protocol
      // would read: what else arrives is discarded once the connection lingers.
      if (protocol_->connectionError() || !protocol_->wantRead()) {
        input_pending_ = false;
        return;
      }
      // Enough held: the rest waits in the kernel (TCP pushes back).
      if (protocol_->inputPaused()) return;
    }
    if (r.bytes < Worker::kReadBufferSize && !transport_->hasPendingInput()) {
      input_pending_ = false;
      return;
    }
  }
}

void Connection::writeOutput() {
  // Our preface waits for the client's first bytes: an HTTP/1.1 client on an
  // h2c port must not get binary SETTINGS before its 505, and the preface
  // leaves together with the first response.
  if (!got_input_ || !protocol_) return;
  for (int round = 0; round < kWriteBudget; ++round) {
    if (!out_.aboveHigh()) {
      if (protocol_->produce(out_) != ProtocolStatus::kOk) {
        spdlog::warn("connection fd {}: protocol failed while sending: {}", fd_,
                     protocol_->lastError());
        close(CloseReason::kProtocolError, true);
        return;
      }
      if (!afterProtocol()) return;
    }
    if (outputSent()) break;
    const size_t before = out_.size();
    if (!flush()) return;
    if (!outputSent() || out_.size() == before) break;  // socket full
  }
  noteBuffered();
}

bool Connection::flush() {
  while (!outputSent()) {
    // With out_ empty, TLS may still hold ciphertext the socket did not take.
    const net::IoResult r = out_.empty() ? transport_->flushPendingOutput()
                                         : transport_->write(out_.data(), out_.size());
    if (r.status == net::IoStatus::kOk) {
      out_.consume(r.bytes);  // 0 after a flush of pending output: it is all out
      last_activity_ = worker_.loop().now();
      continue;
    }
    if (r.status == net::IoStatus::kWouldBlock) break;
    closeOnIo(r.status, "write");
    return false;
  }
  noteBuffered();
  return true;
}

// Output is pending somewhere: in out_, or still inside the protocol (the kernel
// may take bytes yet not report writability until a third of its buffer is
// free, so out_ can be empty while a stalled reader holds everything up).
// Before the client's first bytes the protocol's output is held back (see
// writeOutput()): it never leaves, so it does not count.
bool Connection::wantsToWrite() const {
  return !outputSent() || (got_input_ && protocol_ && protocol_->wantWrite());
}

void Connection::noteBuffered() {
  const size_t now = out_.size() + transport_->pendingOutput();
  if (now != reported_buffered_) {
    worker_.counters().output_buffered_bytes.add(static_cast<int64_t>(now) -
                                                 static_cast<int64_t>(reported_buffered_));
    reported_buffered_ = now;
  }
}

void Connection::afterIo() {
  worker_.publishGauges();
  if (!protocol_) {  // cleartext, the first bytes are not all here yet
    updateInterest();
    return;
  }
  // How the connection ends, decided by why.
  if (protocol_->connectionError()) {
    if (end_reason_ != CloseReason::kHeaderTimeout) endFor(CloseReason::kProtocolError);
    spdlog::info("connection fd {}: {}", fd_, protocol_->connectionErrorDescription());
    beginLingeringClose(Linger::kAfterError);
    return;
  }
  if (protocol_->finished() && outputSent()) {
    beginLingeringClose(protocol_->peerGoaway() && !goaway_sent_ ? Linger::kAfterClientGoaway
                                                                 : Linger::kWaitForClient);
    return;
  }
  if (state_ == State::kDraining && goaway_sent_ && protocol_->activeStreams() == 0 &&
      outputSent() && !protocol_->wantWrite()) {
    beginLingeringClose(Linger::kWaitForClient);
    return;
  }
  if (out_.empty()) {
    (void)out_.releaseIfEmpty();
    if (protocol_->activeStreams() == 0) transport_->releaseIdleBuffers();
  }
  updateInterest();
}

void Connection::updateInterest() {
  // Input the protocol holds back waits in the kernel (TCP pushes back);
  // only the peer's close is watched for meanwhile.
  const bool paused = protocol_ && protocol_->inputPaused();
  uint32_t interest = paused ? uint32_t{ev::kHangup} : uint32_t{ev::kRead};
  if (wantsToWrite()) interest |= ev::kWrite;
  const net::Interest blocked = transport_->pendingInterest();
  if (net::hasInterest(blocked, net::Interest::kRead)) interest |= ev::kRead;
  if (net::hasInterest(blocked, net::Interest::kWrite)) interest |= ev::kWrite;
  if (watch_->setInterest(interest) != 0) {
    close(CloseReason::kIoError, true);
    return;
  }
  // Input that TLS read ahead of the records we took raises no readiness
  // event: come back for it on the next iteration, after the other
  // connections had their turn.
  if (input_pending_ && !paused && transport_->hasPendingInput()) {
    watch_->activate(ev::kRead);
  }
  // Output got stuck (or unstuck): the write timeout replaces the idle one.
  if (!timer_->armed() || timer_for_write_ != wantsToWrite()) armTimer();
}

void Connection::endFor(CloseReason reason) {
  if (end_reason_ == CloseReason::kCompleted || reason == CloseReason::kProtocolError) {
    end_reason_ = reason;
  }
}

void Connection::closeOnIo(net::IoStatus status, std::string_view what) {
  // The peer closing on our GOAWAY completes the end we started.
  const bool ending = end_reason_ != CloseReason::kCompleted;
  switch (status) {
    case net::IoStatus::kEof:
      close(ending ? end_reason_ : CloseReason::kPeerEof, false);
      return;
    case net::IoStatus::kReset:
      close(ending ? end_reason_ : CloseReason::kPeerReset, false);
      return;
    default:
      spdlog::debug("connection fd {}: {} failed: {}", fd_, what, transport_->failureReason());
      close(transport_->isTls() ? CloseReason::kTlsError : CloseReason::kIoError, true);
      return;
  }
}

// The end of a connection we decided to end, in the way `kind` says (see
// Linger). Graceful kinds keep TIME_WAIT off the server: the server that
// closed first is the one that ran out of ports in the field. Every kind
// reads and discards until the client's FIN or RST (a passive, clean close)
// and is bounded in time (then RST).
void Connection::beginLingeringClose(Linger kind) {
  if (state_ == State::kLingering || !open()) return;
  if (kind == Linger::kWaitForClient && protocol_ && protocol_->closesFirst()) {
    kind = Linger::kHalfClose;
  }
  state_ = State::kLingering;
  linger_ = kind;
  const ServerConfig& cfg = config();
  const auto now = worker_.loop().now();
  switch (kind) {
    case Linger::kWaitForClient:
      linger_until_ = now + cfg.linger_timeout;
      break;
    case Linger::kAfterClientGoaway:
      // RFC 9113 §6.8: a GOAWAY before the close, even to a client that
      // sent one; then a round trip for the client to close first.
      if (!goaway_sent_) {
        goaway_sent_ = true;
        protocol_->goaway();
      }
      fin_at_ = now + cfg.goaway_delay;
      linger_until_ = now + cfg.linger_timeout;
      break;
    case Linger::kAfterError:
      fin_at_ = now;
      linger_until_ = now + cfg.error_linger_timeout;
      break;
    case Linger::kHalfClose:
      fin_at_ = now;
      linger_until_ = now + cfg.linger_timeout;
      break;
  }
  onLingerEvent();
}

void Connection::onLingerEvent() {
  // The GOAWAY (and what was queued before it) may still be on its way.
  if (wantsToWrite()) {
    writeOutput();
    if (!open()) return;
  }
  lingerRead();
  if (open()) lingerStep();
}

void Connection::lingerStep() {
  const bool sent = !wantsToWrite();
  const auto now = worker_.loop().now();
  const bool fin_pending = linger_ != Linger::kWaitForClient && !fin_sent_;
  if (fin_pending && sent && now >= fin_at_) {
    transport_->shutdownWrite();
    fin_sent_ = true;
  }
  uint32_t interest = ev::kRead;
  if (!sent) interest |= ev::kWrite;
  if (net::hasInterest(transport_->pendingInterest(), net::Interest::kWrite))
    interest |= ev::kWrite;
  if (watch_->setInterest(interest) != 0) {
    close(CloseReason::kIoError, true);
    return;
  }
  // Discarded input TLS read ahead raises no readiness event.
  if (input_pending_ && transport_->hasPendingInput()) watch_->activate(ev::kRead);
  auto next = linger_until_;
  if (linger_ != Linger::kWaitForClient && !fin_sent_ && sent) next = std::min(next, fin_at_);
  if (!timer_->armed() || next != linger_timer_at_) {
    linger_timer_at_ = next;
    timer_->arm(std::max(ev::Duration::zero(), ev::Duration(next - now)));
  }
}

void Connection::lingerRead() {
  uint8_t* buf = worker_.readBuffer();
  input_pending_ = true;
  for (int i = 0; i < kReadBudget; ++i) {
    net::IoResult r = transport_->read(buf, Worker::kReadBufferSize);
    if (r.status == net::IoStatus::kOk) continue;  // discarded
    if (r.status == net::IoStatus::kWouldBlock) {
      input_pending_ = false;
      return;
    }
    // The client closed (FIN or RST): a passive, clean close.
    close(end_reason_, false);
    return;
  }
}

}  // namespace h2loop::server
