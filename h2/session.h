#pragma once

#include <nghttp2/nghttp2.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "h2/output_buffer.h"
#include "h2/session_allocator.h"
#include "h2/stream.h"
#include "h2/stream_pool.h"

namespace h2loop::h2 {

// nghttp2 protections and flow-control sizes, applied at Session construction.
// The first three are advertised in the initial SETTINGS frame.
struct SessionConfig {
  // SETTINGS_MAX_CONCURRENT_STREAMS; nghttp2 refuses streams beyond it.
  uint32_t max_concurrent_streams = 100;
  // SETTINGS_INITIAL_WINDOW_SIZE for request bodies, per stream. 256 KiB:
  // uploads are not throttled to 64 KiB per RTT, yet 100 streams cannot push
  // more than 25 MiB at us (nghttp2 hands the bytes to the handler at once,
  // the session buffers none of it).
  int32_t initial_window_size = 256 * 1024;
  // Connection-level receive window (nghttp2_session_set_local_window_size),
  // raised above the 65535 default so several uploads proceed in parallel.
  int32_t connection_window_size = 1024 * 1024;
  // SETTINGS_MAX_HEADER_LIST_SIZE, and enforced on receive in
  // on_header_callback (nghttp2 does not): sum of name + value + 32 per field.
  uint32_t max_header_list_size = 64 * 1024;
  // Header fields per request (pseudo-headers and trailers included).
  uint32_t max_header_fields = 128;
  // Incoming RST_STREAM token bucket (rapid reset, CVE-2023-44487): burst,
  // and tokens per second. Given to nghttp2, and enforced by the Session
  // itself as well: nghttp2 only queues a GOAWAY and goes on starting the
  // streams already read until that GOAWAY is serialised; the Session
  // terminates at once (GOAWAY ENHANCE_YOUR_CALM, the rest of the input is
  // ignored), so one large read cannot start thousands of requests.
  uint64_t stream_reset_burst = 1000;
  uint64_t stream_reset_rate = 33;
  // CONTINUATION frames after one HEADERS (CVE-2024-27316 class floods).
  size_t max_continuations = 8;
  // Entries per received SETTINGS frame.
  size_t max_settings = 32;
  // Queued outgoing SETTINGS/PING ACKs before the peer counts as flooding.
  size_t max_outbound_ack = 1000;
  // DATA frames in a row with no payload and no END_STREAM (padding only
  // counts as none) before GOAWAY(ENHANCE_YOUR_CALM): each costs a frame's
  // work and moves nothing, and flow control does not bound them
  // (CVE-2019-9518). nghttp2 has no limit of its own for them.
  uint32_t max_empty_data_frames = 64;
  // SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441): extended CONNECT, the
  // HTTP/2 way to open a WebSocket. nghttp2 then accepts :protocol.
  bool enable_connect_protocol = false;
};

// The server's side of a Session. Every callback runs synchronously from
// inside Session::receive(), Session::produce() or ~Session(), with the
// Session holding a reference to the stream. Callbacks may call
// Session::submitResponse()/shutdownNotice()/goaway()/terminate() and the
// Stream write functions (all only queue work), and may take StreamRefs; they
// must not call receive() or produce() (asserted) nor destroy the Session.
class SessionHandler {
 public:
  virtual ~SessionHandler() = default;
  // Request headers complete. end_stream: the request has no body (END_STREAM
  // came with the headers); onRequestEnd() follows immediately in that case.
  virtual void onRequest(Stream& stream, bool end_stream) = 0;
  // A chunk of request body. Default: discard (it is counted in
  // Stream::requestBodyBytes() and flow-control window is returned anyway).
  virtual void onRequestData(Stream& stream, const uint8_t* data, size_t len) {
    (void)stream;
    (void)data;
    (void)len;
  }
  // The request is complete (END_STREAM seen). Called exactly once per
  // request that got onRequest(), unless the stream was reset first.
  virtual void onRequestEnd(Stream& stream) { (void)stream; }
  // Called exactly once for every stream the session accepted (including
  // streams reset before their headers completed, which never got
  // onRequest(); refused streams get neither). The stream is already marked
  // closed (writes are no-ops). error_code is the HTTP/2 code
  // (NGHTTP2_NO_ERROR for a completed exchange; NGHTTP2_CANCEL when the
  // Session is destroyed with the stream open). Release what Stream::user()
  // points to here.
  virtual void onStreamClosed(Stream& stream, uint32_t error_code) {
    (void)stream;
    (void)error_code;
  }
  // A streamed body asked to be told (Stream::notifyWhenDrained()) and its
  // queued bytes fell to the threshold. Runs inside produce(): only note it
  // here; appending from inside is not allowed.
  virtual void onStreamDrained(Stream& stream) { (void)stream; }
};

enum class SessionStatus {
  kOk,
  kFatal,  // close the connection; lastError() says why
};

struct RecvResult {
  // kOk also when the input held a connection error (connectionError() != 0):
  // the GOAWAY is queued; produce() it, then end the connection.
  SessionStatus status = SessionStatus::kOk;
  size_t consumed = 0;  // bytes nghttp2 consumed (all of them on kOk)
  // The nghttp2 library error that stopped the input (kFatal, or the
  // connection error found, e.g. NGHTTP2_ERR_BAD_CLIENT_MAGIC); 0 otherwise.
  int error = 0;
};

struct ProduceResult {
  SessionStatus status = SessionStatus::kOk;
  size_t bytes = 0;  // bytes added to the OutputBuffer
  int error = 0;     // nghttp2 error code on kFatal
};

// Remembers which of the most recent client-initiated (odd) stream ids the
// peer opened with HEADERS. RFC 9113 §5.1.1: the first use of a stream id
// closes every idle stream with a lower id, and a HEADERS frame on one of
// those is a connection error (PROTOCOL_ERROR). nghttp2 1.52 ignores such a
// frame; telling it apart from trailers on a stream we already reset needs
// to know whether the id was ever used. The window is bounded (kWindow ids
// back from the highest); older ids are kUnknown and left to nghttp2.
class PeerStreamIds {
 public:
  enum class Seen : uint8_t { kUsed, kSkipped, kUnknown, kNew };
  static constexpr uint32_t kWindow = 1024;

