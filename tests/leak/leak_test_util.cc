#include "leak/leak_test_util.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <sstream>

extern char** environ;

namespace h2loop::test {

using Clock = std::chrono::steady_clock;

namespace {

// A reset server makes write() raise SIGPIPE; the tests want the error instead.
void ignoreSigpipe() {
  static std::once_flag once;
  std::call_once(once, [] { ::signal(SIGPIPE, SIG_IGN); });
}

int remainingMs(Clock::time_point deadline) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(left, 0, 60'000));
}

std::string sslErrorText() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

}  // namespace

std::string patternBytes(size_t n, uint32_t seed) {
  std::string s(n, '\0');
  uint32_t x = seed != 0 ? seed : 0x9e3779b9u;
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    s[i] = static_cast<char>(x >> 24);
  }
  return s;
}

// ---- H2Client --------------------------------------------------------------------------------

struct H2Client::Callbacks {
  static H2Client& self(void* ud) { return *static_cast<H2Client*>(ud); }

  static int onHeader(nghttp2_session*, const nghttp2_frame* f, const uint8_t* name, size_t nl,
                      const uint8_t* value, size_t vl, uint8_t, void* ud) {
    if (std::string_view(reinterpret_cast<const char*>(name), nl) == ":status") {
      self(ud).streams_[f->hd.stream_id].status =
          std::atoi(std::string(reinterpret_cast<const char*>(value), vl).c_str());
    }
    return 0;
  }
  static int onFrameRecv(nghttp2_session*, const nghttp2_frame* f, void* ud) {
    if (f->hd.type == NGHTTP2_GOAWAY) {
      ++self(ud).goaway_frames_;
      self(ud).goaway_last_stream_id_ = f->goaway.last_stream_id;
    }
    return 0;
  }
  static int onData(nghttp2_session*, uint8_t, int32_t id, const uint8_t* data, size_t len,
                    void* ud) {
    H2Client& c = self(ud);
    c.streams_[id].body.append(reinterpret_cast<const char*>(data), len);
    c.body_bytes_ += len;
    if (c.config_.consume_bytes_per_ms > 0) c.unconsumed_[id] += len;
    if (c.on_body_progress) c.on_body_progress(c.body_bytes_);
    return 0;
  }
  static int onClose(nghttp2_session*, int32_t id, uint32_t code, void* ud) {
    H2Stream& s = self(ud).streams_[id];
    s.closed = true;
    s.close_error = code;
    return 0;
  }
};

H2Client::H2Client(H2ClientConfig config) : config_(config) {
  ignoreSigpipe();
}

H2Client::~H2Client() {
  close();
  if (session_ != nullptr) nghttp2_session_del(session_);
  SSL_CTX_free(ctx_);
}

void H2Client::fail(End end, std::string what) {
  if (end_ == End::kOpen) {
    end_ = end;
    error_ = std::move(what);
  }
}

