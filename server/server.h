#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "server/config.h"
#include "server/worker.h"

namespace h2loop::server {

// The TLS context `config` asks for (its certificates, SNI ones included,
// ciphers, ticket keys, OCSP), or null for h2c. `ticket_key`: the raw key
// used when no key file is configured ("" for none). Throws
// std::runtime_error naming the file at fault.
std::shared_ptr<const net::TlsContext> makeTls(const ServerConfig& config,
                                               const std::string& ticket_key);

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

  // Reload: connections accepted from now on run with `next` and a TLS
  // context built anew from its certificate and key files (re-read even if
  // their names did not change); open connections and their streams keep
  // what they were accepted under. What only a restart can change (see
  // restartOnly()) keeps its running value, and each such key is returned.
  // Throws std::runtime_error (and changes nothing) when the new TLS context
  // cannot be built. Any thread; counted in h2loop_config_reloads_total.
  std::vector<std::string> reload(ServerConfig next);
  // Counts a reload that failed before reaching reload() (a bad file).
  void countFailedReload() { shared_.reloads_failed.fetch_add(1, std::memory_order_relaxed); }

  // The port each --listen address got (resolves port 0).
  [[nodiscard]] const std::vector<uint16_t>& ports() const { return ports_; }
  // Each listening address as HOST:PORT ([v6]:PORT), in the order of ports().
  [[nodiscard]] const std::vector<std::string>& listening() const { return listening_; }
  // The drain timeout of the latest (re)load.
  [[nodiscard]] std::chrono::milliseconds currentDrainTimeout();
  [[nodiscard]] const ServerConfig& config() const { return config_; }
  [[nodiscard]] Worker& worker(size_t i) { return *workers_[i]; }
  [[nodiscard]] size_t workerCount() const { return workers_.size(); }

 private:
  void init(TransportFactory transport_factory, ev::Loop* embedded);

  ServerConfig config_;
  ev::Loop* embedded_ = nullptr;
  std::shared_ptr<const Settings> current_;
  // Session tickets without key files: one key for the server's life, so
  // that the tickets it issued still resume after a reload.
  std::string ticket_key_;
  std::mutex reload_mutex_;
  ServerShared shared_;
  std::vector<uint16_t> ports_;
  std::vector<std::string> listening_;
  std::vector<std::unique_ptr<Worker>> workers_;
};

}  // namespace h2loop::server
