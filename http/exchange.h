#pragma once
// Internal: what stands behind a Response handle (include/h2loop/http.h).

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_set>

#include "eventloop/loop.h"
#include "h2/stream.h"
#include "h2loop/http.h"

namespace h2loop::http::detail {

class Exchange;

// Figures of one worker's exchanges, read by the metrics endpoint. Written on
// the loop thread except app_handles (any thread holding a handle).
struct ExchangeCounters {
  std::atomic<int64_t> app_handles{0};      // Response handles alive (gauge)
  std::atomic<int64_t> exchanges_alive{0};  // Exchange objects alive (gauge)
  std::atomic<int64_t> unanswered{0};       // requests that ended with no response
  std::atomic<int64_t> dropped{0};          // every handle gone, no response: 500
  std::atomic<int64_t> timeouts{0};         // response timeout: 504
  std::atomic<int64_t> handler_errors{0};   // a handler or callback threw
  std::atomic<int64_t> queued_bytes{0};     // streamed-body bytes queued by write() (gauge)
  std::atomic<int64_t> ws_open{0};          // WebSockets open (gauge)
  std::atomic<int64_t> ws_total{0};         // WebSockets opened
  std::atomic<int64_t> ws_h2_total{0};      // of which over HTTP/2 (RFC 8441)
  std::atomic<int64_t> ws_queued_bytes{0};  // accepted by send(), not yet on the stream (gauge)
  std::atomic<int64_t> ws_send_refused{0};  // send() answered kWouldBlock
  std::atomic<int64_t> ws_messages_in{0};
  std::atomic<int64_t> ws_messages_out{0};
};

// The door from application threads to one worker's loop. Shared by the
// worker and every Exchange it made (so by every application handle). The
// worker kills it at teardown; from then on nothing is posted and an
// Exchange whose last handle drops is freed on the spot, under the lock that
// the teardown of the stream pool also holds (see kill()).
class Anchor {
 public:
  explicit Anchor(ev::Loop& loop) : loop_(&loop) {}

  // Runs fn on the loop thread; false once the worker is gone.
  bool post(std::function<void()> fn);
  // True on the loop's thread while the worker lives.
  [[nodiscard]] bool onLoopThread() const;
  // The loop (loop thread only, while the worker lives).
  [[nodiscard]] ev::Loop& loop() const { return *loop_; }
  // Worker teardown: runs `teardown` (the stream pool's destruction, which
  // orphans the streams handles still hold) and marks the anchor dead, both
  // under the lock.
  void kill(const std::function<void()>& teardown);
  // Deletes `e` on the loop thread if the worker lives, else here and now
  // under the lock (after the teardown, never during it).
  void release(Exchange* e);
  // The calling thread runs this anchor's loop now (the Service says so at
  // its entry points): onLoopThread() answers without the lock.
  void enteredLoop() const;

  // Loop thread: what is told when the worker begins its graceful shutdown
  // (open WebSockets send their 1001 close). A listener removes itself
  // before it goes away; it may remove itself from its own call.
  class ShutdownListener {
   public:
    virtual void onShutdown() = 0;

   protected:
    ~ShutdownListener() = default;
  };
  void addShutdownListener(ShutdownListener* l) { shutdown_listeners_.insert(l); }
  void removeShutdownListener(ShutdownListener* l) { shutdown_listeners_.erase(l); }
  void notifyShutdown();

  ExchangeCounters counters;

 private:
  mutable std::mutex mu_;
  ev::Loop* loop_;                                            // nullptr once dead
  std::unordered_set<ShutdownListener*> shutdown_listeners_;  // loop thread
};

// What an exchange needs of its connection (implemented by the server's
// Connection). Loop thread only; valid while the exchange is open.
class ConnectionView {
 public:
  // Output was queued outside the connection's own I/O: produce and write.
  virtual void wakeWriter() = 0;
  [[nodiscard]] virtual std::string peerAddress() const = 0;
  [[nodiscard]] virtual bool isTls() const = 0;
  [[nodiscard]] virtual std::string_view alpn() const = 0;
  [[nodiscard]] virtual std::string_view sni() const = 0;
  // IMF-fixdate of the current second, for the date header.
  [[nodiscard]] virtual std::string_view httpDate() = 0;

 protected:
  ~ConnectionView() = default;
};

struct ExchangeConfig {
  size_t write_bound = 64 * 1024;
  ev::Duration response_timeout{};  // zero: none
};

// One request/response exchange on a pooled h2::Stream, as the application
// sees it. Owned by std::shared_ptr: the Service holds one reference from
// the request's headers to the stream's close, each Response handle one
// more. The stream reference it holds is released on the loop thread (or,
// after the worker died, under the anchor's lock), whoever drops last.
//
// Loop-thread state is plain; what other threads read is atomic.
class Exchange {
 public:
  // The Service's entry points (loop thread).
  static std::shared_ptr<Exchange> make(std::shared_ptr<Anchor> anchor, h2::Stream& stream,
                                        ConnectionView& conn, const ExchangeConfig& config);
  ~Exchange();
  Exchange(const Exchange&) = delete;
  Exchange& operator=(const Exchange&) = delete;

  // Runs the handler (a throw becomes a 500) and arms the response timeout.
  void run(const Handler& handler);
  void onData(const uint8_t* data, size_t len);
  void onEnd();
  // The stream closed. `why` as the server sees it.
  void onClosed(CloseReason why);
  // The stream's queued bytes fell below the low mark (after produce()).
  void onDrained();

