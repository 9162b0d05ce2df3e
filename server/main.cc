// h2loop: an HTTPS / HTTP/2 static file server. See README.md for every flag.

#include <event2/event.h>
#include <fcntl.h>
#include <http_parser.h>
#include <nghttp2/nghttp2.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <CLI/CLI.hpp>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/config_file.h"
#include "eventloop/loop_factory.h"
#include "net/socket_util.h"
#include "net/tls_context.h"
#include "server/access_log.h"
#include "server/mounts.h"
#include "server/server.h"

namespace {

using h2loop::config::ProgramSettings;
using h2loop::server::ServerConfig;

// --version: ours, and those of the libraries as loaded now (not as built).
std::string versions() {
  const unsigned long hp = http_parser_version();
  return fmt::format("h2loop {}\nnghttp2 {}\n{}\nlibevent {}\nhttp_parser {}.{}.{}", H2LOOP_VERSION,
                     nghttp2_version(0)->version_str, OpenSSL_version(OPENSSL_VERSION),
                     event_get_version(), (hp >> 16) & 255, (hp >> 8) & 255, hp & 255);
}

std::chrono::milliseconds seconds(double s) {
  return std::chrono::milliseconds(std::llround(s * 1000.0));
}

double asSeconds(std::chrono::milliseconds ms) {
  return static_cast<double>(ms.count()) / 1000.0;
}

// What one reading of the command line (and of the file it names) gives.
struct Loaded {
  ServerConfig cfg;
  ProgramSettings program;
  std::string config_file;  // empty: none
  bool check = false;
  std::optional<int> exit_code;  // set: end now with this code (help, version, error)
  std::string error;             // why, when there is one to print
};

// Reads the configuration file named by --config (if any), then the flags
// over it: a flag given on the command line wins over the file. Called again
// on SIGHUP with the same argv, so a reload re-reads the file and keeps the
// command line's word.
Loaded load(int argc, char** argv, bool quiet) {
  Loaded out;
  ServerConfig& cfg = out.cfg;

  {
    // First pass: only --config, to read the file before the flags.
    CLI::App pre;
    pre.allow_extras();
    pre.set_help_flag();
    pre.add_option("--config", out.config_file);
    try {
      pre.parse(argc, argv);
    } catch (const CLI::ParseError&) {
      // The full parser below reports it.
    }
  }
  if (!out.config_file.empty()) {
    try {
      h2loop::config::applyConfigFile(out.config_file, cfg, out.program);
    } catch (const h2loop::config::ConfigError& e) {
      out.error = e.what();
      out.exit_code = 2;
      return out;
    }
  }

  std::vector<std::string> listen, listen_h2c;
  std::vector<std::pair<std::string, std::string>> sni_certs;
  std::string root = cfg.root.string();
  std::string cert = cfg.cert.string(), key = cfg.key.string();
  std::string access_log_file = out.program.access_log_file.string();
  double handshake_timeout = asSeconds(cfg.handshake_timeout),
         idle_timeout = asSeconds(cfg.idle_timeout), write_timeout = asSeconds(cfg.write_timeout),
         drain_timeout = asSeconds(cfg.drain_timeout),
         header_timeout = asSeconds(cfg.header_timeout);
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
  app.add_option("--config", out.config_file,
                 "TOML configuration file (flags given here win over it; SIGHUP re-reads it)");
  app.add_flag("--check", out.check,
               "check the configuration (file, flags, certificate, root), print it and exit");
  auto* listen_opt =
      app.add_option("--listen", listen, "HOST:PORT to listen on (repeatable; [::1]:8443 for IPv6)")
          ->default_str("127.0.0.1:8443");
  auto* listen_h2c_opt = app.add_option(
      "--listen-h2c", listen_h2c,
      "HOST:PORT to listen on in cleartext (h2c, HTTP/1.1) even with a certificate (repeatable)");
  app.add_option("--root", root, "document root to serve (required here or in the file)")
      ->check(CLI::ExistingDirectory);
  app.add_option("--cert", cert, "TLS certificate chain (PEM); without --cert/--key: h2c");
  app.add_option("--key", key, "TLS private key (PEM)");
  auto* sni_opt =
      app.add_option("--sni-cert", sni_certs,
                     "CERT KEY: one more certificate, served to clients whose SNI is one of its "
                     "DNS names (repeatable; --cert/--key serve the others)")
          ->each([](const std::string& f) {
            if (!std::filesystem::exists(f)) throw CLI::ValidationError(f + ": no such file");
          });
  app.add_option("--tls13-ciphers", cfg.tls13_ciphers, "TLS 1.3 cipher suites (OpenSSL syntax)");
  app.add_option(
      "--tls12-ciphers", cfg.tls12_ciphers,
      "TLS 1.2 cipher list (OpenSSL syntax; default: ECDHE with AEAD, as RFC 9113 asks)");
  app.add_option("--tls-min-version", cfg.tls_min_version, "lowest TLS version accepted")
      ->check(CLI::IsMember({"1.2", "1.3"}));
  app.add_option("--tls-ticket-key", cfg.tls_ticket_key_files,
                 "session ticket key file, 80 bytes (repeatable: the first issues, all resume; "
                 "default: a key of the process's own)")
      ->check(CLI::ExistingFile);
  app.add_option("--ocsp-response", cfg.tls_ocsp_response,
                 "DER OCSP response to staple (re-read on SIGHUP)")
      ->check(CLI::ExistingFile);
  app.add_option("--event-loop", cfg.event_loop, "event loop backend")
      ->check(CLI::IsMember(backends));
  app.add_option("--workers", cfg.workers, "worker threads, each with its own loop and listener")
      ->check(CLI::Range(1u, 256u));
  app.add_option("--max-connections", cfg.max_connections, "open connections at most (all workers)")
      ->check(CLI::Range(size_t{1}, size_t{1} << 24));
  app.add_option("--max-concurrent-streams", max_streams, "SETTINGS_MAX_CONCURRENT_STREAMS")
      ->check(CLI::Range(1u, 100000u));
  app.add_option("--log-level", out.program.log_level,
                 "trace, debug, info, warn, error, critical, off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  app.add_flag("--access-log", cfg.access_log, "log one line per request");
  app.add_option_function<std::vector<std::string>>(
         "--proxy-protocol-from",
         [&cfg](const std::vector<std::string>& v) {
           cfg.proxy_protocol_from.clear();
           for (const std::string& s : v) {
             std::string err;
             auto c = h2loop::net::Cidr::parse(s, &err);
             if (!c) throw CLI::ValidationError("--proxy-protocol-from", err);
             cfg.proxy_protocol_from.push_back(*c);
           }
         },
         "CIDR of a load balancer that sends the PROXY protocol (v1/v2; repeatable). Given: "
         "every listener requires the header, from these sources only")
      ->take_all();
  auto* access_file_opt = app.add_option(
      "--access-log-file", access_log_file,
      "write the access lines to this file instead of the log (implies --access-log; "
      "SIGUSR1 reopens it)");
  app.add_option("--max-ranges", cfg.static_files.max_ranges,
                 "static files: ranges per request at most (more: a full 200; 0: no ranges)")
      ->check(CLI::Range(size_t{0}, size_t{10'000}));
  app.add_flag("--precompressed,!--no-precompressed", cfg.static_files.precompressed,
               "static files: serve FILE.br / FILE.gz when the client accepts them");
  app.add_flag("--compress,!--no-compress", cfg.static_files.compress,
               "static files: gzip / br text types on the fly (once per file version)");
  app.add_option("--compress-min-size", cfg.static_files.compress_min_size,
                 "static files: smaller files are not compressed (1024)");
  app.add_option("--compress-max-size", cfg.static_files.compress_max_size,
                 "static files: larger files are not compressed on the fly (262144)")
      ->check(CLI::Range(size_t{0}, size_t{64} << 20));
  app.add_option("--compress-budget", cfg.static_files.compress_budget,
                 "static files: bytes of compressed bodies each worker keeps (8 MiB)");
  app.add_option("--compress-types", cfg.static_files.compress_types,
                 "static files: media types compressed on the fly (type/subtype or type/*; "
                 "repeatable, replaces the default list)")
      ->take_all();
  app.add_option("--gzip-level", cfg.static_files.gzip_level, "on-the-fly gzip level (6)")
      ->check(CLI::Range(1, 9));
  app.add_option("--brotli-quality", cfg.static_files.brotli_quality,
                 "on-the-fly brotli quality (5)")
      ->check(CLI::Range(0, 11));
  app.add_option("--metrics-path", cfg.metrics_path, "serve Prometheus metrics at this path (off)");
  std::vector<std::string> mount_flags, mount_header_flags, error_page_flags;
  app.add_option("--mount", mount_flags,
                 "PREFIX=DIR: serve DIR below PREFIX too (repeatable; the longest prefix wins)");
  app.add_option("--mount-header", mount_header_flags,
                 "PREFIX=NAME:VALUE: a field on the 2xx/3xx answers of the mount at PREFIX "
                 "(\"/\": root's) (repeatable)");
  app.add_option("--error-page", error_page_flags,
                 "STATUS=FILE: the body of the server's own STATUS answers "
                 "(400, 403, 404, 405, 416, 500, 503; repeatable)");
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
  auto* high_opt =
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
    // At start-up CLI11 prints it (and --help, --version); on reload it
    // goes to the log.
    if (quiet) out.error = e.what();
    out.exit_code = quiet ? 2 : app.exit(e);
    return out;
  }

  // --listen replaces the file's TLS (or h2c-only server's) addresses,
  // --listen-h2c its cleartext ones.
  for (const bool cleartext : {false, true}) {
    if ((cleartext ? listen_h2c_opt : listen_opt)->count() == 0) continue;
    std::erase_if(cfg.listen,
                  [&](const h2loop::server::ListenAddress& a) { return a.cleartext == cleartext; });
    for (const std::string& l : cleartext ? listen_h2c : listen) {
      auto hp = h2loop::net::parseHostPort(l);
      if (!hp.ok()) {
        out.error = fmt::format("--listen{} {}: {}", cleartext ? "-h2c" : "", l, hp.error);
        out.exit_code = 2;
        return out;
      }
      cfg.listen.push_back({hp.host, hp.port, cleartext});
    }
  }
  if (cfg.listen.empty()) cfg.listen.push_back({"127.0.0.1", 8443});
  if (root.empty()) {
    out.error = "--root is required (or root in the configuration file)";
    out.exit_code = 2;
    return out;
  }
  cfg.root = root;
  try {
    h2loop::server::applyMountFlags(cfg, mount_flags, mount_header_flags, error_page_flags);
  } catch (const std::invalid_argument& e) {
    out.error = e.what();
    out.exit_code = 2;
    return out;
  }
  cfg.cert = cert;
  cfg.key = key;
  if (sni_opt->count() > 0) {
    cfg.sni_certificates.clear();
    for (const auto& [c, k] : sni_certs)
      cfg.sni_certificates.push_back({c, k, {}});
  }
  if (access_file_opt->count() > 0) cfg.access_log = true;
  out.program.access_log_file = cfg.access_log ? access_log_file : "";
  cfg.session.max_concurrent_streams = max_streams;
  if (high_opt->count() > 0) cfg.output_low_watermark = cfg.output_high_watermark / 4;
  cfg.handshake_timeout = seconds(handshake_timeout);
  cfg.idle_timeout = seconds(idle_timeout);
  cfg.header_timeout = seconds(header_timeout);
  cfg.write_timeout = seconds(write_timeout);
  cfg.drain_timeout = seconds(drain_timeout);
  cfg.websocket_options.ping_interval = std::chrono::milliseconds(ws_ping_ms);
  cfg.websocket_options.pong_timeout = std::chrono::milliseconds(ws_pong_ms);
  return out;
}

// --check: what start-up would refuse, without binding any port.
int check(const Loaded& l) {
  std::error_code ec;
  if (!std::filesystem::is_directory(l.cfg.root, ec)) {
    std::fprintf(stderr, "h2loop: root %s: not a directory\n", l.cfg.root.c_str());
    return 2;
  }
  if (l.cfg.cert.empty() != l.cfg.key.empty()) {
    std::fprintf(stderr, "h2loop: a certificate and a key go together (neither: h2c)\n");
    return 2;
  }
  try {
    (void)h2loop::server::makeTls(l.cfg, "");
    (void)h2loop::server::routerFor(l.cfg);  // mount roots, fields, error pages
  } catch (const std::exception& e) {
    std::fprintf(stderr, "h2loop: %s\n", e.what());
    return 2;
  }
  std::fputs(h2loop::config::effectiveConfig(l.cfg, l.program).c_str(), stdout);
  std::fprintf(stderr, "h2loop: configuration OK\n");
  return 0;
}

// Sockets passed by systemd (socket activation, or systemd-socket-activate):
// listening sockets from SD_LISTEN_FDS_START on, made non-blocking here.
std::vector<int> inheritedListeners() {
  std::vector<int> fds;
  const int n = sd_listen_fds(/*unset_environment=*/1);
  if (n < 0) {
    spdlog::error("socket activation: {}", h2loop::net::errnoString(-n));
    return fds;
  }
  for (int fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + n; ++fd) {
    if (sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, /*listening=*/1) <= 0) {
      throw std::runtime_error(
          fmt::format("socket activation: fd {} is not a listening TCP socket", fd));
    }
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 ||
        ::fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
      throw std::runtime_error(
          fmt::format("socket activation: fd {}: {}", fd, h2loop::net::errnoString(errno)));
    }
    fds.push_back(fd);
  }
  return fds;
}

void applyProgramSettings(const ProgramSettings& p) {
  spdlog::set_level(spdlog::level::from_str(p.log_level));
  h2loop::server::setAccessLogFile(p.access_log_file);
}

// The watchdog (WatchdogSec= in the unit): WATCHDOG=1 goes out only when
// every worker's loop ran a posted task since the last one, so a stuck loop
// gets the service restarted, not just a stuck main thread.
class Watchdog {
 public:
  explicit Watchdog(h2loop::server::Server& server) : server_(server) {
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
      interval_ = std::chrono::microseconds(usec / 2);
      acks_ = std::make_shared<std::atomic<size_t>>(0);
    }
  }
  // How long sigwait may block before tick() is due.
  [[nodiscard]] std::optional<std::chrono::microseconds> interval() const {
    return acks_ ? std::optional(interval_) : std::nullopt;
  }
  void tick() {
    if (!acks_) return;
    const size_t workers = server_.workerCount();
    if (acks_->exchange(0) >= workers || first_) {
      sd_notify(0, "WATCHDOG=1");
    } else {
      spdlog::warn("watchdog: a worker's loop did not answer within {} ms; not notifying",
                   std::chrono::duration_cast<std::chrono::milliseconds>(interval_).count());
    }
    first_ = false;
    for (size_t i = 0; i < workers; ++i)
      server_.worker(i).loop().post([acks = acks_] { acks->fetch_add(1); });
  }

 private:
  h2loop::server::Server& server_;
  std::chrono::microseconds interval_{0};
  std::shared_ptr<std::atomic<size_t>> acks_;
  bool first_ = true;
};

void notifyReloading() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  const uint64_t usec = uint64_t(ts.tv_sec) * 1'000'000 + uint64_t(ts.tv_nsec) / 1000;
  sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu", static_cast<unsigned long long>(usec));
}

