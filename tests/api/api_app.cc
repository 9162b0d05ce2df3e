// The application the handle-safety suites (tests/api/test_*.py) run: the
// public API only (h2loop/server.h), with routes that hold handles across
// every way a request can end, answer from threads, produce without pause,
// pause uploads, never answer, drop or throw. It takes the h2loop binary's
// flags that the shared harness passes, and prints the same "listening on"
// line.
//
//   GET  /hold?keep=1      keeps the handle; when the exchange ends, a worker
//                          thread tries start/write/end/respond on it and counts
//                          the statuses. keep=1: the handle is kept after that
//                          until GET /release (the pooled slot must stay taken).
//   GET  /release          drops every kept handle (from a worker thread).
//   GET  /late?ms=N        answered from the thread pool after N ms.
//   GET  /produce?thread=1 writes 16 KiB chunks without pause (on the loop
//                          via onWritable, or from a thread waiting for it).
//   POST /upload?id=X      pauses the body at once; GET /resume?id=X resumes;
//                          answers "<length> <fnv1a64 hex>".
//   GET  /big-writes       40 KiB, then 60 KiB retried from onWritable (counted).
//   GET  /start-elsewhere  start() on a pool thread, write()/end() on the loop
//                          before that start has run there.
//   GET  /never            keeps the handle, never answers (response timeout).
//   GET  /drop             returns without answering or keeping the handle.
//   GET  /throw            throws; /throw-started throws after start().
//   GET  /stats            the counters below, "name value" per line.
//   GET  /whoami           what the Request says about itself.
//   WS   /ws/flood?n=N&size=S&thread=1
//                          a WebSocket that sends N binary messages of S bytes
//                          (each starting with its 8-digit sequence number) as
//                          fast as send() takes them: on the loop, resuming from
//                          onWritable, or from a thread that waits for it; then
//                          close(1000, "done"). After its close a pool thread
//                          sends, pings and closes on the handle (all must say
//                          closed).
//   WS   /ws/echo          echoes; on_close counts the code it was told.
//   /metrics, and files of --root at "/".

#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <charconv>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "eventloop/loop.h"
#include "h2loop/server.h"
#include "h2loop/websocket.h"

namespace {

using h2loop::CloseReason;
using h2loop::Request;
using h2loop::Response;
using h2loop::Status;

// A fixed pool of threads running queued jobs.
class ThreadPool {
 public:
  explicit ThreadPool(unsigned n) {
    for (unsigned i = 0; i < n; ++i)
      threads_.emplace_back([this] { work(); });
  }
  ~ThreadPool() { stop(); }
  void submit(std::function<void()> job) {
    {
      std::lock_guard lock(mu_);
      jobs_.push_back(std::move(job));
    }
    cv_.notify_one();
  }
  void stop() {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_)
      t.join();
  }

 private:
  void work() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
        if (jobs_.empty()) return;  // stopping, and every job ran
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

struct Stats {
  std::atomic<int64_t> held{0};  // /hold and /never handles currently held
  std::atomic<int64_t> late_closed{0};
  std::atomic<int64_t> late_other{0};
  std::atomic<int64_t> late_answered{0};
  std::atomic<int64_t> late_refused{0};  // /late answers that found the stream gone
  std::array<std::atomic<int64_t>, 6> closes{};
  std::atomic<int64_t> producer_would_block{0};
  std::atomic<int64_t> producers_done{0};
  std::atomic<int64_t> writable_calls{0};
  std::atomic<int64_t> ws_opened{0};
  std::atomic<int64_t> ws_closed{0};
  std::atomic<int64_t> ws_would_block{0};
  std::atomic<int64_t> ws_sent{0};
  std::atomic<int64_t> ws_floods_done{0};
  std::atomic<int64_t> ws_last_code{0};

