// In-process leak scenarios (issue 4, scenarios 1 and 8): faults injected into the transport of a
// real server (both loop backends, TLS and h2c), server shutdown with streams in flight, and a
// server destroyed with connections open. Every scenario ends by checking that the worker is back
// to its idle values (no connection, no pooled stream, one watch and two unarmed timers in its
// loop, nothing buffered, no pending deletion, no file held open beyond the file cache's own
// references, and once the cache is purged no open file and the very descriptors of the idle
// baseline, by number and target) and that the close was counted under the right reason. The asan
// build (LeakSanitizer) also checks, at the end of each test, that nothing unreachable was left
// behind.

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "eventloop/loop.h"
#include "leak/fault_transport.h"
#include "leak/leak_test_util.h"
#include "net/self_signed.h"
#include "server/connection.h"
#include "server/counters.h"
#include "server/server.h"
#include "server/worker.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#define H2LOOP_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#include <sanitizer/lsan_interface.h>
#define H2LOOP_LSAN 1
#endif
#endif

namespace h2loop::test {
namespace {

using namespace std::chrono_literals;
using h2loop::net::Interest;
using server::CloseReason;
using server::Server;
using server::ServerConfig;
using Clock = std::chrono::steady_clock;

constexpr size_t kReasons = static_cast<size_t>(CloseReason::kCount);
// Between two looks at a counter that is expected to change soon. Never a synchronisation: every
// wait is a bounded poll of the condition itself.
constexpr auto kPollInterval = 2ms;
constexpr auto kIdleLimit = 15s;
constexpr auto kClientLimit = 30s;

// ---- shared test data --------------------------------------------------------------------------

struct TestData {
  std::filesystem::path dir;
  std::filesystem::path root;
  std::filesystem::path cert;
  std::filesystem::path key;
  std::string small;  // 1 KiB
  std::string big;    // 1 MiB
  std::string huge;   // 10 MiB

  TestData() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "h2loop-leak-XXXXXX").string();
    dir = ::mkdtemp(tmpl.data());
    root = dir / "root";
    std::filesystem::create_directories(root);
    cert = dir / "cert.pem";
    key = dir / "key.pem";
    h2loop::net::generateSelfSigned(cert, key);
    small = patternBytes(1024, 1);
    big = patternBytes(1 << 20, 2);
    huge = patternBytes(10 << 20, 3);
    write("small.txt", small);
    write("big.bin", big);
    write("huge.bin", huge);
  }
  ~TestData() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  void write(const char* name, const std::string& content) const {
    std::ofstream(root / name, std::ios::binary) << content;
  }
};

const TestData& data() {
  static const TestData d;
  return d;
}

// ---- parameters --------------------------------------------------------------------------------

struct Backend {
  const char* loop;
  bool tls;
};

std::string backendName(const ::testing::TestParamInfo<Backend>& info) {
  return std::string(info.param.loop) + (info.param.tls ? "_tls" : "_h2c");
}

// gtest prints parameters this way in failure messages.
void PrintTo(const Backend& b, std::ostream* os) {
  *os << b.loop << (b.tls ? "_tls" : "_h2c");
}

// Byte-exact equality that reports sizes and the first differing offset, not the bytes.
::testing::AssertionResult sameBytes(const std::string& got, const std::string& want) {
  if (got == want) return ::testing::AssertionSuccess();
  size_t i = 0;
  while (i < got.size() && i < want.size() && got[i] == want[i])
    ++i;
  return ::testing::AssertionFailure() << "got " << got.size() << " bytes, want " << want.size()
                                       << ", first difference at offset " << i;
}

const Backend kBackends[] = {
    {"epoll", true}, {"epoll", false}, {"libevent", true}, {"libevent", false}};
// h2c has no handshake (PlainTransport::handshake() is done at once).
const Backend kTlsBackends[] = {{"epoll", true}, {"libevent", true}};

// ---- what a worker looks like ------------------------------------------------------------------

struct Snapshot {
  size_t connections = 0;
  size_t pool_in_use = 0;
  size_t nghttp2_blocks = 0;  // nghttp2 allocations not yet freed (all sessions)
  ev::LoopStats loop;
  int64_t connections_active = 0;
  int64_t streams_active = 0;
  int64_t output_buffered = 0;
  int64_t open_files = 0;        // CachedFiles alive (the cache's and the streams' references)
  size_t cache_entries = 0;      // of which held by the cache itself (one each)
  int64_t open_files_gauge = 0;  // file_cache_open_files, as /metrics reports it
  int64_t fds = 0;               // of the whole process
  std::array<int64_t, kReasons> closed{};
};

std::string describe(const Snapshot& s) {
  std::string out = "connections=" + std::to_string(s.connections) +
                    " pool_in_use=" + std::to_string(s.pool_in_use) +
                    " nghttp2_blocks=" + std::to_string(s.nghttp2_blocks) +
                    " watches=" + std::to_string(s.loop.watches) +
                    " registered=" + std::to_string(s.loop.registered) +
                    " timers=" + std::to_string(s.loop.timers) +
                    " armed_timers=" + std::to_string(s.loop.armed_timers) +
                    " pending_deletions=" + std::to_string(s.loop.pending_deletions) +
                    " connections_active=" + std::to_string(s.connections_active) +
                    " streams_active=" + std::to_string(s.streams_active) +
                    " output_buffered=" + std::to_string(s.output_buffered) +
                    " open_files=" + std::to_string(s.open_files) +
                    " cache_entries=" + std::to_string(s.cache_entries) +
                    " open_files_gauge=" + std::to_string(s.open_files_gauge) +
                    " fds=" + std::to_string(s.fds) + " closed{";
  for (size_t r = 0; r < kReasons; ++r) {
    if (s.closed[r] != 0) {
      out += std::string(server::toString(static_cast<CloseReason>(r))) + "=" +
             std::to_string(s.closed[r]) + " ";
    }
  }
  return out + "}";
}

