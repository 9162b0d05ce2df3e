#include "h2/session.h"

#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <utility>

namespace h2loop::h2 {

namespace {

constexpr size_t kFrameHeaderLength = 9;
// RFC 9113 §6.5.2: each field counts name + value + 32 octets.
constexpr size_t kHeaderFieldOverhead = 32;

bool equals(const uint8_t* p, size_t len, std::string_view s) {
  return len == s.size() && std::memcmp(p, s.data(), len) == 0;
}

nghttp2_nv makeNv(std::string_view name, std::string_view value, uint8_t flags) {
  // nghttp2 takes non-const pointers but never writes through them.
  return nghttp2_nv{const_cast<uint8_t*>(reinterpret_cast<const uint8_t*>(name.data())),
                    const_cast<uint8_t*>(reinterpret_cast<const uint8_t*>(value.data())),
                    name.size(), value.size(), flags};
}

Session* self(void* user_data) {
  return static_cast<Session*>(user_data);
}

}  // namespace

// Captureless trampolines: nghttp2 hands back the Session as user_data.
struct Session::Callbacks {
  static int beginHeaders(nghttp2_session*, const nghttp2_frame* frame, void* ud) {
    return self(ud)->onBeginHeaders(frame);
  }
  static int header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                    size_t namelen, const uint8_t* value, size_t valuelen, uint8_t /*flags*/,
                    void* ud) {
    return self(ud)->onHeader(frame, name, namelen, value, valuelen);
  }
  static int frameRecv(nghttp2_session*, const nghttp2_frame* frame, void* ud) {
    return self(ud)->onFrameRecv(frame);
  }
  static int frameSend(nghttp2_session*, const nghttp2_frame* frame, void* ud) {
    return self(ud)->onFrameSend(frame);
  }
  static int beginFrame(nghttp2_session*, const nghttp2_frame_hd* hd, void* ud) {
    return self(ud)->onBeginFrame(*hd);
  }
  static int error(nghttp2_session*, int lib_error_code, const char* msg, size_t len, void* ud) {
    self(ud)->onLibraryError(lib_error_code, std::string_view(msg, len));
    return 0;
  }
  static int dataChunkRecv(nghttp2_session*, uint8_t /*flags*/, int32_t stream_id,
                           const uint8_t* data, size_t len, void* ud) {
    return self(ud)->onDataChunkRecv(stream_id, data, len);
  }
  static int streamClose(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* ud) {
    return self(ud)->onStreamClose(stream_id, error_code);
  }
  static int sendData(nghttp2_session*, nghttp2_frame* frame, const uint8_t* framehd, size_t length,
                      nghttp2_data_source* source, void* ud) {
    return self(ud)->onSendData(frame, framehd, length, *static_cast<Stream*>(source->ptr));
  }
  static ssize_t dataRead(nghttp2_session*, int32_t /*stream_id*/, uint8_t* buf, size_t length,
                          uint32_t* data_flags, nghttp2_data_source* source, void* ud) {
    return self(ud)->onDataRead(*static_cast<Stream*>(source->ptr), buf, length, data_flags);
  }

  // Built once, on first use (thread-safe static initialisation), shared by
  // every session; nghttp2 copies the table into each session.
  static const nghttp2_session_callbacks* table() {
    struct Table {
      nghttp2_session_callbacks* cbs = nullptr;
      Table() {
        if (nghttp2_session_callbacks_new(&cbs) != 0) {
          cbs = nullptr;
          return;
        }
        nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, beginHeaders);
        nghttp2_session_callbacks_set_on_header_callback(cbs, header);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, frameRecv);
        nghttp2_session_callbacks_set_on_frame_send_callback(cbs, frameSend);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, dataChunkRecv);
        nghttp2_session_callbacks_set_on_stream_close_callback(cbs, streamClose);
        nghttp2_session_callbacks_set_send_data_callback(cbs, sendData);
        nghttp2_session_callbacks_set_on_begin_frame_callback(cbs, beginFrame);
        nghttp2_session_callbacks_set_error_callback2(cbs, error);
      }
      ~Table() { nghttp2_session_callbacks_del(cbs); }
      Table(const Table&) = delete;
      Table& operator=(const Table&) = delete;
    };
    static const Table t;
    return t.cbs;
  }
};

void PeerStreamIds::set(uint32_t slot, bool used) {
  const uint64_t bit = uint64_t{1} << (slot % 64);
  uint64_t& word = bits_[(slot / 64) % bits_.size()];
  word = used ? (word | bit) : (word & ~bit);
}

