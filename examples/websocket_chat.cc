// websocket_chat: a chat room on WebSockets, with a browser client.
//
// GET / answers an HTML page whose script (/app.js, styled by /style.css)
// opens a WebSocket to /chat: wss:// over TLS, ws:// in cleartext. A browser
// that loaded the page over HTTP/2 opens it on the same connection (RFC 8441
// extended CONNECT: the server advertises SETTINGS_ENABLE_CONNECT_PROTOCOL
// because a websocket route exists); over HTTP/1.1 it is an Upgrade (RFC
// 6455) on a connection of its own.
//
// /chat: every message a peer sends (text or binary) goes to every open chat
// WebSocket of the worker, the sender included. The room is a
// std::unordered_set<h2loop::WebSocket> per worker, touched on its loop
// thread only (every WebSocket callback runs there). Backpressure: a peer
// whose send() answers kWouldBlock (it holds WebSocketOptions::send_bound
// of messages it has not taken yet) misses that message — counted, never
// queued — so a reader that stalls costs the server its bounds and no
// more, and slows nobody else down.
//
// GET /stats: JSON, summed over workers: WebSockets open and opened by
// protocol ("h2" = RFC 8441, "http/1.1" = RFC 6455), messages received,
// deliveries, deliveries skipped under backpressure. GET /metrics: the
// server's Prometheus figures.
//
// The page's ?selftest=N makes it send N messages once open, wait for all
// of them to come back (broadcast to itself), and write the outcome, with the
// protocol the page and its resources came over (nextHopProtocol), as JSON
// into <pre id="result" data-done="1"> (tests/examples/test_browser.py).
//
//   websocket_chat --listen 127.0.0.1:8443 --cert cert.pem --key key.pem
//   chromium --ignore-certificate-errors https://127.0.0.1:8443/

#include <signal.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <unordered_set>
#include <vector>

#include "h2loop/http.h"
#include "h2loop/server.h"
#include "h2loop/websocket.h"

namespace {

// ---- the browser client --------------------------------------------------------

constexpr std::string_view kPage = R"html(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>h2loop chat</title>
<link rel="stylesheet" href="/style.css">
<script src="/app.js" defer></script>
</head>
<body>
<header><h1>h2loop chat</h1><span id="state">connecting…</span></header>
<ul id="log"></ul>
<form id="form"><input id="text" autocomplete="off" placeholder="say something" autofocus>
<button id="send" disabled>send</button></form>
<pre id="result"></pre>
</body>
</html>
)html";

constexpr std::string_view kStyle = R"css(
body { font: 15px/1.4 system-ui, sans-serif; margin: 0 auto; max-width: 40em; padding: 1em; }
header { display: flex; align-items: baseline; justify-content: space-between; }
h1 { font-size: 1.3em; }
#state { color: #666; }
#log { list-style: none; padding: .5em; height: 60vh; overflow-y: auto; border: 1px solid #ccc; }
#log li { padding: .1em 0; overflow-wrap: anywhere; }
#log li.binary { color: #666; font-style: italic; }
form { display: flex; gap: .5em; }
#text { flex: 1; }
#result:empty { display: none; }
)css";

constexpr std::string_view kScript = R"js("use strict";
// The chat client: one WebSocket to /chat on the page's own host; what
// anyone sends is shown to everyone. ?selftest=N: see runSelfTest().
const $ = (id) => document.getElementById(id);
const selfTest = Number(new URLSearchParams(location.search).get("selftest") || 0);
const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/chat");
ws.binaryType = "arraybuffer";

function show(text, cls) {
  const li = document.createElement("li");
  li.textContent = text;
  if (cls) li.className = cls;
  $("log").appendChild(li);
  $("log").scrollTop = $("log").scrollHeight;
}

