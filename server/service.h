#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "eventloop/loop.h"
#include "h2/stream.h"

namespace h2loop::server {

class Worker;

// Serves the requests of one worker's connections: the metrics endpoint,
// static files, request counters and the access log. Protocols hand it each
// request; it never sees a socket or a connection's lifecycle. Loop thread
// only.
//
// Contract with the protocol: onRequest() once per request whose headers
// completed, then onRequestClosed() exactly once for that request (also when
// the connection dies first); onRequestClosed() without onRequest() is
// allowed (a stream reset before its headers completed) and does nothing.
class Service {
 public:
  explicit Service(Worker& worker) : worker_(worker) {}
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  void onRequest(h2::Stream& stream);
  void onRequestClosed(h2::Stream& stream, uint32_t error_code);

 private:
  // What the Service keeps per request, in Stream::user() from onRequest()
  // to onRequestClosed(). Reused: the free list holds at most as many as
  // were ever in flight at once on the worker (bounded by its stream pool).
  struct RequestRecord {
    ev::Clock::time_point start{};
    int status = 0;
    uint64_t bytes = 0;
  };
  RequestRecord* takeRecord();
  static RequestRecord* recordOf(h2::Stream& stream);

  void serveStatic(h2::Stream& stream);
  void serveMetrics(h2::Stream& stream);

  Worker& worker_;
  std::vector<std::unique_ptr<RequestRecord>> free_records_;
};

}  // namespace h2loop::server
