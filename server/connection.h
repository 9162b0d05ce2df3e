#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "eventloop/loop.h"
#include "h2/output_buffer.h"
#include "http/exchange.h"
#include "net/proxy_reader.h"
#include "net/transport.h"
#include "server/config.h"
#include "server/counters.h"
#include "server/protocol.h"

namespace h2loop::server {

class Http2Protocol;
class Worker;

// One accepted client connection, from accept to final destruction, on the
// loop of the worker that accepted it (nothing of it is touched elsewhere).
//
// States: handshake -> active -> draining (GOAWAY sent) -> lingering
// (GOAWAY flushed, input discarded, bounded; see Linger) -> closed.
//
// Every exit calls close(reason): idempotent, logs the reason once, detaches
// the watch whatever state the fd is in, and hands the connection to the
// loop's deferred deletion. The destructor is the single final destruction:
// it releases every stream (Session), frees TLS (Transport), closes the fd
// unless it had already vanished, and returns the connection's slot. No path
// skips it: close() has no early return after the state check.
class Connection final : public ev::DeferredDeletable, private http::detail::ConnectionView {
 public:
  enum class State : uint8_t { kHandshake, kActive, kDraining, kLingering, kClosed };

  // How a lingering connection ends; the reason it ends decides (one table,
  // in afterIo() and onTimer()). In every kind input is read and discarded
  // and the client's FIN (or RST) closes at once; at the deadline the close
  // is abortive (RST, no TIME_WAIT).
  enum class Linger : uint8_t {
    // A graceful end we started (idle timeout, shutdown drain): no FIN from
    // us; the client closes first so TIME_WAIT lands on it. linger_timeout.
    kWaitForClient,
    // The client sent GOAWAY and nothing is left in flight: our GOAWAY, then
    // our FIN after goaway_delay unless the client closed first.
    // linger_timeout.
    kAfterClientGoaway,
    // A connection error (RFC 9113 §5.4.1): GOAWAY(error) flushed, our FIN
    // at once, input discarded so no late RST overtakes the GOAWAY.
    // error_linger_timeout, which also bounds a flush the peer never reads.
    kAfterError,
    // Our graceful end of an HTTP/1.1 connection (no GOAWAY there to make
    // the client close): our FIN at once, input read and discarded until
    // the client's FIN. linger_timeout.
    kHalfClose,
  };

  // Takes ownership of `fd` and `transport` (which wraps the same fd).
  Connection(Worker& worker, int fd, std::unique_ptr<net::Transport> transport);
  ~Connection() override;

  // Registers with the loop and starts the handshake. Returns false if the
  // connection closed at once (the loop deletes it).
  void start();

  // Ends the connection now; `abortive` sends RST (SO_LINGER 0) instead of
  // FIN, for errors, limits and timeouts. Safe to call from anywhere on the
  // loop thread, any number of times.
  void close(CloseReason reason, bool abortive);

  // Server shutdown: shutdown notice, then GOAWAY with the last processed
  // stream after `goaway_delay`; in-flight streams finish; then a graceful
  // close. The worker closes what remains when its drain timeout expires.
  void drain();

  [[nodiscard]] State state() const { return state_; }
  [[nodiscard]] size_t bufferedBytes() const { return out_.size(); }

  // Intrusive list of the worker's connections.
  Connection* prev_ = nullptr;
  Connection* next_ = nullptr;

 private:
  // http::detail::ConnectionView: what its requests' exchanges ask.
  void wakeWriter() override;
  [[nodiscard]] std::string peerAddress() const override;
  [[nodiscard]] bool isTls() const override { return transport_->isTls(); }
  [[nodiscard]] std::string_view alpn() const override { return transport_->alpnProtocol(); }
  [[nodiscard]] std::string_view sni() const override { return transport_->serverName(); }
  [[nodiscard]] std::string_view httpDate() override;

