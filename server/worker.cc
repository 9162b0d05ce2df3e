#include "server/worker.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <future>

#include "eventloop/loop_factory.h"
#include "net/plain_transport.h"
#include "net/socket_util.h"
#include "net/tls_transport.h"
#include "server/connection.h"

namespace h2loop::server {
namespace {

// accept4() calls per readiness event: one busy listener cannot starve the
// connections of its worker.
constexpr int kAcceptBudget = 64;

size_t poolCapacity(const ServerConfig& cfg) {
  if (cfg.pool_capacity != 0) return cfg.pool_capacity;
  return static_cast<size_t>(cfg.session.max_concurrent_streams) * 100;
}

}  // namespace

std::unique_ptr<net::Transport> makeDefaultTransport(int fd, const net::TlsContext* tls) {
  if (tls != nullptr) return std::make_unique<net::TlsTransport>(*tls, fd);
  return std::make_unique<net::PlainTransport>(fd);
}

Worker::Worker(ServerShared& shared, unsigned index, std::vector<ListenSocket> listen_fds,
               ev::Loop* embedded)
    : shared_(shared),
      index_(index),
      settings_(shared.settings),
      owned_loop_(embedded == nullptr ? ev::makeLoop(shared.config->event_loop) : nullptr),
      loop_(embedded != nullptr ? embedded : owned_loop_.get()),
      pool_(std::make_unique<h2::StreamPool>(poolCapacity(*shared.config))),
      session_allocator_(std::make_shared<h2::SessionAllocator>()),
      service_(std::make_unique<Service>(*this, shared.routes)),
      read_buffer_(std::make_unique<uint8_t[]>(kReadBufferSize)),
      block_cache_(std::make_unique<h2::BlockCache>(
          shared.config->output_high_watermark + h2::OutputBuffer::kFrameHeadroom, 64)) {
  counters_.pool_capacity.set(static_cast<int64_t>(pool_->capacity()));
  for (const ListenSocket& l : listen_fds)
    listeners_.push_back(Listener{l.fd, l.cleartext, nullptr});
  // An embedded worker accepts from start() on: the application may run
  // its loop before.
  const uint32_t interest = owned_loop_ ? ev::kRead : ev::kNone;
  for (Listener& l : listeners_) {
    l.watch = loop_->watch(l.fd, interest, [this, &l](uint32_t) { onAcceptable(l); });
  }
  accept_backoff_ = loop_->timer([this] { resumeAccepting(); });
  drain_timer_ = loop_->timer([this] {
    spdlog::info("worker {}: drain timeout, closing {} connection(s)", index_, connection_count_);
    for (Connection* c = connections_; c != nullptr; c = c->next_) {
      c->close(CloseReason::kShutdown, true);
    }
  });
}

Worker::~Worker() {
  // The worker's thread is joined (or never started): this thread takes the
  // loop over for the teardown below, which is loop-affine. (An embedded
  // loop stays the application's: it is destroyed on that loop's thread.)
  if (owned_loop_) loop_->bindToCurrentThread();
  // Connections first, while the loop, pool and file cache they use exist.
  for (Connection* c = connections_; c != nullptr; c = c->next_) {
    c->close(CloseReason::kShutdown, true);
  }
  loop_->drainDeferred();
  closeListeners();
  accept_backoff_.reset();
  drain_timer_.reset();
  // Every stream is closed now; application handles may still hold some.
  // From here on they cannot reach this worker: the anchor dies, and the
  // pool with it under the anchor's lock (it orphans the streams held, which
  // their last handle frees wherever it drops).
  std::shared_ptr<http::detail::Anchor> anchor = service_->anchor();
  service_.reset();
  anchor->kill([this] { pool_.reset(); });
  // Posted operations of handles the loop never ran are destroyed with it
  // (an embedded loop runs them later: they find their exchange closed).
  owned_loop_.reset();
}

void Worker::start() {
  if (!owned_loop_) {
    resumeAccepting();
    return;
  }
  thread_ = std::thread([this] { runHere(); });
}

void Worker::runHere() {
  loop_->updateNow();
  loop_->run();
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::requestShutdown() {
  if (!owned_loop_ && loop_->isLoopThread()) {
    beginShutdown();
    return;
  }
  loop_->post([this] { beginShutdown(); });
}

void Worker::beginShutdown() {
  if (shutting_down_) return;
  shutting_down_ = true;
  closeListeners();
  spdlog::debug("worker {}: shutting down, draining {} connection(s)", index_, connection_count_);
  for (Connection* c = connections_; c != nullptr; c = c->next_)
    c->drain();
  // Open WebSockets (which a drain does not end) start their close: 1001.
  service_->anchor()->notifyShutdown();
  drain_timer_->arm(config().drain_timeout);
  maybeFinishShutdown();
}

void Worker::maybeFinishShutdown() {
  if (shutting_down_ && connection_count_ == 0 && !stopped_) {
    stopped_ = true;
    drain_timer_->cancel();
    if (owned_loop_) {
      loop_->stop();
    } else if (shared_.on_stopped) {
      // Posted: the application may destroy the server in it, which must
      // not happen under this worker's own call chain.
      loop_->post(shared_.on_stopped);
    }
  }
}

void Worker::closeListeners() {
  for (Listener& l : listeners_) {
    if (l.watch) l.watch->close();
    l.watch.reset();
    if (l.fd >= 0) ::close(l.fd);
    l.fd = -1;
  }
  if (accept_backoff_) accept_backoff_->cancel();
}

void Worker::pauseAccepting() {
  for (Listener& l : listeners_) {
    if (l.watch) (void)l.watch->setInterest(ev::kNone);
  }
  accept_backoff_->arm(config().accept_backoff);
}

void Worker::resumeAccepting() {
  if (shutting_down_) return;
  for (Listener& l : listeners_) {
    if (l.watch) (void)l.watch->setInterest(ev::kRead);
  }
}

void Worker::onAcceptable(Listener& l) {
  const ServerConfig& cfg = config();
  for (int i = 0; i < kAcceptBudget; ++i) {
    const int fd = ::accept4(l.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      const int err = errno;
      if (err == EAGAIN || err == EWOULDBLOCK) return;
      if (err == EINTR || err == ECONNABORTED || err == EPROTO) continue;
      counters_.accept_errors.add(1);
      if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        // Out of descriptors: stop accepting for a moment instead of spinning
        // on a listener that stays readable.
        spdlog::warn("worker {}: accept: {}; pausing accepts for {} ms", index_,
                     net::errnoString(err), cfg.accept_backoff.count());
        pauseAccepting();
        return;
      }
      spdlog::warn("worker {}: accept: {}", index_, net::errnoString(err));
      return;
    }
    if (shared_.connections.fetch_add(1, std::memory_order_relaxed) >=
        static_cast<int64_t>(cfg.max_connections)) {
      // Refused cleanly and at once: RST, no TIME_WAIT, no hung client.
      shared_.connections.fetch_sub(1, std::memory_order_relaxed);
      counters_.connections_refused.add(1);
      counters_.closed[static_cast<size_t>(CloseReason::kLimit)].add(1);
      (void)net::setLingerZero(fd);
      ::close(fd);
      spdlog::debug("worker {}: refused a connection: max-connections {} reached", index_,
                    cfg.max_connections);
      continue;
    }
    (void)net::setNoDelay(fd);
    if (cfg.kernel_unsent_limit > 0) (void)net::setNotSentLowat(fd, cfg.kernel_unsent_limit);
    std::unique_ptr<net::Transport> transport =
        shared_.transport_factory(fd, l.cleartext ? nullptr : settings_->tls.get());
    auto* c = new Connection(*this, fd, std::move(transport));
    c->next_ = connections_;
    if (connections_ != nullptr) connections_->prev_ = c;
    connections_ = c;
    ++connection_count_;
    counters_.connections_active.add(1);
    counters_.connections_total.add(1);
    c->start();
  }
}

void Worker::setSettings(std::shared_ptr<const Settings> next) {
  // The old generation lives on in the connections that hold it.
  loop_->post([this, next = std::move(next)]() mutable { settings_ = std::move(next); });
}

void Worker::connectionDestroyed(Connection* c) {
  if (c->prev_ != nullptr) c->prev_->next_ = c->next_;
  if (c->next_ != nullptr) c->next_->prev_ = c->prev_;
  if (connections_ == c) connections_ = c->next_;
  c->prev_ = c->next_ = nullptr;
  --connection_count_;
  counters_.connections_active.add(-1);
  shared_.connections.fetch_sub(1, std::memory_order_relaxed);
  maybeFinishShutdown();
}

void Worker::runOnLoop(const std::function<void()>& fn) {
  std::promise<void> done;
  loop_->post([&] {
    fn();
    done.set_value();
  });
  done.get_future().wait();
}

void Worker::forEachConnection(const std::function<void(Connection&)>& fn) {
  for (Connection* c = connections_; c != nullptr;) {
    Connection* next = c->next_;  // fn may close c (its destruction is deferred anyway)
    fn(*c);
    c = next;
  }
}

void Worker::publishGauges() {
  counters_.pool_in_use.set(static_cast<int64_t>(pool_->inUse()));
  counters_.pool_refused.set(static_cast<int64_t>(pool_->refused()));
  int64_t open_files = 0;
  int64_t compressed_bytes = 0;
  uint64_t compressions[kCodings] = {};
  for (const StaticFiles* f : service_->fileServices()) {
    const FileCacheStats s = f->cacheStats();
    open_files += s.open_files;
    compressed_bytes += s.compressed_live_bytes;
    for (size_t i = 0; i < kCodings; ++i)
      compressions[i] += f->compressions(static_cast<Coding>(i));
  }
  counters_.file_cache_open_files.set(open_files);
  counters_.static_compressed_bytes.set(compressed_bytes);
  for (size_t i = 0; i < kCodings; ++i)
    counters_.static_compressed[i].set(static_cast<int64_t>(compressions[i]));
}

std::string_view Worker::httpDate() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME_COARSE, &ts);
  return date_cache_.format(ts.tv_sec);
}

