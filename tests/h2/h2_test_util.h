#pragma once

// In-memory harness: a real nghttp2 client session talking to h2::Session,
// bytes pumped back and forth until both sides are idle.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <nghttp2/nghttp2.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "h2/file_handle.h"
#include "h2/output_buffer.h"
#include "h2/session.h"
#include "h2/stream.h"
#include "h2/stream_pool.h"

namespace h2loop::h2::test {

inline nghttp2_nv nv(const std::string& name, const std::string& value) {
  return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(),
                    value.size(), NGHTTP2_NV_FLAG_NONE};
}

// What the client saw on one stream.
struct ClientStream {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool closed = false;
  uint32_t close_error = 0;
  bool rst_received = false;
  uint32_t rst_error = 0;
  bool end_stream = false;
  int data_frames = 0;

  const std::string* header(const std::string& name) const {
    for (const auto& h : headers) {
      if (h.first == name) return &h.second;
    }
    return nullptr;
  }
};

class Client {
 public:
  explicit Client(std::vector<nghttp2_settings_entry> settings = {}, int32_t connection_window = 0,
                  size_t max_send_header_block = 0) {
    nghttp2_session_callbacks* cbs = nullptr;
    EXPECT_EQ(nghttp2_session_callbacks_new(&cbs), 0);
    nghttp2_session_callbacks_set_on_header_callback(cbs, onHeader);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, onFrameRecv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, onData);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, onClose);
    nghttp2_option* opt = nullptr;
    EXPECT_EQ(nghttp2_option_new(&opt), 0);
    // nghttp2 refuses to send header blocks over 64 KiB by default; raise it
    // to test the server's own limit.
    if (max_send_header_block > 0) {
      nghttp2_option_set_max_send_header_block_length(opt, max_send_header_block);
    }
    nghttp2_session* s = nullptr;
    EXPECT_EQ(nghttp2_session_client_new2(&s, cbs, this, opt), 0);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    session_.reset(s);
    EXPECT_EQ(nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, settings.data(), settings.size()), 0);
    if (connection_window > 0) {
      EXPECT_EQ(nghttp2_session_set_local_window_size(s, NGHTTP2_FLAG_NONE, 0, connection_window),
                0);
    }
  }

  nghttp2_session* get() { return session_.get(); }

  int32_t request(const std::string& method, const std::string& path,
                  std::vector<std::pair<std::string, std::string>> extra = {},
                  const std::string* body = nullptr, bool end_stream = true) {
    static const std::string kMethod = ":method", kPath = ":path", kScheme = ":scheme",
                             kAuthority = ":authority", kHttps = "https", kHost = "example.test";
    std::vector<nghttp2_nv> nva = {nv(kMethod, method), nv(kPath, path), nv(kScheme, kHttps),
                                   nv(kAuthority, kHost)};
    for (const auto& h : extra)
      nva.push_back(nv(h.first, h.second));
    nghttp2_data_provider prd{};
    auto state = std::make_unique<BodySource>();
    state->end_stream = end_stream;
    if (body != nullptr) {
      state->data = *body;
      prd.source.ptr = state.get();
      prd.read_callback = readBody;
    }
    const int32_t id = nghttp2_submit_request(session_.get(), nullptr, nva.data(), nva.size(),
                                              body != nullptr ? &prd : nullptr, nullptr);
    EXPECT_GT(id, 0) << nghttp2_strerror(id);
    if (body != nullptr) bodies_.push_back(std::move(state));
    streams[id];
    return id;
  }

  void reset(int32_t id, uint32_t code = NGHTTP2_CANCEL) {
    EXPECT_EQ(nghttp2_submit_rst_stream(session_.get(), NGHTTP2_FLAG_NONE, id, code), 0);
  }

  std::map<int32_t, ClientStream> streams;
  std::vector<nghttp2_settings_entry> server_settings;
  int settings_frames = 0;
  int rst_frames = 0;
  int goaway_frames = 0;
  uint32_t goaway_error = 0;
  int32_t goaway_last_stream_id = -1;

 private:
  struct Del {
    void operator()(nghttp2_session* s) const { nghttp2_session_del(s); }
  };
  struct BodySource {
    std::string data;
    size_t off = 0;
    bool end_stream = true;  // false: the stream stays open after the body
  };

  static Client& self(void* ud) { return *static_cast<Client*>(ud); }

  static ssize_t readBody(nghttp2_session*, int32_t, uint8_t* buf, size_t len, uint32_t* flags,
                          nghttp2_data_source* src, void*) {
    auto* b = static_cast<BodySource*>(src->ptr);
    const size_t n = std::min(len, b->data.size() - b->off);
    std::memcpy(buf, b->data.data() + b->off, n);
    b->off += n;
    if (b->off == b->data.size()) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      if (!b->end_stream) *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    }
    return static_cast<ssize_t>(n);
  }
  static int onHeader(nghttp2_session*, const nghttp2_frame* f, const uint8_t* name, size_t nl,
                      const uint8_t* value, size_t vl, uint8_t, void* ud) {
    ClientStream& cs = self(ud).streams[f->hd.stream_id];
    std::string n(reinterpret_cast<const char*>(name), nl);
    std::string v(reinterpret_cast<const char*>(value), vl);
    if (n == ":status") cs.status = std::atoi(v.c_str());
    cs.headers.emplace_back(std::move(n), std::move(v));
    return 0;
  }
  static int onFrameRecv(nghttp2_session*, const nghttp2_frame* f, void* ud) {
    Client& c = self(ud);
    switch (f->hd.type) {
      case NGHTTP2_SETTINGS:
        if ((f->hd.flags & NGHTTP2_FLAG_ACK) == 0) {
          ++c.settings_frames;
          c.server_settings.assign(f->settings.iv, f->settings.iv + f->settings.niv);
        }
        break;
      case NGHTTP2_RST_STREAM: {
        ++c.rst_frames;
        ClientStream& cs = c.streams[f->hd.stream_id];
        cs.rst_received = true;
        cs.rst_error = f->rst_stream.error_code;
        break;
      }
      case NGHTTP2_GOAWAY:
        ++c.goaway_frames;
        c.goaway_error = f->goaway.error_code;
        c.goaway_last_stream_id = f->goaway.last_stream_id;
        break;
      case NGHTTP2_DATA:
        ++c.streams[f->hd.stream_id].data_frames;
        [[fallthrough]];
      case NGHTTP2_HEADERS:
        if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) c.streams[f->hd.stream_id].end_stream = true;
        break;
      default:
        break;
    }
    return 0;
  }
  static int onData(nghttp2_session*, uint8_t, int32_t id, const uint8_t* data, size_t len,
                    void* ud) {
    self(ud).streams[id].body.append(reinterpret_cast<const char*>(data), len);
    return 0;
  }
  static int onClose(nghttp2_session*, int32_t id, uint32_t code, void* ud) {
    ClientStream& cs = self(ud).streams[id];
    cs.closed = true;
    cs.close_error = code;
    return 0;
  }

  std::unique_ptr<nghttp2_session, Del> session_;
  std::vector<std::unique_ptr<BodySource>> bodies_;
};

