// An application on the installed h2loop: GET /hello, answered from another
// thread, over HTTPS/h2 (cleartext h2c when no certificate is given).
//   h2loop_consumer [CERT KEY]   prints "listening on 127.0.0.1:PORT", stops on SIGINT/SIGTERM
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <exception>
#include <thread>
#include <utility>

#include "h2loop/server.h"

int main(int argc, char** argv) {
  h2loop::Router router;
  router.get("/hello", [](const h2loop::Request&, h2loop::Response res) {
    std::thread([res]() mutable {
      res.respond(200, {{"content-type", "text/plain"}}, "hello from another thread\n");
    }).detach();
  });
  h2loop::ServerOptions options;
  options.listen = {"127.0.0.1:0"};
  if (argc >= 3) {
    options.cert = argv[1];
    options.key = argv[2];
  }
  // Blocked before any thread starts, so that only sigwait() below takes them.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  try {
    h2loop::Server server(options, std::move(router));
    server.start();
    std::printf("listening on 127.0.0.1:%u\n", static_cast<unsigned>(server.ports()[0]));
    std::fflush(stdout);
    int sig = 0;
    sigwait(&stop, &sig);
    server.shutdown();
    server.wait();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "h2loop_consumer: %s\n", e.what());
    return 1;
  }
  return 0;
}
