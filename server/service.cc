#include "server/service.h"

#include <spdlog/spdlog.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <ctime>

#include "server/worker.h"

namespace h2loop::server {
namespace {

int64_t wallMillis() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME_COARSE, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1'000'000;
}

}  // namespace

Service::RequestRecord* Service::takeRecord() {
  if (free_records_.empty()) return new RequestRecord;
  RequestRecord* r = free_records_.back().release();
  free_records_.pop_back();
  *r = RequestRecord{};
  return r;
}

Service::RequestRecord* Service::recordOf(h2::Stream& stream) {
  return static_cast<RequestRecord*>(stream.user());
}

void Service::onRequest(h2::Stream& stream) {
  WorkerCounters& c = worker_.counters();
  c.requests_total.add(1);
  c.streams_active.add(1);
  RequestRecord* record = takeRecord();
  record->start = worker_.loop().now();
  stream.setUser(record);
  const std::string& metrics = worker_.config().metrics_path;
  if (!metrics.empty() && stream.path() == metrics &&
      (stream.method() == "GET" || stream.method() == "HEAD")) {
    serveMetrics(stream);
  } else {
    serveStatic(stream);
  }
}

void Service::onRequestClosed(h2::Stream& stream, uint32_t error_code) {
  RequestRecord* record = recordOf(stream);
  if (record == nullptr) return;  // reset before its headers completed: never counted
  worker_.counters().streams_active.add(-1);
  stream.setUser(nullptr);
  if (worker_.config().access_log) {
    const auto us =
        std::chrono::duration_cast<std::chrono::microseconds>(worker_.loop().now() - record->start);
    spdlog::info("access: {} {} {} {} {}us stream={} err={}", stream.method(), stream.path(),
                 record->status, record->bytes, us.count(), stream.id(), error_code);
  }
  free_records_.emplace_back(record);
}

void Service::serveStatic(h2::Stream& stream) {
  auto header = [&](std::string_view name) -> std::string_view {
    const h2::HeaderField* f = stream.findHeader(name);
    return f ? std::string_view(f->value) : std::string_view{};
  };
  StaticResponse resp =
      worker_.files().handle(stream.method(), stream.path(), header("if-none-match"),
                             header("if-modified-since"), wallMillis());
  std::array<h2::Header, 8> headers;
  size_t n = 0;
  headers[n++] = {"server", "h2loop"};
  headers[n++] = {"date", worker_.httpDate()};
  if (!resp.content_type.empty()) headers[n++] = {"content-type", resp.content_type};
  if (!resp.etag.view().empty()) headers[n++] = {"etag", resp.etag.view()};
  if (!resp.last_modified.view().empty())
    headers[n++] = {"last-modified", resp.last_modified.view()};
  if (resp.allow_header) headers[n++] = {"allow", kAllowedMethods};

  h2::ResponseBody body = h2::ResponseBody::none();
  if (resp.file) {
    // Straight into the output: copied from the cache's memory for small
    // files (FileHandle::memory()), pread for the others.
    body = h2::ResponseBody::file(resp.file.get(), static_cast<uint64_t>(resp.offset),
                                  static_cast<uint64_t>(resp.content_length));
  } else if (!resp.body.empty()) {
    body = h2::ResponseBody::bytes(resp.body);
  } else if (resp.content_length >= 0 && resp.status == 200) {
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
