// Micro benchmarks for h2::Session (Google Benchmark): one GET and its
// response through a server Session, in memory, against a real nghttp2
// client session. Bytes are pumped both ways until both sides are idle (the
// same idea as the tests' harness, written out here so the bench does not
// depend on test headers). Not tests: run by hand, see bench/README.md.

#include <benchmark/benchmark.h>
#include <nghttp2/nghttp2.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "h2/file_handle.h"
#include "h2/output_buffer.h"
#include "h2/session.h"
#include "h2/stream.h"
#include "h2/stream_pool.h"

namespace {

using namespace h2loop::h2;

// A FileHandle over an unlinked temporary file.
class BenchFile : public FileHandle {
 public:
  explicit BenchFile(size_t size) {
    char path[] = "/tmp/h2loop_session_bench_XXXXXX";
    fd_ = ::mkstemp(path);
    if (fd_ < 0) std::abort();
    ::unlink(path);
    std::string data(size, 'x');
    if (::write(fd_, data.data(), data.size()) != static_cast<ssize_t>(data.size())) std::abort();
  }
  ~BenchFile() override { ::close(fd_); }
  int fd() const override { return fd_; }
  void addRef() override { ++refs_; }
  void release() override { --refs_; }

 private:
  int fd_ = -1;
  int refs_ = 0;
};

enum class BodyKind { kBytes, kFile };

class Handler : public SessionHandler {
 public:
  Handler(BodyKind kind, size_t size) : kind_(kind), bytes_(size, 'x'), file_(size) {}
  void onRequest(Stream& s, bool) override {
    static const Header kHeaders[] = {{"content-type", "text/html"}};
    const ResponseBody body = kind_ == BodyKind::kBytes
                                  ? ResponseBody::bytes(bytes_)
                                  : ResponseBody::file(&file_, 0, bytes_.size());
    if (s.submitResponse(200, kHeaders, body) != SubmitResult::kOk) std::abort();
  }

 private:
  BodyKind kind_;
  std::string bytes_;
  BenchFile file_;
};

// Minimal nghttp2 client: counts completed streams and body bytes.
struct Client {
  struct Del {
    void operator()(nghttp2_session* s) const { nghttp2_session_del(s); }
  };
  std::unique_ptr<nghttp2_session, Del> s;
  uint64_t closed = 0;
  uint64_t body_bytes = 0;

  Client() {
    nghttp2_session_callbacks* cbs = nullptr;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
        cbs, [](nghttp2_session*, uint8_t, int32_t, const uint8_t*, size_t len, void* ud) {
          static_cast<Client*>(ud)->body_bytes += len;
          return 0;
        });
    nghttp2_session_callbacks_set_on_stream_close_callback(
        cbs, [](nghttp2_session*, int32_t, uint32_t, void* ud) {
          ++static_cast<Client*>(ud)->closed;
          return 0;
        });
    nghttp2_session* raw = nullptr;
    if (nghttp2_session_client_new(&raw, cbs, this) != 0) std::abort();
    nghttp2_session_callbacks_del(cbs);
    s.reset(raw);
    // Large windows, as h2load uses, so flow control never stalls the loop.
    const nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, (1u << 30) - 1}};
    nghttp2_submit_settings(raw, NGHTTP2_FLAG_NONE, iv, 1);
    nghttp2_session_set_local_window_size(raw, NGHTTP2_FLAG_NONE, 0, (1 << 30) - 1);
  }

  void get(const char* path) {
    auto nv = [](const char* n, const char* v) {
      return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(n)),
                        reinterpret_cast<uint8_t*>(const_cast<char*>(v)), std::strlen(n),
                        std::strlen(v), NGHTTP2_NV_FLAG_NONE};
    };
    const nghttp2_nv nva[] = {nv(":method", "GET"), nv(":path", path), nv(":scheme", "https"),
                              nv(":authority", "127.0.0.1"),
                              nv("user-agent", "h2load nghttp2/1.52.0")};
    if (nghttp2_submit_request(s.get(), nullptr, nva, 5, nullptr, nullptr) < 0) std::abort();
  }
};

struct Pair {
  StreamPool pool{1024};
  Handler handler;
  OutputBuffer out;
  Client client;
  std::optional<Session> session;

  Pair(BodyKind kind, size_t size) : handler(kind, size) {
    session.emplace(pool, handler);
    if (!session->valid()) std::abort();
    pump();  // preface, SETTINGS, ACKs
  }
  ~Pair() { session.reset(); }

  void pump() {
    for (;;) {
      bool moved = false;
      const uint8_t* p = nullptr;
      for (ssize_t n; (n = nghttp2_session_mem_send(client.s.get(), &p)) > 0;) {
        moved = true;
        if (session->receive(p, static_cast<size_t>(n)).status != SessionStatus::kOk) std::abort();
      }
      if (session->produce(out).status != SessionStatus::kOk) std::abort();
      if (!out.empty()) {
        moved = true;
        if (nghttp2_session_mem_recv(client.s.get(), out.data(), out.size()) !=
            static_cast<ssize_t>(out.size()))
          std::abort();
        out.consume(out.size());
      }
      if (!moved) return;
    }
  }
};

// One request + response per iteration (client serialisation and parsing
// are included: roughly half of the time is the nghttp2 client's).
void BM_SessionRequest(benchmark::State& state, BodyKind kind) {
  const auto size = static_cast<size_t>(state.range(0));
  Pair pair(kind, size);
  for (auto _ : state) {
    pair.client.get("/index.html");
    pair.pump();
  }
  if (pair.client.closed != static_cast<uint64_t>(state.iterations())) {
    state.SkipWithError("streams did not complete");
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(static_cast<int64_t>(pair.client.body_bytes));
}
BENCHMARK_CAPTURE(BM_SessionRequest, bytes, BodyKind::kBytes)->Arg(0)->Arg(1024)->Arg(100 * 1024);
BENCHMARK_CAPTURE(BM_SessionRequest, file, BodyKind::kFile)->Arg(1024)->Arg(100 * 1024);

// 16 concurrent requests per pump, like h2load -m 16.
void BM_SessionBatch16(benchmark::State& state) {
  Pair pair(BodyKind::kFile, 1024);
  for (auto _ : state) {
    for (int i = 0; i < 16; ++i)
      pair.client.get("/index.html");
    pair.pump();
  }
  if (pair.client.closed != static_cast<uint64_t>(state.iterations()) * 16) {
    state.SkipWithError("streams did not complete");
  }
  state.SetItemsProcessed(state.iterations() * 16);
}
BENCHMARK(BM_SessionBatch16);

// Session construction + preface/SETTINGS exchange + destruction: the
// per-connection cost of the session layer.
void BM_SessionSetup(benchmark::State& state) {
  for (auto _ : state) {
    Pair pair(BodyKind::kBytes, 0);
    benchmark::DoNotOptimize(pair.session->activeStreams());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SessionSetup);

}  // namespace

BENCHMARK_MAIN();