// Records what the session reported; responds through `respond` (default:
// 200 "hello <path>").
class RecordingHandler : public SessionHandler {
 public:
  std::function<void(Stream&, bool)> respond = [](Stream& s, bool) {
    static const Header kType[] = {{"content-type", "text/plain"}};
    bodyScratch().assign("hello ");
    bodyScratch().append(s.path());
    EXPECT_EQ(s.submitResponse(200, kType, ResponseBody::bytes(bodyScratch())), SubmitResult::kOk);
  };

  void onRequest(Stream& s, bool end_stream) override {
    ++requests;
    last_method = std::string(s.method());
    last_path = std::string(s.path());
    last_authority = std::string(s.authority());
    last_scheme = std::string(s.scheme());
    last_fields.assign(s.headers().begin(), s.headers().end());
    respond(s, end_stream);
  }
  void onRequestData(Stream&, const uint8_t*, size_t len) override { data_bytes += len; }
  void onRequestEnd(Stream& s) override {
    ++request_ends;
    last_body_bytes = s.requestBodyBytes();
  }
  void onStreamClosed(Stream& s, uint32_t code) override {
    EXPECT_TRUE(s.closed());
    closed.emplace_back(s.id(), code);
    if (on_closed) on_closed(s, code);
  }
  std::function<void(Stream&, uint32_t)> on_closed;

  static std::string& bodyScratch() {
    static std::string s;
    return s;
  }

  int requests = 0;
  int request_ends = 0;
  size_t data_bytes = 0;
  uint64_t last_body_bytes = 0;
  std::string last_method, last_path, last_authority, last_scheme;
  std::vector<HeaderField> last_fields;
  std::vector<std::pair<int32_t, uint32_t>> closed;
};

