#include "server/http2_protocol.h"

#include <fmt/format.h>
#include <nghttp2/nghttp2.h>
#include <openssl/evp.h>

#include <cctype>

namespace h2loop::server {
namespace {

// HTTP/1.1 clients on an h2c (prior knowledge) port get a readable answer.
constexpr std::string_view kHttp1Reply =
    "HTTP/1.1 505 HTTP Version Not Supported\r\n"
    "content-type: text/plain\r\ncontent-length: 54\r\nconnection: close\r\n\r\n"
    "This server speaks HTTP/2 only (h2c prior knowledge).\n";

}  // namespace

Http2Protocol::Http2Protocol(h2::StreamPool& pool, const h2::SessionConfig& config,
                             std::shared_ptr<h2::SessionAllocator> allocator, Service& service,
                             http::detail::ConnectionView& conn)
    : bridge_(service, conn),
      session_(std::make_unique<h2::Session>(pool, bridge_, config, std::move(allocator))) {}

Http2Protocol::~Http2Protocol() {
  // Every stream still open is closed here (onStreamClosed → the Service).
  bridge_.connectionGoing();
  session_.reset();
}

bool Http2Protocol::decodeSettings(std::string_view b64url, std::string& out) {
  // RFC 7540 §3.2.1: base64url without padding; the payload is whole
  // SETTINGS entries (6 bytes each), at most a sane number of them.
  if (b64url.size() > 1024 || b64url.size() % 4 == 1) return false;
  std::string b64(b64url);
  for (char& c : b64) {
    if (c == '-') {
      c = '+';
    } else if (c == '_') {
      c = '/';
    } else if (!std::isalnum(static_cast<unsigned char>(c))) {
      return false;
    }
  }
  const size_t pad = (4 - b64.size() % 4) % 4;
  b64.append(pad, '=');
  out.resize(b64.size() / 4 * 3);
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(b64.data()),
                                static_cast<int>(b64.size()));
  if (n < 0 || static_cast<size_t>(n) < pad) return false;
  out.resize(static_cast<size_t>(n) - pad);
  return out.size() % 6 == 0;
}

bool Http2Protocol::upgrade(std::string_view payload, h2::Stream* request) {
  awaiting_client_preface_ = true;
  return session_->upgrade(payload, request);
}

ProtocolStatus Http2Protocol::receive(const uint8_t* data, size_t len) {
  if (len > 0) awaiting_client_preface_ = false;
  const h2::RecvResult r = session_->receive(data, len);
  if (r.status != h2::SessionStatus::kOk) return ProtocolStatus::kFatal;
  if (r.error == NGHTTP2_ERR_BAD_CLIENT_MAGIC) {
    const std::string_view input(reinterpret_cast<const char*>(data), len);
    if (input.find(" HTTP/1.") != std::string_view::npos) http1_reply_ = Http1Reply::kQueued;
  }
  return ProtocolStatus::kOk;
}

ProtocolStatus Http2Protocol::produce(h2::OutputBuffer& out) {
  if (awaiting_client_preface_) return ProtocolStatus::kOk;
  if (http1_reply_ != Http1Reply::kNone) {
    // The 505 instead of what the session would say (SETTINGS, GOAWAY).
    if (http1_reply_ == Http1Reply::kQueued) {
      if (!out.append(reinterpret_cast<const uint8_t*>(kHttp1Reply.data()), kHttp1Reply.size())) {
        return ProtocolStatus::kFatal;
      }
      http1_reply_ = Http1Reply::kProduced;
    }
    return ProtocolStatus::kOk;
  }
  const h2::ProduceResult r = session_->produce(out);
  bridge_.afterProduce();
  return r.status == h2::SessionStatus::kOk ? ProtocolStatus::kOk : ProtocolStatus::kFatal;
}

bool Http2Protocol::wantRead() const {
  return http1_reply_ == Http1Reply::kNone && session_->wantRead();
}

bool Http2Protocol::wantWrite() const {
  if (awaiting_client_preface_) return false;
  if (http1_reply_ != Http1Reply::kNone) return http1_reply_ == Http1Reply::kQueued;
  return session_->wantWrite();
}

bool Http2Protocol::connectionError() const {
  return http1_reply_ != Http1Reply::kNone || session_->connectionError() != 0;
}

std::string Http2Protocol::connectionErrorDescription() const {
  if (http1_reply_ != Http1Reply::kNone) {
    return "505 to an HTTP/1.1 request on an HTTP/2-only (h2c prior knowledge) port";
  }
  return fmt::format("GOAWAY({}): {}", nghttp2_http2_strerror(session_->connectionError()),
                     session_->connectionErrorReason());
}

void Http2Protocol::shutdownNotice() {
  (void)session_->shutdownNotice();
}

void Http2Protocol::goaway() {
  (void)session_->goaway(NGHTTP2_NO_ERROR);
}

}  // namespace h2loop::server
