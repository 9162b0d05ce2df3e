#include "h1/session.h"

#include <nghttp2/nghttp2.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstring>

namespace h2loop::h1 {
namespace {

// Bytes of response body copied per step (a chunk, at most).
constexpr size_t kStep = 16 * 1024;
// Framing around one chunk: hex size, CRLF, CRLF.
constexpr size_t kChunkOverhead = 16 + 2 + 2;

char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

// Whether a comma-separated header value lists `token` (case-insensitive).
bool hasToken(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    const size_t comma = list.find(',');
    std::string_view item = list.substr(0, comma);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t'))
      item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t'))
      item.remove_suffix(1);
    if (iequals(item, token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

// Hop-by-hop fields the session writes itself (RFC 9110 §7.6.1); an
// application's are dropped.
bool hopByHop(std::string_view name) {
  return name == "connection" || name == "keep-alive" || name == "transfer-encoding" ||
         name == "upgrade" || name == "proxy-connection" || name == "te";
}

bool validFieldName(std::string_view n) {
  if (n.empty()) return false;
  for (char c : n) {
    if (c <= ' ' || c == ':' || c == 0x7f) return false;
  }
  return true;
}

bool validFieldValue(std::string_view v) {
  // One pass (find_first_of with a set is a memchr per byte in libstdc++).
  bool bad = false;
  for (const char c : v)
    bad |= c == '\r' || c == '\n' || c == '\0';
  return !bad;
}

std::string_view reasonPhrase(int status) {
  const char* r = http_status_str(static_cast<enum http_status>(status));
  if (r == nullptr || r[0] == '<') return "Status";
  return r;
}

void appendNumber(std::string& s, uint64_t v, int base = 10) {
  char buf[24];
  const auto end = std::to_chars(buf, buf + sizeof buf, v, base).ptr;
  s.append(buf, static_cast<size_t>(end - buf));
}

int statusFor(http_errno e) {
  switch (e) {
    case HPE_HEADER_OVERFLOW:
      return 431;
    case HPE_INVALID_VERSION:
      return 505;
    default:
      return 400;
  }
}

}  // namespace

struct Session::Callbacks {
  static Session* self(http_parser* p) { return static_cast<Session*>(p->data); }
  static int messageBegin(http_parser* p) { return self(p)->onMessageBegin(); }
  static int url(http_parser* p, const char* at, size_t len) { return self(p)->onUrl(at, len); }
  static int headerField(http_parser* p, const char* at, size_t len) {
    return self(p)->onHeaderField(at, len);
  }
  static int headerValue(http_parser* p, const char* at, size_t len) {
    return self(p)->onHeaderValue(at, len);
  }
  static int headersComplete(http_parser* p) { return self(p)->onHeadersComplete(); }
  static int body(http_parser* p, const char* at, size_t len) { return self(p)->onBody(at, len); }
  static int messageComplete(http_parser* p) { return self(p)->onMessageComplete(); }

  static const http_parser_settings* settings() {
    static const http_parser_settings s = [] {
      http_parser_settings t;
      http_parser_settings_init(&t);
      t.on_message_begin = messageBegin;
      t.on_url = url;
      t.on_header_field = headerField;
      t.on_header_value = headerValue;
      t.on_headers_complete = headersComplete;
      t.on_body = body;
      t.on_message_complete = messageComplete;
      return t;
    }();
    return &s;
  }
};

Session::Session(h2::StreamPool& pool, h2::SessionHandler& handler, const SessionConfig& config)
    : pool_(pool), handler_(handler), config_(config) {
  http_parser_init(&parser_, HTTP_REQUEST);
  parser_.data = this;
}

Session::~Session() {
  if (current_ != nullptr) closeCurrent(NGHTTP2_CANCEL);
  if (upgrade_ != nullptr) {
    // Never dispatched: the handler has nothing attached to it.
    h2::Stream* s = upgrade_;
    upgrade_ = nullptr;
    s->markClosed(NGHTTP2_CANCEL);
    s->session_held_ = false;
    s->release();
  }
}

// ---- input ---------------------------------------------------------------

void Session::receive(const uint8_t* data, size_t len) {
  // After an error, an upgrade, or the request we end on, input is not read.
  if (errored_ || upgrade_ != nullptr ||
      (closing_ && !tunneling_ && (current_ == nullptr || request_done_))) {
    return;
  }
  if (input_offset_ == input_.size()) {
    input_.clear();
    input_offset_ = 0;
  }
  input_.append(reinterpret_cast<const char*>(data), len);
  parse();
}

bool Session::parserBlocked() const {
  if (errored_ || upgrade_ != nullptr) return true;
  if (current_ == nullptr) return closing_;
  // One request at a time: the next waits until this one is answered.
  if (request_done_) return true;
  // A body the application does not take yet (and still wants).
  return current_->hold_window_ && !response_done_ && unconsumed_ >= config_.body_window;
}

void Session::parse() {
  if (parsing_) return;
  parsing_ = true;
  if (tunneling_) {
    feedTunnel();
  } else {
    parseHttp();
  }
  if (input_offset_ == input_.size()) {
    input_.clear();
    input_offset_ = 0;
  } else if (input_offset_ > 0 && input_offset_ >= input_.size() / 2) {
    input_.erase(0, input_offset_);
    input_offset_ = 0;
  }
  parsing_ = false;
}

void Session::feedTunnel() {
  // The tunnel's bytes are the stream's request body, fed within its window
  // like a body (no framing of HTTP's own).
  h2::Stream* s = current_;
  while (s != nullptr && current_ == s && !errored_ && !s->closed_ &&
         input_offset_ < input_.size()) {
    size_t n = input_.size() - input_offset_;
    if (s->hold_window_) {
      if (unconsumed_ >= config_.body_window) return;
      n = std::min(n, config_.body_window - unconsumed_);
      unconsumed_ += n;
    }
    const auto* data = reinterpret_cast<const uint8_t*>(input_.data() + input_offset_);
    input_offset_ += n;
    s->request_body_bytes_ += n;
    handler_.onRequestData(*s, data, n);
  }
}

void Session::parseHttp() {
  while (input_offset_ < input_.size() && !parserBlocked()) {
    if (HTTP_PARSER_ERRNO(&parser_) == HPE_PAUSED) http_parser_pause(&parser_, 0);
    size_t avail = input_.size() - input_offset_;
    // A body the application takes at its own pace is fed no further than
    // its window (framing bytes count too: always some progress).
    if (current_ != nullptr && !in_head_ && !request_done_ && !response_done_ &&
        current_->hold_window_) {
      const size_t room = config_.body_window > unconsumed_ ? config_.body_window - unconsumed_ : 0;
      avail = std::min(avail, std::max<size_t>(room, 1));
    }
    input_end_ = input_.data() + input_offset_ + avail;
    const size_t n =
        http_parser_execute(&parser_, Callbacks::settings(), input_.data() + input_offset_, avail);
    input_offset_ += n;
    const auto err = static_cast<http_errno>(HTTP_PARSER_ERRNO(&parser_));
    if (err == HPE_PAUSED) continue;
    if (err != HPE_OK) {
      // Our own callbacks stop the parser after fail(); otherwise the
      // parser's verdict is the reason.
      if (!errored_) fail(statusFor(err), http_errno_description(err));
      break;
    }
    // An Upgrade the session did not take (not h2c): the parser stops after
    // the message; HTTP/1.1 goes on.
    if (n == 0) break;
  }
}

int Session::onMessageBegin() {
  if (current_ != nullptr) {
    fail(500, "request began before the previous one ended");
    return 1;
  }
  h2::Stream* s = pool_.acquire();
  if (s == nullptr) {
    fail(503, "no free stream (pool exhausted)");
    return 1;
  }
  s->session_held_ = true;
  s->session_ = this;
  ++requests_;
  s->id_ = static_cast<int32_t>(std::min<uint64_t>(requests_, INT32_MAX));
  current_ = s;
  in_head_ = true;
  in_value_ = false;
  request_done_ = false;
  expect_continue_ = false;
  continue_sent_ = false;
  wants_h2c_ = false;
  head_bytes_ = 0;
  field_.clear();
  value_.clear();
  url_.clear();
  unconsumed_ = 0;
  pending_.clear();
  pending_offset_ = 0;
  response_started_ = false;
  response_done_ = false;
  chunked_ = false;
  until_close_ = false;
  has_declared_length_ = false;
  declared_remaining_ = 0;
  return 0;
}

int Session::onUrl(const char* at, size_t len) {
  head_bytes_ += len;
  url_.append(at, len);
  if (head_bytes_ > config_.max_header_bytes) {
    fail(414, "request target over the header limit");
    return 1;
  }
  return 0;
}

int Session::onHeaderField(const char* at, size_t len) {
  if (in_value_ && !finishField()) return 1;
  in_value_ = false;
  head_bytes_ += len;
  if (head_bytes_ > config_.max_header_bytes) {
    fail(431, "header section over the limit");
    return 1;
  }
  field_.append(at, len);
  return 0;
}

int Session::onHeaderValue(const char* at, size_t len) {
  // A second piece of the same value that does not continue where the
  // input ran out is obsolete line folding (http_parser accepts it and
  // drops the CRLF): refused, RFC 9112 §5.2.
  if (in_value_ && !value_at_input_end_) {
    fail(400, "obsolete line folding in a header value");
    return 1;
  }
  value_at_input_end_ = at + len == input_end_;
  in_value_ = true;
  head_bytes_ += len;
  if (head_bytes_ > config_.max_header_bytes) {
    fail(431, "header section over the limit");
    return 1;
  }
  value_.append(at, len);
  return 0;
}

bool Session::finishField() {
  head_bytes_ += 4;  // ": " and CRLF
  h2::Stream& s = *current_;
  if (s.field_count_ + 1 > config_.max_header_fields) {
    fail(431, "too many header fields");
    return false;
  }
  // RFC 9112 §5.1/§5.2: no whitespace in a field name (a smuggling
  // vector), and obsolete line folding is refused.
  if (!validFieldName(field_)) {
    fail(400, "invalid header field name");
    return false;
  }
  if (!validFieldValue(value_)) {
    fail(400, "line folding or a control character in a header value");
    return false;
  }
  for (char& c : field_)
    c = lower(c);
  std::string_view v = value_;
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t'))
    v.remove_suffix(1);
  s.addField(reinterpret_cast<const uint8_t*>(field_.data()), field_.size(),
             reinterpret_cast<const uint8_t*>(v.data()), v.size());
  field_.clear();
  value_.clear();
  in_value_ = false;
  return true;
}

bool Session::completeHead() {
  h2::Stream& s = *current_;
  if (parser_.http_major != 1) return fail(505, "HTTP version not supported"), false;
  // Copied through a view: GCC 12 at -O3 warns (-Wrestrict, a false
  // positive) about std::string::operator=(const char*) here.
  const std::string_view method = http_method_str(static_cast<enum http_method>(parser_.method));
  s.method_.assign(method.data(), method.size());
  if (parser_.method == HTTP_CONNECT) return fail(405, "CONNECT is not served"), false;

  // Request target (RFC 9112 §3.2): origin-form, absolute-form, or "*".
  std::string_view authority;
  if (url_ == "*") {
    if (parser_.method != HTTP_OPTIONS) return fail(400, "\"*\" is only for OPTIONS"), false;
    s.path_.assign(1, '*');
  } else if (!url_.empty() && url_[0] == '/') {
    s.path_ = url_;
  } else {
    http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(url_.data(), url_.size(), 0, &u) != 0 ||
        !(u.field_set & (1 << UF_HOST))) {
      return fail(400, "invalid request target"), false;
    }
    const auto part = [&](int f) {
      return std::string_view(url_).substr(u.field_data[f].off, u.field_data[f].len);
    };
    // The authority is host[:port] as written.
    const size_t host_off = u.field_data[UF_HOST].off;
    size_t host_end = host_off + u.field_data[UF_HOST].len;
    if (u.field_set & (1 << UF_PORT))
      host_end = u.field_data[UF_PORT].off + u.field_data[UF_PORT].len;
    if (host_off > 0 && url_[host_off - 1] == '[') {
      authority = std::string_view(url_).substr(host_off - 1, host_end - host_off + 2);
    } else {
      authority = std::string_view(url_).substr(host_off, host_end - host_off);
    }
    s.path_.assign(u.field_set & (1 << UF_PATH) ? part(UF_PATH) : std::string_view("/"));
    if (u.field_set & (1 << UF_QUERY)) {
      s.path_ += '?';
      s.path_ += part(UF_QUERY);
    }
  }

  const h2::HeaderField* host = nullptr;
  int hosts = 0;
  const h2::HeaderField* expect = nullptr;
  const h2::HeaderField* upgrade = nullptr;
  const h2::HeaderField* settings = nullptr;
  int settings_count = 0;
  int transfer_encodings = 0;
  for (const h2::HeaderField& f : s.headers()) {
    if (f.name == "transfer-encoding") ++transfer_encodings;
    if (f.name == "host") {
      host = &f;
      ++hosts;
    } else if (f.name == "expect") {
      expect = &f;
    } else if (f.name == "upgrade") {
      upgrade = &f;
    } else if (f.name == "http2-settings") {
      settings = &f;
      ++settings_count;
    }
  }
  // RFC 9112 §3.2: an HTTP/1.1 request without exactly one Host is a 400.
  if (hosts > 1 || (hosts == 0 && parser_.http_minor >= 1)) {
    return fail(400, hosts > 1 ? "more than one Host" : "no Host"), false;
  }
  // One Transfer-Encoding, and only chunked (the parser checks it is last):
  // anything a front end might read differently is refused.
  if (transfer_encodings > 1) return fail(400, "more than one Transfer-Encoding"), false;
  if (transfer_encodings == 1) {
    // RFC 9112 §6.3: chunked must be the final coding (else the length is
    // unknowable: 400); we decode no other coding (501).
    std::string_view te = s.findHeader("transfer-encoding")->value;
    const size_t comma = te.rfind(',');
    std::string_view last = comma == std::string_view::npos ? te : te.substr(comma + 1);
    while (!last.empty() && (last.front() == ' ' || last.front() == '\t'))
      last.remove_prefix(1);
    if (!iequals(last, "chunked"))
      return fail(400, "chunked is not the final transfer coding"), false;
    if (comma != std::string_view::npos) {
      return fail(501, "transfer coding other than chunked"), false;
    }
  }
  if (authority.empty() && host != nullptr) authority = host->value;
  s.authority_.assign(authority);
  s.scheme_.assign(config_.scheme);

  keep_alive_ = http_should_keep_alive(&parser_) != 0;
  const bool has_body = (parser_.flags & F_CHUNKED) != 0 ||
                        (parser_.content_length > 0 && parser_.content_length != ULLONG_MAX);
  if (expect != nullptr) {
    if (!iequals(expect->value, "100-continue")) return fail(417, "unsupported Expect"), false;
    expect_continue_ = has_body && parser_.http_minor >= 1;
  }
  if (config_.allow_h2c_upgrade && parser_.upgrade && upgrade != nullptr &&
      hasToken(upgrade->value, "h2c") && settings_count == 1 && !has_body) {
    const h2::HeaderField* connection = s.findHeader("connection");
    if (connection != nullptr && hasToken(connection->value, "http2-settings")) {
      wants_h2c_ = true;
      upgrade_settings_ = settings->value;
    }
  }
  // A WebSocket handshake (RFC 6455 §4.1: GET, no body, Upgrade: websocket,
  // Connection: upgrade, which is what sets parser_.upgrade): the server may
  // take the connection over as a tunnel (Stream::acceptTunnel()).
  if (!wants_h2c_ && parser_.upgrade && upgrade != nullptr && parser_.method == HTTP_GET &&
      hasToken(upgrade->value, "websocket") && !has_body) {
    s.wants_tunnel_ = true;
  }
  return true;
}

int Session::onHeadersComplete() {
  if ((in_value_ || !field_.empty()) && !finishField()) return 1;
  in_head_ = false;
  if (!completeHead()) return 1;
  if (wants_h2c_) return 0;  // HTTP/2 dispatches it, after the switch
  const bool has_body = (parser_.flags & F_CHUNKED) != 0 ||
                        (parser_.content_length > 0 && parser_.content_length != ULLONG_MAX);
  h2::Stream* s = current_;
  handler_.onRequest(*s, !has_body);
  if (errored_ || current_ != s) return 1;
  // The body is then fed within the stream's window (parse()).
  if (has_body && s->hold_window_) http_parser_pause(&parser_, 1);
  if (expect_continue_) {
    if (!s->response_submitted_) {
      // The client waits for this before it sends the body.
      pending_.append("HTTP/1.1 100 Continue\r\n\r\n");
      continue_sent_ = true;
    } else {
      // Answered before the body was asked for: the client may or may not
      // send it, so the connection cannot carry another request.
      closing_ = true;
    }
  }
  return 0;
}

int Session::onBody(const char* at, size_t len) {
  h2::Stream& s = *current_;
  s.request_body_bytes_ += len;
  if (response_done_) return 0;  // answered already: read and dropped
  if (s.hold_window_) {
    unconsumed_ += len;
    if (unconsumed_ >= config_.body_window) http_parser_pause(&parser_, 1);
  }
  handler_.onRequestData(s, reinterpret_cast<const uint8_t*>(at), len);
  return errored_ ? 1 : 0;
}

int Session::onMessageComplete() {
  if ((in_value_ || !field_.empty()) && !finishField()) return 1;  // trailers
  in_head_ = false;
  request_done_ = true;
  http_parser_pause(&parser_, 1);
  if (wants_h2c_) {
    upgrade_ = current_;
    current_ = nullptr;
    upgrade_->request_complete_ = true;
    return 0;
  }
  h2::Stream& s = *current_;
  if (s.tunnel_ && !(s.response_submitted_ && !tunneling_)) {
    // The request taken as a tunnel: what follows its head is the tunnel's
    // (fed as body once the 101 is out), and the body ends with the
    // connection.
    return 0;
  }
  s.request_complete_ = true;
  if (!keep_alive_) closing_ = true;
  handler_.onRequestEnd(s);
  return 0;
}

// ---- errors ----------------------------------------------------------------

void Session::fail(int status, std::string reason) {
  if (errored_) return;
  errored_ = true;
  in_head_ = false;
  error_status_ = status;
  error_reason_ = std::move(reason);
  // What was queued does not go out. Once part of a response went out, no
  // other can follow: the connection just ends.
  pending_.clear();
  pending_offset_ = 0;
  if (response_started_) error_status_ = 0;
  if (error_status_ != 0) queueError(error_status_);
}

void Session::queueError(int status) {
  std::string body = std::to_string(status);
  body += ' ';
  body += reasonPhrase(status);
  body += '\n';
  pending_ += "HTTP/1.1 ";
  appendNumber(pending_, static_cast<uint64_t>(status));
  pending_ += ' ';
  pending_ += reasonPhrase(status);
  pending_ += "\r\nserver: h2loop\r\n";
  if (config_.date) {
    pending_ += "date: ";
    pending_ += config_.date();
    pending_ += "\r\n";
  }
  pending_ += "content-type: text/plain\r\ncontent-length: ";
  appendNumber(pending_, body.size());
  pending_ += "\r\nconnection: close\r\n\r\n";
  pending_ += body;
}

void Session::headerTimeout() {
  if (!in_head_ || errored_) return;
  fail(408, "request header timeout");
}

void Session::stopAfterCurrent() {
  closing_ = true;
}

// ---- output ----------------------------------------------------------------

bool Session::wantWrite() const {
  if (pending_offset_ < pending_.size()) return true;
  if (current_ == nullptr || !current_->response_submitted_ || response_done_) return false;
  const h2::Stream& s = *current_;
  if (s.discard_body_) return true;
  switch (s.body_kind_) {
    case h2::ResponseBody::Kind::kStreamed:
      return s.bufferedBody() > 0 || s.body_ended_;
    default:
      return true;
  }
}

bool Session::appendPending(h2::OutputBuffer& out) {
  while (pending_offset_ < pending_.size()) {
    if (out.aboveHigh()) return false;
    const std::span<uint8_t> tail = out.tailSpace(1);
    const size_t n = std::min(tail.size(), pending_.size() - pending_offset_);
    std::memcpy(tail.data(), pending_.data() + pending_offset_, n);
    out.commit(n);
    pending_offset_ += n;
    if (current_ != nullptr && current_->response_submitted_) response_started_ = true;
  }
  pending_.clear();
  pending_offset_ = 0;
  return true;
}

void Session::produce(h2::OutputBuffer& out) {
  if (parsing_) return;
  if (errored_ && current_ != nullptr)
    closeCurrent(reset_code_ != 0 ? reset_code_ : uint32_t{NGHTTP2_PROTOCOL_ERROR});
  // Input held back by a body window the application has since consumed
  // from (a tunnel, or a body read while the response streams) goes on.
  if (current_ != nullptr && (tunneling_ || !request_done_) && input_offset_ < input_.size()) {
    parse();
  }
  for (;;) {
    if (!appendPending(out)) return;
    if (errored_ || upgrade_ != nullptr) return;
    if (current_ == nullptr) {
      if (closing_) return;
      parse();
      if (current_ == nullptr || !current_->response_submitted_) return;
      continue;
    }
    if (current_->response_submitted_ && !response_done_) {
      if (out.aboveHigh() || !produceBody(out)) {
        (void)appendPending(out);
        return;
      }
      continue;  // the end of the body (last chunk) goes out first
    }
    if (response_done_ && !request_done_ && closing_) {
      // Answered, and the connection ends with it: the rest of the body
      // (which an unacknowledged Expect: 100-continue may never bring) is
      // not waited for.
      closeCurrent(NGHTTP2_NO_ERROR);
      return;
    }
    if (!request_done_ || !response_done_) {
      // Input held back (a body window, a body after the response) may go on.
      parse();
      if (current_ == nullptr) continue;
      if (current_->response_submitted_ && !response_done_) continue;
      if (request_done_ && response_done_) continue;
      return;
    }
    closeCurrent(NGHTTP2_NO_ERROR);
  }
}

bool Session::produceBody(h2::OutputBuffer& out) {
  h2::Stream& s = *current_;
  if (!s.discard_body_) {
    switch (s.body_kind_) {
      case h2::ResponseBody::Kind::kNone:
        break;
      case h2::ResponseBody::Kind::kBytes:
        while (s.body_offset_ < s.body_.size()) {
          if (out.aboveHigh()) return false;
          const size_t want = std::min(kStep, s.body_.size() - s.body_offset_);
          const std::span<uint8_t> tail = out.tailSpace(want);
          const size_t n = std::min(want, tail.size());
          std::memcpy(tail.data(), s.body_.data() + s.body_offset_, n);
          out.commit(n);
          s.body_offset_ += n;
        }
        break;
      case h2::ResponseBody::Kind::kFile:
        while (s.file_remaining_ > 0) {
          if (out.aboveHigh()) return false;
          const size_t want = static_cast<size_t>(std::min<uint64_t>(kStep, s.file_remaining_));
          const std::span<uint8_t> tail = out.tailSpace(want);
          const size_t n = std::min(want, tail.size());
          const std::string_view memory = s.file_->memory();
          ssize_t got = 0;
          if (!s.pieces_.empty()) {
            // A multipart body: readPieces() advances the position itself.
            if (!s.readPieces(tail.data(), n)) {
              fail(0, "file read failed mid-response");
              return false;
            }
            out.commit(n);
            continue;
          }
          if (!memory.empty()) {
            if (s.file_offset_ > memory.size() || memory.size() - s.file_offset_ < n) {
              got = -1;
            } else {
              std::memcpy(tail.data(), memory.data() + s.file_offset_, n);
              got = static_cast<ssize_t>(n);
            }
          } else {
            do {
              got = ::pread(s.file_->fd(), tail.data(), n, static_cast<off_t>(s.file_offset_));
            } while (got < 0 && errno == EINTR);
          }
          if (got <= 0) {
            // The file shrank or failed under us: the response cannot be
            // completed; the connection ends (the client sees it short).
            fail(0, "file read failed mid-response");
            return false;
          }
          out.commit(static_cast<size_t>(got));
          s.file_offset_ += static_cast<uint64_t>(got);
          s.file_remaining_ -= static_cast<uint64_t>(got);
        }
        break;
      case h2::ResponseBody::Kind::kStreamed: {
        while (s.bufferedBody() > 0) {
          if (out.aboveHigh()) break;
          size_t n = std::min(kStep, s.bufferedBody());
          if (has_declared_length_) {
            n = static_cast<size_t>(std::min<uint64_t>(n, declared_remaining_));
            if (n == 0) {
              // More than the declared length: dropped, and the connection
              // ends after this response (the framing is the length).
              s.body_offset_ = s.body_.size();
              closing_ = true;
              break;
            }
          }
          const std::span<uint8_t> tail = out.tailSpace(n + kChunkOverhead);
          n = std::min(n, tail.size() - (chunked_ ? kChunkOverhead : 0));
          uint8_t* p = tail.data();
          if (chunked_) {
            p = reinterpret_cast<uint8_t*>(
                std::to_chars(reinterpret_cast<char*>(p), reinterpret_cast<char*>(p) + 16, n, 16)
                    .ptr);
            *p++ = '\r';
            *p++ = '\n';
          }
          std::memcpy(p, s.body_.data() + s.body_offset_, n);
          p += n;
          if (chunked_) {
            *p++ = '\r';
            *p++ = '\n';
          }
          out.commit(static_cast<size_t>(p - tail.data()));
          s.body_offset_ += n;
          if (has_declared_length_) declared_remaining_ -= n;
        }
        if (s.body_offset_ == s.body_.size()) {
          s.body_.clear();
          s.body_offset_ = 0;
        }
        if (s.drain_notify_ && s.bufferedBody() <= s.drain_threshold_) {
          s.drain_notify_ = false;
          handler_.onStreamDrained(s);
        }
        if (s.bufferedBody() > 0) return false;  // the output is full
        if (!s.body_ended_) {
          s.deferred_ = true;
          return false;
        }
        if (chunked_) {
          pending_ += "0\r\n";
          for (const h2::HeaderField& t : s.trailers_) {
            pending_ += t.name;
            pending_ += ": ";
            pending_ += t.value;
            pending_ += "\r\n";
          }
          pending_ += "\r\n";
        } else if (has_declared_length_ && declared_remaining_ > 0) {
          closing_ = true;  // shorter than declared: only the close can tell
        }
        break;
      }
    }
  }
  response_done_ = true;
  return true;
}

void Session::closeCurrent(uint32_t error_code) {
  h2::Stream* s = current_;
  current_ = nullptr;
  in_head_ = false;
  tunneling_ = false;
  // Between exchanges: an error in the next request's first bytes (before
  // any message begins) is answered.
  response_started_ = false;
  s->markClosed(error_code);
  handler_.onStreamClosed(*s, error_code);
  s->session_held_ = false;
  s->release();
  // The next request starts from a clean parser state.
  if (HTTP_PARSER_ERRNO(&parser_) == HPE_PAUSED) http_parser_pause(&parser_, 0);
}

// ---- StreamOwner -------------------------------------------------------------

h2::SubmitResult Session::submitResponse(h2::Stream& s, int status,
                                         std::span<const h2::Header> headers,
                                         const h2::ResponseBody& body) {
  if (&s != current_ || s.closed_ || errored_) return h2::SubmitResult::kClosed;
  if (s.response_submitted_) return h2::SubmitResult::kAlreadySubmitted;
  if (status < 200 || status > 999 || headers.size() > h2::Session::kMaxResponseHeaders) {
    return h2::SubmitResult::kInvalid;
  }
  if (body.kind() == h2::ResponseBody::Kind::kFile && body.fileHandle() == nullptr) {
    return h2::SubmitResult::kInvalid;
  }
  const h2::Header* app_length = nullptr;
  for (const h2::Header& h : headers) {
    if (!validFieldName(h.name) || !validFieldValue(h.value)) return h2::SubmitResult::kInvalid;
    if (h.name == "content-length") app_length = &h;
  }
  const bool no_content = status == 204 || status == 304;
  const bool discard = no_content || s.isHead();
  // The application's content-length frames nothing when no body follows
  // (HEAD: the length the GET would have); otherwise the body's own length
  // is what the framing must say, whatever the application wrote.
  uint64_t app_length_value = 0;
  if (app_length != nullptr) {
    const std::string_view t = app_length->value;
    const auto r = std::from_chars(t.data(), t.data() + t.size(), app_length_value);
    if (r.ec != std::errc{} || r.ptr != t.data() + t.size()) return h2::SubmitResult::kInvalid;
  }

  uint64_t content_length = 0;
  bool has_length = false;
  switch (body.kind()) {
    case h2::ResponseBody::Kind::kNone:
      has_length = !no_content;
      break;
    case h2::ResponseBody::Kind::kBytes:
      content_length = body.bytesView().size();
      has_length = !no_content;
      break;
    case h2::ResponseBody::Kind::kFile:
      content_length = body.length();
      has_length = !no_content;
      break;
    case h2::ResponseBody::Kind::kStreamed:
      if (app_length != nullptr) {
        has_declared_length_ = true;
        declared_remaining_ = app_length_value;
        content_length = app_length_value;
        has_length = !no_content;
      } else if (!discard) {
        if (parser_.http_minor >= 1) {
          chunked_ = true;
        } else {
          until_close_ = true;  // HTTP/1.0: the close ends the body
          closing_ = true;
        }
      }
      break;
  }
  if (s.isHead() && app_length != nullptr && !no_content) {
    content_length = app_length_value;
    has_length = true;
  }
  // Answered before the body the client announced has been asked for (an
  // Expect: 100-continue never acknowledged), or the client asked to close.
  if ((expect_continue_ && !continue_sent_ && !request_done_) || !keep_alive_) closing_ = true;
  if (s.tunnel_) {
    // The parser has read past an Upgrade request: whatever the answer, no
    // HTTP/1.1 request follows on this connection.
    closing_ = true;
    if (status == 200 && body.kind() == h2::ResponseBody::Kind::kStreamed) {
      return openTunnel(s, headers);
    }
  }

  pending_ += "HTTP/1.1 ";
  appendNumber(pending_, static_cast<uint64_t>(status));
  pending_ += ' ';
  pending_ += reasonPhrase(status);
  pending_ += "\r\n";
  for (const h2::Header& h : headers) {
    if (hopByHop(h.name) || h.name == "content-length") continue;
    pending_ += h.name;
    pending_ += ": ";
    pending_ += h.value;
    pending_ += "\r\n";
  }
  if (has_length) {
    pending_ += "content-length: ";
    appendNumber(pending_, content_length);
    pending_ += "\r\n";
  }
  if (chunked_) pending_ += "transfer-encoding: chunked\r\n";
  if (closing_) {
    pending_ += "connection: close\r\n";
  } else if (parser_.http_minor == 0) {
    pending_ += "connection: keep-alive\r\n";
  }
  pending_ += "\r\n";

  s.discard_body_ = discard;
  if (!discard) {
    switch (body.kind()) {
      case h2::ResponseBody::Kind::kNone:
        break;
      case h2::ResponseBody::Kind::kBytes:
        s.body_.assign(body.bytesView());
        s.body_offset_ = 0;
        s.body_kind_ = h2::ResponseBody::Kind::kBytes;
        break;
      case h2::ResponseBody::Kind::kFile:
        if (body.length() > 0) s.setFileBody(body);
        break;
      case h2::ResponseBody::Kind::kStreamed:
        s.body_kind_ = h2::ResponseBody::Kind::kStreamed;
        break;
    }
  }
  s.response_submitted_ = true;
  return h2::SubmitResult::kOk;
}

h2::SubmitResult Session::openTunnel(h2::Stream& s, std::span<const h2::Header> headers) {
  // RFC 6455 §4.2.2: the 101 names the protocol the client asked for; the
  // application's fields (Sec-WebSocket-Accept...) follow. The body is then
  // the tunnel's raw bytes until the connection closes.
  pending_ += "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n";
  for (const h2::Header& h : headers) {
    if (hopByHop(h.name) || h.name == "content-length") continue;
    pending_ += h.name;
    pending_ += ": ";
    pending_ += h.value;
    pending_ += "\r\n";
  }
  pending_ += "\r\n";
  tunneling_ = true;
  until_close_ = true;
  chunked_ = false;
  has_declared_length_ = false;
  s.discard_body_ = false;
  s.body_kind_ = h2::ResponseBody::Kind::kStreamed;
  s.response_submitted_ = true;
  return h2::SubmitResult::kOk;
}

void Session::resumeData(h2::Stream& s) {
  s.deferred_ = false;
}

h2::SubmitResult Session::resetStream(h2::Stream& s, uint32_t error_code) {
  if (&s != current_ || s.closed_) return h2::SubmitResult::kClosed;
  // HTTP/1.1 cannot end one exchange alone: the connection ends, and the
  // stream closes with the code on the next produce().
  reset_code_ = error_code != 0 ? error_code : uint32_t{NGHTTP2_CANCEL};
  fail(0, "response reset by the application");
  return h2::SubmitResult::kOk;
}

void Session::consumeStream(h2::Stream& s, size_t len) {
  if (&s != current_) return;
  unconsumed_ = len >= unconsumed_ ? 0 : unconsumed_ - len;
}

// ---- h2c upgrade ---------------------------------------------------------------

h2::Stream* Session::takeUpgrade(std::string& rest) {
  h2::Stream* s = upgrade_;
  upgrade_ = nullptr;
  if (s != nullptr) s->session_ = nullptr;
  rest.assign(input_, input_offset_);
  input_.clear();
  input_offset_ = 0;
  closing_ = true;
  return s;
}

void Session::refuseUpgrade(std::string_view why) {
  if (upgrade_ == nullptr) return;
  current_ = upgrade_;
  upgrade_ = nullptr;
  fail(400, std::string(why));
}

}  // namespace h2loop::h1