bool PeerStreamIds::get(uint32_t slot) const {
  return (bits_[(slot / 64) % bits_.size()] >> (slot % 64)) & 1;
}

void PeerStreamIds::open(uint32_t id) {
  const uint32_t slot = id / 2;
  const uint32_t top = highest_ / 2;
  if (highest_ == 0 || slot - top >= kWindow) {
    bits_.fill(0);
  } else {
    for (uint32_t s = top + 1; s < slot; ++s)
      set(s % kWindow, false);  // skipped: idle, now closed
  }
  set(slot % kWindow, true);
  highest_ = id;
}

PeerStreamIds::Seen PeerStreamIds::lookup(uint32_t id) const {
  if (id > highest_) return Seen::kNew;
  const uint32_t slot = id / 2;
  if (highest_ / 2 - slot >= kWindow) return Seen::kUnknown;
  return get(slot % kWindow) ? Seen::kUsed : Seen::kSkipped;
}

Session::Session(StreamPool& pool, SessionHandler& handler, const SessionConfig& config,
                 std::shared_ptr<SessionAllocator> allocator)
    : pool_(pool), handler_(handler), config_(config), allocator_(std::move(allocator)) {
  const nghttp2_session_callbacks* cbs = Callbacks::table();
  if (cbs == nullptr) {
    fail(NGHTTP2_ERR_NOMEM, "nghttp2_session_callbacks_new failed");
    return;
  }
  nghttp2_option* opt = nullptr;
  if (nghttp2_option_new(&opt) != 0) {
    fail(NGHTTP2_ERR_NOMEM, "nghttp2_option_new failed");
    return;
  }
  nghttp2_option_set_stream_reset_rate_limit(opt, config_.stream_reset_burst,
                                             config_.stream_reset_rate);
  nghttp2_option_set_max_continuations(opt, config_.max_continuations);
  nghttp2_option_set_max_settings(opt, config_.max_settings);
  nghttp2_option_set_max_outbound_ack(opt, config_.max_outbound_ack);
  // Flow-control credit is returned by us (onDataChunkRecv): at once for the
  // connection, and for a stream when its handler has consumed the bytes
  // (Stream::holdWindow()), so a paused upload stops its client without
  // blocking the connection's other streams. HTTP messaging validation kept.
  nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_option_set_no_http_messaging(opt, 0);

  nghttp2_session* raw = nullptr;
  const int rv =
      nghttp2_session_server_new3(&raw, cbs, this, opt, allocator_ ? allocator_->mem() : nullptr);
  nghttp2_option_del(opt);
  if (rv != 0) {
    fail(rv, "nghttp2_session_server_new3 failed");
    return;
  }
  ngh_.reset(raw);

  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, config_.max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<uint32_t>(config_.initial_window_size)},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, config_.max_header_list_size},
      {NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1},
  };
  const size_t count =
      sizeof(settings) / sizeof(settings[0]) - (config_.enable_connect_protocol ? 0 : 1);
  int srv = nghttp2_submit_settings(ngh_.get(), NGHTTP2_FLAG_NONE, settings, count);
  if (srv != 0) {
    fail(srv, "nghttp2_submit_settings failed");
    return;
  }
  if (config_.connection_window_size > NGHTTP2_INITIAL_CONNECTION_WINDOW_SIZE) {
    srv = nghttp2_session_set_local_window_size(ngh_.get(), NGHTTP2_FLAG_NONE, 0,
                                                config_.connection_window_size);
    if (srv != 0) {
      fail(srv, "nghttp2_session_set_local_window_size failed");
      return;
    }
  }
}

Session::~Session() {
  // nghttp2 first: nghttp2_session_del calls no callbacks, and afterwards no
  // frame can reach a stream we are about to release.
  ngh_.reset();
  // Mark every stream closed before the first handler call, so a handler
  // touching another stream of this session from onStreamClosed sees kClosed.
  for (Stream* s = streams_; s != nullptr; s = s->next_) {
    s->session_ = nullptr;
    s->closed_ = true;
    s->close_error_code_ = NGHTTP2_CANCEL;
  }
  while (streams_ != nullptr) {
    Stream& s = *streams_;
    unlink(s);
    handler_.onStreamClosed(s, NGHTTP2_CANCEL);
    s.session_held_ = false;
    s.release();
  }
}

int Session::fail(int code, const char* what) {
  if (error_.empty()) {
    error_code_ = code;
    error_ = what;
    if (code != 0) {
      error_ += ": ";
      error_ += nghttp2_strerror(code);
    }
  }
  failed_ = true;
  return NGHTTP2_ERR_CALLBACK_FAILURE;
}

