#include "server/http1_protocol.h"

#include <fmt/format.h>

namespace h2loop::server {

Http1Protocol::Http1Protocol(h2::StreamPool& pool, const h1::SessionConfig& config,
                             Service& service, http::detail::ConnectionView& conn)
    : bridge_(service, conn), session_(std::make_unique<h1::Session>(pool, bridge_, config)) {}

Http1Protocol::~Http1Protocol() {
  bridge_.connectionGoing();
  session_.reset();
}

ProtocolStatus Http1Protocol::receive(const uint8_t* data, size_t len) {
  session_->receive(data, len);
  return ProtocolStatus::kOk;
}

ProtocolStatus Http1Protocol::produce(h2::OutputBuffer& out) {
  session_->produce(out);
  bridge_.afterProduce();
  return ProtocolStatus::kOk;
}

std::string Http1Protocol::connectionErrorDescription() const {
  if (session_->errorStatus() == 0) {
    return fmt::format("HTTP/1.1 connection ends: {}", session_->connectionErrorReason());
  }
  return fmt::format("HTTP/1.1 {}: {}", session_->errorStatus(), session_->connectionErrorReason());
}

}  // namespace h2loop::server