  // Response's operations: any thread.
  Status respond(int status, const Headers& headers, std::string_view body);
  Status respondFile(int status, const Headers& headers, const std::filesystem::path& file);
  Status start(int status, const Headers& headers);
  Status write(std::string_view bytes);
  Status end(const Headers& trailers);
  Status reset();
  Status pauseBody();
  Status resumeBody();
  void onBody(std::function<void(std::string_view)> on_chunk, std::function<void()> on_end);
  void collectBody(size_t limit, std::function<void(std::string)> done);
  void onWritable(std::function<void()> fn);
  void onClose(std::function<void(CloseReason)> fn);
  [[nodiscard]] bool closed() const { return closed_flag_.load(std::memory_order_acquire); }
  [[nodiscard]] bool responded() const { return responded_flag_.load(std::memory_order_acquire); }
  bool post(std::function<void()> fn) { return anchor_->post(std::move(fn)); }
  [[nodiscard]] const std::shared_ptr<Anchor>& anchor() const { return anchor_; }
  // Loop thread, in the handler: takes the tunnel the request asked for
  // (h2::Stream::acceptTunnel()).
  bool acceptTunnel() { return !closed_ && stream_->acceptTunnel(); }
  [[nodiscard]] ev::Loop& loop() const { return anchor_->loop(); }

  // Handles (Response) held by the application.
  void handleAdded();
  void handleDropped();

  // Loop thread.
  [[nodiscard]] const h2::Stream& stream() const { return *stream_; }
  [[nodiscard]] const Request& request() const { return request_; }
  [[nodiscard]] const ConnectionView* connection() const { return conn_; }
  [[nodiscard]] int status() const { return status_; }
  [[nodiscard]] uint64_t bytesQueued() const { return bytes_out_; }

 private:
  Exchange(std::shared_ptr<Anchor> anchor, h2::Stream& stream, ConnectionView& conn,
           const ExchangeConfig& config);
  struct Deleter {
    void operator()(Exchange* e) const;
  };

  [[nodiscard]] bool here() const { return anchor_->onLoopThread(); }
  // Runs `op` on the loop thread (now if already there) with this exchange
  // kept alive; kClosed when it cannot run any more.
  Status onLoop(std::function<void(Exchange&)> op);

  // Loop-thread halves of the operations above.
  Status respondHere(int status, const Headers& headers, std::string_view body);
  Status submit(int status, const Headers& headers, const h2::ResponseBody& body);
  Status startHere(int status, const Headers& headers);
  Status writeHere(std::string_view bytes);
  // Reserves and posts the bytes behind what is already queued for the loop.
  Status writeQueued(std::string_view bytes);
  // Counts `len` more bytes queued unless that crosses the bound (a write
  // into an empty queue is always taken).
  bool reserve(size_t len);
  void unreserve(size_t len);
  // The largest write refused since the writer was last told writable.
  void noteRefused(size_t len);
  // Queued bytes at or below which onWritable() fires.
  [[nodiscard]] size_t writableMark() const;
  void appendReserved(std::string_view bytes);
  // Takes what nghttp2 consumed since the last look off queued_.
  void syncQueued();
  Status endHere(const Headers& trailers);
  Status resetHere();
  void resumeHere();
  void deliverBody();
  void deliverChunk(std::string_view chunk);
  void askWritable();
  void armResponseTimeout();
  void responseTimedOut();
  void allHandlesDropped();
  // The exchange is over for the application: ops return kClosed, onClose
  // runs once, callbacks (and the handles they captured) are dropped.
  void finish(CloseReason why);
  [[nodiscard]] bool open() const { return !closed_; }
  void guarded(const char* what, const std::function<void()>& fn);
  void failHandler(const char* what, std::string_view error);

  std::shared_ptr<Anchor> anchor_;
  std::weak_ptr<Exchange> self_;
  h2::StreamRef stream_;
  ConnectionView* conn_;  // nullptr once closed
  ExchangeConfig config_;
  Request request_;

  // Loop thread.
  bool closed_ = false;
  bool started_ = false;  // a streamed response began
  bool ended_ = false;    // end() queued
  bool aborted_ = false;  // reset() by the handler
  bool in_handler_ = false;
  bool dropped_in_handler_ = false;
  bool body_wanted_ = false;  // onBody/collectBody/pauseBody during the handler
  bool paused_ = false;
  bool body_end_seen_ = false;
  bool body_end_told_ = false;
  bool writable_asked_ = false;
  int status_ = 0;
  uint64_t bytes_out_ = 0;
  size_t last_buffered_ = 0;  // stream's bufferedBody() at the last syncQueued()
  CloseReason close_reason_ = CloseReason::kCompleted;
  std::string held_body_;  // chunks received while paused (at most one window)
  std::function<void(std::string_view)> on_chunk_;
  int in_chunk_callback_ = 0;  // on_chunk_ is running (finish() must not destroy it)
  std::function<void()> on_end_;
  std::function<void()> on_writable_;
  std::function<void(CloseReason)> on_close_;
  std::unique_ptr<ev::Timer> response_timer_;

  // Any thread.
  std::atomic<bool> closed_flag_{false};
  std::atomic<bool> responded_flag_{false};
  std::atomic<bool> started_flag_{false};
  std::atomic<int> handles_{0};
  // Bytes of a streamed body queued: in the stream, or posted on the way to
  // it. Only ever added to (reserve) and taken from (what nghttp2 took), so
  // concurrent writers cannot push it past the bound together.
  std::atomic<size_t> queued_{0};
  std::atomic<bool> writable_requested_{false};  // another thread asked for onWritable
  std::atomic<size_t> refused_{0};
};

}  // namespace h2loop::http::detail