bool H2Client::connect(std::chrono::milliseconds limit) {
  const auto deadline = Clock::now() + limit;
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    error_ = std::string("socket: ") + std::strerror(errno);
    return false;
  }
  if (config_.rcvbuf > 0) {
    (void)::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &config_.rcvbuf, sizeof config_.rcvbuf);
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(config_.port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  // Blocking connect: on loopback it completes once the kernel queued the connection.
  if (::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    error_ = std::string("connect: ") + std::strerror(errno);
    return false;
  }
  const int one = 1;
  (void)::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) | O_NONBLOCK) != 0) {
    error_ = std::string("fcntl: ") + std::strerror(errno);
    return false;
  }
  if (config_.tls) {
    ctx_ = SSL_CTX_new(TLS_client_method());
    if (ctx_ == nullptr) {
      error_ = "SSL_CTX_new: " + sslErrorText();
      return false;
    }
    static const unsigned char kAlpn[] = {2, 'h', '2'};
    SSL_CTX_set_alpn_protos(ctx_, kAlpn, sizeof kAlpn);
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_NONE, nullptr);
    SSL_CTX_set_mode(ctx_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    ssl_ = SSL_new(ctx_);
    if (ssl_ == nullptr || SSL_set_fd(ssl_, fd_) != 1) {
      error_ = "SSL_new: " + sslErrorText();
      return false;
    }
    SSL_set_tlsext_host_name(ssl_, "localhost");
    for (;;) {
      ERR_clear_error();
      const int ret = SSL_connect(ssl_);
      if (ret == 1) break;
      const int code = SSL_get_error(ssl_, ret);
      short events;
      if (code == SSL_ERROR_WANT_READ) {
        events = POLLIN;
      } else if (code == SSL_ERROR_WANT_WRITE) {
        events = POLLOUT;
      } else {
        error_ = "TLS handshake failed: " + (code == SSL_ERROR_SYSCALL
                                                 ? std::string("syscall: ") + std::strerror(errno)
                                                 : sslErrorText());
        return false;
      }
      pollfd p{fd_, events, 0};
      if (::poll(&p, 1, remainingMs(deadline)) <= 0) {
        error_ = "TLS handshake timed out";
        return false;
      }
    }
    const unsigned char* proto = nullptr;
    unsigned int proto_len = 0;
    SSL_get0_alpn_selected(ssl_, &proto, &proto_len);
    if (std::string_view(reinterpret_cast<const char*>(proto), proto_len) != "h2") {
      error_ = "ALPN h2 not negotiated";
      return false;
    }
  }

  nghttp2_session_callbacks* cbs = nullptr;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_on_header_callback(cbs, &Callbacks::onHeader);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, &Callbacks::onFrameRecv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, &Callbacks::onData);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, &Callbacks::onClose);
  nghttp2_option* opt = nullptr;
  nghttp2_option_new(&opt);
  if (config_.consume_bytes_per_ms > 0) nghttp2_option_set_no_auto_window_update(opt, 1);
  const int rv = nghttp2_session_client_new2(&session_, cbs, this, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);
  if (rv != 0) {
    error_ = std::string("nghttp2_session_client_new2: ") + nghttp2_strerror(rv);
    return false;
  }
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<uint32_t>(config_.stream_window)}};
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings));
  if (config_.connection_window != NGHTTP2_INITIAL_CONNECTION_WINDOW_SIZE) {
    nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                          config_.connection_window);
  }
  return true;
}

int32_t H2Client::get(const std::string& path,
                      const std::vector<std::pair<std::string, std::string>>& extra) {
  auto nv = [](std::string_view n, std::string_view v) {
    return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(n.data())),
                      reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), n.size(), v.size(),
                      NGHTTP2_NV_FLAG_NONE};
  };
  std::vector<nghttp2_nv> nva = {nv(":method", "GET"), nv(":path", path),
                                 nv(":scheme", config_.tls ? "https" : "http"),
                                 nv(":authority", "127.0.0.1")};
  for (const auto& [name, value] : extra)
    nva.push_back(nv(name, value));
  const int32_t id =
      nghttp2_submit_request(session_, nullptr, nva.data(), nva.size(), nullptr, nullptr);
  if (id > 0) streams_[id];
  return id;
}

bool H2Client::flushOut() {
  for (int guard = 0; guard < 64 && nghttp2_session_want_write(session_) && out_.size() < (1 << 20);
       ++guard) {
    const uint8_t* data = nullptr;
    const ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n < 0) {
      fail(End::kError, std::string("mem_send: ") + nghttp2_strerror(static_cast<int>(n)));
      return false;
    }
    if (n == 0) break;
    out_.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
  }
  while (!out_.empty()) {
    if (ssl_ != nullptr) {
      ERR_clear_error();
      size_t written = 0;
      const int ret = SSL_write_ex(ssl_, out_.data(), out_.size(), &written);
      if (ret == 1) {
        out_.erase(0, written);
        continue;
      }
      const int code = SSL_get_error(ssl_, ret);
      if (code == SSL_ERROR_WANT_WRITE || code == SSL_ERROR_WANT_READ) return true;
      if (code == SSL_ERROR_SYSCALL && (errno == ECONNRESET || errno == EPIPE)) {
        fail(End::kReset, std::string("SSL_write: ") + std::strerror(errno));
      } else {
        fail(End::kError, "SSL_write: " + sslErrorText());
      }
      return false;
    }
    const ssize_t n = ::send(fd_, out_.data(), out_.size(), MSG_NOSIGNAL);
    if (n >= 0) {
      out_.erase(0, static_cast<size_t>(n));
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
    fail(errno == ECONNRESET || errno == EPIPE ? End::kReset : End::kError,
         std::string("send: ") + std::strerror(errno));
    return false;
  }
  return true;
}

