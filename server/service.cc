#include "server/service.h"

#include <spdlog/spdlog.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <ctime>

#include "server/access_log.h"
#include "server/worker.h"

namespace h2loop::server {
namespace {

int64_t wallMillis() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME_COARSE, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1'000'000;
}

}  // namespace

Service::Service(Worker& worker, std::shared_ptr<const http::RouteTable> routes)
    : worker_(worker),
      routes_(std::move(routes)),
      anchor_(std::make_shared<http::detail::Anchor>(worker.loop())) {
  const ServerConfig& cfg = worker_.config();
  const auto& all = routes_->routes();
  files_.resize(all.size());
  for (size_t i = 0; i < all.size(); ++i) {
    if (all[i].kind != Router::Route::Kind::kFiles) continue;
    files_[i] = std::make_unique<StaticFiles>(
        all[i].root, FileCacheConfig{cfg.file_cache_ttl_ms, cfg.file_cache_entries},
        cfg.static_files);
    file_list_.push_back(files_[i].get());
  }
}

Service::~Service() = default;

Service::RequestRecord* Service::takeRecord() {
  if (free_records_.empty()) return new RequestRecord;
  RequestRecord* r = free_records_.back().release();
  free_records_.pop_back();
  r->start = {};
  r->status = 0;
  r->bytes = 0;
  return r;
}

Service::RequestRecord* Service::recordOf(h2::Stream& stream) {
  return static_cast<RequestRecord*>(stream.user());
}

void Service::onRequest(h2::Stream& stream, http::detail::ConnectionView& conn) {
  anchor_->enteredLoop();
  WorkerCounters& c = worker_.counters();
  c.requests_total.add(1);
  c.streams_active.add(1);
  RequestRecord* record = takeRecord();
  record->start = worker_.loop().now();
  record->conn = &conn;
  stream.setUser(record);

  const std::string_view target = stream.path();
  const http::RouteMatch m = routes_->match(stream.method(), target.substr(0, target.find('?')));
  if (m.options) {
    serveOptions(stream, m.allow);
    return;
  }
  if (m.route == nullptr) {
    serveError(stream, m.method_not_allowed ? 405 : 404, m.allow);
    return;
  }
  switch (m.route->kind) {
    case Router::Route::Kind::kFiles:
      serveStatic(stream, *files_[m.index], *m.route);
      return;
    case Router::Route::Kind::kMetrics:
      serveMetrics(stream);
      return;
    case Router::Route::Kind::kHandler:
      break;
  }
  const ServerConfig& cfg = worker_.config();
  http::detail::ExchangeConfig ec;
  ec.write_bound = cfg.stream_write_bound;
  ec.response_timeout = m.route->options.response_timeout.count() > 0
                            ? ev::Duration(m.route->options.response_timeout)
                            : ev::Duration(cfg.response_timeout);
  record->exchange = http::detail::Exchange::make(anchor_, stream, conn, ec);
  // Keep a reference for the call: the handler may end the stream.
  std::shared_ptr<http::detail::Exchange> ex = record->exchange;
  ex->run(m.route->handler);
}

void Service::onRequestData(h2::Stream& stream, const uint8_t* data, size_t len) {
  RequestRecord* record = recordOf(stream);
  if (record != nullptr && record->exchange) record->exchange->onData(data, len);
}

void Service::onRequestEnd(h2::Stream& stream) {
  RequestRecord* record = recordOf(stream);
  if (record != nullptr && record->exchange) record->exchange->onEnd();
}

void Service::onStreamDrained(h2::Stream& stream) {
  RequestRecord* record = recordOf(stream);
  if (record != nullptr && record->exchange) record->exchange->onDrained();
}

void Service::onRequestClosed(h2::Stream& stream, uint32_t error_code, bool connection_gone) {
  RequestRecord* record = recordOf(stream);
  if (record == nullptr) return;  // reset before its headers completed: never counted
  worker_.counters().streams_active.add(-1);
  stream.setUser(nullptr);
  if (std::shared_ptr<http::detail::Exchange> ex = std::move(record->exchange)) {
    h2loop::CloseReason reason = h2loop::CloseReason::kCompleted;
    if (connection_gone) {
      reason = worker_.shuttingDown() ? h2loop::CloseReason::kShutdown
                                      : h2loop::CloseReason::kConnectionClosed;
    } else if (error_code != 0) {
      reason = h2loop::CloseReason::kReset;
    }
    record->status = ex->status();
    record->bytes = ex->bytesQueued();
    ex->onClosed(reason);
  }
  if (worker_.config().access_log) {
    const auto us =
        std::chrono::duration_cast<std::chrono::microseconds>(worker_.loop().now() - record->start);
    accessLogger()->info("access: {} {} {} {} {}us stream={} err={} peer={}", stream.method(),
                         stream.path(), record->status, record->bytes, us.count(), stream.id(),
                         error_code, record->conn != nullptr ? record->conn->peerAddress() : "");
  }
  free_records_.emplace_back(record);
}

void Service::serveError(h2::Stream& stream, int status, std::string_view allow) {
  std::string_view body = status == 405 ? "method not allowed\n" : "not found\n";
  std::string_view type = "text/plain";
  if (const Router::ErrorPage* page = routes_->errorPage(status)) {
    body = page->body;
    type = page->content_type;
  }
  std::array<h2::Header, 4> headers;
  size_t n = 0;
  headers[n++] = {"server", "h2loop"};
  headers[n++] = {"date", worker_.httpDate()};
  headers[n++] = {"content-type", type};
  if (status == 405) headers[n++] = {"allow", allow};
  RequestRecord* record = recordOf(stream);
  record->status = status;
  record->bytes = body.size();
  (void)stream.submitResponse(status, {headers.data(), n}, h2::ResponseBody::bytes(body));
}

