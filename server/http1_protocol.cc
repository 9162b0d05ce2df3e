#include "server/http1_protocol.h"

#include <fmt/format.h>

#include "server/service.h"

namespace h2loop::server {

Http1Protocol::Http1Protocol(h2::StreamPool& pool, const h1::SessionConfig& config,
                             Service& service, http::detail::ConnectionView& conn)
    : service_(service), conn_(conn) {
  h2::SessionHandler& handler = *this;
  session_ = std::make_unique<h1::Session>(pool, handler, config);
}

Http1Protocol::~Http1Protocol() {
  destroying_ = true;
  drained_.clear();
  session_.reset();
}

ProtocolStatus Http1Protocol::receive(const uint8_t* data, size_t len) {
  session_->receive(data, len);
  return ProtocolStatus::kOk;
}

ProtocolStatus Http1Protocol::produce(h2::OutputBuffer& out) {
  session_->produce(out);
  if (!drained_.empty()) {
    std::vector<h2::StreamRef> drained;
    drained.swap(drained_);
    for (h2::StreamRef& s : drained) {
      if (!s->closed()) service_.onStreamDrained(*s);
    }
  }
  return ProtocolStatus::kOk;
}

std::string Http1Protocol::connectionErrorDescription() const {
  if (session_->errorStatus() == 0) {
    return fmt::format("HTTP/1.1 connection ends: {}", session_->connectionErrorReason());
  }
  return fmt::format("HTTP/1.1 {}: {}", session_->errorStatus(), session_->connectionErrorReason());
}

void Http1Protocol::onRequest(h2::Stream& stream, bool /*end_stream*/) {
  service_.onRequest(stream, conn_);
}

void Http1Protocol::onRequestData(h2::Stream& stream, const uint8_t* data, size_t len) {
  service_.onRequestData(stream, data, len);
}

void Http1Protocol::onRequestEnd(h2::Stream& stream) {
  service_.onRequestEnd(stream);
}

void Http1Protocol::onStreamClosed(h2::Stream& stream, uint32_t error_code) {
  service_.onRequestClosed(stream, error_code, destroying_);
}

void Http1Protocol::onStreamDrained(h2::Stream& stream) {
  drained_.emplace_back(&stream);
}

}  // namespace h2loop::server
