#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "eventloop/loop.h"
#include "h2/stream.h"
#include "http/exchange.h"
#include "http/route_table.h"
#include "server/static_files.h"

namespace h2loop::server {

class Worker;

// Serves the requests of one worker's connections: routes each to its
// handler (the application's, static files, metrics), answers 404/405 (with
// the custom error pages) and OPTIONS, adds each files route's fields, keeps
// request counters and the access log. Protocols hand it each request; it
// never sees a socket or a connection's lifecycle. Loop thread only.
//
// Contract with the protocol: onRequest() once per request whose headers
// completed, then body events, then onRequestClosed() exactly once for that
// request (also when the connection dies first); onRequestClosed() without
// onRequest() is allowed (a stream reset before its headers completed) and
// does nothing.
class Service {
 public:
  Service(Worker& worker, std::shared_ptr<const http::RouteTable> routes);
  ~Service();
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  void onRequest(h2::Stream& stream, http::detail::ConnectionView& conn);
  void onRequestData(h2::Stream& stream, const uint8_t* data, size_t len);
  void onRequestEnd(h2::Stream& stream);
  // `connection_gone`: the stream ends because its connection does.
  void onRequestClosed(h2::Stream& stream, uint32_t error_code, bool connection_gone);
  // A streamed response drained (after produce()): its writer may go on.
  void onStreamDrained(h2::Stream& stream);

  // The application's door to this worker (handles reach the loop through it).
  [[nodiscard]] const std::shared_ptr<http::detail::Anchor>& anchor() const { return anchor_; }
  // The static-file services, one per files route (for stats and tests).
  [[nodiscard]] const std::vector<StaticFiles*>& fileServices() const { return file_list_; }

 private:
  // What the Service keeps per request, in Stream::user() from onRequest()
  // to onRequestClosed(). Reused: the free list holds at most as many as
  // were ever in flight at once on the worker (bounded by its stream pool).
  struct RequestRecord {
    ev::Clock::time_point start{};
    int status = 0;
    uint64_t bytes = 0;
    std::shared_ptr<http::detail::Exchange> exchange;  // application routes
    // Its connection, alive until after onRequestClosed() (the access log's peer).
    const http::detail::ConnectionView* conn = nullptr;
  };
  RequestRecord* takeRecord();
  static RequestRecord* recordOf(h2::Stream& stream);

  void serveStatic(h2::Stream& stream, StaticFiles& files, const Router::Route& route);
  void serveMetrics(h2::Stream& stream);
  // The server's own 404 / 405 (routing), with the custom page when there is one.
  void serveError(h2::Stream& stream, int status, std::string_view allow);
  // OPTIONS the routes do not take themselves: 200, content-length 0, `allow`.
  void serveOptions(h2::Stream& stream, std::string_view allow);
  // A static-file error answer (4xx, 5xx) gets the custom page's type and body.
  void applyErrorPage(StaticResponse& resp) const;

  Worker& worker_;
  std::shared_ptr<const http::RouteTable> routes_;
  std::shared_ptr<http::detail::Anchor> anchor_;
  std::vector<std::unique_ptr<StaticFiles>> files_;  // by route index (null: not files)
  std::vector<StaticFiles*> file_list_;
  std::vector<std::unique_ptr<RequestRecord>> free_records_;
  std::string scratch_path_;
};

}  // namespace h2loop::server