// SIGHUP: the file and the certificates again, for connections from now on.
void reload(h2loop::server::Server& server, int argc, char** argv) {
  notifyReloading();
  spdlog::info("SIGHUP: reloading the configuration");
  Loaded next = load(argc, argv, /*quiet=*/true);
  if (next.exit_code) {
    server.countFailedReload();
    spdlog::error("reload failed, the running configuration stays: {}", next.error);
    sd_notify(0, "READY=1");
    return;
  }
  try {
    // The access log file first: when it cannot be opened, nothing changes.
    h2loop::server::setAccessLogFile(next.program.access_log_file);
  } catch (const std::exception& e) {
    server.countFailedReload();
    spdlog::error("reload failed, the running configuration stays: {}", e.what());
    sd_notify(0, "READY=1");
    return;
  }
  try {
    const std::vector<std::string> kept = server.reload(next.cfg);
    spdlog::set_level(spdlog::level::from_str(next.program.log_level));
    if (!kept.empty()) {
      spdlog::warn("reload: {} changed; that takes a restart (the running value stays)",
                   fmt::join(kept, ", "));
    }
    spdlog::info("reload done: new connections use the new configuration and certificates");
  } catch (const std::exception& e) {
    spdlog::error("reload failed, the running configuration stays: {}", e.what());
  }
  sd_notify(0, "READY=1");
}

}  // namespace

