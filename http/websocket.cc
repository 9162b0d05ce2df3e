// WebSocket sessions (include/h2loop/websocket.h): the handshake on a route,
// then wslay's frame engine between the exchange's request body (the bytes
// the peer sends) and its streamed response (the bytes we send). The same
// code serves RFC 6455 (an HTTP/1.1 connection taken over after a 101) and
// RFC 8441 (one HTTP/2 stream opened by extended CONNECT): the protocols
// differ only in the handshake's fields, and the exchange carries the bytes.

#include "http/websocket_session.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#include "eventloop/loop.h"
#include "http/exchange.h"

namespace h2loop {

using http::detail::WebSocketSession;

// ---- WebSocket (the handle) ------------------------------------------------

Status WebSocket::send(Type type, std::string_view data) {
  return s_ ? s_->send(type, data) : Status::kClosed;
}
Status WebSocket::ping(std::string_view payload) {
  return s_ ? s_->ping(payload) : Status::kClosed;
}
Status WebSocket::close(uint16_t code, std::string_view reason) {
  return s_ ? s_->close(code, reason) : Status::kClosed;
}
void WebSocket::onWritable(std::function<void()> fn) {
  if (s_) s_->onWritable(std::move(fn));
}
bool WebSocket::closed() const {
  return !s_ || s_->closed();
}
const Request& WebSocket::request() const {
  return s_->request();
}
std::string_view WebSocket::protocol() const {
  return s_ ? s_->protocol() : std::string_view();
}
std::string_view WebSocket::subprotocol() const {
  return s_ ? std::string_view(s_->subprotocol()) : std::string_view();
}
bool WebSocket::post(std::function<void()> fn) const {
  return s_ && s_->post(std::move(fn));
}
ev::Loop& WebSocket::loop() const {
  return s_->loop();
}

Router& Router::websocket(std::string path, const WebSocketHandlers& handlers) {
  return websocket(std::move(path), handlers, WebSocketOptions{});
}

Router& Router::websocket(std::string path, const WebSocketHandlers& handlers,
                          const WebSocketOptions& options) {
  auto config =
      std::make_shared<const WebSocketSession::Config>(WebSocketSession::Config{handlers, options});
  route("", std::move(path), [config](const Request& req, Response res) {
    WebSocketSession::upgrade(config, req, std::move(res));
  });
  websockets_ = true;
  return *this;
}

}  // namespace h2loop

namespace h2loop::http::detail {

namespace {

constexpr uint8_t kText = 0x1;
constexpr uint8_t kBinary = 0x2;
constexpr uint8_t kClose = 0x8;
constexpr uint8_t kPing = 0x9;

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t'))
    v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t'))
    v.remove_suffix(1);
  return v;
}

// Calls fn on each comma-separated element of a field value, trimmed;
// stops when fn returns true.
template <typename Fn>
bool anyToken(std::string_view list, Fn fn) {
  while (!list.empty()) {
    const size_t comma = list.find(',');
    const std::string_view item = trim(list.substr(0, comma));
    if (!item.empty() && fn(item)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

bool hasToken(std::optional<std::string_view> list, std::string_view token) {
  return list && anyToken(*list, [&](std::string_view t) { return iequals(t, token); });
}

// RFC 6455 §4.2.2: base64(SHA-1(key + GUID)).
std::string acceptKey(std::string_view key) {
  static constexpr std::string_view kGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  std::string input(key);
  input += kGuid;
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(input.data()), input.size(), digest);
  unsigned char out[4 * ((SHA_DIGEST_LENGTH + 2) / 3) + 1];
  const int n = EVP_EncodeBlock(out, digest, SHA_DIGEST_LENGTH);
  return {reinterpret_cast<const char*>(out), static_cast<size_t>(n)};
}

// Sec-WebSocket-Key: base64 of 16 bytes (24 characters, "==" at the end).
bool validKey(std::string_view key) {
  if (key.size() != 24 || key.substr(22) != "==") return false;
  unsigned char out[18];
  return EVP_DecodeBlock(out, reinterpret_cast<const unsigned char*>(key.data()), 24) == 18;
}

}  // namespace

bool validUtf8(std::string_view s) {
  // RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF.
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    const unsigned char c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    size_t n = 0;
    unsigned char lo = 0x80;
    unsigned char hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      n = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return false;
    }
    if (static_cast<size_t>(end - p) <= n) return false;
    if (p[1] < lo || p[1] > hi) return false;
    for (size_t i = 2; i <= n; ++i) {
      if ((p[i] & 0xC0) != 0x80) return false;
    }
    p += n + 1;
  }
  return true;
}