ws.addEventListener("open", () => {
  $("state").textContent = "connected";
  $("send").disabled = false;
  if (selfTest > 0) runSelfTest();
});
ws.addEventListener("message", (e) => {
  if (typeof e.data === "string") show(e.data);
  else show("[" + e.data.byteLength + " bytes]", "binary");
  if (selfTest > 0) selfTestMessage(e.data);
});
ws.addEventListener("close", (e) => {
  $("state").textContent = "closed (" + e.code + ")";
  $("send").disabled = true;
  finish("the WebSocket closed: " + e.code);
});
ws.addEventListener("error", () => finish("the WebSocket failed"));
$("form").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("text").value;
  if (text && ws.readyState === WebSocket.OPEN) ws.send(text);
  $("text").value = "";
});

// Self-test: sends N messages (non-ASCII included), waits for all of them
// to come back in order, then writes the result for a test to read.
const test = { sent: [], received: [], done: false };
function runSelfTest() {
  const tag = Math.random().toString(36).slice(2, 10);
  for (let i = 0; i < selfTest; i++) {
    const text = "self-test " + tag + " #" + i + " h\u00e9llo \u2713";
    test.sent.push(text);
    ws.send(text);
  }
}
function selfTestMessage(data) {
  if (test.done || !test.sent.includes(data)) return;  // someone else's
  test.received.push(data);
  if (test.received.length === test.sent.length) finish(null);
}
function finish(error) {
  if (!selfTest || test.done) return;
  test.done = true;
  const nav = performance.getEntriesByType("navigation")[0];
  const resources = {};
  for (const e of performance.getEntriesByType("resource")) {
    resources[new URL(e.name).pathname] = e.nextHopProtocol;
  }
  const result = {
    error: error,
    sent: test.sent.length,
    received: test.received.length,
    in_order: test.received.every((m, i) => m === test.sent[i]),
    websocket_url: ws.url,
    navigation: nav ? nav.nextHopProtocol : null,
    resources: resources,
  };
  $("result").textContent = JSON.stringify(result);
  $("result").dataset.done = "1";
}
)js";

// ---- the room ------------------------------------------------------------------

// Summed over workers, for /stats.
struct Stats {
  std::atomic<uint64_t> open_h2{0}, open_h1{0};
  std::atomic<uint64_t> opened_h2{0}, opened_h1{0};
  std::atomic<uint64_t> messages{0};   // received
  std::atomic<uint64_t> delivered{0};  // sends taken
  std::atomic<uint64_t> skipped{0};    // sends refused with kWouldBlock
};
Stats stats;

// The open chat WebSockets of one worker. Every WebSocket callback runs on
// its connection's loop thread, and a worker is one loop on one thread: a
// thread_local room is a room per worker, which only its loop touches.
struct Room {
  std::unordered_set<h2loop::WebSocket> peers;
  // While a broadcast walks `peers`, a peer that ends (a send may find out)
  // is erased after the walk, not under the iterator.
  bool broadcasting = false;
  std::vector<h2loop::WebSocket> gone;

  void join(const h2loop::WebSocket& ws) { peers.insert(ws); }
  void leave(const h2loop::WebSocket& ws) {
    if (broadcasting) {
      gone.push_back(ws);
    } else {
      peers.erase(ws);
    }
  }
  void broadcast(h2loop::WebSocket::Type type, std::string_view data) {
    uint64_t delivered = 0, skipped = 0;
    broadcasting = true;
    for (const h2loop::WebSocket& peer : peers) {
      // kWouldBlock: the peer holds send_bound bytes it has not taken; it
      // misses this message (nothing was queued). kClosed: it is ending,
      // and leave() is on its way.
      switch (h2loop::WebSocket(peer).send(type, data)) {
        case h2loop::Status::kOk:
          ++delivered;
          break;
        case h2loop::Status::kWouldBlock:
          ++skipped;
          break;
        default:
          break;
      }
    }
    broadcasting = false;
    for (const h2loop::WebSocket& ws : gone)
      peers.erase(ws);
    gone.clear();
    stats.delivered.fetch_add(delivered, std::memory_order_relaxed);
    stats.skipped.fetch_add(skipped, std::memory_order_relaxed);
  }
};
thread_local Room room;

std::atomic<uint64_t>& openOf(const h2loop::WebSocket& ws) {
  return ws.protocol() == "h2" ? stats.open_h2 : stats.open_h1;
}

