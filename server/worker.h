#pragma once

#include <algorithm>
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "eventloop/loop.h"
#include "h2/output_buffer.h"
#include "h2/session_allocator.h"
#include "h2/stream_pool.h"
#include "http/route_table.h"
#include "net/tls_context.h"
#include "net/transport.h"
#include "server/config.h"
#include "server/counters.h"
#include "server/http_date.h"
#include "server/service.h"
#include "server/static_files.h"

namespace h2loop::server {

class Connection;
class Worker;

// Makes the transport of an accepted connection. The default wraps the fd in
// a TlsTransport (TLS configured) or a PlainTransport; tests substitute a
// fault-injecting double that wraps the real one.
using TransportFactory =
    std::function<std::unique_ptr<net::Transport>(int fd, const net::TlsContext* tls)>;
std::unique_ptr<net::Transport> makeDefaultTransport(int fd, const net::TlsContext* tls);

// What the workers of one server share. Read-mostly; the connection count is
// the only thing written by all of them.
struct ServerShared {
  // The configuration the server started with: what only a restart changes
  // (listeners, workers, loop, routes, pool and buffer sizes).
  const ServerConfig* config = nullptr;
  // The first generation, until the workers have it (Worker::setSettings()
  // moves a worker on).
  std::shared_ptr<const Settings> settings;
  std::atomic<uint64_t> reloads_ok{0};
  std::atomic<uint64_t> reloads_failed{0};
  // Every generation made, to count those still alive (held by the server
  // or by a connection): one, once no connection runs on an older one.
  void addGeneration(const std::shared_ptr<const Settings>& s) {
    std::lock_guard lock(generations_mutex);
    std::erase_if(generations, [](const auto& w) { return w.expired(); });
    generations.push_back(s);
  }
  [[nodiscard]] int64_t generationsAlive() {
    std::lock_guard lock(generations_mutex);
    return std::count_if(generations.begin(), generations.end(),
                         [](const auto& w) { return !w.expired(); });
  }
  std::mutex generations_mutex;
  std::vector<std::weak_ptr<const Settings>> generations;
  std::atomic<int64_t> connections{0};  // over all workers, against max_connections
  std::vector<Worker*> workers;         // for the metrics endpoint
  TransportFactory transport_factory = makeDefaultTransport;
  std::shared_ptr<const http::RouteTable> routes;
  // Embedded servers: runs on the loop thread when the shutdown completed
  // (a threaded worker stops its own loop instead).
  std::function<void()> on_stopped;
};

// A listening socket of a worker, and whether it speaks TLS (when the
// server has certificates) or h2c.
struct ListenSocket {
  int fd = -1;
  bool cleartext = false;
};

// One thread, one loop, its own SO_REUSEPORT listeners, its own stream pool
// and file cache. A connection lives its whole life on the worker that
// accepted it; the only cross-thread doors are requestShutdown() and the
// relaxed counters read by the metrics endpoint.
class Worker {
 public:
  // Takes ownership of `listen_fds` (non-blocking listening sockets).
  // `embedded`: serve on this loop (the application's, which runs it and
  // outlives the worker) instead of a loop of its own on its own thread.
  Worker(ServerShared& shared, unsigned index, std::vector<ListenSocket> listen_fds,
         ev::Loop* embedded = nullptr);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Runs the loop on a new thread / on the calling thread until shutdown ends.
  // Embedded: starts accepting (the application runs the loop).
  void start();
  void runHere();
  void join();
  // Graceful shutdown: stop accepting, drain connections, then stop. Any thread.
  void requestShutdown();

  // ---- loop thread only ----
  [[nodiscard]] ev::Loop& loop() { return *loop_; }
  [[nodiscard]] h2::StreamPool& pool() { return *pool_; }
  // nghttp2's memory for this worker's sessions (each session holds a reference).
  [[nodiscard]] const std::shared_ptr<h2::SessionAllocator>& sessionAllocator() const {
    return session_allocator_;
  }
  // The first static-file mount (tests, tools).
  [[nodiscard]] StaticFiles& files() { return *service_->fileServices().front(); }
  // What serves this worker's requests (files, metrics, access log).
  [[nodiscard]] Service& service() { return *service_; }
  // The current generation's configuration (a connection keeps its own).
  [[nodiscard]] const ServerConfig& config() const { return settings_->config; }
  [[nodiscard]] const std::shared_ptr<const Settings>& settings() const { return settings_; }
  // New connections of this worker use `next` from now on. Any thread (it is
  // carried to the loop thread).
  void setSettings(std::shared_ptr<const Settings> next);
  [[nodiscard]] WorkerCounters& counters() { return counters_; }
  [[nodiscard]] const WorkerCounters& counters() const { return counters_; }
  [[nodiscard]] bool shuttingDown() const { return shutting_down_; }
  [[nodiscard]] unsigned index() const { return index_; }
  // Scratch buffer for reads: the session consumes input synchronously, so
  // one buffer serves every connection of the worker.
  [[nodiscard]] uint8_t* readBuffer() { return read_buffer_.get(); }
  // Output blocks shared by this worker's connections (see h2::BlockCache).
  [[nodiscard]] h2::BlockCache& blockCache() { return *block_cache_; }
  static constexpr size_t kReadBufferSize = 32 * 1024;
  // IMF-fixdate of the current second, for the date header.
  [[nodiscard]] std::string_view httpDate();
  // Prometheus text, summed over every worker of the server.
  [[nodiscard]] std::string metricsText() const;
  void publishGauges();

  // Called by ~Connection: unlinks it and returns its slot.
  void connectionDestroyed(Connection* c);

  // In-process inspection (tests): live connections of this worker.
  [[nodiscard]] size_t connectionCount() const { return connection_count_; }
  // Runs `fn` on this worker's loop thread and waits for it (tests, tools).
  // Must not be called from the worker's own thread.
  void runOnLoop(const std::function<void()>& fn);
  // Calls fn(connection) for every live connection. Loop thread only.
  void forEachConnection(const std::function<void(Connection&)>& fn);

 private:
  struct Listener {
    int fd;
    bool cleartext;  // h2c whatever the settings' TLS context
    std::unique_ptr<ev::IoWatch> watch;
  };

  void onAcceptable(Listener& l);
  void pauseAccepting();
  void resumeAccepting();
  void beginShutdown();
  void closeListeners();
  void maybeFinishShutdown();

  ServerShared& shared_;
  unsigned index_;
  std::shared_ptr<const Settings> settings_;
  std::unique_ptr<ev::Loop> owned_loop_;  // null when embedded
  ev::Loop* loop_;
  std::unique_ptr<h2::StreamPool> pool_;
  std::shared_ptr<h2::SessionAllocator> session_allocator_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<uint8_t[]> read_buffer_;
  std::unique_ptr<h2::BlockCache> block_cache_;
  WorkerCounters counters_;
  HttpDateCache date_cache_;
  std::vector<Listener> listeners_;
  std::unique_ptr<ev::Timer> accept_backoff_;
  std::unique_ptr<ev::Timer> drain_timer_;
  Connection* connections_ = nullptr;  // intrusive list
  size_t connection_count_ = 0;
  bool shutting_down_ = false;
  bool stopped_ = false;
  std::thread thread_;
};

}  // namespace h2loop::server