// Reads the worker. On its loop thread (runOnLoop) while it runs; directly once it has been
// joined (its thread ended: nothing races).
Snapshot readWorker(server::Worker& w) {
  Snapshot s;
  s.connections = w.connectionCount();
  s.pool_in_use = w.pool().inUse();
  s.nghttp2_blocks = w.sessionAllocator()->outstanding();
  s.loop = w.loop().stats();
  const server::WorkerCounters& c = w.counters();
  s.connections_active = c.connections_active.get();
  s.streams_active = c.streams_active.get();
  s.output_buffered = c.output_buffered_bytes.get();
  const server::FileCacheStats files = w.files().cacheStats();
  s.open_files = files.open_files;
  s.cache_entries = files.entries;
  s.open_files_gauge = c.file_cache_open_files.get();
  for (size_t r = 0; r < kReasons; ++r)
    s.closed[r] = c.closed[r].get();
  s.fds = net::countOpenFds();
  return s;
}

int64_t delta(const Snapshot& before, const Snapshot& after, CloseReason r) {
  return after.closed[static_cast<size_t>(r)] - before.closed[static_cast<size_t>(r)];
}

int64_t totalDelta(const Snapshot& before, const Snapshot& after) {
  int64_t n = 0;
  for (size_t r = 0; r < kReasons; ++r)
    n += after.closed[r] - before.closed[r];
  return n;
}

// A plain TCP connection that sends nothing (a client stuck before its ClientHello / preface).
class RawClient {
 public:
  explicit RawClient(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ =
        fd_ >= 0 && ::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~RawClient() { close(); }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;
  [[nodiscard]] bool connected() const { return connected_; }
  // True when the server ended the connection (EOF or RST) within `limit`.
  bool waitEnded(std::chrono::milliseconds limit) {
    const auto deadline = Clock::now() + limit;
    char buf[4096];
    for (;;) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return true;
    }
  }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

// ---- the fixture -------------------------------------------------------------------------------

class LeakTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    (void)data();
    fds_before_server_ = openFds();
    log_ = std::make_shared<FaultLog>();
    capture_ = std::make_unique<LogCapture>();
  }

  void TearDown() override {
    if (server_) {
      if (!stopped_) {
        server_->shutdown();
        stopped_ = true;
      }
      EXPECT_TRUE(waitServer(20s)) << "server did not finish its shutdown";
      server_.reset();
    }
    capture_.reset();
    log_->closeDups();
    EXPECT_EQ(log_->created(), log_->destroyed())
        << "every transport the server created was destroyed";
    // Every client of the test is closed by now (locals of the test body, the Teardown
    // fixture's members reset first), and the server with its file cache is gone.
    EXPECT_EQ(diffFds(fds_before_server_, openFds()), "")
        << "the process's descriptors are those from before the server started; before: "
        << describeFds(fds_before_server_);
#ifdef H2LOOP_LSAN
    EXPECT_EQ(__lsan_do_recoverable_leak_check(), 0) << "LeakSanitizer found leaks (see stderr)";
#endif
  }

  [[nodiscard]] bool tls() const {
    return GetParam().tls;
  }
  // What an I/O error (EBADF and the like) closes a connection as.
  [[nodiscard]] CloseReason errorReason() const {
    return tls() ? CloseReason::kTlsError : CloseReason::kIoError;
  }

  // Starts a one-worker server whose transports are FaultTransports running `plan` (no rules:
  // a pass-through that still counts transports), and records its idle fd baseline.
  void startServer(FaultPlan plan = {}, const std::function<void(ServerConfig&)>& tweak = {}) {
    ServerConfig cfg;
    cfg.listen = {{"127.0.0.1", 0}};
    cfg.root = data().root;
    if (tls()) {
      cfg.cert = data().cert;
      cfg.key = data().key;
    }
    cfg.event_loop = GetParam().loop;
    cfg.workers = 1;
    // Long enough that a connection the server failed to close shows up as a client timeout,
    // never as a timely close.
    cfg.handshake_timeout = 60s;
    cfg.idle_timeout = 60s;
    cfg.write_timeout = 60s;
    cfg.drain_timeout = 30s;
    if (tweak) tweak(cfg);
    config_ = cfg;
    server_ = std::make_unique<Server>(cfg, makeFaultFactory(std::move(plan), log_));
    server_->start();
    port_ = server_->ports()[0];
    const Snapshot s = snapshot();
    fds_at_baseline_ = openFds();  // the worker waits for events: nothing of it runs meanwhile
    ASSERT_EQ(s.connections, 0u);
    ASSERT_EQ(s.loop.watches, 1u);
    ASSERT_EQ(s.open_files, 0) << "a new file cache holds nothing";
  }

  server::Worker& worker() {
    return server_->worker(0);
  }

  Snapshot snapshot() {
    Snapshot s;
    worker().runOnLoop([&] { s = readWorker(worker()); });
    return s;
  }

  // Polls the running worker until `pred` holds or `limit` passes; returns the last look.
  Snapshot waitFor(const std::function<bool(const Snapshot&)>& pred,
                   std::chrono::milliseconds limit) {
    const auto deadline = Clock::now() + limit;
    Snapshot s = snapshot();
    while (!pred(s) && Clock::now() < deadline) {
      std::this_thread::sleep_for(kPollInterval);
      s = snapshot();
    }
    return s;
  }

  // Idle, the file cache aside: it keeps its entries open (see expectIdle()), but every file a
  // stream took from it has been given back.
  [[nodiscard]] bool isIdle(const Snapshot& s, bool running) const {
    return s.connections == 0 && s.pool_in_use == 0 && s.nghttp2_blocks == 0 &&
           s.loop.watches == (running ? 1u : 0u) && s.loop.registered == (running ? 1u : 0u) &&
           s.loop.timers == 2 && s.loop.armed_timers == 0 && s.loop.pending_deletions == 0 &&
           s.connections_active == 0 && s.streams_active == 0 && s.output_buffered == 0 &&
           s.open_files == static_cast<int64_t>(s.cache_entries);
  }

  // Waits (bounded) for the running worker to be idle, purges its file cache and asserts every
  // idle value: no open file left, and the process's descriptors exactly those of the idle
  // baseline taken when the server started. Every client of the test must be closed first.
  //
  // The file cache never lets go of a descriptor by itself: an entry older than its TTL is only
  // revalidated by the next request for that path, and entries leave only by LRU eviction or
  // FileCache::clear() (server/file_cache.*). So the test purges it (clearCache(), on the loop
  // thread, the way shutdown would) once nothing else holds a file.
  Snapshot expectIdle() {
    const Snapshot waited = waitFor([&](const Snapshot& x) { return isIdle(x, true); }, kIdleLimit);
    EXPECT_EQ(waited.open_files, static_cast<int64_t>(waited.cache_entries))
        << "open files held by something other than the file cache (a stream's reference not "
           "released); "
        << describe(waited);
    Snapshot s;
    worker().runOnLoop([&] {
      worker().files().clearCache();
      worker().publishGauges();
      s = readWorker(worker());
    });
    expectIdleValues(s, true);
    return s;
  }

  void expectIdleValues(const Snapshot& s, bool running) {
    SCOPED_TRACE(describe(s));
    EXPECT_EQ(s.connections, 0u) << "live connections";
    EXPECT_EQ(s.pool_in_use, 0u) << "stream handles still taken from the pool";
    EXPECT_EQ(s.nghttp2_blocks, 0u) << "nghttp2 memory not returned (a session not freed)";
    EXPECT_EQ(s.loop.watches, running ? 1u : 0u) << "watches (the listener only)";
    EXPECT_EQ(s.loop.registered, running ? 1u : 0u) << "registered watches";
    EXPECT_EQ(s.loop.timers, 2u) << "timers (accept backoff + drain)";
    EXPECT_EQ(s.loop.armed_timers, 0u) << "armed timers";
    EXPECT_EQ(s.loop.pending_deletions, 0u) << "pending deferred deletions";
    EXPECT_EQ(s.connections_active, 0) << "connections_active gauge";
    EXPECT_EQ(s.streams_active, 0) << "streams_active gauge";
    EXPECT_EQ(s.output_buffered, 0) << "output_buffered_bytes gauge";
    EXPECT_EQ(s.open_files, static_cast<int64_t>(s.cache_entries))
        << "open files beyond the file cache's own (a stream's reference not released)";
    if (running) {
      // After the purge of expectIdle(): the cache holds nothing, and neither does anything else.
      EXPECT_EQ(s.cache_entries, 0u) << "file cache entries after clearCache()";
      EXPECT_EQ(s.open_files, 0) << "open files after the file cache was purged";
      EXPECT_EQ(s.open_files_gauge, 0) << "file_cache_open_files gauge";
      // The same descriptors, by number and target: a leak is one more, a descriptor closed by
      // someone who did not own it (a reused number closed a second time) one fewer or a
      // changed target, and a count would let one of each cancel out.
      EXPECT_EQ(diffFds(fds_at_baseline_, openFds()), "")
          << "the process's descriptors are those of the idle baseline; at the baseline: "
          << describeFds(fds_at_baseline_);
    }
  }

  // Polls until `n` connections closed for `reason` since `before`; returns the last look.
  Snapshot waitClosed(const Snapshot& before, CloseReason reason, int64_t n = 1) {
    return waitFor([&](const Snapshot& s) { return delta(before, s, reason) >= n; }, kIdleLimit);
  }

  // server.wait(), bounded: on timeout the loops are stopped (thread-safe) so the test can end.
  bool waitServer(std::chrono::milliseconds limit) {
    Server* s = server_.get();
    auto done = std::async(std::launch::async, [s] { s->wait(); });
    if (done.wait_for(limit) == std::future_status::ready) return true;
    for (size_t i = 0; i < s->workerCount(); ++i)
      s->worker(i).loop().stop();
    done.wait();
    return false;
  }

  // Destroys the server (its destructor: shutdown + wait), bounded like waitServer().
  bool destroyServer(std::chrono::milliseconds limit) {
    std::vector<ev::Loop*> loops;
    for (size_t i = 0; i < server_->workerCount(); ++i)
      loops.push_back(&server_->worker(i).loop());
    auto done = std::async(std::launch::async, [this] { server_.reset(); });
    if (done.wait_for(limit) == std::future_status::ready) return true;
    for (ev::Loop* l : loops)
      l->stop();
    done.wait();
    return false;
  }

  H2ClientConfig clientConfig() const {
    H2ClientConfig c;
    c.port = port_;
    c.tls = GetParam().tls;
    return c;
  }

  // A client that GETs `path` and pumps until the stream closes or the connection ends.
  // Returns the stream id (0 if the request could not be sent).
  int32_t fetch(H2Client& client, const std::string& path) {
    if (!client.connect(10s)) return 0;
    const int32_t id = client.get(path);
    if (id <= 0) return 0;
    (void)client.finish(id, kClientLimit);
    return id;
  }

  std::unique_ptr<Server> server_;
  ServerConfig config_;
  uint16_t port_ = 0;
  bool stopped_ = false;
  FdTable fds_before_server_;
  FdTable fds_at_baseline_;  // the running server, idle, its file cache empty
  std::shared_ptr<FaultLog> log_;
  std::unique_ptr<LogCapture> capture_;
};

