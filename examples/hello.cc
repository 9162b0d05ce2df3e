// hello: the smallest h2loop server. One route answered synchronously from
// the handler, a threaded server (one loop per worker), and the graceful
// shutdown every program here shares: SIGINT/SIGTERM are taken by sigwait()
// on main(), then shutdown() lets requests in flight finish and wait() joins
// the workers.
//
// It is also the benchmark target: the handler allocates nothing of its own
// (the headers are built once; the body is a literal).
//
//   hello --listen 127.0.0.1:8443 --cert cert.pem --key key.pem --workers 2
//   curl -k --http2 https://127.0.0.1:8443/

#include <signal.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>

#include "h2loop/http.h"
#include "h2loop/server.h"

int main(int argc, char** argv) {
  std::string listen = "127.0.0.1:8443", cert, key, event_loop = "epoll", log_level = "info";
  unsigned workers = 1;
  CLI::App app{"hello: GET / answers \"hello, world\""};
  app.add_option("--listen", listen, "HOST:PORT (port 0: any free port)")->capture_default_str();
  app.add_option("--cert", cert, "TLS certificate chain (PEM); without --cert/--key: h2c");
  app.add_option("--key", key, "TLS private key (PEM)");
  app.add_option("--event-loop", event_loop, "epoll or libevent")
      ->check(CLI::IsMember({"epoll", "libevent"}))
      ->capture_default_str();
  app.add_option("--workers", workers, "worker threads")->check(CLI::Range(1u, 64u));
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, critical, off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  CLI11_PARSE(app, argc, argv);
  // The library logs through spdlog's default logger.
  spdlog::set_level(spdlog::level::from_str(log_level));

  static const h2loop::Headers kHeaders{{"content-type", "text/plain"}};
  h2loop::Router router;
  router.get("/", [](const h2loop::Request&, h2loop::Response res) {
    res.respond(200, kHeaders, "hello, world\n");
  });

  h2loop::ServerOptions options;
  options.listen = {listen};
  options.cert = cert;
  options.key = key;
  options.event_loop = event_loop;
  options.workers = workers;

  // Block the signals before any thread starts (workers inherit the mask);
  // main() takes them with sigwait().
  ::signal(SIGPIPE, SIG_IGN);
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  try {
    h2loop::Server server(options, std::move(router));
    server.start();
    std::fprintf(stderr, "listening on %s:%u\n", listen.substr(0, listen.rfind(':')).c_str(),
                 server.ports()[0]);
    std::fflush(stderr);
    int sig = 0;
    sigwait(&signals, &sig);
    server.shutdown();
    server.wait();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hello: %s\n", e.what());
    return 1;
  }
  return 0;
}
