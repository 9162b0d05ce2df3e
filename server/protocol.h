#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "h2/output_buffer.h"

namespace h2loop::server {

enum class ProtocolStatus : uint8_t {
  kOk,     // input consumed (or a connection error found: see connectionError())
  kFatal,  // our own failure (out of memory, a callback failed): close now, abortively
};

// What a Connection drives once its transport is up: bytes in, bytes out,
// and whether anything is left to do. The Connection owns the lifecycle
// (timers, watermarks, the one close, how the connection ends); the protocol
// owns the wire format and the requests (Http2Protocol, Http1Protocol). It
// knows nothing of sockets, TLS or event loops, and the Connection knows
// nothing of nghttp2.
//
// Every call is made on the connection's loop thread; none re-enters another
// (receive() never calls produce()). Destroying the protocol ends every
// request still open (their close callbacks run inside the destructor).
class Protocol {
 public:
  virtual ~Protocol() = default;

  // Bytes received from the peer.
  [[nodiscard]] virtual ProtocolStatus receive(const uint8_t* data, size_t len) = 0;
  // Appends what is ready to `out` until `out` is above its high watermark
  // (never beyond it by more than one frame); the rest stays queued.
  [[nodiscard]] virtual ProtocolStatus produce(h2::OutputBuffer& out) = 0;

  [[nodiscard]] virtual bool wantRead() const = 0;
  [[nodiscard]] virtual bool wantWrite() const = 0;
  // Nothing more to read or write: once the output is sent, the end.
  [[nodiscard]] bool finished() const { return !wantRead() && !wantWrite(); }
  [[nodiscard]] virtual size_t activeStreams() const = 0;

  // The peer committed a connection error: an answer saying why (GOAWAY with
  // the error code; a 505 to HTTP/1.1 on an HTTP/2-only port) is queued, and
  // the connection ends once it is sent (RFC 9113 §5.4.1). Input is ignored
  // from then on.
  [[nodiscard]] virtual bool connectionError() const = 0;
  // For the log line: what was answered and why, e.g.
  // "GOAWAY(PROTOCOL_ERROR): invalid connection preface".
  [[nodiscard]] virtual std::string connectionErrorDescription() const = 0;
  // The peer said it is done (an HTTP/2 GOAWAY): requests in flight finish,
  // no new ones come; finished() follows once none is left.
  [[nodiscard]] virtual bool peerGoaway() const = 0;

  // Graceful end in two steps: a notice that no new requests are accepted
  // soon, then (about one round trip later) the final word; in-flight
  // requests finish. HTTP/2: GOAWAY(2^31-1), then GOAWAY(last stream).
  virtual void shutdownNotice() = 0;
  virtual void goaway() = 0;

  // Why receive()/produce() failed (kFatal), for the log.
  [[nodiscard]] virtual std::string_view lastError() const = 0;

  // --- what only some protocols do (HTTP/1.1) ---
  // Input is held and no more should be read for now (pipelined requests
  // wait for the one being answered); produce() makes room.
  [[nodiscard]] virtual bool inputPaused() const { return false; }
  // A request head is arriving and is not complete (the header timeout runs).
  [[nodiscard]] virtual bool readingHead() const { return false; }
  // The header timeout expired: answer it (408) and end (connectionError()).
  virtual void headerTimeout() {}
  // Whether our graceful end sends our FIN first (HTTP/1.1 has no GOAWAY
  // to make the client close) instead of waiting for the client's.
  [[nodiscard]] virtual bool closesFirst() const { return false; }
  // The client asked to switch to HTTP/2 (h2c upgrade) and the request is
  // complete: the connection hands it over (Connection::switchToHttp2()).
  [[nodiscard]] virtual bool upgradeRequested() const { return false; }
};

}  // namespace h2loop::server