// ==== scenario 1: faults injected into the transport =============================================

// EAGAIN storms and short I/O on every transport call (defined with its tests below).
std::vector<FaultRule> stormRules(bool tls);

class FaultInjection : public LeakTest {
 protected:
  // The close-log line of a connection closed for `reason` whose watch detach said `outcome`.
  size_t closeLogLines(CloseReason reason, std::string_view outcome) const {
    const std::string r = "closed: " + std::string(server::toString(reason));
    const std::string o = "(watch " + std::string(outcome) + ")";
    return capture_->count({r, o});
  }

  // A 1 MiB download during which the transport fails as `rule` says. The connection must be
  // closed at once for `expected`, the client must see it end, and the worker must go idle.
  //
  // A handshake fault hits the server's second handshake call, made once the ClientHello is in
  // the socket: the first call is told to wait for readability (level-triggered, so the second
  // call comes exactly when the ClientHello has arrived, before the server has read it).
  void runFailingDownload(FaultRule rule, CloseReason expected, std::string_view detach) {
    std::vector<FaultRule> rules;
    if (rule.op == FaultOp::kHandshake) {
      rules.push_back({.op = FaultOp::kHandshake,
                       .action = FaultAction::kWouldBlock,
                       .want = net::Interest::kRead});
      rule.after_calls = 1;
    }
    rules.push_back(rule);
    startServer(FaultPlan{.rules = rules});
    const Snapshot before = snapshot();
    H2Client client(clientConfig());
    const auto t0 = Clock::now();
    const int32_t id = fetch(client, "/big.bin");
    if (rule.op == FaultOp::kHandshake) {
      EXPECT_EQ(id, 0) << "the server failed before its ServerHello: the client cannot finish";
    } else {
      ASSERT_GT(id, 0) << client.error();
      EXPECT_NE(client.end(), H2Client::End::kOpen)
          << "the client saw the connection end (stream closed=" << client.stream(id).closed << ")";
      EXPECT_LT(client.stream(id).body.size(), data().big.size())
          << "the download was cut short by the fault";
    }
    EXPECT_LT(Clock::now() - t0, 20s) << "closed at once, not by a timeout";
    client.close();
    expectOneFaultClose(before, rule, expected, detach);
  }