  // Records the HEADERS of a new stream id (higher than every one before).
  void open(uint32_t id);
  [[nodiscard]] Seen lookup(uint32_t id) const;
  [[nodiscard]] uint32_t highest() const { return highest_; }

 private:
  void set(uint32_t slot, bool used);
  [[nodiscard]] bool get(uint32_t slot) const;

  std::array<uint64_t, kWindow / 64> bits_{};  // by (id / 2) % kWindow
  uint32_t highest_ = 0;
};

// Server side of one HTTP/2 connection: bytes in (receive), bytes out
// (produce). Knows nothing of sockets, TLS or event loops.
//
// Lifetime: the StreamPool and the SessionHandler must outlive the Session
// (the destructor calls onStreamClosed for streams still open). A server
// object that is itself the handler should destroy the Session first thing in
// its destructor, or declare it after every member onStreamClosed touches.
//
// Errors never throw; the first error is kept (lastError(), lastErrorCode())
// and every later receive()/produce() returns kFatal.
class Session final : public StreamOwner {
 public:
  // allocator: where nghttp2's memory comes from (shared by a worker's
  // sessions; this session keeps it alive). nullptr: malloc.
  Session(StreamPool& pool, SessionHandler& handler, const SessionConfig& config = {},
          std::shared_ptr<SessionAllocator> allocator = nullptr);
  // Final destruction: frees the nghttp2 session, then marks every stream it
  // still holds closed, calls onStreamClosed(NGHTTP2_CANCEL) and drops the
  // session's reference. Streams with other holders stay alive (closed) and
  // return to the pool when those drop.
  ~Session();

  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // False when construction failed (out of memory); see lastError().
  [[nodiscard]] bool valid() const { return ngh_ != nullptr && !failed_; }

