// ws_echo_client: a WebSocket echo load generator (RFC 6455 over HTTP/1.1,
// cleartext or TLS), for bench/run.sh's ws-echo workloads.
//
// N connections, each keeping W messages of S bytes in flight: every echo
// that comes back is checked (length, and the sequence number it carries:
// echoes come back in order on a connection) and answered with the next
// message, until --messages echoes in all or --duration seconds. Frames are
// built and parsed by wslay (Debian libwslay-dev), the only WebSocket code
// here is the opening handshake; one thread, one epoll loop, one write and
// one read call per connection per wake-up (frames are gathered in a buffer,
// the input read in 256 KiB bites).
//
//   ws_echo_client --url ws://127.0.0.1:8443/ws -c 32 -w 16 -s 1024 -n 1000000
//   ws_echo_client --url wss://127.0.0.1:8443/ws --duration 10
//
// Prints a summary and one machine-readable line:
//   result messages=N secs=T msgps=R mibps=B lost=L errors=E
// (mibps: echoed payload, one direction; lost: echoes that never came while
// a later one did, each replaced by a new message; errors: mangled echoes,
// failed connections, or no echo for --stall-timeout seconds while some were
// due). Exit status 1 when any message was lost or any error.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <wslay/wslay.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string host = "127.0.0.1";
  std::string port;
  std::string path = "/";
  bool tls = false;
  unsigned connections = 32;
  unsigned window = 16;
  size_t size = 1024;
  uint64_t messages = 1'000'000;
  double duration = 0;  // seconds; 0: until `messages`
  double stall = 10;    // seconds without an echo while some are due: give up
};

struct Totals {
  uint64_t target = 0;  // echoes wanted in all
  uint64_t sent = 0;    // messages queued so far (all connections)
  uint64_t echoed = 0;
  uint64_t lost = 0;    // echoes that never came (a later one did)
  uint64_t errors = 0;  // mangled echoes, failed connections, a stall
  bool stop = false;    // the duration ran out: queue nothing more
};

std::string base64(const unsigned char* data, size_t n) {
  std::string out(4 * ((n + 2) / 3) + 1, '\0');
  const int len =
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, static_cast<int>(n));
  out.resize(static_cast<size_t>(len));
  return out;
}

// Sec-WebSocket-Accept for a key (RFC 6455 section 4.2.2).
std::string acceptFor(const std::string& key) {
  const std::string in = key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  EVP_Digest(in.data(), in.size(), md, &md_len, EVP_sha1(), nullptr);
  return base64(md, md_len);
}