bool Session::upgrade(std::string_view settings, Stream* request) {
  assert(!dispatching_ && out_ == nullptr);
  const int rv = valid() ? nghttp2_session_upgrade2(
                               ngh_.get(), reinterpret_cast<const uint8_t*>(settings.data()),
                               settings.size(), request->isHead() ? 1 : 0, request)
                         : NGHTTP2_ERR_INVALID_STATE;
  if (rv != 0) {
    request->closed_ = true;
    request->session_held_ = false;
    request->release();
    if (nghttp2_is_fatal(rv)) (void)fail(rv, "nghttp2_session_upgrade2");
    return false;
  }
  request->session_ = this;
  request->id_ = 1;
  request->request_complete_ = true;
  peer_ids_.open(1);
  link(*request);
  StreamRef hold(request);  // a handler may end it
  dispatching_ = true;
  handler_.onRequest(*request, true);
  if (!request->closed_) handler_.onRequestEnd(*request);
  dispatching_ = false;
  return true;
}

RecvResult Session::receive(const uint8_t* data, size_t len) {
  assert(!dispatching_ && out_ == nullptr && "Session::receive is not re-entrant");
  if (!valid() || dispatching_ || out_ != nullptr) {
    if (!failed_) fail(NGHTTP2_ERR_INVALID_STATE, "receive called re-entrantly");
    return {SessionStatus::kFatal, 0, error_code_};
  }
  dispatching_ = true;
  const ssize_t rv = nghttp2_session_mem_recv(ngh_.get(), data, len);
  dispatching_ = false;
  if (rv >= 0) {
    if (failed_) return {SessionStatus::kFatal, static_cast<size_t>(rv), error_code_};
    return {SessionStatus::kOk, static_cast<size_t>(rv), 0};
  }
  const int err = static_cast<int>(rv);
  // The peer's connection errors that nghttp2 reports instead of answering:
  // answer them with GOAWAY, which produce() still delivers.
  uint32_t code = 0;
  const char* why = nullptr;
  switch (err) {
    case NGHTTP2_ERR_BAD_CLIENT_MAGIC:
      code = NGHTTP2_PROTOCOL_ERROR;
      why = "invalid connection preface";
      break;
    case NGHTTP2_ERR_FLOODED:
      code = NGHTTP2_ENHANCE_YOUR_CALM;
      why = "flood: too many SETTINGS/PING acknowledgements queued (peer does not read)";
      break;
    case NGHTTP2_ERR_TOO_MANY_CONTINUATIONS:
      code = NGHTTP2_ENHANCE_YOUR_CALM;
      why = "too many CONTINUATION frames";
      break;
    case NGHTTP2_ERR_CALLBACK_FAILURE:
      if (!failed_ && connection_error_ != 0) {  // a callback found it (onBeginFrame)
        return {SessionStatus::kOk, 0, err};
      }
      break;
    default:
      break;
  }
  if (code == 0 || failed_) {
    // A callback failure already recorded the precise reason.
    fail(err, "nghttp2_session_mem_recv");
    return {SessionStatus::kFatal, 0, err};
  }
  if (connection_error_ == 0) {
    connectionErrorFound(code, why);
  }
  return {SessionStatus::kOk, 0, err};
}

ProduceResult Session::produce(OutputBuffer& out) {
  assert(!dispatching_ && out_ == nullptr && "Session::produce is not re-entrant");
  if (!valid() || dispatching_ || out_ != nullptr) {
    if (!failed_) fail(NGHTTP2_ERR_INVALID_STATE, "produce called while dispatching");
    return {SessionStatus::kFatal, 0, error_code_};
  }
  const size_t before = out.size();
  out_ = &out;
  int error = 0;
  // Invariant: nghttp2 is only asked for a frame while out is below the high
  // watermark, so the frame (<= kFrameHeadroom) always fits. NO_COPY DATA
  // frames written by onSendData pause mem_send once out crosses it.
  while (!out.aboveHigh()) {
    const uint8_t* chunk = nullptr;
    const ssize_t n = nghttp2_session_mem_send(ngh_.get(), &chunk);
    if (n < 0) {
      error = static_cast<int>(n);
      fail(error, "nghttp2_session_mem_send");
      break;
    }
    if (n == 0) break;
    // The chunk is valid only until the next call into nghttp2: copy it now.
    if (!out.append(chunk, static_cast<size_t>(n))) {
      error = NGHTTP2_ERR_BUFFER_ERROR;
      fail(error, "output buffer overflow");
      break;
    }
  }
  out_ = nullptr;
  const size_t produced = out.size() - before;
  if (failed_) return {SessionStatus::kFatal, produced, error_code_};
  return {SessionStatus::kOk, produced, 0};
}