bool H2Client::readIn() {
  uint8_t buf[16384];
  for (int i = 0; i < 64; ++i) {
    size_t got = 0;
    if (ssl_ != nullptr) {
      ERR_clear_error();
      errno = 0;
      const int ret = SSL_read_ex(ssl_, buf, sizeof buf, &got);
      if (ret != 1) {
        const int code = SSL_get_error(ssl_, ret);
        if (code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE) return true;
        if (code == SSL_ERROR_ZERO_RETURN) {
          fail(End::kEof, "close_notify");
        } else if (code == SSL_ERROR_SYSCALL) {
          const int err = errno;
          if (err == 0) {
            fail(End::kEof, "eof");
          } else {
            fail(err == ECONNRESET || err == EPIPE ? End::kReset : End::kError,
                 std::string("SSL_read: ") + std::strerror(err));
          }
        } else {
          const unsigned long e = ERR_peek_error();
          if (ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
            ERR_clear_error();
            fail(End::kEof, "eof without close_notify");
          } else {
            fail(End::kError, "SSL_read: " + sslErrorText());
          }
        }
        return false;
      }
    } else {
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n == 0) {
        fail(End::kEof, "eof");
        return false;
      }
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
        fail(errno == ECONNRESET ? End::kReset : End::kError,
             std::string("recv: ") + std::strerror(errno));
        return false;
      }
      got = static_cast<size_t>(n);
    }
    const ssize_t rv = nghttp2_session_mem_recv(session_, buf, got);
    if (rv < 0) {
      fail(End::kError, std::string("mem_recv: ") + nghttp2_strerror(static_cast<int>(rv)));
      return false;
    }
  }
  return true;
}

void H2Client::consumePaced() {
  if (config_.consume_bytes_per_ms == 0 || unconsumed_.empty()) return;
  const auto now = Clock::now();
  if (!pacing_started_) {
    pacing_started_ = true;
    pace_start_ = now;
  }
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - pace_start_).count();
  const uint64_t allowed = static_cast<uint64_t>(ms + 1) * config_.consume_bytes_per_ms;
  for (auto it = unconsumed_.begin(); it != unconsumed_.end() && consumed_ < allowed;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(it->second, allowed - consumed_));
    (void)nghttp2_session_consume_connection(session_, n);
    (void)nghttp2_session_consume_stream(session_, it->first, n);  // fails once it closed: fine
    consumed_ += n;
    it->second -= n;
    it = it->second == 0 ? unconsumed_.erase(it) : std::next(it);
  }
}

bool H2Client::pumpUntil(const std::function<bool()>& done, std::chrono::milliseconds limit) {
  const auto deadline = Clock::now() + limit;
  for (;;) {
    if (done()) return true;
    if (end_ != End::kOpen || session_ == nullptr) return false;
    consumePaced();
    if (!flushOut()) continue;
    if (Clock::now() >= deadline) return false;
    if (ssl_ != nullptr && SSL_pending(ssl_) > 0) {
      (void)readIn();
      continue;
    }
    // Wake up now and then to re-check `done()`, which may watch something other than this
    // socket (a server counter); 1 ms while the slow reader paces itself.
    int timeout = std::min(remainingMs(deadline), 10);
    if (!unconsumed_.empty()) timeout = std::min(timeout, 1);
    pollfd p{fd_, static_cast<short>(POLLIN | (out_.empty() ? 0 : POLLOUT)), 0};
    const int n = ::poll(&p, 1, timeout);
    if (n < 0 && errno != EINTR) {
      fail(End::kError, std::string("poll: ") + std::strerror(errno));
      return false;
    }
    if (n > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR))) (void)readIn();
  }
}

bool H2Client::finish(int32_t id, std::chrono::milliseconds limit) {
  return pumpUntil([&] { return streams_[id].closed; }, limit);
}

bool H2Client::waitEnd(std::chrono::milliseconds limit) {
  (void)pumpUntil([] { return false; }, limit);  // returns (false) when it ended or at `limit`
  return end_ != End::kOpen;
}

