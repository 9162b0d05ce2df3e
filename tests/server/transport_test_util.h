#pragma once

// Helpers shared by transport_test.cc and tls_test.cc: loopback socket pairs, bounded poll()
// waits (no sleeps), a self-signed certificate per process and a non-blocking OpenSSL client.

#include <openssl/types.h>
#include <poll.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "net/transport.h"

namespace h2loop::server::transport_testing {

inline constexpr int kWaitMs = 5000;  // upper bound for any single wait; never a sleep

class ScopedFd {
 public:
  explicit ScopedFd(int fd = -1) : fd_(fd) {}
  ~ScopedFd() { reset(); }
  ScopedFd(ScopedFd&& other) noexcept : fd_(other.release()) {}
  ScopedFd& operator=(ScopedFd&& other) noexcept;
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;

  [[nodiscard]] int get() const { return fd_; }
  int release();
  void reset(int fd = -1);

 private:
  int fd_;
};

// A connected TCP pair on 127.0.0.1, both ends non-blocking. Empty fds (and a recorded test
// failure) on error.
struct TcpPair {
  ScopedFd client;
  ScopedFd server;
};
TcpPair makeTcpPair();

// Closes `fd` abortively (SO_LINGER 0): the peer gets a TCP RST.
void resetAndClose(ScopedFd& fd);

// poll() one fd for `events`; true when ready (POLLERR/POLLHUP count as ready), false on timeout.
bool waitFd(int fd, short events, int timeout_ms = kWaitMs);
short pollEvents(net::Interest interest);

// Plain-socket helpers for the peer side, bounded by kWaitMs per wait.
bool sendAll(int fd, std::string_view data);
// Reads exactly n bytes unless EOF/error/timeout comes first; returns what was read.
std::string recvExactly(int fd, size_t n);

// Server-side helpers: retry a transport read on kWouldBlock (waiting for pendingInterest()).
net::IoResult readWhenReady(net::Transport& t, uint8_t* buf, size_t len);
// Reads exactly n bytes through the transport; stops early on a terminal status.
std::string readExactlyFrom(net::Transport& t, size_t n);

// A certificate generated once per test process with generateSelfSigned() into a temp dir that is
// removed at exit; plus a second, unrelated pair for mismatch tests.
struct TestCerts {
  std::filesystem::path dir;
  std::filesystem::path cert;
  std::filesystem::path key;
  std::filesystem::path other_cert;
  std::filesystem::path other_key;
};
const TestCerts& testCerts();

// A fresh private temp dir removed (recursively) on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

struct ClientOptions {
  std::vector<std::string> alpn = {"h2"};  // empty: no ALPN extension at all
  int min_version = 0;                     // 0: OpenSSL's default
  int max_version = 0;
  std::string tls12_ciphers;      // empty: default
  int security_level = -1;        // -1: default
  std::filesystem::path ca_file;  // non-empty: verify the server against it and `verify_host`
  std::string verify_host = "localhost";
};

// The client side, driven step by step on a non-blocking socket in the test's own thread.
class TestTlsClient {
 public:
  enum class Step { kDone, kWantRead, kWantWrite, kFailed };

  // Does not own fd.
  TestTlsClient(int fd, const ClientOptions& options = {});
  ~TestTlsClient();
  TestTlsClient(const TestTlsClient&) = delete;
  TestTlsClient& operator=(const TestTlsClient&) = delete;

  Step handshakeStep();
  [[nodiscard]] SSL* ssl() const { return ssl_; }
  [[nodiscard]] int fd() const { return fd_; }
  [[nodiscard]] const std::string& error() const { return error_; }
  [[nodiscard]] std::string alpn() const;

  bool writeAll(std::string_view data);
  // Reads until n bytes or a terminal condition; returns what was read.
  std::string readExactly(size_t n);
  // Reads (and discards) until the peer closes; returns the final SSL_get_error code.
  int readUntilClosed();

 private:
  std::string takeError(int ret, const char* op);

  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  int fd_;
  std::string error_;
};

struct HandshakeOutcome {
  net::HandshakeStatus server = net::HandshakeStatus::kWantRead;
  TestTlsClient::Step client = TestTlsClient::Step::kWantWrite;
  bool timed_out = false;
};

// Alternates server.handshake() and client.handshakeStep(), blocking in poll() on whichever
// side's readiness is needed, until both have finished (or only the server, when
// `wait_for_client` is false). timed_out when a wait exceeded kWaitMs.
HandshakeOutcome pumpHandshake(net::Transport& server, TestTlsClient& client,
                               bool wait_for_client = true);

// Drives only the server's handshake (the peer is a raw socket or already gone).
net::HandshakeStatus serverHandshake(net::Transport& server);

}  // namespace h2loop::server::transport_testing