  std::string text() const {
    std::string out;
    auto line = [&](std::string_view name, int64_t v) {
      out += name;
      out += ' ';
      out += std::to_string(v);
      out += '\n';
    };
    line("held", held);
    line("late_closed", late_closed);
    line("late_other", late_other);
    line("late_answered", late_answered);
    line("late_refused", late_refused);
    for (size_t i = 0; i < closes.size(); ++i) {
      std::string name = "close_";
      for (char c : h2loop::toString(static_cast<CloseReason>(i)))
        name += c == ' ' ? '_' : c;
      line(name, closes[i]);
    }
    line("producer_would_block", producer_would_block);
    line("producers_done", producers_done);
    line("writable_calls", writable_calls);
    line("ws_opened", ws_opened);
    line("ws_closed", ws_closed);
    line("ws_would_block", ws_would_block);
    line("ws_sent", ws_sent);
    line("ws_floods_done", ws_floods_done);
    line("ws_last_code", ws_last_code);
    return out;
  }
};

Stats g_stats;
ThreadPool* g_pool = nullptr;
std::mutex g_kept_mu;
std::vector<Response> g_kept;               // /hold?keep=1 after their end, until /release
std::map<std::string, Response> g_uploads;  // paused uploads by id
std::mutex g_threads_mu;
std::vector<std::thread> g_threads;                        // producer threads, joined at exit
std::map<size_t, std::shared_ptr<struct Flood>> g_floods;  // open /ws/flood, by handle hash

int64_t param(std::string_view query, std::string_view name, int64_t fallback) {
  for (size_t pos = 0; pos < query.size();) {
    const size_t amp = std::min(query.find('&', pos), query.size());
    const std::string_view kv = query.substr(pos, amp - pos);
    if (kv.starts_with(name) && kv.size() > name.size() && kv[name.size()] == '=') {
      int64_t v = fallback;
      const std::string_view num = kv.substr(name.size() + 1);
      std::from_chars(num.data(), num.data() + num.size(), v);
      return v;
    }
    pos = amp + 1;
  }
  return fallback;
}

std::string paramString(std::string_view query, std::string_view name) {
  for (size_t pos = 0; pos < query.size();) {
    const size_t amp = std::min(query.find('&', pos), query.size());
    const std::string_view kv = query.substr(pos, amp - pos);
    if (kv.starts_with(name) && kv.size() > name.size() && kv[name.size()] == '=') {
      return std::string(kv.substr(name.size() + 1));
    }
    pos = amp + 1;
  }
  return {};
}

void countLate(Status s) {
  (s == Status::kClosed ? g_stats.late_closed : g_stats.late_other).fetch_add(1);
}

// Every operation on a handle whose exchange ended must say kClosed.
void lateOps(Response& res) {
  countLate(res.start(200));
  countLate(res.write("late"));
  countLate(res.end());
  countLate(res.respond(200, {}, "late"));
}

void hold(const Request& req, Response res) {
  const bool keep = param(req.query(), "keep", 0) != 0;
  g_stats.held.fetch_add(1);
  // The handle lives in the close callback until the exchange ends.
  res.onClose([res, keep](CloseReason why) mutable {
    g_stats.closes[static_cast<size_t>(why)].fetch_add(1);
    g_pool->submit([res = std::move(res), keep]() mutable {
      lateOps(res);
      if (keep) {
        std::lock_guard lock(g_kept_mu);
        g_kept.push_back(std::move(res));
      } else {
        g_stats.held.fetch_sub(1);
      }
    });
  });
}

void release(const Request&, Response res) {
  g_pool->submit([res = std::move(res)]() mutable {
    std::vector<Response> kept;
    {
      std::lock_guard lock(g_kept_mu);
      kept.swap(g_kept);
    }
    const size_t n = kept.size();
    g_stats.held.fetch_sub(static_cast<int64_t>(n));
    kept.clear();  // the last handles drop here, on a pool thread
    res.respond(200, {{"content-type", "text/plain"}}, std::to_string(n) + "\n");
  });
}

void late(const Request& req, Response res) {
  const int64_t ms = param(req.query(), "ms", 0);
  g_pool->submit([res = std::move(res), ms]() mutable {
    if (ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    const Status s = res.respond(200, {{"content-type", "text/plain"}}, "late answer\n");
    (s == Status::kOk ? g_stats.late_answered : g_stats.late_refused).fetch_add(1);
  });
}

// Writes until the bound says stop, from the loop thread; onWritable resumes.
void produceOnLoop(Response res) {
  auto chunk = std::make_shared<std::string>(16 * 1024, 'p');
  res.start(200, {{"content-type", "application/octet-stream"}});
  auto pump = [res, chunk]() mutable {
    for (;;) {
      const Status s = res.write(*chunk);
      if (s == Status::kWouldBlock) {
        g_stats.producer_would_block.fetch_add(1);
        return;
      }
      if (s != Status::kOk) return;
    }
  };
  res.onWritable(pump);
  res.onClose([](CloseReason) { g_stats.producers_done.fetch_add(1); });
  pump();
}

// The same from a thread of the application, which waits for onWritable.
void produceOnThread(Response res) {
  struct Gate {
    std::mutex mu;
    std::condition_variable cv;
    bool writable = false;
    bool closed = false;
  };
  auto gate = std::make_shared<Gate>();
  res.onWritable([gate] {
    std::lock_guard lock(gate->mu);
    gate->writable = true;
    gate->cv.notify_one();
  });
  res.onClose([gate](CloseReason) {
    std::lock_guard lock(gate->mu);
    gate->closed = true;
    gate->cv.notify_one();
  });
  std::lock_guard lock(g_threads_mu);
  g_threads.emplace_back([res = std::move(res), gate]() mutable {
    const std::string chunk(16 * 1024, 't');
    Status s = res.start(200, {{"content-type", "application/octet-stream"}});
    while (s == Status::kOk || s == Status::kWouldBlock) {
      s = res.write(chunk);
      if (s == Status::kWouldBlock) {
        g_stats.producer_would_block.fetch_add(1);
        std::unique_lock l(gate->mu);
        gate->cv.wait(l, [&] { return gate->writable || gate->closed; });
        gate->writable = false;
      }
    }
    g_stats.producers_done.fetch_add(1);
  });
}

// start() from a pool thread while the loop thread, busy in a callback that
// was queued first, writes and ends: the writes must follow the start.
void startElsewhere(Response res) {
  struct Gate {
    std::mutex mu;
    std::condition_variable cv;
    bool started = false;
  };
  auto gate = std::make_shared<Gate>();
  res.post([res, gate]() mutable {
    {
      std::unique_lock l(gate->mu);
      gate->cv.wait(l, [&] { return gate->started; });
    }
    // The start is queued behind this callback, not run yet.
    const Status w = res.write("written on the loop\n");
    const Status e =
        res.end({{"x-write", std::string(h2loop::toString(w))}, {"x-end-queued", "yes"}});
    if (w != Status::kOk || e != Status::kOk) g_stats.late_other.fetch_add(1);
  });
  g_pool->submit([res, gate]() mutable {
    res.start(200, {{"content-type", "text/plain"}});
    std::lock_guard l(gate->mu);
    gate->started = true;
    gate->cv.notify_one();
  });
}

// 40 KiB, then a 60 KiB write retried from onWritable until it is taken:
// onWritable must wait until it can be, however long the client stalls.
void bigWrites(Response res) {
  res.start(200, {{"content-type", "application/octet-stream"}});
  res.write(std::string(40 * 1024, 'a'));
  auto retry = [res, big = std::make_shared<std::string>(60 * 1024, 'b')]() mutable {
    g_stats.writable_calls.fetch_add(1);
    if (res.write(*big) == Status::kOk) res.end();
  };
  if (res.write(std::string(60 * 1024, 'b')) == Status::kOk) {
    res.end();
    return;
  }
  res.onWritable(retry);
}

uint64_t fnv1a(uint64_t h, std::string_view bytes) {
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

void upload(const Request& req, Response res) {
  const std::string id = paramString(req.query(), "id");
  res.pauseBody();
  struct Sum {
    uint64_t length = 0;
    uint64_t hash = 0xcbf29ce484222325ull;
  };
  auto sum = std::make_shared<Sum>();
  res.onBody(
      [sum](std::string_view chunk) {
        sum->length += chunk.size();
        sum->hash = fnv1a(sum->hash, chunk);
      },
      [res, sum]() mutable {
        char hex[17];
        std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(sum->hash));
        res.respond(200, {{"content-type", "text/plain"}},
                    std::to_string(sum->length) + " " + hex + "\n");
      });
  std::lock_guard lock(g_kept_mu);
  g_uploads[id] = std::move(res);
}

// The body callback resets its own exchange, then goes on using what it
// captured: the callback must outlive its own call.
void uploadReset(Response res) {
  auto note = std::make_shared<std::string>("captured state");
  res.onBody(
      [res, note, label = std::string(64, 'x')](std::string_view) mutable {
        const Status s = res.reset();
        if (s != Status::kOk || label.size() != 64 || note->empty()) {
          g_stats.late_other.fetch_add(1);
        }
        countLate(res.write("after reset"));  // kClosed
      },
      [] {});
}

void resume(const Request& req, Response res) {
  Response upload;
  {
    std::lock_guard lock(g_kept_mu);
    auto it = g_uploads.find(paramString(req.query(), "id"));
    if (it != g_uploads.end()) {
      upload = std::move(it->second);
      g_uploads.erase(it);
    }
  }
  if (!upload) {
    res.respond(404, {}, "no such upload\n");
    return;
  }
  // From another thread, as an application's worker would.
  g_pool->submit([upload = std::move(upload), res = std::move(res)]() mutable {
    const Status s = upload.resumeBody();
    res.respond(200, {{"content-type", "text/plain"}}, std::string(h2loop::toString(s)) + "\n");
  });
}

void never(const Request&, Response res) {
  g_stats.held.fetch_add(1);
  res.onClose([res](CloseReason why) mutable {
    g_stats.closes[static_cast<size_t>(why)].fetch_add(1);
    g_stats.held.fetch_sub(1);
    // The handle goes with this callback.
  });
}

// ---- WebSocket -------------------------------------------------------------

// Every operation on a WebSocket that is over must say kClosed.
void lateWsOps(h2loop::WebSocket& ws) {
  countLate(ws.sendText("late"));
  countLate(ws.ping());
  countLate(ws.close(1000));
}

std::string floodMessage(int64_t seq, size_t size) {
  std::string m(std::max<size_t>(size, 8), 'f');
  char digits[24];
  std::snprintf(digits, sizeof digits, "%08lld", static_cast<long long>(seq % 100000000));
  m.replace(0, 8, digits, 8);
  return m;
}

// One /ws/flood producer.
struct Flood {
  int64_t total = 0;
  size_t size = 0;
  int64_t next = 0;
  // Thread mode: the producer waits here for onWritable.
  std::mutex mu;
  std::condition_variable cv;
  bool writable = false;
  bool over = false;
};

// On the loop: sends until the bound says stop; onWritable calls it again.
void floodOnLoop(h2loop::WebSocket ws, const std::shared_ptr<Flood>& f) {
  while (f->next < f->total) {
    const Status st = ws.sendBinary(floodMessage(f->next, f->size));
    if (st == Status::kWouldBlock) {
      g_stats.ws_would_block.fetch_add(1);
      return;
    }
    if (st != Status::kOk) return;
    ++f->next;
    g_stats.ws_sent.fetch_add(1);
  }
  g_stats.ws_floods_done.fetch_add(1);
  (void)ws.close(1000, "done");
}

void floodOnThread(h2loop::WebSocket ws, std::shared_ptr<Flood> f) {
  std::lock_guard lock(g_threads_mu);
  g_threads.emplace_back([ws, f]() mutable {
    while (f->next < f->total) {
      const Status st = ws.sendBinary(floodMessage(f->next, f->size));
      if (st == Status::kWouldBlock) {
        g_stats.ws_would_block.fetch_add(1);
        std::unique_lock wait_lock(f->mu);
        f->cv.wait(wait_lock, [&] { return f->writable || f->over; });
        f->writable = false;
        if (f->over) break;
        continue;
      }
      if (st != Status::kOk) break;
      ++f->next;
      g_stats.ws_sent.fetch_add(1);
    }
    if (f->next == f->total) g_stats.ws_floods_done.fetch_add(1);
    (void)ws.close(1000, "done");
  });
}

void addWebSockets(h2loop::Router& router) {
  h2loop::WebSocketHandlers flood;
  flood.on_open = [](h2loop::WebSocket& ws) {
    g_stats.ws_opened.fetch_add(1);
    const std::string_view q = ws.request().query();
    auto f = std::make_shared<Flood>();
    f->total = param(q, "n", 1000);
    f->size = static_cast<size_t>(param(q, "size", 1024));
    if (param(q, "thread", 0) != 0) {
      ws.onWritable([f] {
        std::lock_guard lock(f->mu);
        f->writable = true;
        f->cv.notify_one();
      });
      floodOnThread(ws, f);
    } else {
      // The callback holds the handle: dropped by the WebSocket's close.
      ws.onWritable([ws, f]() mutable { floodOnLoop(ws, f); });
      floodOnLoop(ws, f);
    }
    // Registered after the flood started; wakes a waiting producer at the end.
    std::lock_guard lock(g_kept_mu);
    g_floods.emplace(ws.hash(), f);
  };
  flood.on_close = [](h2loop::WebSocket& ws, uint16_t code, std::string_view) {
    g_stats.ws_closed.fetch_add(1);
    g_stats.ws_last_code.store(code);
    std::shared_ptr<Flood> f;
    {
      std::lock_guard lock(g_kept_mu);
      if (auto it = g_floods.find(ws.hash()); it != g_floods.end()) {
        f = it->second;
        g_floods.erase(it);
      }
    }
    if (f) {
      std::lock_guard lock(f->mu);
      f->over = true;
      f->cv.notify_one();
    }
    g_pool->submit([ws]() mutable { lateWsOps(ws); });
  };
  router.websocket("/ws/flood", flood);

  h2loop::WebSocketHandlers echo;
  echo.on_open = [](h2loop::WebSocket&) { g_stats.ws_opened.fetch_add(1); };
  echo.on_message = [](h2loop::WebSocket& ws, h2loop::WebSocket::Type type, std::string_view data) {
    (void)ws.send(type, data);
  };
  echo.on_close = [](h2loop::WebSocket& ws, uint16_t code, std::string_view) {
    g_stats.ws_closed.fetch_add(1);
    g_stats.ws_last_code.store(code);
    g_pool->submit([ws]() mutable { lateWsOps(ws); });
  };
  router.websocket("/ws/echo", echo);
}

std::chrono::milliseconds seconds(double s) {
  return std::chrono::milliseconds(static_cast<int64_t>(s * 1000.0));
}

}  // namespace

int main(int argc, char** argv) {
  std::string listen = "127.0.0.1:0", root, cert, key, metrics, loop = "epoll", level = "info";
  double idle = 60, write = 30, drain = 10;
  int64_t response_timeout_ms = 30000;
  size_t bound = 64 * 1024;
  unsigned threads = 4;
  std::vector<std::string> listen_h2c;
  std::vector<std::pair<std::string, std::string>> sni;
  CLI::App app{"h2loop API test application"};
  app.add_option("--listen-h2c", listen_h2c);
  app.add_option("--sni-cert", sni);
  app.add_option("--listen", listen);
  app.add_option("--root", root)->required();
  app.add_option("--cert", cert);
  app.add_option("--key", key);
  app.add_option("--metrics-path", metrics);
  app.add_option("--event-loop", loop);
  app.add_option("--log-level", level);
  app.add_option("--idle-timeout", idle);
  app.add_option("--write-timeout", write);
  app.add_option("--drain-timeout", drain);
  app.add_option("--response-timeout-ms", response_timeout_ms);
  app.add_option("--stream-write-bound", bound);
  app.add_option("--threads", threads);
  CLI11_PARSE(app, argc, argv);
  spdlog::set_default_logger(spdlog::stderr_color_mt("api"));
  spdlog::set_level(spdlog::level::from_str(level));

  ::signal(SIGPIPE, SIG_IGN);
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);  // Server::reload() with the same options: files re-read
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  ThreadPool pool(threads);
  g_pool = &pool;