class Connection {
 public:
  Connection(const Options& o, Totals& totals, SSL_CTX* ssl_ctx, std::mt19937_64& rng)
      : o_(o), totals_(totals), rng_(rng) {
    open(ssl_ctx);
    handshake();
    wslay_event_callbacks cb{};
    cb.recv_callback = [](wslay_event_context_ptr, uint8_t* buf, size_t len, int, void* self) {
      return static_cast<Connection*>(self)->feed(buf, len);
    };
    cb.send_callback = [](wslay_event_context_ptr, const uint8_t* data, size_t len, int,
                          void* self) { return static_cast<Connection*>(self)->gather(data, len); };
    cb.genmask_callback = [](wslay_event_context_ptr, uint8_t* buf, size_t len, void* self) {
      static_cast<Connection*>(self)->mask(buf, len);
      return 0;
    };
    cb.on_msg_recv_callback = [](wslay_event_context_ptr, const wslay_event_on_msg_recv_arg* arg,
                                 void* self) { static_cast<Connection*>(self)->echo(*arg); };
    if (wslay_event_context_client_init(&ctx_, &cb, this) != 0)
      throw std::runtime_error("wslay_event_context_client_init failed");
    const int flags = fcntl(fd_, F_GETFL);
    fcntl(fd_, F_SETFL, flags | O_NONBLOCK);
    payload_.assign(o_.size, 'x');
  }
  ~Connection() {
    if (ctx_) wslay_event_context_free(ctx_);
    if (ssl_) SSL_free(ssl_);
    if (fd_ >= 0) ::close(fd_);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  [[nodiscard]] int fd() const { return fd_; }
  [[nodiscard]] bool failed() const { return failed_; }
  [[nodiscard]] bool wantsOutput() const { return out_pos_ < out_.size(); }

  // Queues up to the window's worth of messages.
  void start() {
    for (unsigned i = 0; i < o_.window; ++i)
      queueNext();
    pump(false);
  }

  // One wake-up: read what there is, answer, write what there is.
  void pump(bool readable) {
    if (failed_) return;
    if (readable && !readInput()) return fail("read");
    if (wslay_event_send(ctx_) != 0) return fail("wslay_event_send");
    if (!flush()) return fail("write");
  }

  // Politely at the end: a close frame, written if the socket takes it.
  void finish() {
    if (failed_) return;
    wslay_event_queue_close(ctx_, 1000, nullptr, 0);
    wslay_event_send(ctx_);
    flush();
  }

 private:
  void open(SSL_CTX* ssl_ctx) {
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (getaddrinfo(o_.host.c_str(), o_.port.c_str(), &hints, &res) != 0 || !res)
      throw std::runtime_error("cannot resolve " + o_.host);
    fd_ = ::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int rc = fd_ < 0 ? -1 : ::connect(fd_, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    if (rc != 0) throw std::runtime_error(std::string("connect: ") + std::strerror(errno));
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    timeval tv{10, 0};  // the blocking handshake, bounded
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (ssl_ctx) {
      ssl_ = SSL_new(ssl_ctx);
      SSL_set_fd(ssl_, fd_);
      SSL_set_tlsext_host_name(ssl_, "localhost");
      SSL_set_mode(ssl_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
      if (SSL_connect(ssl_) != 1) throw std::runtime_error("TLS handshake failed");
      const unsigned char* alpn = nullptr;
      unsigned alpn_len = 0;
      SSL_get0_alpn_selected(ssl_, &alpn, &alpn_len);
      if (alpn_len && std::string_view(reinterpret_cast<const char*>(alpn), alpn_len) != "http/1.1")
        throw std::runtime_error("the server chose ALPN " +
                                 std::string(reinterpret_cast<const char*>(alpn), alpn_len));
    }
  }

  // Blocking, before the measured phase.
  void handshake() {
    unsigned char nonce[16];
    RAND_bytes(nonce, sizeof nonce);
    const std::string key = base64(nonce, sizeof nonce);
    const std::string req = "GET " + o_.path + " HTTP/1.1\r\nHost: " + o_.host + ":" + o_.port +
                            "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                            "Sec-WebSocket-Key: " +
                            key + "\r\nSec-WebSocket-Version: 13\r\n\r\n";
    for (size_t off = 0; off < req.size();) {
      const ssize_t n = rawWrite(req.data() + off, req.size() - off);
      if (n <= 0) throw std::runtime_error("handshake: write failed");
      off += static_cast<size_t>(n);
    }
    std::string head;
    size_t end = std::string::npos;
    while ((end = head.find("\r\n\r\n")) == std::string::npos) {
      char buf[4096];
      const ssize_t n = rawRead(buf, sizeof buf);
      if (n <= 0) throw std::runtime_error("handshake: no answer");
      head.append(buf, static_cast<size_t>(n));
      if (head.size() > 65536) throw std::runtime_error("handshake: answer too long");
    }
    in_.assign(head.begin() + static_cast<std::ptrdiff_t>(end + 4), head.end());
    head.resize(end + 2);
    if (head.compare(0, 13, "HTTP/1.1 101 ") != 0)
      throw std::runtime_error("handshake: " + head.substr(0, head.find('\r')));
    std::string lower = head;
    for (char& c : lower)
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    const size_t at = lower.find("\r\nsec-websocket-accept:");
    if (at == std::string::npos) throw std::runtime_error("handshake: no Sec-WebSocket-Accept");
    size_t v = at + 23;
    while (v < head.size() && head[v] == ' ')
      ++v;
    const std::string accept = head.substr(v, head.find('\r', v) - v);
    if (accept != acceptFor(key)) throw std::runtime_error("handshake: wrong Sec-WebSocket-Accept");
  }

  ssize_t rawRead(void* buf, size_t n) {
    if (ssl_) {
      size_t got = 0;
      const int rc = SSL_read_ex(ssl_, buf, n, &got);
      if (rc == 1) return static_cast<ssize_t>(got);
      const int err = SSL_get_error(ssl_, rc);
      if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
        errno = EAGAIN;
        return -1;
      }
      if (err == SSL_ERROR_ZERO_RETURN) return 0;
      errno = EIO;
      return -1;
    }
    return ::recv(fd_, buf, n, 0);
  }

  ssize_t rawWrite(const void* buf, size_t n) {
    if (ssl_) {
      size_t put = 0;
      const int rc = SSL_write_ex(ssl_, buf, n, &put);
      if (rc == 1) return static_cast<ssize_t>(put);
      const int err = SSL_get_error(ssl_, rc);
      if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
        errno = EAGAIN;
        return -1;
      }
      errno = EIO;
      return -1;
    }
    return ::send(fd_, buf, n, MSG_NOSIGNAL);
  }

  // Reads until the socket has no more, handing every bite to wslay.
  bool readInput() {
    for (;;) {
      if (in_pos_ == in_.size()) {
        in_.resize(kReadBite);
        in_pos_ = 0;
        const ssize_t n = rawRead(in_.data(), in_.size());
        if (n < 0) {
          in_.clear();
          return errno == EAGAIN || errno == EWOULDBLOCK;
        }
        if (n == 0) {
          in_.clear();
          return false;  // the server closed
        }
        in_.resize(static_cast<size_t>(n));
      }
      if (wslay_event_recv(ctx_) != 0 || failed_) return false;
      if (!wslay_event_get_read_enabled(ctx_)) return false;  // a close came
    }
  }

  // wslay's recv callback: from what readInput() read, never the socket.
  ssize_t feed(uint8_t* buf, size_t len) {
    const size_t n = std::min(len, in_.size() - in_pos_);
    if (n == 0) {
      wslay_event_set_error(ctx_, WSLAY_ERR_WOULDBLOCK);
      return -1;
    }
    std::memcpy(buf, in_.data() + in_pos_, n);
    in_pos_ += n;
    return static_cast<ssize_t>(n);
  }

  // wslay's send callback: gathered, written by flush().
  ssize_t gather(const uint8_t* data, size_t len) {
    if (out_.size() - out_pos_ >= kOutputCap) {
      wslay_event_set_error(ctx_, WSLAY_ERR_WOULDBLOCK);
      return -1;
    }
    if (out_pos_ == out_.size()) {
      out_.clear();
      out_pos_ = 0;
    }
    out_.append(reinterpret_cast<const char*>(data), len);
    return static_cast<ssize_t>(len);
  }

  bool flush() {
    while (out_pos_ < out_.size()) {
      const ssize_t n = rawWrite(out_.data() + out_pos_, out_.size() - out_pos_);
      if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK;
      out_pos_ += static_cast<size_t>(n);
    }
    return true;
  }

  void mask(uint8_t* buf, size_t len) {
    for (size_t i = 0; i < len; i += 8) {
      const uint64_t r = rng_();
      std::memcpy(buf + i, &r, std::min<size_t>(8, len - i));
    }
  }

  void queueNext() {
    if (totals_.stop || totals_.sent >= totals_.target) return;
    ++totals_.sent;
    const uint64_t seq = next_send_++;
    std::memcpy(payload_.data(), &seq, std::min(sizeof seq, payload_.size()));
    wslay_event_msg msg{WSLAY_BINARY_FRAME, reinterpret_cast<const uint8_t*>(payload_.data()),
                        payload_.size()};
    if (wslay_event_queue_msg(ctx_, &msg) != 0) fail("wslay_event_queue_msg");
  }

  void echo(const wslay_event_on_msg_recv_arg& arg) {
    if (arg.opcode == WSLAY_CONNECTION_CLOSE) return fail("the server closed the WebSocket");
    if (arg.opcode != WSLAY_BINARY_FRAME) return;  // pong, or something unexpected
    uint64_t seq = next_echo_;
    if (o_.size >= sizeof seq && arg.msg_length >= sizeof seq)
      std::memcpy(&seq, arg.msg, sizeof seq);
    if (arg.msg_length != o_.size || seq < next_echo_ || seq >= next_send_) {
      report("a mangled echo", seq, arg.msg_length);
      ++totals_.errors;
    } else if (seq > next_echo_) {
      // Echoes of next_echo_ .. seq-1 never came: counted, and replaced so
      // that the window stays full.
      report("lost echoes before this one", seq, arg.msg_length);
      const uint64_t gap = seq - next_echo_;
      totals_.lost += gap;
      next_echo_ = seq;
      for (uint64_t i = 0; i < gap; ++i)
        queueNext();
    }
    ++next_echo_;
    ++totals_.echoed;
    queueNext();
  }

  void report(const char* what, uint64_t seq, size_t len) {
    if (reported_++ < 3) {
      std::fprintf(stderr,
                   "ws_echo_client: connection %d: %s: expected sequence %llu, got %llu "
                   "(%zu bytes)\n",
                   fd_, what, static_cast<unsigned long long>(next_echo_),
                   static_cast<unsigned long long>(seq), len);
    }
  }

  void fail(const char* what) {
    if (!failed_) {
      std::fprintf(stderr, "ws_echo_client: connection %d: %s\n", fd_, what);
      ++totals_.errors;
    }
    failed_ = true;
  }

  static constexpr size_t kReadBite = 256 * 1024;
  static constexpr size_t kOutputCap = 256 * 1024;

  const Options& o_;
  Totals& totals_;
  std::mt19937_64& rng_;
  int fd_ = -1;
  SSL* ssl_ = nullptr;
  wslay_event_context_ptr ctx_ = nullptr;
  std::string payload_;
  std::string in_;
  size_t in_pos_ = 0;
  std::string out_;
  size_t out_pos_ = 0;
  uint64_t next_send_ = 0;
  uint64_t next_echo_ = 0;
  unsigned reported_ = 0;
  bool failed_ = false;
};

bool parseUrl(const std::string& url, Options& o) {
  std::string rest;
  if (url.rfind("ws://", 0) == 0) {
    rest = url.substr(5);
  } else if (url.rfind("wss://", 0) == 0) {
    rest = url.substr(6);
    o.tls = true;
  } else {
    return false;
  }
  const size_t slash = rest.find('/');
  o.path = slash == std::string::npos ? "/" : rest.substr(slash);
  const std::string hostport = rest.substr(0, slash);
  const size_t colon = hostport.rfind(':');
  if (colon == std::string::npos) {
    o.host = hostport;
    o.port = o.tls ? "443" : "80";
  } else {
    o.host = hostport.substr(0, colon);
    o.port = hostport.substr(colon + 1);
  }
  return !o.host.empty() && !o.port.empty();
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  std::string url;
  CLI::App app{"ws_echo_client: WebSocket echo load over HTTP/1.1 (ws:// or wss://)"};
  app.add_option("--url", url, "ws://HOST:PORT/PATH or wss://HOST:PORT/PATH")->required();
  app.add_option("-c,--connections", o.connections, "connections")
      ->check(CLI::Range(1u, 10000u))
      ->capture_default_str();
  app.add_option("-w,--window", o.window, "messages in flight per connection")
      ->check(CLI::Range(1u, 4096u))
      ->capture_default_str();
  app.add_option("-s,--size", o.size, "message payload bytes")
      ->check(CLI::Range(size_t{0}, size_t{16} << 20))
      ->capture_default_str();
  app.add_option("-n,--messages", o.messages, "echoes to wait for in all")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 40))
      ->capture_default_str();
  app.add_option("-d,--duration", o.duration, "seconds to run instead (0: until --messages)")
      ->check(CLI::Range(0.0, 3600.0));
  app.add_option("--stall-timeout", o.stall, "seconds without any echo due: give up")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (!parseUrl(url, o)) {
    std::fprintf(stderr, "ws_echo_client: bad --url %s\n", url.c_str());
    return 2;
  }

  SSL_CTX* ssl_ctx = nullptr;
  if (o.tls) {
    ssl_ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(ssl_ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ssl_ctx, SSL_VERIFY_NONE, nullptr);  // a bench's self-signed certificate
    static const unsigned char kAlpn[] = "\x08http/1.1";
    SSL_CTX_set_alpn_protos(ssl_ctx, kAlpn, sizeof kAlpn - 1);
  }

  Totals totals;
  totals.target = o.duration > 0 ? UINT64_MAX : o.messages;
  std::mt19937_64 rng(std::random_device{}());
  std::vector<std::unique_ptr<Connection>> conns;
  const int ep = epoll_create1(EPOLL_CLOEXEC);
  try {
    for (unsigned i = 0; i < o.connections; ++i) {
      conns.push_back(std::make_unique<Connection>(o, totals, ssl_ctx, rng));
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.ptr = conns.back().get();
      epoll_ctl(ep, EPOLL_CTL_ADD, conns.back()->fd(), &ev);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ws_echo_client: %s\n", e.what());
    return 1;
  }

  const auto t0 = Clock::now();
  const auto deadline = o.duration > 0 ? t0 + std::chrono::duration_cast<Clock::duration>(
                                                  std::chrono::duration<double>(o.duration))
                                       : Clock::time_point::max();
  for (auto& c : conns)
    c->start();
  std::vector<epoll_event> events(conns.size());
  std::vector<bool> watching_out(conns.size(), false);
  uint64_t want = totals.target;
  size_t failed = 0;
  uint64_t last_echoed = 0;
  auto last_progress = t0;
  while (totals.echoed + totals.lost < want && failed < conns.size()) {
    // EPOLLOUT only while a connection has output the socket did not take.
    for (size_t i = 0; i < conns.size(); ++i) {
      const bool out = conns[i]->wantsOutput();
      if (out != watching_out[i]) {
        epoll_event ev{};
        ev.events = EPOLLIN | (out ? EPOLLOUT : 0u);
        ev.data.ptr = conns[i].get();
        epoll_ctl(ep, EPOLL_CTL_MOD, conns[i]->fd(), &ev);
        watching_out[i] = out;
      }
    }
    const int n = epoll_wait(ep, events.data(), static_cast<int>(events.size()), 100);
    for (int i = 0; i < n; ++i) {
      auto* c = static_cast<Connection*>(events[i].data.ptr);
      c->pump((events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0);
    }
    failed = 0;
    for (auto& c : conns)
      failed += c->failed() ? 1 : 0;
    if (!totals.stop && Clock::now() >= deadline) {
      // Time is up: send nothing more, wait for what is in flight.
      totals.stop = true;
      want = totals.sent;
    }
    const auto now = Clock::now();
    if (totals.echoed != last_echoed) {
      last_echoed = totals.echoed;
      last_progress = now;
    } else if (now - last_progress > std::chrono::duration<double>(o.stall)) {
      std::fprintf(stderr,
                   "ws_echo_client: stalled: %llu messages sent, %llu echoed, %llu lost, none for "
                   "%g s\n",
                   static_cast<unsigned long long>(totals.sent),
                   static_cast<unsigned long long>(totals.echoed),
                   static_cast<unsigned long long>(totals.lost), o.stall);
      ++totals.errors;
      break;
    }
  }
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  for (auto& c : conns)
    c->finish();
  conns.clear();
  ::close(ep);
  if (ssl_ctx) SSL_CTX_free(ssl_ctx);

  const double msgps = static_cast<double>(totals.echoed) / secs;
  const double mibps = msgps * static_cast<double>(o.size) / (1024.0 * 1024.0);
  std::printf("ws_echo_client: %u connections x %u in flight, %zu-byte messages, %s\n",
              o.connections, o.window, o.size, o.tls ? "TLS" : "cleartext");
  std::printf(
      "echoed %llu messages in %.3f s: %.0f msg/s, %.1f MiB/s each way; %llu lost, %llu errors\n",
      static_cast<unsigned long long>(totals.echoed), secs, msgps, mibps,
      static_cast<unsigned long long>(totals.lost), static_cast<unsigned long long>(totals.errors));
  std::printf("result messages=%llu secs=%.6f msgps=%.1f mibps=%.2f lost=%llu errors=%llu\n",
              static_cast<unsigned long long>(totals.echoed), secs, msgps, mibps,
              static_cast<unsigned long long>(totals.lost),
              static_cast<unsigned long long>(totals.errors));
  return totals.errors == 0 && totals.lost == 0 ? 0 : 1;
}
