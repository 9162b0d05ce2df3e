#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "h2/file_handle.h"

namespace h2loop::h1 {
class Session;
}  // namespace h2loop::h1

namespace h2loop::h2 {

class Session;
class Stream;
class StreamPool;

// One response header field. The views only need to live for the duration of
// the submitResponse() call: the Session copies them into the stream's own
// (reused) storage, which nghttp2 then reads without a copy of its own.
// Names must be lowercase.
struct Header {
  std::string_view name;
  std::string_view value;
};

// One request header field kept by a Stream (regular fields and trailers;
// the four request pseudo-headers are kept apart). Storage is reused across
// pool cycles.
struct HeaderField {
  std::string name;
  std::string value;
};

// One piece of a file body made of several (a multipart/byteranges answer):
// the next `text_length` bytes of the body's text, then `file_length` bytes of
// the file from `file_offset`. Either length may be 0.
struct BodyPiece {
  uint64_t text_length = 0;
  uint64_t file_offset = 0;
  uint64_t file_length = 0;
};

// Result of a write through a Stream / Session.
enum class SubmitResult {
  kOk,
  kClosed,            // the stream was closed (reset, connection gone): no-op
  kAlreadySubmitted,  // submitResponse() called twice
  kBadState,          // appendBody()/endBody() without a streamed response
  kInvalid,           // bad status, too many headers, null file handle
  kFailed,            // nghttp2 refused the submission (see Session::lastError())
};

// Describes the response body handed to submitResponse(). A plain value; what
// it points to is only read during the call.
class ResponseBody {
 public:
  enum class Kind : uint8_t { kNone, kBytes, kFile, kStreamed };

  static ResponseBody none() { return {}; }
  // Small generated bodies; copied into the stream's reused storage.
  static ResponseBody bytes(std::string_view b) {
    ResponseBody r;
    r.kind_ = Kind::kBytes;
    r.bytes_ = b;
    return r;
  }
  // A byte range of an open file, sent zero-copy (pread straight into the
  // OutputBuffer, or one copy from FileHandle::memory() when it has it). submitResponse() takes one
  // FileHandle reference which the stream drops when it goes back to its pool, on every path.
  static ResponseBody file(FileHandle* file, uint64_t offset, uint64_t length) {
    ResponseBody r;
    r.kind_ = Kind::kFile;
    r.file_ = file;
    r.offset_ = offset;
    r.length_ = length;
    return r;
  }
  // A file body made of several pieces: small generated text (copied, like
  // bytes()) interleaved with ranges of the file (read like file(), never
  // buffered whole). `text` is the concatenation of every piece's text, in
  // order; length() is the whole body. Kind is kFile: everything that frames a
  // file body (content-length, HEAD, references) applies unchanged.
  static ResponseBody filePieces(FileHandle* file, std::span<const BodyPiece> pieces,
                                 std::string_view text) {
    ResponseBody r;
    r.kind_ = Kind::kFile;
    r.file_ = file;
    r.pieces_ = pieces;
    r.bytes_ = text;
    r.length_ = text.size();
    for (const BodyPiece& p : pieces)
      r.length_ += p.file_length;
    return r;
  }
  // Bytes are supplied later with Stream::appendBody()/endBody().
  static ResponseBody streamed() {
    ResponseBody r;
    r.kind_ = Kind::kStreamed;
    return r;
  }

  [[nodiscard]] Kind kind() const { return kind_; }
  [[nodiscard]] std::string_view bytesView() const { return bytes_; }
  [[nodiscard]] FileHandle* fileHandle() const { return file_; }
  [[nodiscard]] uint64_t offset() const { return offset_; }
  [[nodiscard]] uint64_t length() const { return length_; }
  // Non-empty for filePieces().
  [[nodiscard]] std::span<const BodyPiece> pieces() const { return pieces_; }

 private:
  Kind kind_ = Kind::kNone;
  std::string_view bytes_;
  std::span<const BodyPiece> pieces_;
  FileHandle* file_ = nullptr;
  uint64_t offset_ = 0;
  uint64_t length_ = 0;
};

// What a Stream's writes go to while it is open: the protocol session that
// carries it (h2::Session for HTTP/2, h1::Session for HTTP/1.1). Called on the
// loop thread only, through the Stream (which checks it is still open).
class StreamOwner {
 public:
  [[nodiscard]] virtual SubmitResult submitResponse(Stream& stream, int status,
                                                    std::span<const Header> headers,
                                                    const ResponseBody& body) = 0;
  // Streamed body bytes or its end were queued: wake whatever waits for them.
  virtual void resumeData(Stream& stream) = 0;
  [[nodiscard]] virtual SubmitResult resetStream(Stream& stream, uint32_t error_code) = 0;
  // The application took `len` request-body bytes (a stream that holds its window).
  virtual void consumeStream(Stream& stream, size_t len) = 0;