void H2Client::close(bool abortive) {
  if (ssl_ != nullptr) {
    SSL_free(ssl_);  // no close_notify: the socket closes right after
    ssl_ = nullptr;
  }
  if (fd_ >= 0) {
    if (abortive) {
      const linger lg{1, 0};
      (void)::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    ::close(fd_);
    fd_ = -1;
  }
}

// ---- runProcess ------------------------------------------------------------------------------

ProcessResult runProcess(const std::vector<std::string>& argv, const std::filesystem::path& scratch,
                         std::chrono::milliseconds limit) {
  ProcessResult result;
  const auto deadline = Clock::now() + limit;
  const std::filesystem::path out_path = scratch / "process-output.txt";
  std::vector<char*> args;
  for (const std::string& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0600);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF);
  pid_t pid = -1;
  const int rc = posix_spawnp(&pid, args[0], &actions, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    result.output = std::string("posix_spawnp: ") + std::strerror(rc);
    return result;
  }
  result.started = true;

  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  bool exited = false;
  if (pidfd >= 0) {
    pollfd p{pidfd, POLLIN, 0};
    int n;
    do {
      n = ::poll(&p, 1, remainingMs(deadline));
    } while (n < 0 && errno == EINTR);
    exited = n > 0;
    ::close(pidfd);
  }
  if (!exited) {
    result.timed_out = true;
    ::kill(pid, SIGKILL);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  std::ifstream in(out_path);
  result.output.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return result;
}

FdTable openFds() {
  FdTable fds;
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) return fds;
  const int own = ::dirfd(d);
  while (const dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    const int fd = std::atoi(e->d_name);
    if (fd == own) continue;
    char target[4096];
    const std::string link = std::string("/proc/self/fd/") + e->d_name;
    const ssize_t n = ::readlink(link.c_str(), target, sizeof target);
    fds[fd] = n >= 0 ? std::string(target, static_cast<size_t>(n)) : "(closed while listed)";
  }
  ::closedir(d);
  return fds;
}

std::string describeFds(const FdTable& fds) {
  std::string out;
  for (const auto& [fd, target] : fds)
    out += std::to_string(fd) + ":" + target + " ";
  return out;
}

std::string describeOpenFds() {
  return describeFds(openFds());
}

std::string diffFds(const FdTable& baseline, const FdTable& now) {
  std::string missing;
  std::string extra;
  std::string changed;
  for (const auto& [fd, target] : baseline) {
    const auto it = now.find(fd);
    if (it == now.end()) {
      missing += " " + std::to_string(fd) + ":" + target;
    } else if (it->second != target) {
      changed += " " + std::to_string(fd) + ":" + target + " -> " + it->second;
    }
  }
  for (const auto& [fd, target] : now) {
    if (!baseline.contains(fd)) extra += " " + std::to_string(fd) + ":" + target;
  }
  std::string out;
  if (!missing.empty()) out += "missing:" + missing + "; ";
  if (!extra.empty()) out += "extra:" + extra + "; ";
  if (!changed.empty()) out += "changed:" + changed + "; ";
  return out;
}

// ---- LogCapture ------------------------------------------------------------------------------

class LogCapture::Sink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  std::vector<std::string> lines() {
    std::lock_guard<std::mutex> lock(mutex_);
    return lines_;
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    lines_.emplace_back(msg.payload.data(), msg.payload.size());
  }
  void flush_() override {}

 private:
  std::vector<std::string> lines_;  // guarded by base_sink's mutex_
};

LogCapture::LogCapture() : sink_(std::make_shared<Sink>()) {
  spdlog::default_logger()->sinks().push_back(sink_);
}

LogCapture::~LogCapture() {
  auto& sinks = spdlog::default_logger()->sinks();
  sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
}

std::vector<std::string> LogCapture::lines() const {
  return sink_->lines();
}

size_t LogCapture::count(std::initializer_list<std::string_view> needles) const {
  size_t n = 0;
  for (const std::string& line : sink_->lines()) {
    bool all = true;
    for (std::string_view needle : needles)
      all = all && line.find(needle) != std::string::npos;
    if (all) ++n;
  }
  return n;
}

}  // namespace h2loop::test