  h2loop::Router router;
  if (!metrics.empty()) router.metrics(metrics);
  router.get("/hold", hold)
      .get("/release", release)
      .get("/late", late)
      .get("/produce",
           [](const Request& req, Response res) {
             if (param(req.query(), "thread", 0) != 0) {
               produceOnThread(std::move(res));
             } else {
               produceOnLoop(std::move(res));
             }
           })
      .get("/whoami",
           [](const Request& req, Response res) {
             std::string out;
             out += "method " + std::string(req.method()) + "\n";
             out += "path " + std::string(req.path()) + "\n";
             out += "query " + std::string(req.query()) + "\n";
             out += "authority " + std::string(req.authority()) + "\n";
             out += "scheme " + std::string(req.scheme()) + "\n";
             out += "peer " + req.peer() + "\n";
             out += "tls " + std::string(req.tls() ? "yes" : "no") + "\n";
             out += "alpn " + std::string(req.alpn()) + "\n";
             out += "sni " + std::string(req.sni()) + "\n";
             out += "x-probe " + std::string(req.header("X-Probe").value_or("(none)")) + "\n";
             res.respond(200, {{"content-type", "text/plain"}}, out);
           })
      .get("/big-writes", [](const Request&, Response res) { bigWrites(std::move(res)); })
      .get("/start-elsewhere", [](const Request&, Response res) { startElsewhere(std::move(res)); })
      .post("/upload", upload)
      .post("/upload-reset", [](const Request&, Response res) { uploadReset(std::move(res)); })
      .get("/resume", resume)
      .get("/never", never)
      .get("/drop", [](const Request&, Response) {})
      .get("/throw", [](const Request&, Response) { throw std::runtime_error("handler failure"); })
      .get("/throw-started",
           [](const Request&, Response res) {
             res.start(200);
             res.write("partial");
             throw std::runtime_error("failure after start");
           })
      .get("/stats", [](const Request&, Response res) {
        res.respond(200, {{"content-type", "text/plain"}, {"cache-control", "no-store"}},
                    g_stats.text());
      });
  addWebSockets(router);
  router.files("/static", root);  // the same files again, mounted below a prefix
  router.files("/", root);