// ---- the handshake -----------------------------------------------------------

void WebSocketSession::upgrade(const std::shared_ptr<const Config>& config, const Request& req,
                               Response res) {
  Exchange& ex = *res.ex_;
  const bool over_h2 = req.method() == "CONNECT";
  // RFC 8441 §4: extended CONNECT with :protocol websocket; RFC 6455 §4.1:
  // GET with Upgrade: websocket and Connection: upgrade (which the HTTP/1.1
  // session checked before it offered the tunnel).
  const bool asked = over_h2
                         ? req.header(":protocol") == std::optional<std::string_view>("websocket")
                         : req.method() == "GET" && hasToken(req.header("upgrade"), "websocket");
  if (!asked || !ex.stream().wantsTunnel()) {
    (void)res.respond(426, {{"content-type", "text/plain"}, {"sec-websocket-version", "13"}},
                      "a WebSocket handshake is expected here\n");
    return;
  }
  if (req.header("sec-websocket-version") != std::optional<std::string_view>("13")) {
    spdlog::info("{} {}: WebSocket version not 13: 426", req.method(), req.path());
    (void)res.respond(426, {{"content-type", "text/plain"}, {"sec-websocket-version", "13"}},
                      "WebSocket version 13 only\n");
    return;
  }
  const std::optional<std::string_view> key = req.header("sec-websocket-key");
  if (!over_h2 && (!key || !validKey(*key))) {
    spdlog::info("{} {}: missing or invalid Sec-WebSocket-Key: 400", req.method(), req.path());
    (void)res.respond(400, {{"content-type", "text/plain"}}, "invalid Sec-WebSocket-Key\n");
    return;
  }
  std::string subprotocol;
  if (const auto offered = req.header("sec-websocket-protocol")) {
    for (const std::string& ours : config->options.subprotocols) {
      if (anyToken(*offered, [&](std::string_view t) { return t == ours; })) {
        subprotocol = ours;
        break;
      }
    }
  }
  if (!ex.acceptTunnel()) {
    (void)res.respond(400, {{"content-type", "text/plain"}}, "no tunnel\n");
    return;
  }

  auto ws = std::shared_ptr<WebSocketSession>(new WebSocketSession(config, res, over_h2));
  ws->subprotocol_ = std::move(subprotocol);
  Headers headers;
  std::string accept;
  if (!over_h2) {
    accept = acceptKey(*key);
    headers.push_back({"sec-websocket-accept", accept});
  }
  if (!ws->subprotocol_.empty()) headers.push_back({"sec-websocket-protocol", ws->subprotocol_});
  if (res.start(200, headers) != Status::kOk || !ws->open()) return;

  // The callbacks own the session until the exchange ends (Exchange::finish
  // drops them): no cycle outlives the stream.
  res.onBody([ws](std::string_view chunk) { ws->received(chunk); }, [ws] { ws->peerEnded(); });
  res.onWritable([ws] { ws->flush(); });
  res.onClose([ws](CloseReason why) { ws->exchangeClosed(why); });
  ws->opened();
}

WebSocketSession::WebSocketSession(std::shared_ptr<const Config> config, Response res, bool over_h2)
    : config_(std::move(config)),
      anchor_(res.ex_->anchor()),
      res_(std::move(res)),
      over_h2_(over_h2),
      path_(res_.request().path()) {}

