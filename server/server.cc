#include "server/server.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <stdexcept>

#include "net/socket_util.h"
#include "net/tls_context.h"

namespace h2loop::server {

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
  if (!config_.cert.empty()) {
    net::TlsOptions opts;
    opts.cert_file = config_.cert;
    opts.key_file = config_.key;
    opts.tls13_ciphersuites = config_.tls13_ciphers;
    opts.http1 = config_.http1;
    tls_ = std::make_unique<net::TlsContext>(opts);
  }
  shared_.config = &config_;
  shared_.tls = tls_.get();
  if (config_.router) {
    shared_.routes = std::make_shared<http::RouteTable>(*config_.router);
  } else {
    Router r;
    if (!config_.metrics_path.empty()) r.metrics(config_.metrics_path);
    if (!config_.websocket_echo.empty()) {
      // Every message comes back as it came (text or binary). One answer
      // per message: the WebSocket reads on only once the previous answers
      // left, so send() is never refused here.
      r.websocket(config_.websocket_echo,
                  {.on_message = [](WebSocket& ws, WebSocket::Type type,
                                    std::string_view data) { (void)ws.send(type, data); }},
                  config_.websocket_options);
    }
    r.files("/", config_.root);
    shared_.routes = std::make_shared<http::RouteTable>(std::move(r));
  }
  // HTTP/2 offers extended CONNECT (RFC 8441) where a WebSocket can open.
  config_.session.enable_connect_protocol = shared_.routes->hasWebSockets();

  // Listeners for every worker, made here so that "address in use" is a
  // start-up error. One worker: no SO_REUSEPORT, so a second server on the
  // same port fails loudly instead of silently sharing it.
  const bool reuse_port = config_.workers > 1;
  std::vector<std::vector<int>> fds(config_.workers);
  auto close_all = [&] {
    for (auto& v : fds)
      for (int fd : v)
        ::close(fd);
  };
  for (const ListenAddress& addr : config_.listen) {
    uint16_t port = addr.port;
    for (unsigned w = 0; w < config_.workers; ++w) {
      net::ListenerResult l = net::makeListener(addr.host, port, reuse_port);
      if (!l.ok()) {
        close_all();
        throw std::runtime_error(l.error);
      }
      if (port == 0) port = net::localPort(l.fd).value_or(0);
      fds[w].push_back(l.fd);
    }
    ports_.push_back(port);
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
}

Server::~Server() {
  // Embedded: the application shut the server down (or destroys it with
  // its connections; the worker closes them).
  if (embedded_ == nullptr) {
    shutdown();
    wait();
  }
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