int main(int argc, char** argv) {
  Loaded loaded = load(argc, argv, /*quiet=*/false);
  if (!loaded.error.empty()) std::fprintf(stderr, "h2loop: %s\n", loaded.error.c_str());
  if (loaded.exit_code) return *loaded.exit_code;
  if (loaded.check) return check(loaded);
  ServerConfig& cfg = loaded.cfg;

  spdlog::set_default_logger(spdlog::stderr_color_mt("h2loop"));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [%t] %v");
  try {
    applyProgramSettings(loaded.program);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "h2loop: %s\n", e.what());
    return 1;
  }

  // Signals are taken synchronously by this thread; the workers inherit the mask.
  ::signal(SIGPIPE, SIG_IGN);
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  sigaddset(&signals, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  try {
    cfg.listen_fds = inheritedListeners();
    h2loop::server::Server server(cfg);
    server.start();
    std::string where;
    const auto& addrs = server.listening();
    for (const std::string& a : addrs)
      where += (where.empty() ? "" : ", ") + a;
    spdlog::info("h2loop listening on {}{} ({}, {} loop, {} worker(s), root {})", where,
                 cfg.listen_fds.empty() ? "" : " (sockets from systemd)",
                 cfg.cert.empty() ? (cfg.http1 ? "h2c, http/1.1" : "h2c")
                                  : (cfg.http1 ? "TLS: h2, http/1.1" : "TLS: h2"),
                 cfg.event_loop, cfg.workers, cfg.root.string());
    sd_notifyf(0, "READY=1\nSTATUS=serving on %s", where.c_str());
    Watchdog watchdog(server);
    watchdog.tick();
    int sig = 0;
    for (;;) {
      if (auto every = watchdog.interval()) {
        const auto s = std::chrono::duration_cast<std::chrono::seconds>(*every);
        const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(*every - s);
        timespec ts{static_cast<time_t>(s.count()), static_cast<long>(ns.count())};
        siginfo_t info;
        sig = sigtimedwait(&signals, &info, &ts);
        if (sig < 0) {
          watchdog.tick();
          continue;
        }
      } else if (sigwait(&signals, &sig) != 0) {
        continue;
      }
      if (sig == SIGHUP) {
        reload(server, argc, argv);
      } else if (sig == SIGUSR1) {
        std::string error;
        if (h2loop::server::reopenAccessLog(error)) {
          spdlog::info("SIGUSR1: access log reopened");
        } else {
          spdlog::error("SIGUSR1: access log not reopened (lines go on to the old file): {}",
                        error);
        }
      } else {
        break;
      }
    }
    sd_notify(0, "STOPPING=1");
    spdlog::info("{}: graceful shutdown (drain timeout {} s)", sig == SIGINT ? "SIGINT" : "SIGTERM",
                 asSeconds(server.currentDrainTimeout()));
    server.shutdown();
    server.wait();
    spdlog::info("h2loop stopped");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "h2loop: %s\n", e.what());
    return 1;
  }
  return 0;
}