WebSocketSession::~WebSocketSession() {
  // Normally freed at the close already; a session destroyed open (the
  // exchange's callbacks dropped without a close) frees it here.
  if (ctx_ != nullptr) wslay_event_context_free(ctx_);
}

void WebSocketSession::releaseContext() {
  if (!over_ || in_wslay_call_ > 0 || ctx_ == nullptr) return;
  wslay_event_context_free(ctx_);
  ctx_ = nullptr;
}

bool WebSocketSession::open() {
  static const wslay_event_callbacks callbacks = {
      &WebSocketSession::recvCallback,
      &WebSocketSession::sendCallback,
      &WebSocketSession::genmaskCallback,
      &WebSocketSession::frameStartCallback,
      nullptr,
      nullptr,
      &WebSocketSession::msgCallback,
  };
  if (wslay_event_context_server_init(&ctx_, &callbacks, this) != 0) {
    ctx_ = nullptr;
    (void)res_.reset();
    return false;
  }
  wslay_event_config_set_max_recv_msg_length(ctx_, config_->options.max_message);
  ExchangeCounters& c = anchor_->counters;
  c.ws_open.fetch_add(1, std::memory_order_relaxed);
  c.ws_total.fetch_add(1, std::memory_order_relaxed);
  if (over_h2_) c.ws_h2_total.fetch_add(1, std::memory_order_relaxed);
  counted_ = true;
  anchor_->addShutdownListener(this);
  timer_ = anchor_->loop().timer([this] { timerFired(); });
  last_input_ = anchor_->loop().now();
  if (config_->options.ping_interval.count() > 0) timer_->arm(config_->options.ping_interval);
  return true;
}

void WebSocketSession::opened() {
  if (over_ || !config_->handlers.on_open) return;
  WebSocket ws(shared_from_this());
  guarded("on_open", [&] { config_->handlers.on_open(ws); });
}

// ---- input -------------------------------------------------------------------

void WebSocketSession::received(std::string_view chunk) {
  if (over_) return;
  last_input_ = anchor_->loop().now();
  awaiting_pong_ = false;
  if (in_offset_ == in_.size()) {
    in_.clear();
    in_offset_ = 0;
  }
  in_.append(chunk);
  flush();
}

