#pragma once
// Internal: what stands behind a WebSocket handle (include/h2loop/websocket.h).

#include <wslay/wslay.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "eventloop/loop.h"
#include "h2loop/http.h"
#include "h2loop/websocket.h"
#include "http/exchange.h"

namespace h2loop::http::detail {

// RFC 3629 UTF-8 (what a text message and a close reason must be).
bool validUtf8(std::string_view s);

// One WebSocket: a wslay server context between the exchange's request body
// (the peer's bytes) and its streamed response (ours). Owned by
// std::shared_ptr: the exchange's callbacks hold it until the exchange ends,
// the application's WebSocket handles for as long as they like. Everything
// wslay and the exchange are touched on the loop thread only, while the
// WebSocket is open; from other threads the operations reserve their bytes
// (atomically, against the send bound) and post the rest.
//
// Lifecycle: upgrade() → open (callbacks registered, on_open) → messages →
// the close handshake, a peer's END_STREAM, an abort (keepalive, protocol
// failure) or the exchange's own end (connection gone, shutdown) →
// exchangeClosed(): on_close once, the wslay context and the timer freed, the
// exchange's handle dropped. Only a shell answering kClosed outlives it.
class WebSocketSession final : public std::enable_shared_from_this<WebSocketSession>,
                               private Anchor::ShutdownListener {
 public:
  struct Config {
    WebSocketHandlers handlers;
    WebSocketOptions options;
  };

  // The route's handler: validates the handshake, answers it (101 over
  // HTTP/1.1, 200 over HTTP/2) and opens the WebSocket; otherwise 400/426.
  static void upgrade(const std::shared_ptr<const Config>& config, const Request& req,
                      Response res);

  ~WebSocketSession();
  WebSocketSession(const WebSocketSession&) = delete;
  WebSocketSession& operator=(const WebSocketSession&) = delete;

  // The handle's operations (any thread).
  Status send(WebSocket::Type type, std::string_view data);
  Status ping(std::string_view payload);
  Status close(uint16_t code, std::string_view reason);
  void onWritable(std::function<void()> fn);
  [[nodiscard]] bool closed() const { return over_flag_.load(std::memory_order_acquire); }
  [[nodiscard]] const Request& request() const { return res_.request(); }
  [[nodiscard]] std::string_view protocol() const { return over_h2_ ? "h2" : "http/1.1"; }
  [[nodiscard]] const std::string& subprotocol() const { return subprotocol_; }
  bool post(std::function<void()> fn) const;
  [[nodiscard]] ev::Loop& loop() const;

 private:
  WebSocketSession(std::shared_ptr<const Config> config, Response res, bool over_h2);

  // Loop thread.
  bool open();
  void opened();
  void received(std::string_view chunk);
  void peerEnded();
  void message(const wslay_event_on_msg_recv_arg& arg);
  Status queueHere(uint8_t opcode, std::string_view data, bool reserved);
  // Moves queued frames to the stream, then settles what follows from
  // where the output stands: reading paused or not, the writer told, the
  // stream ended after the close handshake.
  void flush();
  void flushOnce();
  // wslay_event_send(); false when the WebSocket ended under it.
  bool sendQueued();
  void maybeWritable();
  void timerFired();
  // Ends it without a handshake: RST_STREAM over HTTP/2, the connection
  // over HTTP/1.1.
  void abort(uint16_t code, std::string_view why);
  void exchangeClosed(CloseReason why);
  // Anchor::ShutdownListener: the server is going away (1001).
  void onShutdown() override;
  // Frees the wslay context once over and no wslay call is under way.
  void releaseContext();
  void guarded(const char* what, const std::function<void()>& fn);

  // Any thread: the send bound's accounting.
  bool reserve(size_t len);
  void unreserve(size_t len);

  static ssize_t recvCallback(wslay_event_context_ptr ctx, uint8_t* buf, size_t len, int flags,
                              void* user);
  static ssize_t sendCallback(wslay_event_context_ptr ctx, const uint8_t* data, size_t len,
                              int flags, void* user);
  static int genmaskCallback(wslay_event_context_ptr ctx, uint8_t* buf, size_t len, void* user);
  static void frameStartCallback(wslay_event_context_ptr ctx,
                                 const wslay_event_on_frame_recv_start_arg* arg, void* user);
  static void msgCallback(wslay_event_context_ptr ctx, const wslay_event_on_msg_recv_arg* arg,
                          void* user);

  std::shared_ptr<const Config> config_;
  std::shared_ptr<Anchor> anchor_;  // the worker's door: outlives the exchange
  Response res_;                    // empty once over
  const bool over_h2_;
  std::string path_;  // for log lines
  std::string subprotocol_;

  // Loop thread.
  wslay_event_context_ptr ctx_ = nullptr;
  int in_wslay_call_ = 0;  // depth of wslay_event_recv/send under way
  std::string in_;         // input not yet taken by wslay, from in_offset_ on
  size_t in_offset_ = 0;
  std::unique_ptr<ev::Timer> timer_;
  ev::Clock::time_point last_input_{};
  bool awaiting_pong_ = false;
  bool closing_ = false;        // close() was called, or wslay sent a close of its own
  bool close_pending_ = false;  // close() waits for the messages queued before it
  uint16_t pending_close_code_ = 0;
  std::string pending_close_reason_;
  bool ended_ = false;  // the stream's end was queued
  bool input_paused_ = false;
  bool flushing_ = false;
  bool flush_again_ = false;
  bool peer_ended_ = false;      // HTTP/2 END_STREAM arrived
  bool peer_end_seen_ = false;   // ... and was acted on, after the input before it
  bool protocol_error_ = false;  // an invalid close frame (1002 queued)
  bool counted_ = false;         // in ws_open
  bool over_ = false;
  uint16_t close_code_ = 0;
  std::string close_reason_;
  size_t in_wslay_ = 0;  // reserved bytes queued into wslay, not yet credited
  std::function<void()> on_writable_;

  // Any thread.
  std::atomic<bool> over_flag_{false};
  std::atomic<bool> refused_{false};
  std::atomic<size_t> pending_{0};  // accepted by send(), not yet on the stream
};

}  // namespace h2loop::http::detail
