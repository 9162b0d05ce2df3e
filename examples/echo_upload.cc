// echo_upload: request bodies, two ways.
//
// POST /echo streams the body back while it arrives: each chunk from
// onBody() goes straight to write() (in slices). When write() says
// kWouldBlock (the client reads slower than it sends), the rest of the
// chunk is kept and the body is paused: the server stops returning
// flow-control window, so the client stops sending. onWritable() writes
// what was kept and resumes the body. At the end of the body the response
// ends with a trailer, x-echo-bytes.
//
// POST /collect gathers the whole body (collectBody, at most 1 MiB; above
// that the library answers 413) and answers its length and first 16 bytes
// in hex.
//
//   curl --http2-prior-knowledge --data-binary @file http://127.0.0.1:8443/echo

#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>
#include <string>

#include "h2loop/http.h"
#include "h2loop/server.h"

namespace {

// One /echo exchange. Owned by the callbacks registered on its response,
// which the library drops when the exchange ends.
struct Echo {
  // Writes go in slices of a quarter of the stream's write bound (64 KiB by
  // default): onWritable() comes when the queue is below a quarter, so
  // the next slices fit. (A chunk may be as large as a whole flow-control
  // window: one write of it would be refused until the queue is empty.)
  static constexpr size_t kSlice = 16 * 1024;

  h2loop::Response res;
  std::string pending;  // what write() refused, written on onWritable()
  uint64_t bytes = 0;

  // False when write() refused the rest, which is then kept in `pending`.
  bool send(std::string_view data) {
    while (!data.empty()) {
      const std::string_view slice = data.substr(0, kSlice);
      if (res.write(slice) == h2loop::Status::kWouldBlock) {
        pending.assign(data);
        return false;
      }
      data.remove_prefix(slice.size());
    }
    return true;
  }
};

void echo(const h2loop::Request&, h2loop::Response res) {
  res.start(200, {{"content-type", "application/octet-stream"}});
  auto e = std::make_shared<Echo>(Echo{res, {}, 0});
  res.onBody(
      [e](std::string_view chunk) {
        e->bytes += chunk.size();
        if (!e->send(chunk)) e->res.pauseBody();  // no more chunks until onWritable()
      },
      [e] {
        e->res.end({{"x-echo-bytes", std::to_string(e->bytes)}});
      });
  res.onWritable([e] {
    const std::string rest = std::move(e->pending);
    e->pending.clear();
    if (!rest.empty() && e->send(rest)) {
      e->res.resumeBody();  // delivers what came meanwhile, then the end
    }
  });
}

void collect(const h2loop::Request&, h2loop::Response res) {
  res.collectBody(1 << 20, [res](std::string body) mutable {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out = "length " + std::to_string(body.size()) + "\nfirst16 ";
    for (size_t i = 0; i < body.size() && i < 16; ++i) {
      out += kHex[static_cast<unsigned char>(body[i]) >> 4];
      out += kHex[static_cast<unsigned char>(body[i]) & 15];
    }
    out += '\n';
    res.respond(200, {{"content-type", "text/plain"}}, out);
  });
}

}  // namespace

int main(int argc, char** argv) {
  std::string listen = "127.0.0.1:8443", cert, key, event_loop = "epoll";
  CLI::App app{"echo_upload: POST /echo streams the body back, POST /collect sums it up"};
  app.add_option("--listen", listen, "HOST:PORT (port 0: any free port)")->capture_default_str();
  app.add_option("--cert", cert, "TLS certificate chain (PEM); without --cert/--key: h2c");
  app.add_option("--key", key, "TLS private key (PEM)");
  app.add_option("--event-loop", event_loop, "epoll or libevent")
      ->check(CLI::IsMember({"epoll", "libevent"}))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  h2loop::Router router;
  router.post("/echo", echo);
  router.post("/collect", collect);

  h2loop::ServerOptions options;
  options.listen = {listen};
  options.cert = cert;
  options.key = key;
  options.event_loop = event_loop;

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
    std::fprintf(stderr, "echo_upload: %s\n", e.what());
    return 1;
  }
  return 0;
}