ssize_t WebSocketSession::recvCallback(wslay_event_context_ptr ctx, uint8_t* buf, size_t len,
                                       int /*flags*/, void* user) {
  auto* self = static_cast<WebSocketSession*>(user);
  // Nothing more is read while something waits to be sent (the answers of
  // the messages just read, a pong): flush() sends it, then reads on. So a
  // peer is read only as fast as its answers leave, and an application that
  // answers each message with one never meets the send bound.
  if (self->in_offset_ == self->in_.size() || wslay_event_want_write(ctx)) {
    wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  const size_t n = std::min(len, self->in_.size() - self->in_offset_);
  std::memcpy(buf, self->in_.data() + self->in_offset_, n);
  self->in_offset_ += n;
  return static_cast<ssize_t>(n);
}

void WebSocketSession::frameStartCallback(wslay_event_context_ptr ctx,
                                          const wslay_event_on_frame_recv_start_arg* arg,
                                          void* user) {
  // RFC 6455 §5.5.1: a close body is empty or at least the 2-byte code.
  // wslay would read a 1-byte one as "no code"; the 1002 goes first.
  if (arg->opcode == kClose && arg->payload_length == 1) {
    auto* self = static_cast<WebSocketSession*>(user);
    self->protocol_error_ = true;
    (void)wslay_event_queue_close(ctx, 1002, nullptr, 0);
  }
}

void WebSocketSession::msgCallback(wslay_event_context_ptr /*ctx*/,
                                   const wslay_event_on_msg_recv_arg* arg, void* user) {
  static_cast<WebSocketSession*>(user)->message(*arg);
}

void WebSocketSession::message(const wslay_event_on_msg_recv_arg& arg) {
  if (over_) return;
  const std::string_view data(reinterpret_cast<const char*>(arg.msg), arg.msg_length);
  switch (arg.opcode) {
    case kText:
    case kBinary: {
      // wslay has checked a text message's UTF-8 (else 1007).
      anchor_->counters.ws_messages_in.fetch_add(1, std::memory_order_relaxed);
      if (!config_->handlers.on_message) return;
      WebSocket ws(shared_from_this());
      const WebSocket::Type type =
          arg.opcode == kText ? WebSocket::Type::kText : WebSocket::Type::kBinary;
      guarded("on_message", [&] { config_->handlers.on_message(ws, type, data); });
      return;
    }
    case kClose:
      if (protocol_error_) {
        close_code_ = 1002;
        close_reason_ = "invalid close frame";
        return;
      }
      close_code_ = arg.status_code != 0 ? arg.status_code : uint16_t{1005};
      close_reason_.assign(data.size() > 2 ? data.substr(2) : std::string_view());
      return;
    default:  // pings are answered by wslay; pongs only prove the peer lives
      return;
  }
}

void WebSocketSession::peerEnded() {
  // HTTP/2: END_STREAM (the peer's half of the tunnel ended). What came
  // before it is read first (flush()); then our side ends too.
  if (over_) return;
  peer_ended_ = true;
  flush();
}

// ---- output ------------------------------------------------------------------

Status WebSocketSession::send(WebSocket::Type type, std::string_view data) {
  if (type == WebSocket::Type::kText && !validUtf8(data)) return Status::kInvalid;
  if (closed()) return Status::kClosed;
  if (!reserve(data.size())) {
    anchor_->counters.ws_send_refused.fetch_add(1, std::memory_order_relaxed);
    refused_.store(true, std::memory_order_release);
    // The refusal may race with the drain that would have told the writer:
    // the loop looks once more.
    if (!anchor_->onLoopThread()) {
      (void)post([self = shared_from_this()] { self->maybeWritable(); });
    }
    return Status::kWouldBlock;
  }
  const uint8_t opcode = type == WebSocket::Type::kText ? kText : kBinary;
  if (anchor_->onLoopThread()) return queueHere(opcode, data, true);
  const bool posted = post([self = shared_from_this(), opcode, bytes = std::string(data)] {
    (void)self->queueHere(opcode, bytes, true);
  });
  if (!posted) {
    unreserve(data.size());
    return Status::kClosed;
  }
  return Status::kOk;
}

Status WebSocketSession::ping(std::string_view payload) {
  if (payload.size() > 125) return Status::kInvalid;
  if (closed()) return Status::kClosed;
  if (anchor_->onLoopThread()) return queueHere(kPing, payload, false);
  return post([self = shared_from_this(), bytes = std::string(payload)] {
    (void)self->queueHere(kPing, bytes, false);
  })
             ? Status::kOk
             : Status::kClosed;
}

Status WebSocketSession::close(uint16_t code, std::string_view reason) {
  // RFC 6455 §7.4: codes an endpoint may send.
  const bool valid_code = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
                          (code >= 3000 && code <= 4999);
  if (!valid_code || reason.size() > 123 || !validUtf8(reason)) return Status::kInvalid;
  if (closed()) return Status::kClosed;
  if (!anchor_->onLoopThread()) {
    return post([self = shared_from_this(), code, r = std::string(reason)] {
      (void)self->close(code, r);
    })
               ? Status::kOk
               : Status::kClosed;
  }
  if (over_ || closing_ || wslay_event_get_close_sent(ctx_) ||
      wslay_event_get_write_enabled(ctx_) == 0) {
    return Status::kClosed;
  }
  // wslay sends control frames ahead of queued messages: the close waits
  // until what the application sent before it is out (flush()).
  closing_ = true;
  close_pending_ = true;
  pending_close_code_ = code;
  pending_close_reason_.assign(reason);
  timer_->arm(config_->options.close_timeout);
  flush();
  return Status::kOk;
}

Status WebSocketSession::queueHere(uint8_t opcode, std::string_view data, bool reserved) {
  if (over_ || wslay_event_get_write_enabled(ctx_) == 0 || closing_) {
    if (reserved) unreserve(data.size());
    return Status::kClosed;
  }
  wslay_event_msg msg{opcode, reinterpret_cast<const uint8_t*>(data.data()), data.size()};
  if (wslay_event_queue_msg(ctx_, &msg) != 0) {
    if (reserved) unreserve(data.size());
    return Status::kClosed;
  }
  if (reserved) {
    in_wslay_ += data.size();
    anchor_->counters.ws_messages_out.fetch_add(1, std::memory_order_relaxed);
  }
  flush();
  return Status::kOk;
}

bool WebSocketSession::reserve(size_t len) {
  const size_t bound = config_->options.send_bound;
  size_t cur = pending_.load(std::memory_order_relaxed);
  do {
    // Taken whole while below the bound; always when nothing is pending.
    if (cur != 0 && cur >= bound) return false;
  } while (!pending_.compare_exchange_weak(cur, cur + len, std::memory_order_acq_rel));
  anchor_->counters.ws_queued_bytes.fetch_add(static_cast<int64_t>(len), std::memory_order_relaxed);
  return true;
}

void WebSocketSession::unreserve(size_t len) {
  pending_.fetch_sub(len, std::memory_order_acq_rel);
  anchor_->counters.ws_queued_bytes.fetch_sub(static_cast<int64_t>(len), std::memory_order_relaxed);
}

ssize_t WebSocketSession::sendCallback(wslay_event_context_ptr ctx, const uint8_t* data, size_t len,
                                       int /*flags*/, void* user) {
  auto* self = static_cast<WebSocketSession*>(user);
  switch (self->res_.write({reinterpret_cast<const char*>(data), len})) {
    case Status::kOk:
      return static_cast<ssize_t>(len);
    case Status::kWouldBlock:
      // The stream's own bound: the rest waits in wslay until onWritable.
      wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
      return -1;
    default:
      wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
      return -1;
  }
}

int WebSocketSession::genmaskCallback(wslay_event_context_ptr /*ctx*/, uint8_t* buf, size_t len,
                                      void* /*user*/) {
  // Servers do not mask (RFC 6455 §5.1); wslay asks only for clients.
  return RAND_bytes(buf, static_cast<int>(len)) == 1 ? 0 : -1;
}

bool WebSocketSession::sendQueued() {
  if (wslay_event_want_write(ctx_) == 0) return true;
  ++in_wslay_call_;
  const int rv = wslay_event_send(ctx_);
  --in_wslay_call_;
  if (over_) {
    releaseContext();
    return false;
  }
  if (rv != 0) {
    abort(1006, "send failed");
    return false;
  }
  return true;
}

void WebSocketSession::flush() {
  // Not from inside wslay (a message callback that sends): the outer call
  // goes on when wslay returns. Not twice at once either (an onWritable
  // callback that sends): the running one goes round again.
  if (over_ || in_wslay_call_ > 0) return;
  if (flushing_) {
    flush_again_ = true;
    return;
  }
  const auto self = shared_from_this();
  flushing_ = true;
  do {
    flush_again_ = false;
    flushOnce();
  } while (flush_again_ && !over_);
  flushing_ = false;
}

void WebSocketSession::flushOnce() {
  bool backed_up = false;
  for (;;) {
    if (!sendQueued()) return;
    if (close_pending_ && wslay_event_want_write(ctx_) == 0) {
      close_pending_ = false;
      const std::string_view r = pending_close_reason_;
      if (wslay_event_queue_close(ctx_, pending_close_code_,
                                  reinterpret_cast<const uint8_t*>(r.data()), r.size()) == 0 &&
          !sendQueued()) {
        return;
      }
    }
    backed_up = wslay_event_want_write(ctx_) != 0;
    if (!backed_up && in_wslay_ > 0) {
      // Everything the application queued is on the stream now.
      unreserve(in_wslay_);
      in_wslay_ = 0;
    }
    if (backed_up || in_offset_ == in_.size() || !wslay_event_want_read(ctx_)) break;
    // Read on: messages, their answers (sent at the top of the loop).
    const size_t before = in_offset_;
    ++in_wslay_call_;
    const int rv = wslay_event_recv(ctx_);
    --in_wslay_call_;
    if (over_) {
      releaseContext();
      return;
    }
    if (rv == WSLAY_ERR_CALLBACK_FAILURE) {
      // Our callback never fails: a frame wslay cannot parse (a fragmented
      // or oversized control frame, a bad length). wslay queued a close
      // without a code and reads no more.
      spdlog::info("WebSocket {}: invalid frame: closing", path_);
      if (close_code_ == 0) {
        close_code_ = 1002;
        close_reason_ = "invalid frame";
      }
    } else if (rv != 0) {
      spdlog::warn("WebSocket {}: receive failed ({}): dropped", path_, rv);
      abort(1006, "receive failed");
      return;
    }
    if (in_offset_ == before && wslay_event_want_write(ctx_) == 0) break;
  }
  if (!wslay_event_want_read(ctx_)) {
    // Nothing more will be read (a close came, or a protocol error).
    in_.clear();
    in_offset_ = 0;
  }
  if (peer_ended_ && in_offset_ == in_.size() && !peer_end_seen_) {
    peer_end_seen_ = true;
    if (!wslay_event_get_close_received(ctx_) && close_code_ == 0) {
      close_code_ = 1006;
      close_reason_ = "stream ended without a close frame";
    }
    wslay_event_shutdown_read(ctx_);
    if (!wslay_event_get_close_sent(ctx_) && !close_pending_) {
      (void)wslay_event_queue_close(ctx_, 0, nullptr, 0);
    }
    flush_again_ = true;  // that close goes out on the next round
  }
  // While input waits (our output is backed up) no more is taken: a peer
  // that sends (or pings) without reading is held back by flow control.
  const bool hold = backed_up || in_offset_ < in_.size();
  if (hold != input_paused_) {
    input_paused_ = hold;
    (void)(hold ? res_.pauseBody() : res_.resumeBody());
    if (over_) return;
  }
  maybeWritable();
  if (over_) return;
  if (!closing_ && wslay_event_get_close_sent(ctx_)) {
    // wslay closed on its own (1002, 1007, 1009, the reply to the peer's
    // close): the rest of the handshake is bounded too.
    closing_ = true;
    timer_->arm(config_->options.close_timeout);
  }
  // Both close frames exchanged (or ours sent and nothing more to read):
  // the stream ends (HTTP/2 END_STREAM, HTTP/1.1 our FIN).
  if (!backed_up && !ended_ && wslay_event_get_close_sent(ctx_) &&
      (wslay_event_get_close_received(ctx_) || !wslay_event_want_read(ctx_))) {
    ended_ = true;
    (void)res_.end();
    // The exchange closes once the end is out (and, over HTTP/2, the peer
    // ended its half); the close timer bounds the wait.
    timer_->arm(config_->options.close_timeout);
  }
}

void WebSocketSession::maybeWritable() {
  if (over_ || !refused_.load(std::memory_order_acquire)) return;
  if (pending_.load(std::memory_order_acquire) > config_->options.send_bound / 4) return;
  refused_.store(false, std::memory_order_release);
  if (!on_writable_) return;
  auto fn = on_writable_;  // may replace itself
  guarded("onWritable", [&] { fn(); });
}

void WebSocketSession::onWritable(std::function<void()> fn) {
  if (!anchor_->onLoopThread()) {
    (void)post([self = shared_from_this(), f = std::move(fn)]() mutable {
      self->onWritable(std::move(f));
    });
    return;
  }
  if (over_) return;
  on_writable_ = std::move(fn);
  maybeWritable();
}

// ---- keepalive, close, the end ---------------------------------------------

void WebSocketSession::timerFired() {
  if (over_) return;
  const auto self = shared_from_this();
  const WebSocketOptions& o = config_->options;
  if (ended_ || closing_) {
    // The peer did not complete the close in time.
    spdlog::info("WebSocket {}: close handshake not completed in {} ms: reset", path_,
                 o.close_timeout.count());
    abort(close_code_ != 0 ? close_code_ : uint16_t{1006}, "close handshake timed out");
    return;
  }
  if (o.ping_interval.count() <= 0) return;  // no keepalive
  const ev::Duration quiet = anchor_->loop().now() - last_input_;
  if (awaiting_pong_) {
    spdlog::info("WebSocket {}: no answer to a ping within {} ms: dropped", path_,
                 o.pong_timeout.count());
    abort(1006, "keepalive timeout");
    return;
  }
  if (quiet >= o.ping_interval) {
    awaiting_pong_ = true;
    (void)queueHere(kPing, {}, false);
    if (!over_) timer_->arm(o.pong_timeout);
    return;
  }
  timer_->arm(std::chrono::duration_cast<ev::Duration>(o.ping_interval) - quiet);
}

void WebSocketSession::onShutdown() {
  (void)close(1001, "server shutting down");
}

void WebSocketSession::abort(uint16_t code, std::string_view why) {
  if (over_) return;
  close_code_ = code;
  close_reason_.assign(why);
  // HTTP/2: RST_STREAM for this WebSocket alone; HTTP/1.1: the connection.
  // The exchange's close (exchangeClosed) follows, now or from the loop.
  (void)res_.reset();
  if (!over_) exchangeClosed(CloseReason::kAborted);
}

void WebSocketSession::exchangeClosed(CloseReason why) {
  if (over_) return;
  const auto self = shared_from_this();
  over_ = true;
  over_flag_.store(true, std::memory_order_release);
  uint16_t code = close_code_;
  if (code == 0) {
    code = ctx_ != nullptr && wslay_event_get_close_sent(ctx_)
               ? wslay_event_get_status_code_sent(ctx_)
               : uint16_t{1006};
  }
  if (code == 1006 && close_reason_.empty()) close_reason_ = toString(why);
  timer_.reset();
  releaseContext();
  // What wslay held goes with its context. A send reserved on another thread
  // and still posted is not ours to take back: its queueHere() runs after
  // this, sees over_ and unreserves it itself. (Zeroing pending_ here took
  // those bytes back twice: the gauge went negative, and pending_ wrapped.)
  if (in_wslay_ > 0) unreserve(in_wslay_);
  in_wslay_ = 0;
  if (counted_) {
    anchor_->counters.ws_open.fetch_sub(1, std::memory_order_relaxed);
    anchor_->removeShutdownListener(this);
  }
  counted_ = false;
  auto on_writable = std::move(on_writable_);
  on_writable_ = nullptr;
  if (config_->handlers.on_close) {
    WebSocket ws(shared_from_this());
    guarded("on_close", [&] { config_->handlers.on_close(ws, code, close_reason_); });
  }
  // The exchange goes with its last handle; what stays is a shell whose
  // operations answer kClosed.
  res_ = Response();
}

bool WebSocketSession::post(std::function<void()> fn) const {
  return anchor_->post(std::move(fn));
}

ev::Loop& WebSocketSession::loop() const {
  return anchor_->loop();
}

void WebSocketSession::guarded(const char* what, const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    anchor_->counters.handler_errors.fetch_add(1, std::memory_order_relaxed);
    spdlog::error("WebSocket {}: {} threw: {}: closing 1011", path_, what, e.what());
    if (!over_) (void)close(1011, "internal error");
  } catch (...) {
    anchor_->counters.handler_errors.fetch_add(1, std::memory_order_relaxed);
    spdlog::error("WebSocket {}: {} threw: closing 1011", path_, what);
    if (!over_) (void)close(1011, "internal error");
  }
}

}  // namespace h2loop::http::detail
