// h2loop::Server (include/h2loop/server.h) on the server's internals.

#include <stdexcept>

#include "h2loop/server.h"
#include "net/socket_util.h"
#include "server/server.h"

namespace h2loop {
namespace {

server::ServerConfig toConfig(const ServerOptions& o, Router router) {
  server::ServerConfig cfg;
  for (const std::string& l : o.listen) {
    net::HostPortResult hp = net::parseHostPort(l);
    if (!hp.ok()) throw std::runtime_error("listen " + l + ": " + hp.error);
    cfg.listen.push_back({hp.host, hp.port});
  }
  cfg.cert = o.cert;
  cfg.key = o.key;
  cfg.event_loop = o.event_loop;
  cfg.workers = o.workers;
  cfg.max_connections = o.max_connections;
  cfg.session.max_concurrent_streams = o.max_concurrent_streams;
  cfg.stream_write_bound = o.stream_write_bound;
  cfg.response_timeout = o.response_timeout;
  cfg.idle_timeout = o.idle_timeout;
  cfg.write_timeout = o.write_timeout;
  cfg.drain_timeout = o.drain_timeout;
  cfg.access_log = o.access_log;
  cfg.http1 = o.http1;
  cfg.router = std::make_shared<const Router>(std::move(router));
  return cfg;
}

}  // namespace

Server::Server(const ServerOptions& options, Router router)
    : impl_(std::make_unique<server::Server>(toConfig(options, std::move(router)))) {}

Server::Server(const ServerOptions& options, Router router, ev::Loop& loop)
    : impl_(std::make_unique<server::Server>(toConfig(options, std::move(router)), loop)) {}

Server::~Server() = default;

void Server::start() {
  impl_->start();
}

void Server::shutdown(std::function<void()> done) {
  impl_->shutdown(std::move(done));
}

void Server::wait() {
  impl_->wait();
}

const std::vector<uint16_t>& Server::ports() const {
  return impl_->ports();
}

std::string Server::metricsText() const {
  return impl_->worker(0).metricsText();
}

}  // namespace h2loop