Stream* Session::findStream(int32_t stream_id) const {
  return static_cast<Stream*>(nghttp2_session_get_stream_user_data(ngh_.get(), stream_id));
}

void Session::link(Stream& s) {
  s.prev_ = nullptr;
  s.next_ = streams_;
  if (streams_ != nullptr) streams_->prev_ = &s;
  streams_ = &s;
  ++active_streams_;
}

void Session::unlink(Stream& s) {
  if (s.prev_ != nullptr) {
    s.prev_->next_ = s.next_;
  } else {
    streams_ = s.next_;
  }
  if (s.next_ != nullptr) s.next_->prev_ = s.prev_;
  s.prev_ = nullptr;
  s.next_ = nullptr;
  --active_streams_;
}

int Session::onBeginHeaders(const nghttp2_frame* frame) {
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  const int32_t id = frame->hd.stream_id;
  Stream* s = pool_.acquire();
  if (s == nullptr) {
    // Pool exhausted: refuse (retryable); without user data the rest of the
    // header block and any DATA for this stream are ignored.
    ++refused_streams_;
    const int rv =
        nghttp2_submit_rst_stream(ngh_.get(), NGHTTP2_FLAG_NONE, id, NGHTTP2_REFUSED_STREAM);
    if (rv != 0 && nghttp2_is_fatal(rv)) return fail(rv, "nghttp2_submit_rst_stream");
    return 0;
  }
  // The reference returned by acquire() is the session's.
  s->session_held_ = true;
  s->session_ = this;
  s->id_ = id;
  const int rv = nghttp2_session_set_stream_user_data(ngh_.get(), id, s);
  if (rv != 0) {
    s->session_ = nullptr;
    s->session_held_ = false;
    s->release();
    return fail(rv, "nghttp2_session_set_stream_user_data");
  }
  link(*s);
  return 0;
}

int Session::onHeader(const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
                      const uint8_t* value, size_t valuelen) {
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  Stream* s = findStream(frame->hd.stream_id);
  if (s == nullptr) return 0;  // refused stream
  s->header_list_bytes_ += namelen + valuelen + kHeaderFieldOverhead;
  ++s->header_field_total_;
  if (s->header_list_bytes_ > config_.max_header_list_size ||
      s->header_field_total_ > config_.max_header_fields) {
    ++header_limit_resets_;
    // Our code first; the TEMPORAL return makes nghttp2 skip the rest of the
    // header block and close the stream (on_stream_close follows).
    const int rv = nghttp2_submit_rst_stream(ngh_.get(), NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                             NGHTTP2_ENHANCE_YOUR_CALM);
    if (rv != 0 && nghttp2_is_fatal(rv)) return fail(rv, "nghttp2_submit_rst_stream");
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  }
  if (namelen > 0 && name[0] == ':' && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
    // nghttp2's messaging validation has already rejected unknown, duplicate
    // and misplaced pseudo-headers.
    const char* v = reinterpret_cast<const char*>(value);
    if (equals(name, namelen, ":method")) {
      s->method_.assign(v, valuelen);
    } else if (equals(name, namelen, ":path")) {
      s->path_.assign(v, valuelen);
    } else if (equals(name, namelen, ":authority")) {
      s->authority_.assign(v, valuelen);
    } else if (equals(name, namelen, ":scheme")) {
      s->scheme_.assign(v, valuelen);
    } else {
      // :protocol (extended CONNECT, which nghttp2 accepts only once we
      // sent SETTINGS_ENABLE_CONNECT_PROTOCOL): kept as a field.
      s->wants_tunnel_ = true;
      s->addField(name, namelen, value, valuelen);
    }
    return 0;
  }
  s->addField(name, namelen, value, valuelen);
  return 0;
}