void Service::serveOptions(h2::Stream& stream, std::string_view allow) {
  // RFC 9110 §9.3.7: no content, so content-length 0 (the session adds it).
  const std::array<h2::Header, 3> headers{
      {{"server", "h2loop"}, {"date", worker_.httpDate()}, {"allow", allow}}};
  RequestRecord* record = recordOf(stream);
  record->status = 200;
  record->bytes = 0;
  (void)stream.submitResponse(200, headers, h2::ResponseBody::none());
}

void Service::applyErrorPage(StaticResponse& resp) const {
  if (resp.status < 400) return;  // a 2xx or 3xx (304, 206) is never touched
  const Router::ErrorPage* page = routes_->errorPage(resp.status);
  if (page == nullptr) return;
  resp.content_type = page->content_type;
  // HEAD too: the session sends the body's length, not its bytes.
  resp.body = page->body;
  resp.content_length = static_cast<int64_t>(page->body.size());
}

void Service::serveStatic(h2::Stream& stream, StaticFiles& files, const Router::Route& route) {
  const std::string_view prefix = route.path;
  auto header = [&](std::string_view name) -> std::string_view {
    const h2::HeaderField* f = stream.findHeader(name);
    return f ? std::string_view(f->value) : std::string_view{};
  };
  // Mounted below a prefix: the file path is what follows it.
  std::string_view path = stream.path();
  if (prefix.size() > 1) {
    const std::string_view rest = path.substr(prefix.size());
    scratch_path_.resize(rest.size() + 1);
    scratch_path_[0] = '/';
    rest.copy(scratch_path_.data() + 1, rest.size());
    path = scratch_path_;
  }
  StaticRequest req;
  req.method = stream.method();
  req.path = path;
  req.if_none_match = header("if-none-match");
  req.if_modified_since = header("if-modified-since");
  req.range = header("range");
  req.if_range = header("if-range");
  req.accept_encoding = header("accept-encoding");
  StaticResponse resp = files.handle(req, wallMillis());
  applyErrorPage(resp);
  std::array<h2::Header, 14 + FilesOptions::kMaxFields> headers;
  size_t n = 0;
  headers[n++] = {"server", "h2loop"};
  headers[n++] = {"date", worker_.httpDate()};
  if (!resp.content_type.empty()) headers[n++] = {"content-type", resp.content_type};
  if (!resp.etag.view().empty()) headers[n++] = {"etag", resp.etag.view()};
  if (!resp.last_modified.view().empty())
    headers[n++] = {"last-modified", resp.last_modified.view()};
  if (resp.allow_header) headers[n++] = {"allow", kAllowedMethods};
  if (resp.accept_ranges) headers[n++] = {"accept-ranges", "bytes"};
  if (!resp.content_range.empty()) headers[n++] = {"content-range", resp.content_range.view()};
  if (!resp.content_encoding.empty()) headers[n++] = {"content-encoding", resp.content_encoding};
  if (resp.vary) headers[n++] = {"vary", "accept-encoding"};
  // The mount's own fields, on 2xx and 3xx only (nginx's add_header).
  if (resp.status < 400) {
    for (const ResponseField& f : route.headers)
      headers[n++] = {f.name, f.value};
  }

  h2::ResponseBody body = h2::ResponseBody::none();
  if (resp.file && !resp.pieces.empty()) {
    // multipart/byteranges: part headers from memory, file bytes read as for a 200.
    body = h2::ResponseBody::filePieces(resp.file.get(), resp.pieces, resp.parts_text);
  } else if (resp.file) {
    // Straight into the output: copied from the cache's memory for small
    // files (FileHandle::memory()), pread for the others.
    body = h2::ResponseBody::file(resp.file.get(), static_cast<uint64_t>(resp.offset),
                                  static_cast<uint64_t>(resp.content_length));
  } else if (!resp.body.empty()) {
    body = h2::ResponseBody::bytes(resp.body);
  } else if (resp.content_length >= 0 && (resp.status == 200 || resp.status == 206)) {
    // HEAD or an empty file: headers only, with the real length.
    static thread_local char len[24];
    const int w =
        std::snprintf(len, sizeof len, "%lld", static_cast<long long>(resp.content_length));
    headers[n++] = {"content-length", std::string_view(len, static_cast<size_t>(w))};
  }
  RequestRecord* record = recordOf(stream);
  record->status = resp.status;
  record->bytes = resp.content_length > 0 ? static_cast<uint64_t>(resp.content_length) : 0;
  const h2::SubmitResult r = stream.submitResponse(resp.status, {headers.data(), n}, body);
  if (r != h2::SubmitResult::kOk) {
    spdlog::warn("stream {}: cannot submit response ({})", stream.id(), static_cast<int>(r));
  }
}

void Service::serveMetrics(h2::Stream& stream) {
  worker_.publishGauges();  // this worker's figures include the asking stream
  const std::string text = worker_.metricsText();
  const std::array<h2::Header, 3> headers{
      {{"server", "h2loop"},
       {"content-type", "text/plain; version=0.0.4; charset=utf-8"},
       {"cache-control", "no-store"}}};
  RequestRecord* record = recordOf(stream);
  record->status = 200;
  record->bytes = text.size();
  (void)stream.submitResponse(200, headers, h2::ResponseBody::bytes(text));
}

}  // namespace h2loop::server
