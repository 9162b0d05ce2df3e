#include "server/server.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <stdexcept>

#include "net/socket_util.h"
#include "net/tls_context.h"
#include "server/mounts.h"

namespace h2loop::server {

std::shared_ptr<const net::TlsContext> makeTls(const ServerConfig& c,
                                               const std::string& ticket_key) {
  if (c.cert.empty()) {
    if (!c.sni_certificates.empty()) {
      throw std::runtime_error("SNI certificates need a default certificate (--cert/--key)");
    }
    return nullptr;
  }
  net::TlsOptions opts;
  opts.cert_file = c.cert;
  opts.key_file = c.key;
  opts.sni = c.sni_certificates;
  opts.tls13_ciphersuites = c.tls13_ciphers;
  if (!c.tls12_ciphers.empty()) opts.tls12_ciphers = c.tls12_ciphers;
  opts.min_version = c.tls_min_version;
  opts.ticket_key_files = c.tls_ticket_key_files;
  if (!ticket_key.empty()) opts.ticket_keys = {ticket_key};
  opts.ocsp_response_file = c.tls_ocsp_response;
  opts.http1 = c.http1;
  return std::make_shared<const net::TlsContext>(opts);
}

namespace {

// What a reload cannot change without a restart: the listeners, the threads
// and their loops, what is routed where, and what sizes the pools and buffers
// made at start-up. Each is put back to its running value in `next`, and
// named (as the configuration file spells it) when it differed.
std::vector<std::string> keepRestartOnly(const ServerConfig& running, ServerConfig& next) {
  std::vector<std::string> kept;
  auto keep = [&](auto member, const char* key) {
    if (!(running.*member == next.*member)) {
      next.*member = running.*member;
      kept.emplace_back(key);
    }
  };
  keep(&ServerConfig::listen, "listen");
  next.listen_fds = running.listen_fds;
  keep(&ServerConfig::root, "root");
  // Routes are made once, at start-up; error pages are read then.
  keep(&ServerConfig::root_headers, "root_headers");
  keep(&ServerConfig::mounts, "mounts");
  keep(&ServerConfig::error_pages, "error_pages");
  keep(&ServerConfig::event_loop, "event_loop");
  keep(&ServerConfig::workers, "workers");
  keep(&ServerConfig::http1, "http1");
  keep(&ServerConfig::metrics_path, "metrics_path");
  keep(&ServerConfig::websocket_echo, "websocket.echo");
  keep(&ServerConfig::output_high_watermark, "limits.output_high_watermark");
  keep(&ServerConfig::output_low_watermark, "limits.output_high_watermark");
  keep(&ServerConfig::pool_capacity, "pool_capacity");
  keep(&ServerConfig::file_cache_ttl_ms, "file_cache_ttl_ms");
  keep(&ServerConfig::file_cache_entries, "file_cache_entries");
  // Each worker's file services are made at start-up.
  keep(&ServerConfig::static_files, "static");
  const WebSocketOptions& a = running.websocket_options;
  const WebSocketOptions& b = next.websocket_options;
  if (a.max_message != b.max_message || a.send_bound != b.send_bound ||
      a.ping_interval != b.ping_interval || a.pong_timeout != b.pong_timeout) {
    kept.emplace_back("websocket");  // bound into the routes at start-up
  }
  next.websocket_options = a;
  if (running.session.max_concurrent_streams != next.session.max_concurrent_streams) {
    kept.emplace_back("limits.max_concurrent_streams");  // sizes the stream pools
  }
  next.session = running.session;
  if (running.cert.empty() != next.cert.empty()) {
    kept.emplace_back("tls");  // h2c listeners cannot become TLS ones, or back
    next.cert = running.cert;
    next.key = running.key;
    next.tls13_ciphers = running.tls13_ciphers;
  }
  next.router = running.router;
  next.http1_session = running.http1_session;
  // The loop and threads are the running ones (an embedded server has one).
  std::sort(kept.begin(), kept.end());
  kept.erase(std::unique(kept.begin(), kept.end()), kept.end());
  return kept;
}

}  // namespace

Server::Server(ServerConfig config, TransportFactory transport_factory)
    : config_(std::move(config)) {
  init(std::move(transport_factory), nullptr);
}

Server::Server(ServerConfig config, ev::Loop& loop) : config_(std::move(config)) {
  config_.workers = 1;
  init(makeDefaultTransport, &loop);
}

void Server::init(TransportFactory transport_factory, ev::Loop* embedded) {
  embedded_ = embedded;
  shared_.transport_factory = std::move(transport_factory);
  if (config_.listen.empty()) throw std::runtime_error("no --listen address given");
  if (config_.workers == 0) throw std::runtime_error("--workers must be at least 1");
  if (config_.cert.empty() != config_.key.empty()) {
    throw std::runtime_error("--cert and --key go together (neither: h2c)");
  }
  if (!config_.cert.empty()) ticket_key_ = net::randomTicketKey();
  std::shared_ptr<const net::TlsContext> tls = makeTls(config_, ticket_key_);
  shared_.config = &config_;
  if (config_.router) {
    shared_.routes = std::make_shared<http::RouteTable>(*config_.router);
  } else {
    // Metrics, the WebSocket echo, the mounts and the error pages (read now).
    shared_.routes = std::make_shared<http::RouteTable>(routerFor(config_));
  }
  // HTTP/2 offers extended CONNECT (RFC 8441) where a WebSocket can open.
  config_.session.enable_connect_protocol = shared_.routes->hasWebSockets();
  current_ = std::make_shared<const Settings>(Settings{config_, std::move(tls)});
  shared_.settings = current_;
  shared_.addGeneration(current_);

  // Listeners for every worker, made here so that "address in use" is a
  // start-up error. One worker: no SO_REUSEPORT, so a second server on the
  // same port fails loudly instead of silently sharing it.
  const bool reuse_port = config_.workers > 1;
  std::vector<std::vector<ListenSocket>> fds(config_.workers);
  auto close_all = [&] {
    for (auto& v : fds)
      for (const ListenSocket& l : v)
        ::close(l.fd);
  };
  auto name = [](const std::string& host, uint16_t port) {
    const bool v6 = host.find(':') != std::string::npos;
    return fmt::format("{}{}{}:{}", v6 ? "[" : "", host, v6 ? "]" : "", port);
  };
  for (int fd : config_.listen_fds) {
    // Inherited: every worker accepts on the same socket (a dup of its own,
    // so each closes what it holds).
    for (unsigned w = 0; w < config_.workers; ++w) {
      const int copy = w == 0 ? fd : ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
      if (copy < 0) {
        close_all();
        throw std::runtime_error("dup of an inherited listener: " + net::errnoString(errno));
      }
      fds[w].push_back({copy, false});
    }
    const std::optional<uint16_t> port = net::localPort(fd);
    ports_.push_back(port.value_or(0));
    listening_.push_back(name(net::localAddress(fd).value_or("?"), port.value_or(0)));
  }
  for (const ListenAddress& addr :
       config_.listen_fds.empty() ? config_.listen : std::vector<ListenAddress>{}) {
    uint16_t port = addr.port;
    for (unsigned w = 0; w < config_.workers; ++w) {
      net::ListenerResult l = net::makeListener(addr.host, port, reuse_port);
      if (!l.ok()) {
        close_all();
        throw std::runtime_error(l.error);
      }
      if (port == 0) port = net::localPort(l.fd).value_or(0);
      fds[w].push_back({l.fd, addr.cleartext});
    }
    ports_.push_back(port);
    listening_.push_back(name(addr.host, port) +
                         (addr.cleartext && !config_.cert.empty() ? " (h2c)" : ""));
  }
  try {
    for (unsigned w = 0; w < config_.workers; ++w) {
      workers_.push_back(std::make_unique<Worker>(shared_, w, fds[w], embedded));
      fds[w].clear();
    }
  } catch (...) {
    close_all();
    throw;
  }
  for (auto& w : workers_)
    shared_.workers.push_back(w.get());
  // Each worker holds its generation now; this one must not outlive them.
  shared_.settings.reset();
}

Server::~Server() {
  // Embedded: the application shut the server down (or destroys it with
  // its connections; the worker closes them).
  if (embedded_ == nullptr) {
    shutdown();
    wait();
  }
}

std::vector<std::string> Server::reload(ServerConfig next) {
  std::lock_guard lock(reload_mutex_);
  std::vector<std::string> kept = keepRestartOnly(current_->config, next);
  std::shared_ptr<const net::TlsContext> tls;
  try {
    tls = makeTls(next, ticket_key_);
  } catch (...) {
    shared_.reloads_failed.fetch_add(1, std::memory_order_relaxed);
    throw;
  }
  current_ = std::make_shared<const Settings>(Settings{std::move(next), std::move(tls)});
  shared_.addGeneration(current_);
  for (auto& w : workers_)
    w->setSettings(current_);
  shared_.reloads_ok.fetch_add(1, std::memory_order_relaxed);
  return kept;
}

std::chrono::milliseconds Server::currentDrainTimeout() {
  std::lock_guard lock(reload_mutex_);
  return current_->config.drain_timeout;
}

void Server::start() {
  for (auto& w : workers_)
    w->start();
}

void Server::shutdown(std::function<void()> done) {
  if (embedded_ != nullptr && done) {
    shared_.on_stopped = std::move(done);
  }
  for (auto& w : workers_)
    w->requestShutdown();
}

void Server::wait() {
  for (auto& w : workers_)
    w->join();
}

}  // namespace h2loop::server
