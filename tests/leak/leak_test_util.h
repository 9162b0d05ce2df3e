#pragma once

// Helpers for the in-process leak scenarios: an HTTP/2 client (nghttp2 client session over a
// loopback socket, cleartext or TLS) driven in the calling thread with bounded poll() waits, a
// subprocess runner for real clients (curl) with a deadline, the process's fd count, and a spdlog
// sink that keeps the server's log lines for assertions.

#include <openssl/types.h>
#include <spdlog/sinks/base_sink.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "net/socket_util.h"

struct nghttp2_session;

namespace h2loop::test {

// The process's open descriptors, as /metrics reports them.
using h2loop::net::countOpenFds;

// Deterministic, position-dependent bytes (corruption and reordering show as a mismatch).
std::string patternBytes(size_t n, uint32_t seed);

// ---- an HTTP/2 client ----------------------------------------------------------------------

struct H2ClientConfig {
  uint16_t port = 0;
  bool tls = false;
  // SETTINGS_INITIAL_WINDOW_SIZE (stream windows) and the connection window we announce.
  int32_t stream_window = 65535;
  int32_t connection_window = 65535;
  // 0: received data is consumed at once (nghttp2 sends WINDOW_UPDATEs as it likes). >0: a slow
  // reader: data is handed back to flow control at this rate only (WINDOW_UPDATEs follow it).
  size_t consume_bytes_per_ms = 0;
  int rcvbuf = 0;  // SO_RCVBUF before connect(); 0: the system's default
};

struct H2Stream {
  int status = 0;
  std::string body;
  bool closed = false;
  uint32_t close_error = 0;
};

class H2Client {
 public:
  enum class End { kOpen, kEof, kReset, kError };

  explicit H2Client(H2ClientConfig config);
  ~H2Client();
  H2Client(const H2Client&) = delete;
  H2Client& operator=(const H2Client&) = delete;

  // TCP connect to 127.0.0.1, TLS handshake with ALPN h2 (when configured). False (and error())
  // on failure or when `limit` passes.
  bool connect(std::chrono::milliseconds limit);
  // Submits GET `path` (with `extra` header fields); returns the stream id (> 0) or a negative
  // nghttp2 error.
  int32_t get(const std::string& path,
              const std::vector<std::pair<std::string, std::string>>& extra = {});
  // Runs the exchange until `done()` holds (true), the connection ends or `limit` passes (false;
  // end() tells which).
  bool pumpUntil(const std::function<bool()>& done, std::chrono::milliseconds limit);
  // pumpUntil(stream `id` closed).
  bool finish(int32_t id, std::chrono::milliseconds limit);
  // Pumps until the connection ends (EOF, reset or error: end() != kOpen) or `limit` passes.
  // True when it ended.
  bool waitEnd(std::chrono::milliseconds limit);
  // Closes the socket (abortive: RST). Idempotent.
  void close(bool abortive = false);

  [[nodiscard]] End end() const { return end_; }
  [[nodiscard]] const std::string& error() const { return error_; }
  [[nodiscard]] H2Stream& stream(int32_t id) { return streams_[id]; }
  [[nodiscard]] int goawayFrames() const { return goaway_frames_; }
  [[nodiscard]] int32_t lastGoawayStreamId() const { return goaway_last_stream_id_; }
  [[nodiscard]] uint64_t bodyBytes() const { return body_bytes_; }
  [[nodiscard]] int fd() const { return fd_; }

  // Called after each DATA chunk with the total body bytes received on all streams so far.
  std::function<void(uint64_t)> on_body_progress;

 private:
  struct Callbacks;  // nghttp2 trampolines (leak_test_util.cc)
  friend struct Callbacks;

  bool flushOut();
  bool readIn();
  void consumePaced();
  void fail(End end, std::string what);

  H2ClientConfig config_;
  int fd_ = -1;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  nghttp2_session* session_ = nullptr;
  std::string out_;
  End end_ = End::kOpen;
  std::string error_;
  std::map<int32_t, H2Stream> streams_;
  int goaway_frames_ = 0;
  int32_t goaway_last_stream_id_ = -1;
  uint64_t body_bytes_ = 0;
  // Slow reading: bytes received but not yet handed back to flow control, per stream.
  std::map<int32_t, size_t> unconsumed_;
  uint64_t consumed_ = 0;
  std::chrono::steady_clock::time_point pace_start_;
  bool pacing_started_ = false;
};

// ---- subprocesses --------------------------------------------------------------------------

struct ProcessResult {
  bool started = false;
  bool timed_out = false;  // killed (SIGKILL) at the deadline
  int exit_code = -1;      // valid when it exited; -1 when killed by a signal
  std::string output;      // stdout + stderr
};

// posix_spawnp(argv) with stdout/stderr to a file in `scratch`, reaped within `limit` (a pidfd
// waited on with poll(); killed at the deadline). The child inherits no descriptor of ours
// beyond 0-2 that is not close-on-exec.
ProcessResult runProcess(const std::vector<std::string>& argv, const std::filesystem::path& scratch,
                         std::chrono::milliseconds limit);

// ---- descriptors ---------------------------------------------------------------------------

// The process's open descriptors: number -> readlink() of /proc/self/fd/<n> ("socket:[123]",
// "anon_inode:[eventpoll]", "/tmp/x"). The directory stream used to read them is not listed.
// In process, the server and the test share this table.
using FdTable = std::map<int, std::string>;
FdTable openFds();

// "7:socket:[123] 8:/tmp/x ..." (every descriptor of `fds`).
std::string describeFds(const FdTable& fds);
// The process's descriptors, described (describeFds(openFds())).
std::string describeOpenFds();

// Empty when `now` equals `baseline` (same numbers, same targets). Otherwise names every
// difference: "missing: 7:socket:[1]; extra: 9:/tmp/x; changed: 5:socket:[2] -> socket:[3]".
// A number whose target changed was closed and reused meanwhile: a descriptor closed that its
// closer did not own, or one leaked into a number freed by such a close.
std::string diffFds(const FdTable& baseline, const FdTable& now);

// ---- logs ----------------------------------------------------------------------------------

// Keeps every formatted line logged through spdlog's default logger while installed.
class LogCapture {
 public:
  // Installs itself on the default logger. Call while no other thread logs (before a server
  // starts); uninstalls in the destructor, likewise.
  LogCapture();
  ~LogCapture();
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

  [[nodiscard]] std::vector<std::string> lines() const;
  // Lines containing every one of `needles`.
  [[nodiscard]] size_t count(std::initializer_list<std::string_view> needles) const;

 private:
  class Sink;
  std::shared_ptr<Sink> sink_;
};

}  // namespace h2loop::test
