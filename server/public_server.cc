// h2loop::Server (include/h2loop/server.h) on the server's internals.

#include <optional>
#include <stdexcept>

#include "h2loop/server.h"
#include "net/proxy_protocol.h"
#include "net/socket_util.h"
#include "server/server.h"

namespace h2loop {
namespace {

server::ServerConfig toConfig(const ServerOptions& o, Router router) {
  server::ServerConfig cfg;
  for (const bool cleartext : {false, true}) {
    for (const std::string& l : cleartext ? o.listen_h2c : o.listen) {
      net::HostPortResult hp = net::parseHostPort(l);
      if (!hp.ok()) throw std::runtime_error("listen " + l + ": " + hp.error);
      cfg.listen.push_back({hp.host, hp.port, cleartext});
    }
  }
  cfg.cert = o.cert;
  cfg.key = o.key;
  for (const CertificateFiles& c : o.sni)
    cfg.sni_certificates.push_back({c.cert, c.key, c.ocsp_response});
  cfg.tls_ocsp_response = o.ocsp_response;
  cfg.tls_min_version = o.tls_min_version;
  cfg.tls_ticket_key_files = o.ticket_key_files;
  for (const std::string& text : o.proxy_protocol_from) {
    std::string error;
    std::optional<net::Cidr> c = net::Cidr::parse(text, &error);
    if (!c) throw std::runtime_error("proxy_protocol_from " + text + ": " + error);
    cfg.proxy_protocol_from.push_back(*c);
  }
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

std::vector<std::string> Server::reload(const ServerOptions& options) {
  // The routes are the running ones (a reload keeps them).
  return impl_->reload(toConfig(options, Router{}));
}

const std::vector<uint16_t>& Server::ports() const {
  return impl_->ports();
}

std::string Server::metricsText() const {
  return impl_->worker(0).metricsText();
}

}  // namespace h2loop
