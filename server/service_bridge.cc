#include "server/service_bridge.h"

#include "server/service.h"

namespace h2loop::server {

void ServiceBridge::afterProduce() {
  if (drained_.empty()) return;
  // Writers may append now (not from inside produce()); what they queue
  // goes out on the connection's next produce().
  std::vector<h2::StreamRef> drained;
  drained.swap(drained_);
  for (h2::StreamRef& s : drained) {
    if (!s->closed()) service_.onStreamDrained(*s);
  }
}

void ServiceBridge::onRequest(h2::Stream& stream, bool /*end_stream*/) {
  service_.onRequest(stream, conn_);
}

void ServiceBridge::onRequestData(h2::Stream& stream, const uint8_t* data, size_t len) {
  service_.onRequestData(stream, data, len);
}

void ServiceBridge::onRequestEnd(h2::Stream& stream) {
  service_.onRequestEnd(stream);
}

void ServiceBridge::onStreamClosed(h2::Stream& stream, uint32_t error_code) {
  service_.onRequestClosed(stream, error_code, destroying_);
}

void ServiceBridge::onStreamDrained(h2::Stream& stream) {
  drained_.emplace_back(&stream);
}

}  // namespace h2loop::server