  // h2c upgrade (RFC 7540 §3.2): `settings` is the decoded HTTP2-Settings
  // payload; `request` is the upgrading HTTP/1.1 request's stream, complete,
  // with the reference its HTTP/1.1 session held, which this session now
  // holds. It becomes stream 1 (half-closed remote) and is dispatched
  // (onRequest, onRequestEnd) at once. False: nghttp2 refused the settings;
  // the stream was released untouched by any handler.
  [[nodiscard]] bool upgrade(std::string_view settings, Stream* request);

  // Feeds received bytes to nghttp2. Nothing is written while parsing:
  // responses submitted from handler callbacks are queued until produce().
  // A connection error of the peer's making (invalid preface, frame-level
  // protocol error, flood, too many CONTINUATIONs, a stream id that went
  // backwards, rapid reset) is not fatal here: it queues GOAWAY with its code
  // (connectionError()), the rest of the input is ignored, and produce()
  // still delivers that GOAWAY so the peer can read why (RFC 9113 §5.4.1).
  // Only a failure of our own (out of memory, a callback that failed) is
  // kFatal.
  [[nodiscard]] RecvResult receive(const uint8_t* data, size_t len);

  // Serialises pending frames into out until nghttp2 has nothing more or out
  // is above its high watermark (nghttp2 keeps the rest; call again after
  // draining). out never grows beyond highWatermark() + one frame. File
  // bodies are pread straight into out's tail. Never call while dispatching.
  [[nodiscard]] ProduceResult produce(OutputBuffer& out);

  // Queues the response for stream (a Stream of this session). Adds
  // content-length for bytes/file bodies. HEAD requests and 204/304 get
  // headers only with END_STREAM. At most kMaxResponseHeaders headers.
  static constexpr size_t kMaxResponseHeaders = 64;
  [[nodiscard]] SubmitResult submitResponse(Stream& stream, int status,
                                            std::span<const Header> headers,
                                            const ResponseBody& body) override;

  // Returns `len` bytes of flow-control credit of a stream that holds its
  // window (Stream::holdWindow()); a WINDOW_UPDATE follows.
  void consumeStream(Stream& stream, size_t len) override;
  // RST_STREAM(error_code) for an open stream.
  [[nodiscard]] SubmitResult resetStream(Stream& stream, uint32_t error_code) override;

  // Graceful shutdown, step 1: GOAWAY with last-stream-id 2^31-1.
  [[nodiscard]] bool shutdownNotice();
  // Step 2 (about one RTT later): GOAWAY with the last processed stream id;
  // streams up to it may finish.
  [[nodiscard]] bool goaway(uint32_t error_code);
  // GOAWAY and close once it is sent; open streams are abandoned.
  [[nodiscard]] bool terminate(uint32_t error_code);

  [[nodiscard]] bool wantRead() const;
  [[nodiscard]] bool wantWrite() const;
  // Neither side wants anything: once the OutputBuffer is drained too, close.
  [[nodiscard]] bool finished() const { return !wantRead() && !wantWrite(); }

  [[nodiscard]] size_t activeStreams() const { return active_streams_; }
  // Streams refused with RST_STREAM(REFUSED_STREAM) because the pool was empty.
  [[nodiscard]] uint64_t refusedStreams() const { return refused_streams_; }
  // Streams reset for exceeding max_header_list_size / max_header_fields.
  [[nodiscard]] uint64_t headerLimitResets() const { return header_limit_resets_; }
  // Streams reset because pread of their file failed or came up short.
  [[nodiscard]] uint64_t fileErrors() const { return file_errors_; }