std::string statsJson() {
  const auto n = [](const std::atomic<uint64_t>& v) {
    return std::to_string(v.load(std::memory_order_relaxed));
  };
  return "{\"open\": {\"h2\": " + n(stats.open_h2) + ", \"http/1.1\": " + n(stats.open_h1) +
         "}, \"opened\": {\"h2\": " + n(stats.opened_h2) + ", \"http/1.1\": " + n(stats.opened_h1) +
         "}, \"messages\": " + n(stats.messages) + ", \"delivered\": " + n(stats.delivered) +
         ", \"skipped\": " + n(stats.skipped) + "}\n";
}

}  // namespace

int main(int argc, char** argv) {
  std::string listen = "127.0.0.1:8443", cert, key, event_loop = "epoll";
  unsigned workers = 1;
  size_t max_message = 64 * 1024, send_bound = 64 * 1024;
  CLI::App app{"websocket_chat: a chat room on WebSockets (/chat) with its browser page (/)"};
  app.add_option("--listen", listen, "HOST:PORT (port 0: any free port)")->capture_default_str();
  app.add_option("--cert", cert, "TLS certificate chain (PEM); without --cert/--key: cleartext");
  app.add_option("--key", key, "TLS private key (PEM)");
  app.add_option("--event-loop", event_loop, "epoll or libevent")
      ->check(CLI::IsMember({"epoll", "libevent"}))
      ->capture_default_str();
  app.add_option("--workers", workers, "worker threads (a room each)")->check(CLI::Range(1u, 64u));
  app.add_option("--max-message", max_message, "longest message taken (bytes; longer: close 1009)")
      ->check(CLI::Range(size_t{125}, size_t{16} << 20))
      ->capture_default_str();
  app.add_option("--send-bound", send_bound,
                 "bytes a peer may hold unsent; then it misses messages")
      ->check(CLI::Range(size_t{1024}, size_t{16} << 20))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  h2loop::Router router;
  const auto fixed = [&router](std::string path, std::string_view type, std::string_view body) {
    router.get(std::move(path), [type, body](const h2loop::Request&, h2loop::Response res) {
      res.respond(200, {{"content-type", type}, {"cache-control", "no-store"}}, body);
    });
  };
  fixed("/", "text/html; charset=utf-8", kPage);
  fixed("/app.js", "text/javascript; charset=utf-8", kScript);
  fixed("/style.css", "text/css; charset=utf-8", kStyle);
  router.get("/stats", [](const h2loop::Request&, h2loop::Response res) {
    res.respond(200, {{"content-type", "application/json"}, {"cache-control", "no-store"}},
                statsJson());
  });
  router.metrics("/metrics");

  h2loop::WebSocketHandlers chat;
  chat.on_open = [](h2loop::WebSocket& ws) {
    (ws.protocol() == "h2" ? stats.opened_h2 : stats.opened_h1)
        .fetch_add(1, std::memory_order_relaxed);
    openOf(ws).fetch_add(1, std::memory_order_relaxed);
    room.join(ws);
  };
  chat.on_message = [](h2loop::WebSocket&, h2loop::WebSocket::Type type, std::string_view data) {
    stats.messages.fetch_add(1, std::memory_order_relaxed);
    room.broadcast(type, data);
  };
  chat.on_close = [](h2loop::WebSocket& ws, uint16_t, std::string_view) {
    openOf(ws).fetch_sub(1, std::memory_order_relaxed);
    room.leave(ws);
  };
  h2loop::WebSocketOptions ws_options;
  ws_options.max_message = max_message;
  ws_options.send_bound = send_bound;
  router.websocket("/chat", chat, ws_options);

  h2loop::ServerOptions options;
  options.listen = {listen};
  options.cert = cert;
  options.key = key;
  options.event_loop = event_loop;
  options.workers = workers;
  // Open WebSockets do not end by themselves: at SIGTERM they get this long.
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
    server.shutdown();
    server.wait();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "websocket_chat: %s\n", e.what());
    return 1;
  }
  return 0;
}
