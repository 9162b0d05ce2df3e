// sse_clock: a server-sent event stream driven by a loop timer, with
// backpressure.
//
// GET /clock answers text/event-stream and keeps the response open: a timer
// on the request's loop (res.loop().timer()) writes "data: <UTC time>\n\n"
// every --interval-ms. A client that reads slowly makes write() say
// kWouldBlock; the clock then skips ticks until onWritable() instead of
// queueing more, so a stalled client costs at most the stream's write
// bound. The timer belongs to the loop thread: it is made in the handler and
// destroyed in onClose(), both on that thread. --count N ends each stream
// after N events.
//
// GET /metrics shows the server's figures (h2loop_output_buffered_bytes,
// h2loop_app_handles...).
//
//   curl -N --http2-prior-knowledge http://127.0.0.1:8443/clock

#include <signal.h>
#include <time.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "eventloop/loop.h"
#include "h2loop/http.h"
#include "h2loop/server.h"

namespace {

// "2024-05-01T12:34:56.789Z"
std::string isoNow() {
  using namespace std::chrono;
  const auto now = system_clock::now();
  const time_t secs = system_clock::to_time_t(now);
  const auto ms = duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
  tm utc{};
  gmtime_r(&secs, &utc);
  char buf[40];
  const size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &utc);
  std::snprintf(buf + n, sizeof buf - n, ".%03dZ", static_cast<int>(ms));
  return buf;
}

// One /clock stream; owned by the callbacks on its response.
struct Clock {
  h2loop::Response res;
  std::unique_ptr<h2loop::ev::Timer> timer;  // loop thread only
  std::chrono::milliseconds interval;
  long left;             // events still to send; < 0: unlimited
  bool blocked = false;  // write() said kWouldBlock: skip ticks until onWritable()

  void tick() {
    if (!blocked) {
      const std::string event = "data: " + isoNow() + "\n\n";
      blocked = res.write(event) == h2loop::Status::kWouldBlock;
      if (!blocked && left > 0 && --left == 0) {
        res.end();  // completes the exchange: onClose() destroys the timer
        return;
      }
    }
    timer->arm(interval);
  }
};

void clock(const h2loop::Request&, h2loop::Response res, std::chrono::milliseconds interval,
           long count) {
  if (res.start(200, {{"content-type", "text/event-stream"}, {"cache-control", "no-cache"}}) !=
      h2loop::Status::kOk) {
    return;
  }
  auto c = std::make_shared<Clock>(Clock{res, nullptr, interval, count});
  // The Clock owns its timer, so the timer's callback holds it weakly.
  c->timer = res.loop().timer([weak = std::weak_ptr<Clock>(c)] {
    if (auto clock = weak.lock()) clock->tick();
  });
  c->tick();  // the first event at once
  res.onWritable([c] { c->blocked = false; });
  // Runs on the loop thread whatever ended the stream (completion, reset,
  // disconnect, shutdown); afterwards the library drops these callbacks and
  // with them the last reference to the Clock.
  res.onClose([c](h2loop::CloseReason) { c->timer.reset(); });
}

}  // namespace

int main(int argc, char** argv) {
  std::string listen = "127.0.0.1:8443", cert, key, event_loop = "epoll";
  long interval_ms = 1000, count = -1;
  CLI::App app{"sse_clock: GET /clock streams the time as server-sent events"};
  app.add_option("--listen", listen, "HOST:PORT (port 0: any free port)")->capture_default_str();
  app.add_option("--cert", cert, "TLS certificate chain (PEM); without --cert/--key: h2c");
  app.add_option("--key", key, "TLS private key (PEM)");
  app.add_option("--event-loop", event_loop, "epoll or libevent")
      ->check(CLI::IsMember({"epoll", "libevent"}))
      ->capture_default_str();
  app.add_option("--interval-ms", interval_ms, "milliseconds between events")
      ->check(CLI::Range(1L, 3'600'000L))
      ->capture_default_str();
  app.add_option("--count", count, "end each stream after N events (default: never)")
      ->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);

  h2loop::Router router;
  router.get("/clock", [interval = std::chrono::milliseconds(interval_ms), count](
                           const h2loop::Request& req, h2loop::Response res) {
    clock(req, std::move(res), interval, count);
  });
  router.metrics("/metrics");

  h2loop::ServerOptions options;
  options.listen = {listen};
  options.cert = cert;
  options.key = key;
  options.event_loop = event_loop;
  options.drain_timeout = std::chrono::seconds(2);

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
    // Endless streams do not finish by themselves: the drain timeout closes
    // them (onClose(kShutdown)), unless their clients go first.
    server.shutdown();
    server.wait();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sse_clock: %s\n", e.what());
    return 1;
  }
  return 0;
}