 protected:
  ~StreamOwner() = default;
};

// One request/response exchange, intrusively reference-counted.
//
// Holders:
// - the Session, from on_begin_headers until nghttp2 closes the stream
//   (sessionHeld());
// - any number of StreamRefs, e.g. a handler answering asynchronously.
// When nghttp2 closes the stream (end of exchange, RST_STREAM, connection
// death, Session destruction) the stream is marked closed: every write below
// becomes a no-op returning SubmitResult::kClosed. When the last reference
// drops, the stream returns to its StreamPool (dropping its FileHandle
// reference and clearing request data but keeping string capacity).
//
// Threading: everything happens on the loop thread that owns the pool.
// Pointers to a Stream are valid only while a reference is held; the
// SessionHandler callbacks run while the Session holds one.
class Stream {
 public:
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  // --- reference counting ---
  void addRef() { ++refs_; }
  // May return the stream to its pool: do not touch it afterwards.
  void release();
  [[nodiscard]] uint32_t refCount() const { return refs_; }
  [[nodiscard]] bool sessionHeld() const { return session_held_; }

  // --- request ---
  [[nodiscard]] int32_t id() const { return id_; }
  [[nodiscard]] std::string_view method() const { return method_; }
  [[nodiscard]] std::string_view path() const { return path_; }
  [[nodiscard]] std::string_view authority() const { return authority_; }
  [[nodiscard]] std::string_view scheme() const { return scheme_; }
  // Regular request header fields followed by trailer fields, in arrival order.
  [[nodiscard]] std::span<const HeaderField> headers() const {
    return {fields_.data(), field_count_};
  }
  // First field with this (lowercase) name, or nullptr.
  [[nodiscard]] const HeaderField* findHeader(std::string_view name) const;
  [[nodiscard]] uint64_t requestBodyBytes() const { return request_body_bytes_; }
  // END_STREAM received from the client.
  [[nodiscard]] bool requestComplete() const { return request_complete_; }
  [[nodiscard]] bool isHead() const { return method_ == "HEAD"; }
  // The request asks for a tunnel carrying another protocol (a WebSocket):
  // an HTTP/1.1 Upgrade the session can hand over, or an HTTP/2 extended
  // CONNECT (:protocol).
  [[nodiscard]] bool wantsTunnel() const { return wants_tunnel_; }
  // The server takes the tunnel (in onRequest, before responding): a 200
  // response then opens it (HTTP/1.1: as a 101), and from there on the request
  // body and the streamed response body are the tunnel's bytes each way.
  // False when the request did not ask for one.
  bool acceptTunnel() {
    if (wants_tunnel_) tunnel_ = true;
    return tunnel_;
  }
  [[nodiscard]] bool tunnel() const { return tunnel_; }

  // Free slot for the server; cleared when the stream returns to the pool
  // (the server must have released what it points to in onStreamClosed).
  [[nodiscard]] void* user() const { return user_; }
  void setUser(void* user) { user_ = user; }

  // --- state ---
  [[nodiscard]] bool closed() const { return closed_; }
  [[nodiscard]] bool responseSubmitted() const { return response_submitted_; }
  // nghttp2 error code passed to on_stream_close (NGHTTP2_NO_ERROR for a
  // completed exchange); meaningful once closed().
  [[nodiscard]] uint32_t closeErrorCode() const { return close_error_code_; }

  // --- response (safe to call through a StreamRef at any time) ---
  // Forwards to Session::submitResponse(); kClosed once the stream is closed.
  [[nodiscard]] SubmitResult submitResponse(int status, std::span<const Header> headers,
                                            const ResponseBody& body);
  // For a streamed body: queues bytes (copied) and wakes the data source if
  // it was deferred. The caller bounds what it appends (see bufferedBody());
  // the stream does not. For HEAD requests the bytes are discarded.
  [[nodiscard]] SubmitResult appendBody(std::string_view bytes);
  // Ends a streamed body (END_STREAM after the buffered bytes, or after the
  // trailers when there are any; their views are copied).
  [[nodiscard]] SubmitResult endBody(std::span<const Header> trailers = {});
  // Resets the stream (RST_STREAM error_code); kClosed once closed.
  [[nodiscard]] SubmitResult reset(uint32_t error_code);
  // Tells the session's handler (onStreamDrained) once the queued streamed
  // bytes fall to `threshold` (one notification per call).
  void notifyWhenDrained(size_t threshold) {
    drain_notify_ = true;
    drain_threshold_ = threshold;
  }

  // --- request body flow control ---
  // From now on the stream's window is returned only by consume(): a
  // handler that stops consuming stops the client once the window is spent.
  // Call in onRequest(). (The connection's window is always returned.)
  void holdWindow() { hold_window_ = true; }
  [[nodiscard]] bool holdsWindow() const { return hold_window_; }
  // Returns `len` bytes of window to the client; no-op once closed.
  void consume(size_t len);
  // Streamed/in-memory body bytes not yet handed to nghttp2.
  [[nodiscard]] size_t bufferedBody() const { return body_.size() - body_offset_; }

