#pragma once

#include <memory>
#include <string>
#include <string_view>

#include <vector>

#include "h2/session.h"
#include "http/exchange.h"
#include "server/protocol.h"
#include "server/service_bridge.h"

namespace h2loop::server {

class Service;

// HTTP/2 (h2 over TLS, h2c by prior knowledge) on the nghttp2 Session: the
// only part of server/ that knows nghttp2. Requests go to the worker's
// Service. An HTTP/1.1 request where the HTTP/2 preface should be gets a
// readable 505 instead of binary SETTINGS and GOAWAY.
class Http2Protocol final : public Protocol {
 public:
  // `conn`: the connection, as the requests' exchanges see it.
  Http2Protocol(h2::StreamPool& pool, const h2::SessionConfig& config,
                std::shared_ptr<h2::SessionAllocator> allocator, Service& service,
                http::detail::ConnectionView& conn);
  ~Http2Protocol() override;

  // False when the session could not be created; lastError() says why.
  [[nodiscard]] bool valid() const { return session_->valid(); }

  // h2c upgrade: `payload` is the decoded HTTP2-Settings (decodeSettings());
  // `request` the upgrading request's stream with its session reference
  // (see h2::Session::upgrade()). False when nghttp2 refused the settings
  // (the stream was released).
  [[nodiscard]] bool upgrade(std::string_view payload, h2::Stream* request);
  // Decodes an HTTP2-Settings value (base64url, no padding); false if invalid.
  [[nodiscard]] static bool decodeSettings(std::string_view b64url, std::string& out);

  [[nodiscard]] ProtocolStatus receive(const uint8_t* data, size_t len) override;
  [[nodiscard]] ProtocolStatus produce(h2::OutputBuffer& out) override;
  [[nodiscard]] bool wantRead() const override;
  [[nodiscard]] bool wantWrite() const override;
  [[nodiscard]] size_t activeStreams() const override { return session_->activeStreams(); }
  [[nodiscard]] bool connectionError() const override;
  [[nodiscard]] std::string connectionErrorDescription() const override;
  [[nodiscard]] bool peerGoaway() const override { return session_->peerGoaway(); }
  void shutdownNotice() override;
  void goaway() override;
  [[nodiscard]] std::string_view lastError() const override { return session_->lastError(); }

 private:
  enum class Http1Reply : uint8_t { kNone, kQueued, kProduced };

  ServiceBridge bridge_;
  Http1Reply http1_reply_ = Http1Reply::kNone;
  // After an h2c upgrade, nothing goes out until the client's preface came:
  // a client buffers what follows the 101 only up to a point (curl 7.88:
  // 32 KiB), and the upgraded response may be much more.
  bool awaiting_client_preface_ = false;
  // Declared last: destroyed first, while the Service its onStreamClosed
  // callbacks reach is alive (the Service belongs to the worker anyway).
  std::unique_ptr<h2::Session> session_;
};

}  // namespace h2loop::server