  // The connection the fault hit was closed once, for `expected`, and the worker is idle.
  void expectOneFaultClose(const Snapshot& before, const FaultRule& rule, CloseReason expected,
                           std::string_view detach) {
    const Snapshot after = waitClosed(before, expected);
    EXPECT_EQ(delta(before, after, expected), 1)
        << "closed as " << server::toString(expected) << "; " << describe(after);
    EXPECT_EQ(totalDelta(before, after), 1) << "exactly one close, counted once";
    EXPECT_EQ(log_->fired(rule.action), 1u) << "the fault fired once";
    EXPECT_EQ(log_->callsAfterTerminal(), 0u)
        << "no I/O on the transport after it reported the failure";
    if (!detach.empty() && expected != CloseReason::kPeerReset) {
      // peer_reset is logged at debug level only.
      EXPECT_EQ(closeLogLines(expected, detach), 1u)
          << "one close logged with the watch detach outcome '" << detach << "'";
    }
    expectIdle();
  }

  // curl fetching `path` with `protocol` ("--http2", "--http1.1"; cleartext HTTP/2 is prior
  // knowledge) into a file; returns its result and the body.
  ProcessResult curl(std::string_view protocol, std::string_view path, std::string& body) {
    const std::filesystem::path out =
        data().dir / ("curl-" + std::string(GetParam().loop) + (tls() ? "-tls" : "-h2c") + ".bin");
    const bool h2c = !tls() && protocol == "--http2";
    const std::string url = (tls() ? "https://127.0.0.1:" : "http://127.0.0.1:") +
                            std::to_string(port_) + std::string(path);
    const std::vector<std::string> argv = {
        "curl",       "-sS", "-k", h2c ? "--http2-prior-knowledge" : std::string(protocol),
        "--max-time", "60",  "-o", out.string(),
        url};
    ProcessResult r = runProcess(argv, data().dir, 90s);
    std::ifstream in(out, std::ios::binary);
    body.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    in.close();
    std::filesystem::remove(out);
    return r;
  }

  // Short I/O and EAGAIN storms everywhere: a 1 MiB download still arrives intact.
  void runStormDownload(std::string_view protocol) {
    startServer(FaultPlan{.rules = stormRules(tls())});
    const Snapshot before = snapshot();
    std::string body;
    const ProcessResult r = curl(protocol, "/big.bin", body);
    ASSERT_TRUE(r.started) << r.output;
    EXPECT_FALSE(r.timed_out);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(body.size(), data().big.size());
    EXPECT_TRUE(sameBytes(body, data().big)) << "curl " << protocol << " got the body intact";
    EXPECT_GT(log_->fired(FaultAction::kShortIo), 100u);
    const Snapshot idle = expectIdle();
    EXPECT_EQ(totalDelta(before, idle), 1);
    EXPECT_EQ(delta(before, idle, errorReason()), 0);
    EXPECT_EQ(delta(before, idle, CloseReason::kPeerReset), 0);
  }
};

// Faults at chosen points of the TLS handshake: TLS only.
class HandshakeFaults : public FaultInjection {};

// -- the fd closed behind the connection's back --

TEST_P(FaultInjection, FdClosedBehindBackMidResponse) {
  // The fd is really closed while the response is being written; the write that follows finds
  // it gone (EBADF), the watch detach reports fd-gone, and final destruction still runs (and
  // does not close the number a second time).
  runFailingDownload(
      {.op = FaultOp::kWrite, .action = FaultAction::kCloseFd, .after_written_bytes = 64 * 1024},
      errorReason(), "fd-gone");
}

TEST_P(FaultInjection, FdClosedBehindBackDuringRead) {
  runFailingDownload(
      {.op = FaultOp::kRead, .action = FaultAction::kCloseFd, .after_written_bytes = 32 * 1024},
      errorReason(), "fd-gone");
}

TEST_P(HandshakeFaults, FdClosedBehindBackDuringHandshake) {
  runFailingDownload({.op = FaultOp::kHandshake, .action = FaultAction::kCloseFd},
                     CloseReason::kTlsError, "fd-gone");
}

TEST_P(FaultInjection, FdClosedBehindBackWhileIdleIsFoundByTheTimer) {
  // Nothing happens on the connection after its fd vanished: no event will ever come (epoll
  // dropped the registration with the file). The idle timer finds it: its GOAWAY write fails
  // with EBADF, and the close goes through the same final destruction.
  startServer({}, [](ServerConfig& c) { c.idle_timeout = 1s; });
  const Snapshot before = snapshot();
  H2Client client(clientConfig());
  const int32_t id = fetch(client, "/small.txt");
  ASSERT_GT(id, 0) << client.error();
  ASSERT_TRUE(sameBytes(client.stream(id).body, data().small));
  const std::vector<int> fds = log_->acceptedFds();
  ASSERT_EQ(fds.size(), 1u);
  // On the loop thread, so that nothing of the server runs meanwhile.
  // The idle timeout runs from the response on; a loaded machine (asan, ctest -j2) must still
  // get here before it, or the timer's GOAWAY and close would not be the ones that find the fd
  // gone.
  std::vector<int> states;  // Connection::State of each connection
  worker().runOnLoop([&] {
    worker().forEachConnection(
        [&](server::Connection& c) { states.push_back(static_cast<int>(c.state())); });
    ::close(fds[0]);
  });
  ASSERT_EQ(states, std::vector<int>{static_cast<int>(server::Connection::State::kActive)})
      << "the connection was still active (its idle timer not yet run) when its fd was closed";

  const Snapshot after = waitClosed(before, errorReason());
  EXPECT_EQ(delta(before, after, errorReason()), 1) << describe(after);
  EXPECT_EQ(totalDelta(before, after), 1);
  EXPECT_EQ(closeLogLines(errorReason(), "fd-gone"), 1u);
  EXPECT_TRUE(client.waitEnd(10s)) << "the client saw the connection end";
  client.close();
  expectIdle();
}

