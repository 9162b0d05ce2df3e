#pragma once

#include <vector>

#include "h2/session.h"
#include "http/exchange.h"

namespace h2loop::server {

class Service;

// What a protocol session (HTTP/2 or HTTP/1.1) tells about its requests,
// passed on to the worker's Service; shared by both protocols.
class ServiceBridge final : public h2::SessionHandler {
 public:
  ServiceBridge(Service& service, http::detail::ConnectionView& conn)
      : service_(service), conn_(conn) {}

  // The connection is being destroyed: streams closing from now on close
  // with it (CloseReason kConnectionClosed / kShutdown to the application).
  void connectionGoing() {
    destroying_ = true;
    drained_.clear();
  }
  // After the session's produce(): streamed responses that drained during it
  // are told now, when their writers may append again.
  void afterProduce();

  void onRequest(h2::Stream& stream, bool end_stream) override;
  void onRequestData(h2::Stream& stream, const uint8_t* data, size_t len) override;
  void onRequestEnd(h2::Stream& stream) override;
  void onStreamClosed(h2::Stream& stream, uint32_t error_code) override;
  void onStreamDrained(h2::Stream& stream) override;

 private:
  Service& service_;
  http::detail::ConnectionView& conn_;
  bool destroying_ = false;
  std::vector<h2::StreamRef> drained_;
};

}  // namespace h2loop::server