  h2loop::ServerOptions options;
  options.listen = {listen};
  options.cert = cert;
  options.key = key;
  options.event_loop = loop;
  options.idle_timeout = seconds(idle);
  options.write_timeout = seconds(write);
  options.drain_timeout = seconds(drain);
  options.response_timeout = std::chrono::milliseconds(response_timeout_ms);
  options.stream_write_bound = bound;
  options.listen_h2c = listen_h2c;
  for (const auto& [c, k] : sni)
    options.sni.push_back({c, k, {}});

  int code = 0;
  try {
    h2loop::Server server(options, std::move(router));
    server.start();
    std::fprintf(stderr, "api app listening on 127.0.0.1:%u (%s, %s loop)\n", server.ports()[0],
                 cert.empty() ? "h2c" : "TLS", loop.c_str());
    std::string ports;
    for (uint16_t p : server.ports())
      ports += " " + std::to_string(p);
    std::fprintf(stderr, "api app ports:%s\n", ports.c_str());
    std::fflush(stderr);
    int sig = 0;
    while (sigwait(&signals, &sig) == 0 && sig == SIGHUP) {
      try {
        const std::vector<std::string> kept = server.reload(options);
        std::fprintf(stderr, "api app: reloaded (%zu option(s) kept for a restart)\n", kept.size());
      } catch (const std::exception& e) {
        std::fprintf(stderr, "api app: reload failed: %s\n", e.what());
      }
      std::fflush(stderr);
    }
    server.shutdown();
    server.wait();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "api app: %s\n", e.what());
    return 1;
  }
  // The server is gone; every handle the application still holds must say
  // kClosed and be dropped safely, here on the main thread.
  pool.stop();
  {
    std::lock_guard lock(g_threads_mu);
    for (auto& t : g_threads)
      t.join();
  }
  std::vector<Response> kept;
  {
    std::lock_guard lock(g_kept_mu);
    kept.swap(g_kept);
    for (auto& [id, r] : g_uploads)
      kept.push_back(std::move(r));
    g_uploads.clear();
  }
  const int64_t closed_before = g_stats.late_closed, other_before = g_stats.late_other;
  for (Response& r : kept)
    lateOps(r);
  const int64_t closed = g_stats.late_closed - closed_before,
                other = g_stats.late_other - other_before;
  std::fprintf(stderr, "after shutdown: %zu handle(s) held, late ops closed=%lld other=%lld\n",
               kept.size(), static_cast<long long>(closed), static_cast<long long>(other));
  kept.clear();
  if (g_stats.late_other != 0) {
    std::fprintf(stderr, "late operations on ended exchanges did not all say closed\n");
    code = 3;
  }
  return code;
}