TEST_P(FaultInjection, FdClosedBehindBackWhileADupKeepsItsFileAlive) {
  // The fd number is closed but a duplicate keeps the socket (and, for epoll, its kernel
  // registration, which keeps reporting readiness for a record the loop has detached). The
  // connection still closes and is destroyed; the worker keeps serving other clients meanwhile.
  startServer(FaultPlan{.rules = {{.op = FaultOp::kWrite,
                                   .action = FaultAction::kCloseFd,
                                   .after_written_bytes = 64 * 1024,
                                   .keep_dup = true}}});
  const Snapshot before = snapshot();
  H2Client victim(clientConfig());
  ASSERT_TRUE(victim.connect(10s)) << victim.error();
  const int32_t id = victim.get("/big.bin");
  ASSERT_GT(id, 0);
  // The victim's socket stays open on the server side (the dup): its download just stops.
  ASSERT_TRUE(
      victim.pumpUntil([&] { return log_->fired(FaultAction::kCloseFd) == 1; }, kClientLimit))
      << "the fault fired during the download: " << victim.error();
  const Snapshot after = waitClosed(before, errorReason());
  EXPECT_EQ(delta(before, after, errorReason()), 1) << describe(after);
  EXPECT_EQ(closeLogLines(errorReason(), "fd-gone"), 1u);
  EXPECT_EQ(log_->dupCount(), 1u);

  // Another client is served while the orphaned registration may still fire.
  H2Client other(clientConfig());
  const int32_t other_id = fetch(other, "/small.txt");
  ASSERT_GT(other_id, 0) << other.error();
  EXPECT_TRUE(sameBytes(other.stream(other_id).body, data().small));
  other.close();

  log_->closeDups();  // the socket really closes now; the victim sees it end
  EXPECT_TRUE(victim.waitEnd(10s))
      << "the victim saw the connection end once the last reference closed";
  victim.close();
  const Snapshot idle = expectIdle();
  EXPECT_EQ(delta(before, idle, errorReason()), 1) << "only the victim failed";
}

TEST_P(FaultInjection, FdAlreadyClosedWhenTheConnectionRegistersIt) {
  // The accepted fd is gone before the connection watches it: the registration fails (EBADF),
  // the connection closes as io_error, the detach reports fd-gone, and it is destroyed.
  startServer(FaultPlan{.close_fd_on_accept = true});
  const Snapshot before = snapshot();
  RawClient client(port_);
  ASSERT_TRUE(client.connected());
  EXPECT_TRUE(client.waitEnded(10s)) << "the client saw the connection end";
  const Snapshot after = waitClosed(before, CloseReason::kIoError);
  EXPECT_EQ(delta(before, after, CloseReason::kIoError), 1) << describe(after);
  EXPECT_EQ(totalDelta(before, after), 1);
  EXPECT_EQ(closeLogLines(CloseReason::kIoError, "fd-gone"), 1u);
  client.close();
  expectIdle();
}

TEST_P(FaultInjection, WatchOnFdMinusOneStillReachesFinalDestruction) {
  // The loop half of "fd already -1 at close", on the live worker's loop: a watch on -1 is never
  // registered, its close reports fd-invalid, and its owner's deferred destruction runs.
  startServer();
  struct Owner : ev::DeferredDeletable {
    std::unique_ptr<ev::IoWatch> watch;
    bool* destroyed = nullptr;
    ~Owner() override { *destroyed = true; }
  };
  bool destroyed = false;
  int registration_error = 0;
  ev::DetachOutcome outcome = ev::DetachOutcome::kDetached;
  worker().runOnLoop([&] {
    auto owner = std::make_unique<Owner>();
    owner->destroyed = &destroyed;
    owner->watch = worker().loop().watch(-1, ev::kRead, [](uint32_t) {});
    registration_error = owner->watch->registrationError();
    outcome = owner->watch->close();
    worker().loop().deferredDelete(std::move(owner));
  });
  EXPECT_EQ(registration_error, EBADF);
  EXPECT_EQ(outcome, ev::DetachOutcome::kFdInvalid);
  bool seen = false;
  worker().runOnLoop([&] { seen = destroyed; });
  EXPECT_TRUE(seen) << "the owner's final destruction ran";
  expectIdle();
}

// -- errors and resets returned by the transport --

TEST_P(FaultInjection, EbadfFromRead) {
  runFailingDownload({.op = FaultOp::kRead,
                      .action = FaultAction::kError,
                      .after_written_bytes = 32 * 1024,
                      .err = EBADF},
                     errorReason(), "detached");
}

TEST_P(FaultInjection, EconnresetFromRead) {
  runFailingDownload({.op = FaultOp::kRead,
                      .action = FaultAction::kReset,
                      .after_written_bytes = 32 * 1024,
                      .err = ECONNRESET},
                     CloseReason::kPeerReset, "detached");
}

TEST_P(FaultInjection, EpipeFromRead) {
  runFailingDownload({.op = FaultOp::kRead,
                      .action = FaultAction::kReset,
                      .after_written_bytes = 32 * 1024,
                      .err = EPIPE},
                     CloseReason::kPeerReset, "detached");
}

TEST_P(FaultInjection, EbadfFromWrite) {
  runFailingDownload({.op = FaultOp::kWrite,
                      .action = FaultAction::kError,
                      .after_written_bytes = 64 * 1024,
                      .err = EBADF},
                     errorReason(), "detached");
}

TEST_P(FaultInjection, EconnresetFromWrite) {
  runFailingDownload({.op = FaultOp::kWrite,
                      .action = FaultAction::kReset,
                      .after_written_bytes = 64 * 1024,
                      .err = ECONNRESET},
                     CloseReason::kPeerReset, "detached");
}

TEST_P(FaultInjection, EpipeFromWrite) {
  runFailingDownload({.op = FaultOp::kWrite,
                      .action = FaultAction::kReset,
                      .after_written_bytes = 64 * 1024,
                      .err = EPIPE},
                     CloseReason::kPeerReset, "detached");
}