int Session::onFrameRecv(const nghttp2_frame* frame) {
  const bool end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (frame->hd.type == NGHTTP2_DATA && !end_stream && frame->hd.length <= frame->data.padlen) {
    if (++empty_data_in_a_row_ > config_.max_empty_data_frames) {
      connectionErrorFound(NGHTTP2_ENHANCE_YOUR_CALM, "flood of empty DATA frames");
    }
    return 0;
  }
  if (frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS) {
    empty_data_in_a_row_ = 0;
  }
  switch (frame->hd.type) {
    case NGHTTP2_HEADERS: {
      Stream* s = findStream(frame->hd.stream_id);
      if (s == nullptr) return 0;
      if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
        s->request_complete_ = end_stream;
        handler_.onRequest(*s, end_stream);
        // The session's reference keeps s alive through the callback.
        if (end_stream && !s->closed_) handler_.onRequestEnd(*s);
      } else if (end_stream && !s->request_complete_) {  // trailers
        s->request_complete_ = true;
        handler_.onRequestEnd(*s);
      }
      return 0;
    }
    case NGHTTP2_RST_STREAM:
      if (!takeResetToken()) {
        connectionErrorFound(NGHTTP2_ENHANCE_YOUR_CALM, "RST_STREAM rate over the reset budget");
      }
      return 0;
    case NGHTTP2_GOAWAY:
      peer_goaway_ = true;
      return 0;
    case NGHTTP2_DATA: {
      if (!end_stream) return 0;
      Stream* s = findStream(frame->hd.stream_id);
      if (s == nullptr || s->request_complete_) return 0;
      s->request_complete_ = true;
      handler_.onRequestEnd(*s);
      return 0;
    }
    default:
      return 0;
  }
}

bool Session::takeResetToken() {
  const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  if (reset_tokens_at_ < 0) {
    reset_tokens_ = config_.stream_reset_burst;
  } else if (now > reset_tokens_at_) {
    const uint64_t refill =
        static_cast<uint64_t>(now - reset_tokens_at_) * config_.stream_reset_rate;
    reset_tokens_ = std::min(config_.stream_reset_burst, reset_tokens_ + refill);
  }
  reset_tokens_at_ = now;
  if (reset_tokens_ == 0) return false;
  --reset_tokens_;
  return true;
}

void Session::connectionErrorFound(uint32_t code, std::string_view why) {
  if (connection_error_ != 0) return;
  connection_error_ = code;  // before the GOAWAY is even sent
  peer_error_.assign(why);
  // Unlike nghttp2's own limiters (which queue a GOAWAY and keep parsing),
  // terminating makes nghttp2 ignore the rest of the input at once.
  (void)terminate(code);
}

int Session::onFrameSend(const nghttp2_frame* frame) {
  if (frame->hd.type == NGHTTP2_GOAWAY && frame->goaway.error_code != NGHTTP2_NO_ERROR &&
      connection_error_ == 0) {
    connection_error_ = frame->goaway.error_code;  // nghttp2 decided it
  }
  return 0;
}