 private:
  friend class Session;
  friend class StreamPool;
  friend class ::h2loop::h1::Session;

  explicit Stream(StreamPool* pool) : pool_(pool) {}
  ~Stream();

  // Returns the stream to its initial state; drops the FileHandle reference.
  void recycle();
  // Drops the FileHandle reference (at close: nothing reads the file any more).
  void dropFile();
  // A kFile body: takes the file reference and the position, and for a
  // filePieces() body copies its pieces and text (capacity is reused).
  void setFileBody(const ResponseBody& body);
  // Copies exactly `length` bytes of a filePieces() body from its current
  // position to `dst` (text from body_, file bytes from memory() or pread) and
  // advances. False on a short read or read error (the file shrank).
  [[nodiscard]] bool readPieces(uint8_t* dst, size_t length);
  // Its session let go of it: every write is a no-op from now on (kClosed),
  // and the file it sent is released. The owner then tells its handler and
  // drops its reference.
  void markClosed(uint32_t error_code) {
    session_ = nullptr;
    closed_ = true;
    close_error_code_ = error_code;
    dropFile();
  }
  void addField(const uint8_t* name, size_t namelen, const uint8_t* value, size_t valuelen);

  StreamPool* pool_;  // nullptr once orphaned by a destroyed pool
  uint32_t refs_ = 0;
  bool session_held_ = false;

  // The session carrying the stream while it is open; nullptr once closed.
  StreamOwner* session_ = nullptr;
  // Session's intrusive list of open streams.
  Stream* prev_ = nullptr;
  Stream* next_ = nullptr;

  int32_t id_ = 0;
  bool closed_ = false;
  bool request_complete_ = false;
  bool response_submitted_ = false;
  bool discard_body_ = false;  // HEAD, 204, 304: body suppressed
  bool body_ended_ = false;
  bool deferred_ = false;  // data source returned NGHTTP2_ERR_DEFERRED
  bool hold_window_ = false;
  bool wants_tunnel_ = false;
  bool tunnel_ = false;
  bool drain_notify_ = false;
  size_t drain_threshold_ = 0;
  uint32_t close_error_code_ = 0;

  std::string method_;
  std::string path_;
  std::string authority_;
  std::string scheme_;
  std::vector<HeaderField> fields_;
  size_t field_count_ = 0;
  size_t header_list_bytes_ = 0;   // RFC 9113 accounting: name + value + 32
  size_t header_field_total_ = 0;  // includes pseudo-headers
  uint64_t request_body_bytes_ = 0;
  void* user_ = nullptr;

  ResponseBody::Kind body_kind_ = ResponseBody::Kind::kNone;
  // Response header names and values, referenced by nghttp2 (NO_COPY) until
  // it serialises the HEADERS frame or drops it with the stream.
  // Grows only in submitResponse() (once per exchange); kept across pool
  // cycles up to kMaxRetainedBody.
  std::unique_ptr<char[]> response_headers_;
  size_t response_headers_capacity_ = 0;
  std::string body_;                   // kBytes and kStreamed
  std::vector<HeaderField> trailers_;  // sent after a streamed body
  size_t body_offset_ = 0;
  FileHandle* file_ = nullptr;  // one reference held while non-null
  uint64_t file_offset_ = 0;
  uint64_t file_remaining_ = 0;
  // filePieces(): the pieces, the current one and how far into it (text then
  // file bytes) the body has been sent; body_ holds the text. Empty otherwise.
  std::vector<BodyPiece> pieces_;
  size_t piece_index_ = 0;
  uint64_t piece_done_ = 0;
};

// RAII reference to a Stream. Copy adds a reference, move transfers it.
class StreamRef {
 public:
  StreamRef() = default;
  explicit StreamRef(Stream* s) : s_(s) {
    if (s_ != nullptr) s_->addRef();
  }
  StreamRef(const StreamRef& o) : StreamRef(o.s_) {}
  StreamRef(StreamRef&& o) noexcept : s_(o.s_) { o.s_ = nullptr; }
  StreamRef& operator=(const StreamRef& o) {
    if (this != &o) StreamRef(o).swap(*this);
    return *this;
  }
  StreamRef& operator=(StreamRef&& o) noexcept {
    if (this != &o) StreamRef(std::move(o)).swap(*this);
    return *this;
  }
  ~StreamRef() { reset(); }

  // Drops the reference (may return the stream to its pool).
  void reset() {
    Stream* s = s_;
    s_ = nullptr;
    if (s != nullptr) s->release();
  }
  void swap(StreamRef& o) noexcept {
    Stream* t = s_;
    s_ = o.s_;
    o.s_ = t;
  }

  [[nodiscard]] Stream* get() const { return s_; }
  Stream* operator->() const { return s_; }
  Stream& operator*() const { return *s_; }
  explicit operator bool() const { return s_ != nullptr; }

 private:
  Stream* s_ = nullptr;
};

}  // namespace h2loop::h2