// A FileHandle over a real temporary file, counting references.
class TempFile : public FileHandle {
 public:
  explicit TempFile(size_t size) {
    char path[] = "/tmp/h2loop_h2_test_XXXXXX";
    fd_ = ::mkstemp(path);
    EXPECT_GE(fd_, 0);
    ::unlink(path);
    contents.resize(size);
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < size; ++i) {
      x ^= x << 13;
      x ^= x >> 17;
      x ^= x << 5;
      contents[i] = static_cast<char>(x);
    }
    size_t done = 0;
    while (done < size) {
      const ssize_t w = ::write(fd_, contents.data() + done, size - done);
      EXPECT_GT(w, 0);
      if (w <= 0) break;
      done += static_cast<size_t>(w);
    }
  }
  ~TempFile() override {
    if (fd_ >= 0) ::close(fd_);
  }
  int fd() const override {
    ++fd_calls;
    return fake_fd_ ? -1 : fd_;
  }
  std::string_view memory() const override { return in_memory_; }
  void addRef() override { ++refs; }
  void release() override {
    EXPECT_GT(refs, 0);
    --refs;
  }

  void breakFd() { fake_fd_ = true; }
  // memory() returns the first `bytes` of the contents (a cache holding it).
  void holdInMemory(size_t bytes) { in_memory_ = std::string_view(contents).substr(0, bytes); }

  std::string contents;
  int refs = 0;  // references held by streams (the test's own is not counted)
  mutable int fd_calls = 0;

 private:
  int fd_ = -1;
  bool fake_fd_ = false;
  std::string_view in_memory_;
};

// Server session + client + output buffer, with a pump.
struct Pair {
  explicit Pair(size_t pool_capacity = 256, SessionConfig config = {},
                std::vector<nghttp2_settings_entry> client_settings = {},
                int32_t client_connection_window = 0, size_t high_watermark = 64 * 1024,
                size_t client_max_send_header_block = 0)
      : pool(pool_capacity),
        out(high_watermark, high_watermark / 4),
        client(std::move(client_settings), client_connection_window, client_max_send_header_block) {
    session.emplace(pool, handler, config, allocator);
    EXPECT_TRUE(session->valid()) << session->lastError();
  }
  ~Pair() {
    session.reset();
    EXPECT_EQ(pool.inUse(), 0u);
    EXPECT_EQ(allocator->outstanding(), 0u) << "nghttp2 memory not returned";
  }

  // Sends what the client has queued to the server (no server output).
  void clientToServer() {
    const uint8_t* data = nullptr;
    for (ssize_t n; (n = nghttp2_session_mem_send(client.get(), &data)) > 0;) {
      const RecvResult r = session->receive(data, static_cast<size_t>(n));
      EXPECT_EQ(r.status, SessionStatus::kOk) << session->lastError();
    }
  }

  // Moves bytes both ways until neither side has anything to say. Returns
  // false on a fatal session result.
  bool pump(int max_rounds = 100000) {
    for (int round = 0; round < max_rounds; ++round) {
      bool moved = false;
      for (;;) {
        const uint8_t* p = nullptr;
        const ssize_t n = nghttp2_session_mem_send(client.get(), &p);
        EXPECT_GE(n, 0);
        if (n <= 0) break;
        moved = true;
        const RecvResult r = session->receive(p, static_cast<size_t>(n));
        if (r.status != SessionStatus::kOk) return false;
        EXPECT_EQ(r.consumed, static_cast<size_t>(n));
      }
      const ProduceResult pr = session->produce(out);
      if (pr.status != SessionStatus::kOk) return false;
      max_out = std::max(max_out, out.size());
      if (!out.empty()) {
        moved = true;
        const ssize_t n = nghttp2_session_mem_recv(client.get(), out.data(), out.size());
        EXPECT_EQ(n, static_cast<ssize_t>(out.size())) << nghttp2_strerror(static_cast<int>(n));
        out.consume(out.size());
      }
      if (!moved) return true;
    }
    ADD_FAILURE() << "pump did not settle";
    return false;
  }

  StreamPool pool;
  RecordingHandler handler;
  OutputBuffer out;
  Client client;
  // As in the server: nghttp2's memory from a SessionAllocator.
  std::shared_ptr<SessionAllocator> allocator = std::make_shared<SessionAllocator>();
  std::optional<Session> session;
  size_t max_out = 0;
};

}  // namespace h2loop::h2::test