  void onEvent(uint32_t ready);
  void onTimer();
  void handshakeStep();
  // PROXY protocol required: refuses an untrusted source (false, closed).
  bool checkProxySource();
  // Reads the PROXY header; true once it is complete (the client's address then replaces the
  // peer's), false while waiting or when the connection was closed.
  bool proxyStep();
  void startSession();
  // Cleartext with HTTP/1.1 on: the first bytes decide (the HTTP/2 preface,
  // or HTTP/1.1). Feeds `data` to the protocol, creating it once decided.
  [[nodiscard]] ProtocolStatus feed(const uint8_t* data, size_t len);
  // Creates the protocol for `http2` and makes the connection active;
  // false when it could not (the connection is closed).
  bool makeProtocol(bool http2);
  // A new HTTP/2 protocol; null (and the connection closed) if it failed.
  std::unique_ptr<Http2Protocol> newHttp2();
  // After the protocol ran: an h2c upgrade it asked for is carried out; the
  // header timeout starts or stops. False when the connection closed.
  bool afterProtocol();
  bool switchToHttp2();
  // Reads what is available (bounded per event) into the protocol. Reading
  // goes on while output is above the watermark: the protocol bounds what input
  // can queue without our output moving (flow control for DATA, concurrency
  // for streams, max_outbound_ack for SETTINGS/PING acknowledgements), and a
  // peer that floods those without reading is only seen if we read.
  void readInput();
  // Produces and writes until the socket or the watermark stops it.
  void writeOutput();
  // Flushes out_ once; returns false when the connection was closed.
  bool flush();
  void afterIo();
  void updateInterest();
  void beginLingeringClose(Linger kind);
  void onLingerEvent();
  void lingerRead();
  // Sends our FIN once everything is out and it is due; re-arms interest and
  // the timer for whatever the lingering connection waits for next.
  void lingerStep();
  void noteBuffered();
  [[nodiscard]] bool wantsToWrite() const;
  // Everything produced has reached the socket: out_ is empty and the transport holds no
  // ciphertext the socket has not taken yet.
  [[nodiscard]] bool outputSent() const { return out_.empty() && transport_->pendingOutput() == 0; }
  void armTimer();
  [[nodiscard]] bool open() const { return state_ != State::kClosed; }
  // We decided to end the connection for `reason` (a GOAWAY goes or went
  // out); a protocol error outranks an idle or shutdown end.
  void endFor(CloseReason reason);
  void closeOnIo(net::IoStatus status, std::string_view what);

  Worker& worker_;
  // The generation this connection was accepted under (reloads do not touch
  // it); declared before transport_, which may use its TLS context.
  std::shared_ptr<const Settings> settings_;
  [[nodiscard]] const ServerConfig& config() const { return settings_->config; }
  int fd_;
  State state_ = State::kHandshake;
  bool abortive_ = false;
  bool fd_gone_ = false;
  bool fin_sent_ = false;
  Linger linger_ = Linger::kWaitForClient;
  // readInput() stopped (read budget) while the transport may still
  // hold decrypted or read-ahead input that no readiness event will announce.
  bool input_pending_ = false;
  bool goaway_sent_ = false;
  bool got_input_ = false;        // the client has sent something (its preface)
  bool reading_head_ = false;     // HTTP/1.1: a request head is arriving (head_since_)
  bool timer_for_write_ = false;  // the timer runs the write timeout, not the idle one
  // Inside onEvent()/startSession(), which produce and write before they
  // return: output queued meanwhile needs no wake-up.
  bool in_io_ = false;
  // Why a connection that we decided to end (idle timeout, the peer's
  // protocol error) is counted when its graceful end completes, including
  // when the peer closes first on our GOAWAY.
  CloseReason end_reason_ = CloseReason::kCompleted;
  std::unique_ptr<net::Transport> transport_;
  std::unique_ptr<ev::IoWatch> watch_;
  std::unique_ptr<ev::Timer> timer_;
  ev::Clock::time_point last_activity_;
  ev::Clock::time_point accepted_at_;
  ev::Clock::time_point goaway_at_;   // draining: when the final GOAWAY is due
  ev::Clock::time_point head_since_;  // reading_head_: when that head began
  ev::Clock::time_point fin_at_;      // lingering: when our FIN is due (not kWaitForClient)
  ev::Clock::time_point linger_until_;
  ev::Clock::time_point linger_timer_at_;  // what the timer is armed for while lingering
  h2::OutputBuffer out_;
  std::string sniffed_;  // cleartext: first bytes before the protocol is known
  // Set while a required PROXY header is still to come (in the handshake state).
  std::unique_ptr<net::ProxyHeaderReader> proxy_;
  // The client's address: from the PROXY header, else the socket's (read once, on first use).
  mutable std::string peer_;
  size_t reported_buffered_ = 0;
  // Declared last: destroyed first, while everything the requests it ends
  // touch is still alive.
  std::unique_ptr<Protocol> protocol_;
};

}  // namespace h2loop::server