TEST_P(HandshakeFaults, EbadfDuringHandshake) {
  runFailingDownload({.op = FaultOp::kHandshake, .action = FaultAction::kError, .err = EBADF},
                     CloseReason::kTlsError, "detached");
}

TEST_P(HandshakeFaults, EconnresetDuringHandshake) {
  runFailingDownload({.op = FaultOp::kHandshake, .action = FaultAction::kReset, .err = ECONNRESET},
                     CloseReason::kPeerReset, "detached");
}

TEST_P(HandshakeFaults, EpipeDuringHandshake) {
  runFailingDownload({.op = FaultOp::kHandshake, .action = FaultAction::kReset, .err = EPIPE},
                     CloseReason::kPeerReset, "detached");
}

// -- would-block storms and short reads/writes: slower, never wrong --

std::vector<FaultRule> stormRules(bool tls) {
  std::vector<FaultRule> rules = {
      // EAGAIN storms: 3 in a row on every 6th read, 4 in a row on every 8th write.
      {.op = FaultOp::kRead, .action = FaultAction::kWouldBlock, .times = 3, .every = 6},
      {.op = FaultOp::kWrite,
       .action = FaultAction::kWouldBlock,
       .after_calls = 1,
       .times = 4,
       .every = 8},
      // Otherwise short: reads of at most 7 bytes, writes of at most 1000.
      {.op = FaultOp::kRead, .action = FaultAction::kShortIo, .times = -1, .max_bytes = 7},
      {.op = FaultOp::kWrite, .action = FaultAction::kShortIo, .times = -1, .max_bytes = 1000},
  };
  if (tls) {
    rules.push_back({.op = FaultOp::kHandshake,
                     .action = FaultAction::kWouldBlock,
                     .times = 2,
                     .want = net::Interest::kWrite});
  }
  return rules;
}

TEST_P(FaultInjection, EagainStormsAndShortIoStillDeliverEveryByte) {
  startServer(FaultPlan{.rules = stormRules(tls())});
  const Snapshot before = snapshot();

  H2Client client(clientConfig());
  const int32_t id = fetch(client, "/big.bin");
  ASSERT_GT(id, 0) << client.error();
  const H2Stream& s = client.stream(id);
  EXPECT_TRUE(s.closed) << "stream finished; client end=" << static_cast<int>(client.end()) << " "
                        << client.error() << ", body " << s.body.size() << " bytes";
  EXPECT_EQ(s.status, 200);
  EXPECT_EQ(s.close_error, 0u);
  EXPECT_EQ(s.body.size(), data().big.size());
  EXPECT_TRUE(sameBytes(s.body, data().big)) << "the 1 MiB body arrived intact";
  client.close();
  EXPECT_GT(log_->fired(FaultAction::kWouldBlock), 10u);
  EXPECT_GT(log_->fired(FaultAction::kShortIo), 100u);
  expectIdle();
  const Snapshot after = snapshot();
  EXPECT_EQ(totalDelta(before, after), 1);
  for (CloseReason bad : {CloseReason::kIoError, CloseReason::kTlsError, CloseReason::kPeerReset,
                          CloseReason::kProtocolError, CloseReason::kWriteTimeout,
                          CloseReason::kIdleTimeout, CloseReason::kHandshakeTimeout}) {
    EXPECT_EQ(delta(before, after, bad), 0) << server::toString(bad);
  }
}

TEST_P(FaultInjection, EagainStormsAndShortIoStillDeliverEveryByteToCurl) {
  runStormDownload("--http2");
}

TEST_P(FaultInjection, ShortReadsStillReadAWholeRequestTheClientSentAtOnce) {
  // One request in one write (one TLS record of about 2 KiB), then the client waits for the
  // answer. Reads of at most 16 bytes: the connection has to keep reading until the transport
  // holds no more input (Transport: "if hasPendingInput(), read again before waiting"); for TLS
  // the socket will not become readable again for bytes already inside the SSL object.
  startServer(FaultPlan{
      .rules = {
          {.op = FaultOp::kRead, .action = FaultAction::kShortIo, .times = -1, .max_bytes = 16}}});
  const Snapshot before = snapshot();
  H2Client client(clientConfig());
  const int32_t first = fetch(client, "/small.txt");
  ASSERT_GT(first, 0) << client.error();
  ASSERT_TRUE(sameBytes(client.stream(first).body, data().small));
  const int32_t id = client.get("/small.txt", {{"x-padding", std::string(2000, 'p')}});
  ASSERT_GT(id, 0);
  EXPECT_TRUE(client.finish(id, 10s))
      << "the second request was not answered: its bytes are still inside the transport ("
      << client.error() << ")";
  EXPECT_EQ(client.stream(id).status, 200);
  EXPECT_TRUE(sameBytes(client.stream(id).body, data().small));
  client.close();
  const Snapshot idle = expectIdle();
  EXPECT_EQ(totalDelta(before, idle), 1);
}

TEST_P(HandshakeFaults, HandshakeWantReadWantWriteInjectedStillServes) {
  // Handshake calls 0-1: want-write; 2-4: want-read (the ClientHello may be unread in the socket:
  // level-triggered readiness calls again); 5: the first real step; 6-7: want-write again
  // before the step that reads the client's Finished, when there is one (the first real step
  // may finish the handshake by itself if the client's Finished is in by then).
  startServer(FaultPlan{.rules = {
                            {.op = FaultOp::kHandshake,
                             .action = FaultAction::kWouldBlock,
                             .times = 2,
                             .want = net::Interest::kWrite},
                            {.op = FaultOp::kHandshake,
                             .action = FaultAction::kWouldBlock,
                             .after_calls = 2,
                             .times = 3,
                             .want = net::Interest::kRead},
                            {.op = FaultOp::kHandshake,
                             .action = FaultAction::kWouldBlock,
                             .after_calls = 6,
                             .times = 2,
                             .want = net::Interest::kWrite},
                        }});
  const Snapshot before = snapshot();
  H2Client client(clientConfig());
  const int32_t id = fetch(client, "/small.txt");
  ASSERT_GT(id, 0) << client.error();
  EXPECT_EQ(client.stream(id).status, 200);
  EXPECT_TRUE(sameBytes(client.stream(id).body, data().small));
  const uint64_t handshake_calls = log_->calls(FaultOp::kHandshake);
  EXPECT_GE(handshake_calls, 6u);
  EXPECT_EQ(log_->fired(FaultAction::kWouldBlock), handshake_calls >= 8 ? 7u : 5u)
      << "every injected want fired (" << handshake_calls << " handshake calls)";
  client.close();
  const Snapshot idle = expectIdle();
  EXPECT_EQ(totalDelta(before, idle), 1);
  EXPECT_EQ(delta(before, idle, CloseReason::kTlsError), 0);
  EXPECT_EQ(delta(before, idle, CloseReason::kHandshakeTimeout), 0);
}