  [[nodiscard]] const std::string& lastError() const { return error_; }
  [[nodiscard]] int lastErrorCode() const { return error_code_; }
  // The HTTP/2 error code of the connection error the peer committed (0:
  // none): the session ends the connection with GOAWAY(code) over the peer's
  // conduct, whether nghttp2 decided it (set when the GOAWAY is sent) or the
  // Session did (set at once, before the GOAWAY leaves).
  [[nodiscard]] uint32_t connectionError() const { return connection_error_; }
  // Why, in words, for the log line: nghttp2's own message or ours.
  [[nodiscard]] const std::string& connectionErrorReason() const { return peer_error_; }
  // The peer sent GOAWAY: it starts no new streams and wants none from us.
  // Streams in flight go on; once none is left nghttp2 reads nothing more
  // (finished()), and the connection ends.
  [[nodiscard]] bool peerGoaway() const { return peer_goaway_; }

 private:
  friend class Stream;
  // Captureless nghttp2 trampolines and the shared callbacks table
  // (session.cc); they forward to the members below.
  struct Callbacks;

  struct NghttpDeleter {
    void operator()(nghttp2_session* s) const { nghttp2_session_del(s); }
  };

  // nghttp2 callbacks.
  int onBeginHeaders(const nghttp2_frame* frame);
  int onHeader(const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
               const uint8_t* value, size_t valuelen);
  int onFrameRecv(const nghttp2_frame* frame);
  int onFrameSend(const nghttp2_frame* frame);
  int onBeginFrame(const nghttp2_frame_hd& hd);
  void onLibraryError(int lib_error_code, std::string_view message);
  int onDataChunkRecv(int32_t stream_id, const uint8_t* data, size_t len);
  int onStreamClose(int32_t stream_id, uint32_t error_code);
  ssize_t onDataRead(Stream& s, uint8_t* buf, size_t length, uint32_t* data_flags);
  int onSendData(nghttp2_frame* frame, const uint8_t* framehd, size_t length, Stream& s);

  // Wakes a deferred data source (streamed bodies).
  void resumeData(Stream& s) override;
  // The stream's trailers, if any, from inside its data source at EOF.
  bool submitTrailers(Stream& s, uint32_t* data_flags);
  [[nodiscard]] Stream* findStream(int32_t stream_id) const;
  void link(Stream& s);
  void unlink(Stream& s);
  // Takes one token for a received RST_STREAM; false when the bucket is dry.
  bool takeResetToken();
  // Connection error: GOAWAY(code) is queued at once and nghttp2 ignores
  // the rest of the input. Keeps the first code and reason.
  void connectionErrorFound(uint32_t code, std::string_view why);
  // Keeps the first error; returns NGHTTP2_ERR_CALLBACK_FAILURE.
  int fail(int code, const char* what);

  StreamPool& pool_;
  SessionHandler& handler_;
  SessionConfig config_;
  std::shared_ptr<SessionAllocator> allocator_;  // declared first: outlives ngh_
  std::unique_ptr<nghttp2_session, NghttpDeleter> ngh_;

  Stream* streams_ = nullptr;  // intrusive list of streams nghttp2 knows
  size_t active_streams_ = 0;
  OutputBuffer* out_ = nullptr;  // set only during produce()
  bool dispatching_ = false;
  bool failed_ = false;

  uint64_t refused_streams_ = 0;
  uint64_t header_limit_resets_ = 0;
  uint64_t file_errors_ = 0;
  uint32_t empty_data_in_a_row_ = 0;
  // Rapid-reset bucket, filled lazily at the first RST_STREAM received.
  uint64_t reset_tokens_ = 0;
  int64_t reset_tokens_at_ = -1;  // steady clock, whole seconds
  uint32_t connection_error_ = 0;
  bool peer_goaway_ = false;
  std::string peer_error_;
  // Client stream ids seen: a HEADERS frame may reuse one (trailers, or a
  // stream we reset) but never an idle id that a higher one closed.
  PeerStreamIds peer_ids_;
  std::string error_;
  int error_code_ = 0;
};

}  // namespace h2loop::h2
