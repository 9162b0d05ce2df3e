// h2loop: an HTTPS / HTTP/2 static file server. See README.md for every flag.

#include <event2/event.h>
#include <http_parser.h>
#include <nghttp2/nghttp2.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "eventloop/loop_factory.h"
#include "net/socket_util.h"
#include "server/server.h"

namespace {

using h2loop::server::ServerConfig;

// --version: ours, and those of the libraries as loaded now (not as built).
std::string versions() {
  const unsigned long hp = http_parser_version();
  return fmt::format("h2loop {}\nnghttp2 {}\n{}\nlibevent {}\nhttp_parser {}.{}.{}", H2LOOP_VERSION,
                     nghttp2_version(0)->version_str, OpenSSL_version(OPENSSL_VERSION),
                     event_get_version(), (hp >> 16) & 255, (hp >> 8) & 255, hp & 255);
}

std::chrono::milliseconds seconds(double s) {
  return std::chrono::milliseconds(static_cast<int64_t>(s * 1000.0));
}

}  // namespace

int main(int argc, char** argv) {
  ServerConfig cfg;
  std::vector<std::string> listen;
  std::string log_level = "info";
  std::string root;
  std::string cert, key;
  double handshake_timeout = 10, idle_timeout = 60, write_timeout = 30, drain_timeout = 10,
         header_timeout = 10;
  uint32_t max_streams = cfg.session.max_concurrent_streams;
  int64_t ws_ping_ms = cfg.websocket_options.ping_interval.count();
  int64_t ws_pong_ms = cfg.websocket_options.pong_timeout.count();

  std::vector<std::string> backends;
  for (std::string_view b : h2loop::ev::loopBackendNames())
    backends.emplace_back(b);

  CLI::App app{"h2loop: an HTTPS / HTTP/2 static file server with a pluggable event loop"};
  app.option_defaults()->always_capture_default();
  app.set_version_flag("--version", versions,
                       "print the versions of h2loop and of the libraries it runs with");
  app.add_option("--listen", listen, "HOST:PORT to listen on (repeatable; [::1]:8443 for IPv6)")
      ->default_str("127.0.0.1:8443");
  app.add_option("--root", root, "document root to serve")
      ->required()
      ->check(CLI::ExistingDirectory);
  app.add_option("--cert", cert, "TLS certificate chain (PEM); without --cert/--key: h2c");
  app.add_option("--key", key, "TLS private key (PEM)");
  app.add_option("--tls13-ciphers", cfg.tls13_ciphers, "TLS 1.3 cipher suites (OpenSSL syntax)");
  app.add_option("--event-loop", cfg.event_loop, "event loop backend")
      ->check(CLI::IsMember(backends));
  app.add_option("--workers", cfg.workers, "worker threads, each with its own loop and listener")
      ->check(CLI::Range(1u, 256u));
  app.add_option("--max-connections", cfg.max_connections, "open connections at most (all workers)")
      ->check(CLI::Range(size_t{1}, size_t{1} << 24));
  app.add_option("--max-concurrent-streams", max_streams, "SETTINGS_MAX_CONCURRENT_STREAMS")
      ->check(CLI::Range(1u, 100000u));
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, critical, off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  app.add_flag("--access-log", cfg.access_log, "log one line per request");
  app.add_option("--metrics-path", cfg.metrics_path, "serve Prometheus metrics at this path (off)");
  app.add_option("--websocket-echo", cfg.websocket_echo,
                 "serve a WebSocket echo at this path (RFC 6455 and, over h2, RFC 8441) (off)");
  app.add_option("--ws-max-message", cfg.websocket_options.max_message,
                 "WebSocket message bytes at most (fragments reassembled; above: close 1009)")
      ->check(CLI::Range(size_t{125}, size_t{1} << 30));
  app.add_option("--ws-send-bound", cfg.websocket_options.send_bound,
                 "WebSocket bytes accepted for sending and not yet on the stream, at most")
      ->check(CLI::Range(size_t{1024}, size_t{1} << 30));
  app.add_option("--ws-ping-interval", ws_ping_ms, "ms without WebSocket input before a ping")
      ->check(CLI::Range(int64_t{10}, int64_t{86'400'000}));
  app.add_option("--ws-pong-timeout", ws_pong_ms, "ms for the answer to that ping, then drop")
      ->check(CLI::Range(int64_t{10}, int64_t{86'400'000}));
  app.add_option("--handshake-timeout", handshake_timeout, "seconds to complete the TLS handshake")
      ->check(CLI::PositiveNumber);
  app.add_flag(
      "--http1,!--no-http1", cfg.http1,
      "serve HTTP/1.1 (and the h2c upgrade) next to HTTP/2 (default; --no-http1: h2 only)");
  app.add_option("--header-timeout", header_timeout,
                 "seconds an HTTP/1.1 request head may take to arrive, however it trickles")
      ->check(CLI::PositiveNumber);
  app.add_option("--idle-timeout", idle_timeout, "seconds without traffic before GOAWAY and close")
      ->check(CLI::PositiveNumber);
  app.add_option("--write-timeout", write_timeout, "seconds without write progress before closing")
      ->check(CLI::PositiveNumber);
  app.add_option("--drain-timeout", drain_timeout, "seconds in-flight streams get at shutdown")
      ->check(CLI::PositiveNumber);
  app.add_option("--output-high-watermark", cfg.output_high_watermark,
                 "bytes buffered per connection before the session stops producing")
      ->check(CLI::Range(size_t{16384}, size_t{16} << 20));
  app.add_option(
         "--kernel-unsent-limit", cfg.kernel_unsent_limit,
         "bytes the kernel may hold unsent per connection (TCP_NOTSENT_LOWAT; 0 = unbounded)")
      ->check(CLI::Range(uint32_t{0}, uint32_t{64} << 20));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  spdlog::set_default_logger(spdlog::stderr_color_mt("h2loop"));
  spdlog::set_level(spdlog::level::from_str(log_level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [%t] %v");

  if (listen.empty()) listen.emplace_back("127.0.0.1:8443");
  for (const std::string& l : listen) {
    auto hp = h2loop::net::parseHostPort(l);
    if (!hp.ok()) {
      std::fprintf(stderr, "h2loop: --listen %s: %s\n", l.c_str(), hp.error.c_str());
      return 2;
    }
    cfg.listen.push_back({hp.host, hp.port});
  }
  cfg.root = root;
  cfg.cert = cert;
  cfg.key = key;
  cfg.session.max_concurrent_streams = max_streams;
  cfg.output_low_watermark = cfg.output_high_watermark / 4;
  cfg.handshake_timeout = seconds(handshake_timeout);
  cfg.idle_timeout = seconds(idle_timeout);
  cfg.header_timeout = seconds(header_timeout);
  cfg.write_timeout = seconds(write_timeout);
  cfg.drain_timeout = seconds(drain_timeout);
  cfg.websocket_options.ping_interval = std::chrono::milliseconds(ws_ping_ms);
  cfg.websocket_options.pong_timeout = std::chrono::milliseconds(ws_pong_ms);

  // Signals are taken synchronously by this thread; the workers inherit the mask.
  ::signal(SIGPIPE, SIG_IGN);
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  try {
    h2loop::server::Server server(cfg);
    server.start();
    std::string where;
    for (size_t i = 0; i < cfg.listen.size(); ++i) {
      const auto& l = cfg.listen[i];
      const bool v6 = l.host.find(':') != std::string::npos;
      where += fmt::format("{}{}{}{}:{}", where.empty() ? "" : ", ", v6 ? "[" : "", l.host,
                           v6 ? "]" : "", server.ports()[i]);
    }
    spdlog::info("h2loop listening on {} ({}, {} loop, {} worker(s), root {})", where,
                 cfg.cert.empty() ? (cfg.http1 ? "h2c, http/1.1" : "h2c")
                                  : (cfg.http1 ? "TLS: h2, http/1.1" : "TLS: h2"),
                 cfg.event_loop, cfg.workers, cfg.root.string());
    int sig = 0;
    sigwait(&signals, &sig);
    spdlog::info("{}: graceful shutdown (drain timeout {} s)", sig == SIGINT ? "SIGINT" : "SIGTERM",
                 drain_timeout);
    server.shutdown();
    server.wait();
    spdlog::info("h2loop stopped");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "h2loop: %s\n", e.what());
    return 1;
  }
  return 0;
}