// -- the same faults under an HTTP/1.1 client (curl --http1.1; TLS: ALPN http/1.1) --

class Http1Faults : public FaultInjection {
 protected:
  // A 1 MiB HTTP/1.1 download during which the transport fails as `rule` says: closed at
  // once for `expected`, the client sees the body cut, the worker goes idle. (A read fault
  // needs the client to send while it downloads, which an HTTP/1.1 client does not: write
  // faults only.)
  void runFailingDownload(const FaultRule& rule, CloseReason expected, std::string_view detach) {
    startServer(FaultPlan{.rules = {rule}});
    const Snapshot before = snapshot();
    const auto t0 = Clock::now();
    std::string body;
    const ProcessResult r = curl("--http1.1", "/big.bin", body);
    ASSERT_TRUE(r.started) << r.output;
    EXPECT_FALSE(r.timed_out) << "closed at once, not by a timeout";
    EXPECT_NE(r.exit_code, 0) << "curl saw the response cut: " << r.output;
    EXPECT_LT(body.size(), data().big.size()) << "the download was cut short by the fault";
    EXPECT_LT(Clock::now() - t0, 20s);
    expectOneFaultClose(before, rule, expected, detach);
  }
};

TEST_P(Http1Faults, FdClosedBehindBackMidResponse) {
  runFailingDownload(
      {.op = FaultOp::kWrite, .action = FaultAction::kCloseFd, .after_written_bytes = 64 * 1024},
      errorReason(), "fd-gone");
}

TEST_P(Http1Faults, EbadfFromWrite) {
  runFailingDownload({.op = FaultOp::kWrite,
                      .action = FaultAction::kError,
                      .after_written_bytes = 64 * 1024,
                      .err = EBADF},
                     errorReason(), "detached");
}

TEST_P(Http1Faults, EconnresetFromWrite) {
  runFailingDownload({.op = FaultOp::kWrite,
                      .action = FaultAction::kReset,
                      .after_written_bytes = 64 * 1024,
                      .err = ECONNRESET},
                     CloseReason::kPeerReset, "detached");
}

TEST_P(Http1Faults, EpipeFromWrite) {
  runFailingDownload({.op = FaultOp::kWrite,
                      .action = FaultAction::kReset,
                      .after_written_bytes = 64 * 1024,
                      .err = EPIPE},
                     CloseReason::kPeerReset, "detached");
}

TEST_P(Http1Faults, EagainStormsAndShortIoStillDeliverEveryByte) {
  // Reads of at most 7 bytes: the request head arrives in pieces, the parser keeps its state.
  runStormDownload("--http1.1");
}

INSTANTIATE_TEST_SUITE_P(Leak, FaultInjection, ::testing::ValuesIn(kBackends), backendName);
INSTANTIATE_TEST_SUITE_P(Leak, Http1Faults, ::testing::ValuesIn(kBackends), backendName);
INSTANTIATE_TEST_SUITE_P(Leak, HandshakeFaults, ::testing::ValuesIn(kTlsBackends), backendName);

// ==== scenario 8: shutdown =====================================================================

class Shutdown : public LeakTest {
 protected:
  // After wait(): the worker's thread has ended, read it directly.
  Snapshot afterWait() { return readWorker(worker()); }
};

TEST_P(Shutdown, InFlightStreamCompletesWithinTheDrainTimeout) {
  startServer({}, [](ServerConfig& c) { c.drain_timeout = 30s; });
  const Snapshot before = snapshot();
  H2ClientConfig cc = clientConfig();
  cc.stream_window = 16 * 1024;
  cc.connection_window = 64 * 1024;
  cc.consume_bytes_per_ms = 8 * 1024;  // about 1.3 s for 10 MiB: a slow reader
  H2Client client(cc);
  ASSERT_TRUE(client.connect(10s)) << client.error();
  const int32_t id = client.get("/huge.bin");
  ASSERT_GT(id, 0);
  Clock::time_point shutdown_at{};
  client.on_body_progress = [&](uint64_t bytes) {
    if (bytes >= (1u << 20) && !stopped_) {
      stopped_ = true;
      shutdown_at = Clock::now();
      server_->shutdown();
    }
  };
  ASSERT_TRUE(client.finish(id, 60s)) << "stream did not finish: " << client.error() << ", "
                                      << client.stream(id).body.size() << " bytes";
  const auto completed_after = Clock::now() - shutdown_at;
  ASSERT_TRUE(stopped_) << "the shutdown was requested with the stream in flight";
  const H2Stream& s = client.stream(id);
  EXPECT_EQ(s.status, 200);
  EXPECT_EQ(s.close_error, 0u);
  EXPECT_EQ(s.body.size(), data().huge.size());
  EXPECT_TRUE(sameBytes(s.body, data().huge)) << "the 10 MiB body arrived intact";
  EXPECT_LT(completed_after, config_.drain_timeout) << "completed within the drain timeout";
  // The shutdown notice, then the final GOAWAY naming the last stream processed (ours).
  EXPECT_TRUE(client.pumpUntil([&] { return client.lastGoawayStreamId() == id; }, 10s))
      << "GOAWAY frames=" << client.goawayFrames()
      << " last_stream_id=" << client.lastGoawayStreamId();
  EXPECT_EQ(client.goawayFrames(), 2) << "the shutdown notice came before the final GOAWAY";
  client.close();  // the client closes first; the server was lingering for it

  ASSERT_TRUE(waitServer(10s)) << "wait() returned";
  const Snapshot after = afterWait();
  expectIdleValues(after, false);
  EXPECT_EQ(delta(before, after, CloseReason::kCompleted), 1) << describe(after);
  EXPECT_EQ(delta(before, after, CloseReason::kShutdown), 0) << "not cut by the drain timer";
  EXPECT_EQ(totalDelta(before, after), 1);
}

