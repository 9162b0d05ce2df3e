#include "server/transport_test_util.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <optional>
#include <stdexcept>

#include "net/self_signed.h"
#include "net/socket_util.h"

namespace h2loop::server::transport_testing {

ScopedFd& ScopedFd::operator=(ScopedFd&& other) noexcept {
  if (this != &other) reset(other.release());
  return *this;
}

int ScopedFd::release() {
  const int fd = fd_;
  fd_ = -1;
  return fd;
}

void ScopedFd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

TcpPair makeTcpPair() {
  TcpPair pair;
  net::ListenerResult listener = net::makeListener("127.0.0.1", 0, false, 16);
  if (!listener.ok()) {
    ADD_FAILURE() << listener.error;
    return pair;
  }
  ScopedFd lfd(listener.fd);
  const std::optional<uint16_t> port = net::localPort(lfd.get());
  if (!port) {
    ADD_FAILURE() << "localPort failed";
    return pair;
  }
  ScopedFd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(*port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  // Blocking connect: on loopback it completes as soon as the kernel queues the connection.
  if (client.get() < 0 ||
      ::connect(client.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    ADD_FAILURE() << "connect: " << net::errnoString(errno);
    return pair;
  }
  if (!waitFd(lfd.get(), POLLIN)) {
    ADD_FAILURE() << "accept timed out";
    return pair;
  }
  ScopedFd server(::accept4(lfd.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
  if (server.get() < 0 || !net::setNonBlocking(client.get())) {
    ADD_FAILURE() << "accept/setNonBlocking: " << net::errnoString(errno);
    return pair;
  }
  pair.client = std::move(client);
  pair.server = std::move(server);
  return pair;
}

void resetAndClose(ScopedFd& fd) {
  EXPECT_TRUE(net::setLingerZero(fd.get()));
  fd.reset();
}

bool waitFd(int fd, short events, int timeout_ms) {
  pollfd p{fd, events, 0};
  for (;;) {
    const int r = ::poll(&p, 1, timeout_ms);
    if (r < 0 && errno == EINTR) continue;
    return r > 0;
  }
}

short pollEvents(net::Interest interest) {
  short ev = 0;
  if (net::hasInterest(interest, net::Interest::kRead)) ev |= POLLIN;
  if (net::hasInterest(interest, net::Interest::kWrite)) ev |= POLLOUT;
  return ev != 0 ? ev : POLLIN;
}

bool sendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN && waitFd(fd, POLLOUT)) continue;
    return false;
  }
  return true;
}

std::string recvExactly(int fd, size_t n) {
  std::string out;
  char buf[16384];
  while (out.size() < n) {
    const ssize_t r = ::recv(fd, buf, std::min(sizeof buf, n - out.size()), 0);
    if (r > 0) {
      out.append(buf, static_cast<size_t>(r));
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && errno == EAGAIN && waitFd(fd, POLLIN)) continue;
    break;
  }
  return out;
}

net::IoResult readWhenReady(net::Transport& t, uint8_t* buf, size_t len) {
  for (;;) {
    net::IoResult r = t.read(buf, len);
    if (r.status != net::IoStatus::kWouldBlock) return r;
    if (!waitFd(t.fd(), pollEvents(r.want))) return r;
  }
}

std::string readExactlyFrom(net::Transport& t, size_t n) {
  std::string out;
  uint8_t buf[16384];
  while (out.size() < n) {
    net::IoResult r = readWhenReady(t, buf, std::min(sizeof buf, n - out.size()));
    if (r.status != net::IoStatus::kOk) break;
    out.append(reinterpret_cast<const char*>(buf), r.bytes);
  }
  return out;
}

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "h2loop-tls-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) {
    throw std::runtime_error("mkdtemp: " + net::errnoString(errno));
  }
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

const TestCerts& testCerts() {
  static TempDir dir;
  static const TestCerts certs = [] {
    TestCerts c;
    c.dir = dir.path();
    c.cert = dir.path() / "cert.pem";
    c.key = dir.path() / "key.pem";
    c.other_cert = dir.path() / "other_cert.pem";
    c.other_key = dir.path() / "other_key.pem";
    net::generateSelfSigned(c.cert, c.key);
    net::generateSelfSigned(c.other_cert, c.other_key, "other.test");
    return c;
  }();
  return certs;
}

// ---- TestTlsClient ---------------------------------------------------------------------------

TestTlsClient::TestTlsClient(int fd, const ClientOptions& options) : fd_(fd) {
  ctx_ = SSL_CTX_new(TLS_client_method());
  if (ctx_ == nullptr) throw std::runtime_error("client SSL_CTX_new failed");
  if (options.security_level >= 0) SSL_CTX_set_security_level(ctx_, options.security_level);
  if (options.min_version != 0) SSL_CTX_set_min_proto_version(ctx_, options.min_version);
  if (options.max_version != 0) SSL_CTX_set_max_proto_version(ctx_, options.max_version);
  if (!options.tls12_ciphers.empty() &&
      SSL_CTX_set_cipher_list(ctx_, options.tls12_ciphers.c_str()) != 1) {
    throw std::runtime_error("client cipher list rejected: " + options.tls12_ciphers);
  }
  if (!options.alpn.empty()) {
    std::string wire;
    for (const std::string& p : options.alpn) {
      wire.push_back(static_cast<char>(p.size()));
      wire += p;
    }
    // Note: returns 0 on success.
    if (SSL_CTX_set_alpn_protos(ctx_, reinterpret_cast<const unsigned char*>(wire.data()),
                                static_cast<unsigned>(wire.size())) != 0) {
      throw std::runtime_error("client ALPN rejected");
    }
  }
  if (!options.ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx_, options.ca_file.c_str(), nullptr) != 1) {
      throw std::runtime_error("client cannot load CA " + options.ca_file.string());
    }
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
  }
  ssl_ = SSL_new(ctx_);
  if (ssl_ == nullptr || SSL_set_fd(ssl_, fd) != 1) {
    throw std::runtime_error("client SSL_new/SSL_set_fd failed");
  }
  SSL_set_tlsext_host_name(ssl_, "localhost");
  if (!options.ca_file.empty()) SSL_set1_host(ssl_, options.verify_host.c_str());
  SSL_set_connect_state(ssl_);
}

