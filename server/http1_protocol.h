#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "h1/session.h"
#include "http/exchange.h"
#include "server/protocol.h"
#include "server/service_bridge.h"

namespace h2loop::server {

class Service;

// HTTP/1.1 (TLS with ALPN http/1.1 or none; cleartext without the HTTP/2
// preface) on the h1::Session: requests go to the same Service, on the same
// pooled streams, as HTTP/2's. The connection's graceful end is our FIN
// (closesFirst()): HTTP/1.1 has no GOAWAY to ask the client to close, and
// after a client's `Connection: close` the server must initiate the close
// (RFC 9112 §9.6), so that TIME_WAIT is the server's, as with nginx.
class Http1Protocol final : public Protocol {
 public:
  Http1Protocol(h2::StreamPool& pool, const h1::SessionConfig& config, Service& service,
                http::detail::ConnectionView& conn);
  ~Http1Protocol() override;

  [[nodiscard]] ProtocolStatus receive(const uint8_t* data, size_t len) override;
  [[nodiscard]] ProtocolStatus produce(h2::OutputBuffer& out) override;
  [[nodiscard]] bool wantRead() const override { return session_->wantRead(); }
  [[nodiscard]] bool wantWrite() const override { return session_->wantWrite(); }
  [[nodiscard]] size_t activeStreams() const override { return session_->activeStreams(); }
  [[nodiscard]] bool connectionError() const override { return session_->connectionError(); }
  [[nodiscard]] std::string connectionErrorDescription() const override;
  [[nodiscard]] bool peerGoaway() const override { return false; }
  void shutdownNotice() override { session_->stopAfterCurrent(); }
  void goaway() override { session_->stopAfterCurrent(); }
  [[nodiscard]] std::string_view lastError() const override { return {}; }
  [[nodiscard]] bool inputPaused() const override { return session_->inputPaused(); }
  [[nodiscard]] bool readingHead() const override { return session_->readingHead(); }
  void headerTimeout() override { session_->headerTimeout(); }
  [[nodiscard]] bool closesFirst() const override { return true; }
  [[nodiscard]] bool upgradeRequested() const override { return session_->upgradeRequested(); }

  [[nodiscard]] h1::Session& session() { return *session_; }

 private:
  ServiceBridge bridge_;
  // Declared last: destroyed first (its request closes into the Service).
  std::unique_ptr<h1::Session> session_;
};

}  // namespace h2loop::server
