// thread_pool: handing requests to threads of your own.
//
// GET /compute?n=K answers fib(K) mod 1e9+7, computed on a fixed pool of
// --threads std::threads fed by a queue (mutex + condition variable). The
// handler only parses, queues the Response handle and returns; a pool
// thread computes and calls res.respond() itself: a handle may be used from
// any thread (the operation is carried to the request's loop).
//
// Shutdown order: the server first (it drains requests in flight, which the
// pool is still there to answer), then the pool is joined.
//
//   curl --http2-prior-knowledge 'http://127.0.0.1:8443/compute?n=1000'

#include <signal.h>

#include <CLI/CLI.hpp>
#include <charconv>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "h2loop/http.h"
#include "h2loop/server.h"

namespace {

// A fixed set of threads running jobs from one queue, in order of arrival.
class Pool {
 public:
  explicit Pool(unsigned threads) {
    for (unsigned i = 0; i < threads; ++i)
      threads_.emplace_back([this] { run(); });
  }
  // Finishes the jobs queued, then joins.
  ~Pool() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (std::thread& t : threads_)
      t.join();
  }

  void submit(std::function<void()> job) {
    {
      std::lock_guard lock(mu_);
      jobs_.push_back(std::move(job));
    }
    cv_.notify_one();
  }

 private:
  void run() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
        if (jobs_.empty()) return;  // stopping, nothing left
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      job();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

// fib(k) mod 1e9+7, iteratively.
uint64_t fibonacci(uint64_t k) {
  constexpr uint64_t kMod = 1'000'000'007;
  uint64_t a = 0, b = 1;
  for (uint64_t i = 0; i < k; ++i) {
    const uint64_t next = (a + b) % kMod;
    a = b;
    b = next;
  }
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  std::string listen = "127.0.0.1:8443", cert, key, event_loop = "epoll";
  unsigned threads = 4;
  CLI::App app{"thread_pool: GET /compute?n=K answers fib(K) mod 1e9+7 from a pool thread"};
  app.add_option("--listen", listen, "HOST:PORT (port 0: any free port)")->capture_default_str();
  app.add_option("--cert", cert, "TLS certificate chain (PEM); without --cert/--key: h2c");
  app.add_option("--key", key, "TLS private key (PEM)");
  app.add_option("--event-loop", event_loop, "epoll or libevent")
      ->check(CLI::IsMember({"epoll", "libevent"}))
      ->capture_default_str();
  app.add_option("--threads", threads, "pool threads")
      ->check(CLI::Range(1u, 256u))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  ::signal(SIGPIPE, SIG_IGN);
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  try {
    Pool pool(threads);  // declared first: destroyed (joined) after the server

    h2loop::Router router;
    router.get("/compute", [&pool](const h2loop::Request& req, h2loop::Response res) {
      // The Request is a view for the loop thread: take what the job needs.
      const std::string_view q = req.query();
      const char* end = q.data() + q.size();
      uint64_t n = 0;
      const bool ok = q.size() > 2 && q.starts_with("n=") &&
                      std::from_chars(q.data() + 2, end, n) == std::from_chars_result{end, {}} &&
                      n <= 100'000'000;
      if (!ok) {
        res.respond(400, {{"content-type", "text/plain"}}, "want ?n=K with 0 <= K <= 1e8\n");
        return;
      }
      pool.submit([n, res = std::move(res)]() mutable {
        const std::string body = std::to_string(fibonacci(n)) + "\n";
        res.respond(200, {{"content-type", "text/plain"}}, body);  // from this pool thread
      });
    });

    h2loop::ServerOptions options;
    options.listen = {listen};
    options.cert = cert;
    options.key = key;
    options.event_loop = event_loop;

    h2loop::Server server(options, std::move(router));
    server.start();
    std::fprintf(stderr, "listening on %s:%u\n", listen.substr(0, listen.rfind(':')).c_str(),
                 server.ports()[0]);
    std::fflush(stderr);
    int sig = 0;
    sigwait(&signals, &sig);
    server.shutdown();
    server.wait();
    // ~Server, then ~Pool: the pool answers what is still queued (the handles
    // say kClosed now) and its threads are joined.
  } catch (const std::exception& e) {
    std::fprintf(stderr, "thread_pool: %s\n", e.what());
    return 1;
  }
  return 0;
}