TestTlsClient::~TestTlsClient() {
  SSL_free(ssl_);
  SSL_CTX_free(ctx_);
}

std::string TestTlsClient::takeError(int ret, const char* op) {
  const int code = SSL_get_error(ssl_, ret);
  std::string msg = std::string(op) + ": SSL_get_error=" + std::to_string(code);
  unsigned long e = 0;
  while ((e = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    msg += std::string(" | ") + buf;
  }
  if (code == SSL_ERROR_SYSCALL) msg += " | errno " + net::errnoString(errno);
  return msg;
}

TestTlsClient::Step TestTlsClient::handshakeStep() {
  ERR_clear_error();
  const int ret = SSL_do_handshake(ssl_);
  if (ret == 1) return Step::kDone;
  const int code = SSL_get_error(ssl_, ret);
  if (code == SSL_ERROR_WANT_READ) return Step::kWantRead;
  if (code == SSL_ERROR_WANT_WRITE) return Step::kWantWrite;
  error_ = takeError(ret, "client handshake");
  return Step::kFailed;
}

std::string TestTlsClient::alpn() const {
  const unsigned char* p = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(ssl_, &p, &len);
  return std::string(reinterpret_cast<const char*>(p), len);
}

bool TestTlsClient::writeAll(std::string_view data) {
  while (!data.empty()) {
    ERR_clear_error();
    size_t n = 0;
    const int ret = SSL_write_ex(ssl_, data.data(), data.size(), &n);
    if (ret == 1) {
      data.remove_prefix(n);
      continue;
    }
    const int code = SSL_get_error(ssl_, ret);
    if (code == SSL_ERROR_WANT_WRITE && waitFd(fd_, POLLOUT)) continue;
    if (code == SSL_ERROR_WANT_READ && waitFd(fd_, POLLIN)) continue;
    error_ = takeError(ret, "client write");
    return false;
  }
  return true;
}

std::string TestTlsClient::readExactly(size_t n) {
  std::string out;
  char buf[16384];
  while (out.size() < n) {
    ERR_clear_error();
    size_t got = 0;
    const int ret = SSL_read_ex(ssl_, buf, std::min(sizeof buf, n - out.size()), &got);
    if (ret == 1) {
      out.append(buf, got);
      continue;
    }
    const int code = SSL_get_error(ssl_, ret);
    if (code == SSL_ERROR_WANT_READ && waitFd(fd_, POLLIN)) continue;
    if (code == SSL_ERROR_WANT_WRITE && waitFd(fd_, POLLOUT)) continue;
    error_ = takeError(ret, "client read");
    break;
  }
  return out;
}

int TestTlsClient::readUntilClosed() {
  char buf[16384];
  for (;;) {
    ERR_clear_error();
    size_t got = 0;
    const int ret = SSL_read_ex(ssl_, buf, sizeof buf, &got);
    if (ret == 1) continue;
    const int code = SSL_get_error(ssl_, ret);
    if (code == SSL_ERROR_WANT_READ && waitFd(fd_, POLLIN)) continue;
    if (code == SSL_ERROR_WANT_WRITE && waitFd(fd_, POLLOUT)) continue;
    ERR_clear_error();
    return code;
  }
}

HandshakeOutcome pumpHandshake(net::Transport& server, TestTlsClient& client,
                               bool wait_for_client) {
  HandshakeOutcome out;
  bool server_done = false;
  bool client_done = false;
  for (int round = 0; round < 1000; ++round) {
    if (!server_done) {
      out.server = server.handshake();
      server_done =
          out.server == net::HandshakeStatus::kDone || out.server == net::HandshakeStatus::kFailed;
    }
    if (!client_done) {
      out.client = client.handshakeStep();
      client_done =
          out.client == TestTlsClient::Step::kDone || out.client == TestTlsClient::Step::kFailed;
    }
    if (server_done && (client_done || !wait_for_client)) return out;
    pollfd fds[2];
    nfds_t n = 0;
    if (!server_done) {
      fds[n++] = pollfd{
          server.fd(),
          static_cast<short>(out.server == net::HandshakeStatus::kWantWrite ? POLLOUT : POLLIN), 0};
    }
    if (!client_done) {
      fds[n++] = pollfd{
          client.fd(),
          static_cast<short>(out.client == TestTlsClient::Step::kWantWrite ? POLLOUT : POLLIN), 0};
    }
    int r = 0;
    do {
      r = ::poll(fds, n, kWaitMs);
    } while (r < 0 && errno == EINTR);
    if (r <= 0) {
      out.timed_out = true;
      return out;
    }
  }
  out.timed_out = true;
  return out;
}

net::HandshakeStatus serverHandshake(net::Transport& server) {
  for (;;) {
    const net::HandshakeStatus s = server.handshake();
    if (s == net::HandshakeStatus::kDone || s == net::HandshakeStatus::kFailed) return s;
    if (!waitFd(server.fd(), s == net::HandshakeStatus::kWantWrite ? POLLOUT : POLLIN)) return s;
  }
}

}  // namespace h2loop::server::transport_testing
