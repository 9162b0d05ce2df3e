#pragma once
// h2loop's server: listeners, TLS, workers, and the routes they serve.
//
//   h2loop::Router router;
//   router.get("/hello", [](const h2loop::Request&, h2loop::Response res) {
//     res.respond(200, {{"content-type", "text/plain"}}, "hello\n");
//   });
//   h2loop::ServerOptions options;
//   options.listen = {"127.0.0.1:8443"};
//   options.cert = "cert.pem";
//   options.key = "key.pem";
//   h2loop::Server server(options, router);
//   server.start();   // one thread per worker
//   ...               // server.shutdown(); server.wait();
//
// Embedded: Server(options, router, loop) serves on an application's loop
// (one worker, no thread of its own): the application runs the loop; see
// eventloop/libevent/libevent_loop.h for an existing event_base, or write a
// Loop for your own (eventloop/loop.h).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "h2loop/http.h"

namespace h2loop {

namespace ev {
class Loop;
}
namespace server {
class Server;
}

// A certificate served to the clients whose SNI it carries (see
// ServerOptions::sni).
struct CertificateFiles {
  std::filesystem::path cert;           // PEM chain, leaf first
  std::filesystem::path key;            // PEM
  std::filesystem::path ocsp_response;  // DER, stapled when asked; empty: none
};

struct ServerOptions {
  // "HOST:PORT", "[::1]:PORT"; port 0 picks a free one (see Server::ports()).
  std::vector<std::string> listen{"127.0.0.1:8443"};
  // Addresses served in cleartext (h2c, and HTTP/1.1) even when there are
  // certificates; their ports follow listen's in Server::ports().
  std::vector<std::string> listen_h2c;
  // PEM certificate chain and key; both empty: cleartext h2c.
  std::filesystem::path cert;
  std::filesystem::path key;
  // More certificates, each served to clients whose SNI is one of its DNS
  // names (subjectAltName, else CN; "*.example.com" covers one label);
  // cert/key serve every other client. A certificate without a DNS name is
  // refused.
  std::vector<CertificateFiles> sni;
  // DER OCSP response stapled for `cert`; empty: none.
  std::filesystem::path ocsp_response;
  // "1.2" or "1.3": the lowest TLS version accepted.
  std::string tls_min_version = "1.2";
  // Session-ticket key files, 80 bytes each (`openssl rand 80`): the first
  // issues tickets, every one resumes, so servers given the same files
  // resume each other's sessions. None: a key of the server's own, kept
  // across reload().
  std::vector<std::filesystem::path> ticket_key_files;
  // Load balancers allowed to speak the PROXY protocol (v1 or v2), as CIDR
  // blocks ("10.0.0.0/8", "::1/128"). Non-empty: every connection must start
  // with a PROXY header from one of them (others are refused), and the
  // client address it carries is what Request::peer() gives.
  std::vector<std::string> proxy_protocol_from;
  // "epoll" or "libevent" (threaded servers; an embedded one uses the given loop).
  std::string event_loop = "epoll";
  unsigned workers = 1;
  size_t max_connections = 10000;
  uint32_t max_concurrent_streams = 100;
  // Bytes a streamed response may have queued before write() says kWouldBlock.
  size_t stream_write_bound = 64 * 1024;
  // From the end of a request to the start of its response; then 504.
  std::chrono::milliseconds response_timeout{30'000};
  std::chrono::milliseconds idle_timeout{60'000};
  std::chrono::milliseconds write_timeout{30'000};
  std::chrono::milliseconds drain_timeout{10'000};
  bool access_log = false;
  // HTTP/1.1 (and the h2c upgrade) next to HTTP/2 on the same listeners.
  bool http1 = true;
};

class Server {
 public:
  // Listens at once; throws std::runtime_error with a one-line reason (port
  // in use, unreadable certificate, bad option).
  Server(const ServerOptions& options, Router router);
  // Embedded: one worker on `loop`, which the application runs (and which
  // must outlive the Server). Construct, start() and destroy the Server on
  // the loop's thread, or before that thread runs the loop.
  Server(const ServerOptions& options, Router router, ev::Loop& loop);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Threaded: starts one thread per worker. Embedded: starts accepting.
  void start();
  // Graceful: stop accepting, GOAWAY, let requests in flight finish within
  // the drain timeout. Any thread. Embedded: `done` runs on the loop thread
  // once the last connection is gone (the application may then destroy the
  // Server and stop its loop).
  void shutdown(std::function<void()> done = nullptr);
  // Threaded: waits until every worker has finished.
  void wait();

  // Takes `options` for the connections accepted from now on: certificates
  // (re-read from their files even under the same names; SNI ones, OCSP and
  // ticket keys too), limits, timeouts, PROXY protocol sources. Open
  // connections and their requests keep what they were accepted under.
  // What only a restart can change (listen addresses, workers, event loop,
  // cleartext vs TLS, HTTP/1.1, max_concurrent_streams; the routes stay
  // those given at construction) keeps its running value; the names of
  // such options that differed are returned. Throws std::runtime_error, and
  // changes nothing, when a certificate or key file cannot be used or an
  // option is malformed. Any thread.
  std::vector<std::string> reload(const ServerOptions& options);

  // The port each listen address got.
  [[nodiscard]] const std::vector<uint16_t>& ports() const;
  // Live figures summed over workers (connections, requests, handles held by
  // the application), as the metrics endpoint prints them.
  [[nodiscard]] std::string metricsText() const;

 private:
  std::unique_ptr<server::Server> impl_;
};

}  // namespace h2loop