TEST_P(Shutdown, DrainTimeoutExpiresWhenTheClientNeverReads) {
  startServer({}, [](ServerConfig& c) { c.drain_timeout = 500ms; });
  const Snapshot before = snapshot();
  H2ClientConfig cc = clientConfig();
  cc.stream_window = (1u << 31) - 1;  // flow control never stops the server: the socket does
  cc.connection_window = (1u << 31) - 1;
  cc.rcvbuf = 32 * 1024;
  H2Client client(cc);
  ASSERT_TRUE(client.connect(10s)) << client.error();
  const int32_t id = client.get("/huge.bin");
  ASSERT_GT(id, 0);
  ASSERT_TRUE(client.pumpUntil([&] { return client.stream(id).status != 0; }, kClientLimit))
      << client.error();
  // From here on the client reads nothing: the socket buffers fill (10 MiB is more than they
  // hold) and the stream cannot finish.
  const Snapshot stuck =
      waitFor([](const Snapshot& s) { return s.streams_active == 1; }, kIdleLimit);
  ASSERT_EQ(stuck.streams_active, 1) << describe(stuck);

  const auto t0 = Clock::now();
  stopped_ = true;
  server_->shutdown();
  ASSERT_TRUE(waitServer(config_.drain_timeout + 10s)) << "wait() returned";
  const auto took = Clock::now() - t0;
  EXPECT_GE(took, config_.drain_timeout - 50ms) << "closed by the drain timer";
  EXPECT_LT(took, config_.drain_timeout + 5s);
  const Snapshot after = afterWait();
  expectIdleValues(after, false);
  EXPECT_EQ(delta(before, after, CloseReason::kShutdown), 1) << describe(after);
  EXPECT_EQ(totalDelta(before, after), 1);
  EXPECT_LT(client.stream(id).body.size(), data().huge.size());
  // The client finds its connection ended once it reads again.
  EXPECT_TRUE(client.waitEnd(10s)) << "the server's close reached the client";
  client.close();
}

INSTANTIATE_TEST_SUITE_P(Leak, Shutdown, ::testing::ValuesIn(kBackends), backendName);

// ==== a server destroyed with connections open =================================================

class Teardown : public LeakTest {
 protected:
  void TearDown() override {
    raw_.reset();
    blocked_.reset();
    idle_.reset();
    LeakTest::TearDown();
  }

  // One connection stuck before its handshake / preface, one download blocked on a client that
  // does not read, one idle after a completed request. Returns once the worker holds all three.
  void openConnections() {
    raw_ = std::make_unique<RawClient>(port_);
    ASSERT_TRUE(raw_->connected());
    H2ClientConfig blocked_cfg = clientConfig();
    blocked_cfg.stream_window = (1u << 31) - 1;
    blocked_cfg.connection_window = (1u << 31) - 1;
    blocked_cfg.rcvbuf = 32 * 1024;
    blocked_ = std::make_unique<H2Client>(blocked_cfg);
    ASSERT_TRUE(blocked_->connect(10s)) << blocked_->error();
    const int32_t id = blocked_->get("/huge.bin");
    ASSERT_TRUE(blocked_->pumpUntil([&] { return blocked_->stream(id).status != 0; }, kClientLimit))
        << blocked_->error();
    idle_ = std::make_unique<H2Client>(clientConfig());
    const int32_t small = fetch(*idle_, "/small.txt");
    ASSERT_GT(small, 0) << idle_->error();
    ASSERT_TRUE(sameBytes(idle_->stream(small).body, data().small));
    const Snapshot s = waitFor(
        [](const Snapshot& x) { return x.connections == 3 && x.streams_active == 1; }, kIdleLimit);
    ASSERT_EQ(s.connections, 3u) << describe(s);
    ASSERT_EQ(s.streams_active, 1) << describe(s);
  }

  // Every client sees its connection end (the server really closed each fd).
  void expectClientsSeeTheEnd() {
    EXPECT_TRUE(raw_->waitEnded(10s)) << "stuck-before-handshake client";
    EXPECT_TRUE(blocked_->waitEnd(10s)) << "blocked download";
    EXPECT_TRUE(idle_->waitEnd(10s)) << "idle connection";
    raw_.reset();
    blocked_.reset();
    idle_.reset();
  }

  std::unique_ptr<RawClient> raw_;
  std::unique_ptr<H2Client> blocked_;
  std::unique_ptr<H2Client> idle_;
};

TEST_P(Teardown, ServerDestroyedWithConnectionsOpen) {
  startServer({}, [](ServerConfig& c) { c.drain_timeout = 300ms; });
  openConnections();
  if (HasFatalFailure()) return;
  EXPECT_EQ(log_->created(), 3u);
  // No shutdown() first: the destructor does what it must.
  ASSERT_TRUE(destroyServer(20s)) << "~Server returned";
  EXPECT_EQ(log_->destroyed(), 3u) << "every connection's transport was freed";
  expectClientsSeeTheEnd();
  // TearDown: fds back to the pre-server baseline, LeakSanitizer clean.
}

TEST_P(Teardown, LoopStoppedThenServerDestroyedWithClosesPending) {
  // The embedder stops the loop under live connections and destroys the server: the loop never
  // runs again, so ~Worker closes every connection (their deletions pending) and the deferred
  // destruction runs before the loop goes.
  startServer();
  openConnections();
  if (HasFatalFailure()) return;
  worker().loop().stop();  // thread-safe
  stopped_ = true;
  ASSERT_TRUE(waitServer(10s)) << "the worker's thread ended";
  const Snapshot stopped = readWorker(worker());
  EXPECT_EQ(stopped.connections, 3u) << "the connections outlived their loop's run";
  ASSERT_TRUE(destroyServer(20s)) << "~Server returned";
  EXPECT_EQ(log_->destroyed(), 3u) << "every connection's transport was freed";
  expectClientsSeeTheEnd();
}

INSTANTIATE_TEST_SUITE_P(Leak, Teardown, ::testing::ValuesIn(kBackends), backendName);

}  // namespace
}  // namespace h2loop::test
