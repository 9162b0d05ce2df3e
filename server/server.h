#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "server/config.h"
#include "server/worker.h"

namespace h2loop::server {

// The whole server: the TLS context, the listening sockets and the workers.
// Construction does every start-up check and throws std::runtime_error with a
// one-line message (missing root, unreadable certificate, port in use, bad
// event loop name) before any thread starts.
class Server {
 public:
  explicit Server(ServerConfig config, TransportFactory transport_factory = makeDefaultTransport);
  // Embedded: one worker on the application's `loop` (config.workers and
  // config.event_loop are ignored); see h2loop::Server.
  Server(ServerConfig config, ev::Loop& loop);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Starts one thread per worker.
  void start();
  // Graceful shutdown of every worker: stop accepting, GOAWAY, drain. Any thread.
  // Embedded: `done` runs on the loop thread once the last connection is gone.
  void shutdown(std::function<void()> done = nullptr);
  // Waits until every worker has finished.
  void wait();

  // The port each --listen address got (resolves port 0).
  [[nodiscard]] const std::vector<uint16_t>& ports() const { return ports_; }
  [[nodiscard]] const ServerConfig& config() const { return config_; }
  [[nodiscard]] Worker& worker(size_t i) { return *workers_[i]; }
  [[nodiscard]] size_t workerCount() const { return workers_.size(); }

 private:
  void init(TransportFactory transport_factory, ev::Loop* embedded);

  ServerConfig config_;
  ev::Loop* embedded_ = nullptr;
  std::unique_ptr<net::TlsContext> tls_;
  ServerShared shared_;
  std::vector<uint16_t> ports_;
  std::vector<std::unique_ptr<Worker>> workers_;
};

}  // namespace h2loop::server