std::string Worker::metricsText() const {
  auto sum = [&](auto member) {
    int64_t total = 0;
    for (const Worker* w : shared_.workers)
      total += (w->counters_.*member).get();
    return total;
  };
  std::string out;
  out.reserve(4096);
  // One counter per label value (an array member of the counters, summed).
  auto sumAt = [&](auto member, size_t i) {
    int64_t total = 0;
    for (const Worker* w : shared_.workers)
      total += (w->counters_.*member)[i].get();
    return total;
  };
  auto labelled = [&](std::string_view name, std::string_view help, std::string_view label,
                      size_t n, auto label_value, auto value) {
    out += fmt::format("# HELP {} {}\n# TYPE {} counter\n", name, help, name);
    for (size_t i = 0; i < n; ++i)
      out += fmt::format("{}{{{}=\"{}\"}} {}\n", name, label, label_value(i), value(i));
  };
  auto metric = [&](std::string_view name, std::string_view type, std::string_view help,
                    int64_t value) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, value);
  };
  metric("h2loop_connections_active", "gauge", "Open client connections.",
         sum(&WorkerCounters::connections_active));
  metric("h2loop_connections_total", "counter", "Accepted client connections.",
         sum(&WorkerCounters::connections_total));
  metric("h2loop_connections_refused_total", "counter", "Connections refused at max-connections.",
         sum(&WorkerCounters::connections_refused));
  metric("h2loop_http1_connections_total", "counter", "Connections served HTTP/1.1.",
         sum(&WorkerCounters::http1_connections));
  metric("h2loop_h2c_upgrades_total", "counter", "HTTP/1.1 connections upgraded to h2c.",
         sum(&WorkerCounters::h2c_upgrades));
  metric("h2loop_streams_active", "gauge", "Open requests (HTTP/2 streams, HTTP/1.1 exchanges).",
         sum(&WorkerCounters::streams_active));
  metric("h2loop_requests_total", "counter", "Requests received.",
         sum(&WorkerCounters::requests_total));
  metric("h2loop_pool_in_use", "gauge", "Stream handles taken from the pools.",
         sum(&WorkerCounters::pool_in_use));
  metric("h2loop_pool_capacity", "gauge", "Stream handle pool capacity.",
         sum(&WorkerCounters::pool_capacity));
  metric("h2loop_pool_refused_total", "counter", "Streams refused because a pool was exhausted.",
         sum(&WorkerCounters::pool_refused));
  metric("h2loop_output_buffered_bytes", "gauge", "Bytes waiting in connection output buffers.",
         sum(&WorkerCounters::output_buffered_bytes));
  metric("h2loop_accept_errors_total", "counter", "accept() failures (EMFILE etc.).",
         sum(&WorkerCounters::accept_errors));
  metric("h2loop_file_cache_open_files", "gauge", "Descriptors held open by the file caches.",
         sum(&WorkerCounters::file_cache_open_files));
  metric("h2loop_static_compressed_bytes", "gauge",
         "Bytes of static files compressed on the fly, kept by the caches or being sent.",
         sum(&WorkerCounters::static_compressed_bytes));
  labelled(
      "h2loop_static_compressed_total", "Static files compressed on the fly, by coding.", "coding",
      kCodings, [](size_t i) { return codingName(static_cast<Coding>(i)); },
      [&](size_t i) { return sumAt(&WorkerCounters::static_compressed, i); });
  auto app = [&](auto member) {
    int64_t total = 0;
    for (const Worker* w : shared_.workers)
      total += (w->service_->anchor()->counters.*member).load(std::memory_order_relaxed);
    return total;
  };
  using http::detail::ExchangeCounters;
  metric("h2loop_app_handles", "gauge", "Response handles held by the application.",
         app(&ExchangeCounters::app_handles));
  metric("h2loop_app_exchanges", "gauge",
         "Application requests alive (open, or closed and still held by a handle).",
         app(&ExchangeCounters::exchanges_alive));
  metric("h2loop_app_queued_bytes", "gauge",
         "Streamed response bytes written by the application and not yet framed.",
         app(&ExchangeCounters::queued_bytes));
  metric("h2loop_requests_unanswered_total", "counter",
         "Application requests that ended with no response.", app(&ExchangeCounters::unanswered));
  metric("h2loop_requests_dropped_total", "counter",
         "Application requests whose every handle was dropped unanswered (500).",
         app(&ExchangeCounters::dropped));
  metric("h2loop_response_timeouts_total", "counter",
         "Application requests not answered within the response timeout (504).",
         app(&ExchangeCounters::timeouts));
  metric("h2loop_handler_errors_total", "counter", "Handlers or callbacks that threw.",
         app(&ExchangeCounters::handler_errors));
  metric("h2loop_websockets_open", "gauge", "WebSockets open.", app(&ExchangeCounters::ws_open));
  metric("h2loop_websockets_total", "counter", "WebSockets opened.",
         app(&ExchangeCounters::ws_total));
  metric("h2loop_websockets_h2_total", "counter", "WebSockets opened over HTTP/2 (RFC 8441).",
         app(&ExchangeCounters::ws_h2_total));
  metric("h2loop_websocket_queued_bytes", "gauge",
         "WebSocket message bytes accepted by send() and not yet on their stream.",
         app(&ExchangeCounters::ws_queued_bytes));
  metric("h2loop_websocket_send_refused_total", "counter",
         "WebSocket send() calls refused at the send bound (kWouldBlock).",
         app(&ExchangeCounters::ws_send_refused));
  metric("h2loop_websocket_messages_received_total", "counter", "WebSocket messages received.",
         app(&ExchangeCounters::ws_messages_in));
  metric("h2loop_websocket_messages_sent_total", "counter", "WebSocket messages queued.",
         app(&ExchangeCounters::ws_messages_out));
  metric("h2loop_fds_open", "gauge", "File descriptors open in the process.", net::countOpenFds());
  const uint64_t reloads[] = {shared_.reloads_ok.load(std::memory_order_relaxed),
                              shared_.reloads_failed.load(std::memory_order_relaxed)};
  labelled(
      "h2loop_config_reloads_total", "Configuration reloads (SIGHUP) by result.", "result", 2,
      [](size_t i) { return i == 0 ? "ok" : "failed"; },
      [&](size_t i) { return static_cast<int64_t>(reloads[i]); });
  metric("h2loop_config_generations", "gauge",
         "Configurations alive: the current one, and older ones open connections still run on.",
         shared_.generationsAlive());
  labelled(
      "h2loop_connections_closed_total", "Closed connections by reason.", "reason",
      static_cast<size_t>(CloseReason::kCount),
      [](size_t r) { return toString(static_cast<CloseReason>(r)); },
      [&](size_t r) { return sumAt(&WorkerCounters::closed, r); });
  metric("h2loop_proxy_protocol_accepted_total", "counter",
         "PROXY protocol headers accepted (their client address replaced the peer's).",
         sum(&WorkerCounters::proxy_accepted));
  labelled(
      "h2loop_proxy_protocol_rejected_total", "Connections refused for the PROXY protocol.",
      "reason", static_cast<size_t>(ProxyReject::kCount),
      [](size_t r) { return toString(static_cast<ProxyReject>(r)); },
      [&](size_t r) { return sumAt(&WorkerCounters::proxy_rejected, r); });
  return out;
}

}  // namespace h2loop::server