int Session::onBeginFrame(const nghttp2_frame_hd& hd) {
  if (hd.type != NGHTTP2_HEADERS || (hd.stream_id & 1) == 0) return 0;  // even ids: nghttp2's
  const auto id = static_cast<uint32_t>(hd.stream_id);
  switch (peer_ids_.lookup(id)) {
    case PeerStreamIds::Seen::kNew:
      peer_ids_.open(id);
      return 0;
    case PeerStreamIds::Seen::kSkipped: {
      char why[96];
      const int n = std::snprintf(why, sizeof why,
                                  "HEADERS on stream %u, idle and closed by stream %u (§5.1.1)", id,
                                  peer_ids_.highest());
      connectionErrorFound(NGHTTP2_PROTOCOL_ERROR,
                           std::string_view(why, static_cast<size_t>(std::max(n, 0))));
      // mem_recv stops here; receive() sees the connection error.
      return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    case PeerStreamIds::Seen::kUsed:     // trailers, or a stream closed meanwhile
    case PeerStreamIds::Seen::kUnknown:  // too far back to tell: nghttp2 decides
      return 0;
  }
  return 0;
}

void Session::onLibraryError(int lib_error_code, std::string_view message) {
  // nghttp2 says why it is about to reset a stream or end the connection;
  // the connection logs it once if it ends in a connection error. Bounded.
  (void)lib_error_code;
  if (connection_error_ == 0) peer_error_.assign(message.substr(0, 200));
}

int Session::onDataChunkRecv(int32_t stream_id, const uint8_t* data, size_t len) {
  // The connection's window always comes back: one held stream must not
  // stall the others (padding and ignored DATA nghttp2 consumes itself).
  int rv = nghttp2_session_consume_connection(ngh_.get(), len);
  if (nghttp2_is_fatal(rv)) return fail(rv, "nghttp2_session_consume_connection");
  Stream* s = findStream(stream_id);
  if (s == nullptr) return 0;
  s->request_body_bytes_ += len;
  if (!s->hold_window_) {
    rv = nghttp2_session_consume_stream(ngh_.get(), stream_id, len);
    if (nghttp2_is_fatal(rv)) return fail(rv, "nghttp2_session_consume_stream");
  }
  handler_.onRequestData(*s, data, len);
  return 0;
}

void Session::consumeStream(Stream& s, size_t len) {
  if (ngh_ == nullptr || len == 0) return;
  const int rv = nghttp2_session_consume_stream(ngh_.get(), s.id_, len);
  if (nghttp2_is_fatal(rv)) (void)fail(rv, "nghttp2_session_consume_stream");
}

SubmitResult Session::resetStream(Stream& s, uint32_t error_code) {
  if (ngh_ == nullptr) return SubmitResult::kClosed;
  const int rv = nghttp2_submit_rst_stream(ngh_.get(), NGHTTP2_FLAG_NONE, s.id_, error_code);
  if (rv != 0) {
    if (nghttp2_is_fatal(rv)) (void)fail(rv, "nghttp2_submit_rst_stream");
    return SubmitResult::kFailed;
  }
  return SubmitResult::kOk;
}

int Session::onStreamClose(int32_t stream_id, uint32_t error_code) {
  Stream* s = findStream(stream_id);
  if (s == nullptr) return 0;  // refused stream
  // STYLE #10 order. Window credit a held stream never returned needs no
  // return: nghttp2 forgets the stream, and the connection's was returned.
  (void)nghttp2_session_set_stream_user_data(ngh_.get(), stream_id, nullptr);
  unlink(*s);
  // nghttp2 reads the file no more: its descriptor goes back now, not when
  // the last holder (maybe an application's handle) lets the stream go.
  s->markClosed(error_code);
  handler_.onStreamClosed(*s, error_code);
  s->session_held_ = false;
  s->release();  // back to the pool unless an async holder remains
  return 0;
}

SubmitResult Session::submitResponse(Stream& s, int status, std::span<const Header> headers,
                                     const ResponseBody& body) {
  if (s.session_ == nullptr || s.closed_ || ngh_ == nullptr) return SubmitResult::kClosed;
  if (s.session_ != this) return SubmitResult::kInvalid;
  if (s.response_submitted_) return SubmitResult::kAlreadySubmitted;
  if (status < 100 || status > 999 || headers.size() > kMaxResponseHeaders) {
    return SubmitResult::kInvalid;
  }
  if (body.kind() == ResponseBody::Kind::kFile && body.fileHandle() == nullptr) {
    return SubmitResult::kInvalid;
  }

  // 1xx, 204 and 304 carry no content; HEAD gets the GET headers only.
  const bool no_content = status < 200 || status == 204 || status == 304;
  const bool discard = no_content || s.isHead();

  uint64_t content_length = 0;
  bool has_length = false;
  switch (body.kind()) {
    case ResponseBody::Kind::kNone:
      has_length = !no_content;
      break;
    case ResponseBody::Kind::kBytes:
      content_length = body.bytesView().size();
      has_length = !no_content;
      break;
    case ResponseBody::Kind::kFile:
      content_length = body.length();
      has_length = !no_content;
      break;
    case ResponseBody::Kind::kStreamed:
      break;
  }
  for (const Header& h : headers) {
    if (h.name == "content-length") has_length = false;  // the caller's wins
  }

  // Names and values go into the stream's reused storage, sized first so it
  // never moves while nghttp2 holds pointers into it; nghttp2 takes them
  // NO_COPY (otherwise it copies every field into one allocation of its own
  // per response). The storage outlives the HEADERS frame: the stream is not
  // recycled before nghttp2 closes it, and nghttp2 serialises the frame only
  // while the stream is open (it drops it unread otherwise).
  char len_buf[24];
  size_t len_size = 0;
  if (has_length) {
    len_size = static_cast<size_t>(
        std::to_chars(len_buf, len_buf + sizeof(len_buf), content_length).ptr - len_buf);
  }
  size_t total = 3 + len_size;
  for (const Header& h : headers)
    total += h.name.size() + h.value.size();
  if (s.response_headers_capacity_ < total) {
    s.response_headers_ = std::make_unique_for_overwrite<char[]>(total);
    s.response_headers_capacity_ = total;
  }
  char* store = s.response_headers_.get();
  const auto keep = [&store](std::string_view v) {
    if (!v.empty()) std::memcpy(store, v.data(), v.size());
    const std::string_view kept(store, v.size());
    store += v.size();
    return kept;
  };
  constexpr uint8_t kNoCopy = NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE;
  nghttp2_nv nva[kMaxResponseHeaders + 2];
  size_t n = 0;
  char status_buf[3];
  (void)std::to_chars(status_buf, status_buf + sizeof(status_buf), status);
  nva[n++] = makeNv(":status", keep({status_buf, 3}), kNoCopy);
  for (const Header& h : headers)
    nva[n++] = makeNv(keep(h.name), keep(h.value), kNoCopy);
  if (has_length) nva[n++] = makeNv("content-length", keep({len_buf, len_size}), kNoCopy);

  nghttp2_data_provider prd{};
  prd.source.ptr = &s;
  prd.read_callback = Callbacks::dataRead;
  const nghttp2_data_provider* provider = nullptr;

  s.discard_body_ = discard;
  if (!discard) {
    switch (body.kind()) {
      case ResponseBody::Kind::kNone:
        break;
      case ResponseBody::Kind::kBytes:
        if (!body.bytesView().empty()) {
          s.body_.assign(body.bytesView());
          s.body_offset_ = 0;
          s.body_kind_ = ResponseBody::Kind::kBytes;
          provider = &prd;
        }
        break;
      case ResponseBody::Kind::kFile:
        if (body.length() > 0) {
          s.setFileBody(body);
          provider = &prd;
        }
        break;
      case ResponseBody::Kind::kStreamed:
        s.body_kind_ = ResponseBody::Kind::kStreamed;
        provider = &prd;
        break;
    }
  }
  s.response_submitted_ = true;
  const int rv = nghttp2_submit_response(ngh_.get(), s.id_, nva, n, provider);
  if (rv != 0) {
    if (nghttp2_is_fatal(rv)) fail(rv, "nghttp2_submit_response");
    return SubmitResult::kFailed;
  }
  return SubmitResult::kOk;
}

bool Session::submitTrailers(Stream& s, uint32_t* data_flags) {
  if (s.trailers_.empty()) return true;
  nghttp2_nv nva[kMaxResponseHeaders];
  size_t n = 0;
  for (const HeaderField& f : s.trailers_) {
    if (n == kMaxResponseHeaders) break;
    nva[n++] = makeNv(f.name, f.value, NGHTTP2_NV_FLAG_NONE);  // nghttp2 copies them
  }
  *data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
  const int rv = nghttp2_submit_trailer(ngh_.get(), s.id_, nva, n);
  s.trailers_.clear();
  return rv == 0;
}

void Session::resumeData(Stream& s) {
  if (!s.deferred_ || ngh_ == nullptr) return;
  s.deferred_ = false;
  // Fails only if nghttp2 no longer has a deferred item for the stream.
  (void)nghttp2_session_resume_data(ngh_.get(), s.id_);
}

ssize_t Session::onDataRead(Stream& s, uint8_t* buf, size_t length, uint32_t* data_flags) {
  // Defensive: produce() only runs nghttp2 below the high watermark.
  if (out_ == nullptr || out_->aboveHigh()) return NGHTTP2_ERR_PAUSE;
  switch (s.body_kind_) {
    case ResponseBody::Kind::kBytes: {
      const size_t n = std::min(length, s.body_.size() - s.body_offset_);
      std::memcpy(buf, s.body_.data() + s.body_offset_, n);
      s.body_offset_ += n;
      if (s.body_offset_ == s.body_.size()) *data_flags |= NGHTTP2_DATA_FLAG_EOF;
      return static_cast<ssize_t>(n);
    }
    case ResponseBody::Kind::kStreamed: {
      const size_t avail = s.body_.size() - s.body_offset_;
      if (avail == 0) {
        if (s.body_ended_) {
          *data_flags |= NGHTTP2_DATA_FLAG_EOF;
          if (!submitTrailers(s, data_flags)) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
          return 0;
        }
        s.deferred_ = true;  // appendBody()/endBody() resume it
        return NGHTTP2_ERR_DEFERRED;
      }
      const size_t n = std::min(length, avail);
      std::memcpy(buf, s.body_.data() + s.body_offset_, n);
      s.body_offset_ += n;
      if (s.body_offset_ == s.body_.size()) {
        s.body_.clear();
        s.body_offset_ = 0;
        if (s.body_ended_) {
          *data_flags |= NGHTTP2_DATA_FLAG_EOF;
          if (!submitTrailers(s, data_flags)) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
      }
      if (s.drain_notify_ && s.bufferedBody() <= s.drain_threshold_) {
        s.drain_notify_ = false;
        handler_.onStreamDrained(s);
      }
      return static_cast<ssize_t>(n);
    }
    case ResponseBody::Kind::kFile: {
      // Zero-copy: onSendData preads (or copies from FileHandle::memory())
      // straight into out_. Never promise more
      // than fits in its tail after the 9-byte frame header.
      const size_t room = out_->tailSpace(OutputBuffer::kFrameHeadroom).size();
      if (room <= kFrameHeaderLength) return NGHTTP2_ERR_PAUSE;
      size_t n = std::min(length, room - kFrameHeaderLength);
      if (s.file_remaining_ < n) n = static_cast<size_t>(s.file_remaining_);
      *data_flags |= NGHTTP2_DATA_FLAG_NO_COPY;
      if (n == s.file_remaining_) *data_flags |= NGHTTP2_DATA_FLAG_EOF;
      return static_cast<ssize_t>(n);
    }
    case ResponseBody::Kind::kNone:
      break;
  }
  *data_flags |= NGHTTP2_DATA_FLAG_EOF;
  return 0;
}

int Session::onSendData(nghttp2_frame* frame, const uint8_t* framehd, size_t length, Stream& s) {
  if (out_ == nullptr || s.file_ == nullptr) {
    return fail(NGHTTP2_ERR_INVALID_STATE, "send_data_callback without file body");
  }
  const size_t padlen = frame->data.padlen;
  const size_t total = kFrameHeaderLength + padlen + length;
  std::span<uint8_t> tail = out_->tailSpace(total);
  // nghttp2 calls again with the same frame after the next produce().
  if (tail.size() < total) return NGHTTP2_ERR_WOULDBLOCK;

  uint8_t* p = tail.data();
  std::memcpy(p, framehd, kFrameHeaderLength);
  p += kFrameHeaderLength;
  if (padlen > 0) *p++ = static_cast<uint8_t>(padlen - 1);
  const std::string_view memory = s.file_->memory();
  if (!s.pieces_.empty()) {
    // A multipart body: readPieces() advances the stream's position itself.
    if (!s.readPieces(p, length)) {
      ++file_errors_;
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    p += length;
    if (padlen > 1) std::memset(p, 0, padlen - 1);
    out_->commit(total);
    return out_->aboveHigh() ? NGHTTP2_ERR_PAUSE : 0;
  }
  if (!memory.empty()) {
    if (s.file_offset_ > memory.size() || memory.size() - s.file_offset_ < length) {
      ++file_errors_;  // memory that does not cover the range: as a short read
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    std::memcpy(p, memory.data() + s.file_offset_, length);
  } else {
    const int fd = s.file_->fd();
    size_t done = 0;
    while (done < length) {
      const ssize_t r =
          ::pread(fd, p + done, length - done, static_cast<off_t>(s.file_offset_ + done));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        // Error or file shrank: the frame header promised length bytes. Reset
        // this stream (RST_STREAM INTERNAL_ERROR), keep the connection;
        // nothing was committed to out_.
        ++file_errors_;
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
      }
      done += static_cast<size_t>(r);
    }
  }
  p += length;
  if (padlen > 1) std::memset(p, 0, padlen - 1);
  out_->commit(total);
  s.file_offset_ += length;
  s.file_remaining_ -= length;
  // Stop mem_send once above the watermark so no further frame lands in out_.
  return out_->aboveHigh() ? NGHTTP2_ERR_PAUSE : 0;
}

bool Session::shutdownNotice() {
  return ngh_ != nullptr && nghttp2_submit_shutdown_notice(ngh_.get()) == 0;
}

bool Session::goaway(uint32_t error_code) {
  if (ngh_ == nullptr) return false;
  return nghttp2_submit_goaway(ngh_.get(), NGHTTP2_FLAG_NONE,
                               nghttp2_session_get_last_proc_stream_id(ngh_.get()), error_code,
                               nullptr, 0) == 0;
}

bool Session::terminate(uint32_t error_code) {
  return ngh_ != nullptr && nghttp2_session_terminate_session(ngh_.get(), error_code) == 0;
}

bool Session::wantRead() const {
  return ngh_ != nullptr && !failed_ && nghttp2_session_want_read(ngh_.get()) != 0;
}

bool Session::wantWrite() const {
  return ngh_ != nullptr && !failed_ && nghttp2_session_want_write(ngh_.get()) != 0;
}

}  // namespace h2loop::h2
