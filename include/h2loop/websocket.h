#pragma once
// WebSocket on h2loop's routes: RFC 6455 over an HTTP/1.1 Upgrade, and
// RFC 8441 over HTTP/2 (extended CONNECT, one stream per WebSocket, next to
// the connection's other streams). Frames are parsed and written by wslay.
//
//   router.websocket("/echo", {
//       .on_message = [](h2loop::WebSocket& ws, h2loop::WebSocket::Type type,
//                        std::string_view data) { ws.send(type, data); },
//   });
//
// Threads and lifetime are those of a Response (h2loop/http.h): callbacks run
// on the connection's loop thread; a WebSocket handle is reference-counted,
// may be copied, kept and used from any thread (an operation from another
// thread is carried to the loop; its Status then means "queued"), and once
// the WebSocket is over every operation returns Status::kClosed and touches
// nothing freed.
//
// Bounds. A message is reassembled up to WebSocketOptions::max_message (a
// longer one closes the WebSocket with 1009). send() takes a message whole
// while the bytes accepted and not yet handed to the connection are below
// WebSocketOptions::send_bound, else it answers kWouldBlock and takes
// nothing; onWritable() then fires once they drained. Under the connection
// sits the stream's own bound (ServerOptions::stream_write_bound), so a
// sender faster than its peer holds at most about those two bounds in the
// server, whatever it does. A peer is read only as fast as what was sent
// leaves: on_message is not called while messages sent earlier still wait
// for the connection, so an application that answers each message with one
// (an echo, a request/response protocol) never meets the send bound, and a
// peer that sends (or pings) without reading is pushed back by TCP or HTTP/2
// flow control rather than buffered.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "h2loop/http.h"

namespace h2loop {

namespace http::detail {
class WebSocketSession;
}

class WebSocket {
 public:
  enum class Type : uint8_t { kText, kBinary };

  WebSocket() = default;
  WebSocket(const WebSocket&) = default;
  WebSocket(WebSocket&&) noexcept = default;
  WebSocket& operator=(const WebSocket&) = default;
  WebSocket& operator=(WebSocket&&) noexcept = default;
  ~WebSocket() = default;

  // Queues one message (copied). kWouldBlock: the send bound is reached,
  // nothing was taken; wait for onWritable(). A text message must be UTF-8
  // (kInvalid otherwise). kClosed once a close was sent or the WebSocket is over.
  Status send(Type type, std::string_view data);
  Status sendText(std::string_view text) { return send(Type::kText, text); }
  Status sendBinary(std::string_view bytes) { return send(Type::kBinary, bytes); }
  // A ping (payload up to 125 bytes); the keepalive sends its own.
  Status ping(std::string_view payload = {});
  // Starts the close handshake (1000 normal, 1001 going away, 4000-4999 the
  // application's; reason up to 123 bytes). The stream ends once the peer's
  // close came back, or after WebSocketOptions::close_timeout.
  Status close(uint16_t code = 1000, std::string_view reason = {});
  // Called on the loop thread after a kWouldBlock, once send() can go on.
  void onWritable(std::function<void()> fn);

  // The WebSocket is over (closed both ways, or its connection is gone).
  [[nodiscard]] bool closed() const;
  // The upgrade request (loop thread only, while the WebSocket is open).
  [[nodiscard]] const Request& request() const;
  // "h2" (RFC 8441) or "http/1.1" (RFC 6455).
  [[nodiscard]] std::string_view protocol() const;
  // The subprotocol agreed with the client (WebSocketOptions::subprotocols),
  // empty when none.
  [[nodiscard]] std::string_view subprotocol() const;

  // Runs fn on the WebSocket's loop thread; false when the server is gone.
  bool post(std::function<void()> fn) const;
  // The loop, for timers (loop thread only).
  [[nodiscard]] ev::Loop& loop() const;

  // Two handles to the same WebSocket compare equal (for sets of peers).
  friend bool operator==(const WebSocket& a, const WebSocket& b) { return a.s_ == b.s_; }
  [[nodiscard]] size_t hash() const { return std::hash<const void*>{}(s_.get()); }
  explicit operator bool() const { return s_ != nullptr; }

 private:
  friend class http::detail::WebSocketSession;
  explicit WebSocket(std::shared_ptr<http::detail::WebSocketSession> s) : s_(std::move(s)) {}
  std::shared_ptr<http::detail::WebSocketSession> s_;
};

// Every callback runs on the loop thread, with a handle the application may
// copy and keep.
struct WebSocketHandlers {
  // The handshake is done; sending may start.
  std::function<void(WebSocket&)> on_open = nullptr;
  // One whole message (fragments reassembled).
  std::function<void(WebSocket&, WebSocket::Type, std::string_view)> on_message = nullptr;
  // Told once. `code`: the peer's close code (1005 when it gave none), 1006
  // when the connection or stream ended without a close handshake, 1009 for
  // a message over max_message, 1002/1007 for a peer's protocol error, 1006
  // when a keepalive ping went unanswered (reason "keepalive timeout").
  std::function<void(WebSocket&, uint16_t code, std::string_view reason)> on_close = nullptr;
};

struct WebSocketOptions {
  // A message (all its fragments) above it closes the WebSocket with 1009.
  size_t max_message = 1024 * 1024;
  // Bytes of messages accepted by send() and not yet taken by the connection.
  size_t send_bound = 64 * 1024;
  // No input for this long: a ping goes out (zero: no keepalive) ...
  std::chrono::milliseconds ping_interval{30'000};
  // ... and with still none this long after it, the WebSocket is dropped.
  std::chrono::milliseconds pong_timeout{10'000};
  // After our close frame, the peer's is awaited this long.
  std::chrono::milliseconds close_timeout{5'000};
  // Subprotocols offered, in order of preference; the first the client
  // also asked for (Sec-WebSocket-Protocol) is agreed. Empty: none.
  std::vector<std::string> subprotocols;
};

}  // namespace h2loop

template <>
struct std::hash<h2loop::WebSocket> {
  size_t operator()(const h2loop::WebSocket& ws) const { return ws.hash(); }
};
