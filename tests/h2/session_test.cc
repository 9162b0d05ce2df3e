#include "h2/session.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "h2_test_util.h"

namespace h2loop::h2::test {
namespace {

uint32_t settingValue(const Client& c, int32_t id) {
  for (const auto& e : c.server_settings) {
    if (e.settings_id == id) return e.value;
  }
  return 0xffffffffu;
}

TEST(Session, InitialSettingsCarryLimits) {
  SessionConfig cfg;
  cfg.max_concurrent_streams = 37;
  cfg.initial_window_size = 200000;
  cfg.max_header_list_size = 12345;
  cfg.connection_window_size = 3 * 1024 * 1024;
  Pair p(16, cfg);
  ASSERT_TRUE(p.pump());
  EXPECT_EQ(p.client.settings_frames, 1);
  EXPECT_EQ(settingValue(p.client, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS), 37u);
  EXPECT_EQ(settingValue(p.client, NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE), 200000u);
  EXPECT_EQ(settingValue(p.client, NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE), 12345u);
  // The connection window was raised with a WINDOW_UPDATE.
  EXPECT_EQ(nghttp2_session_get_remote_window_size(p.client.get()), 3 * 1024 * 1024);
  EXPECT_TRUE(p.session->wantRead());
  EXPECT_FALSE(p.session->wantWrite());
}

TEST(Session, ExtendedConnectIsOfferedOnlyWhenConfigured) {
  {
    Pair p;
    ASSERT_TRUE(p.pump());
    EXPECT_EQ(settingValue(p.client, NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL), UINT32_MAX)
        << "not sent";
  }
  SessionConfig cfg;
  cfg.enable_connect_protocol = true;
  Pair p(16, cfg);
  ASSERT_TRUE(p.pump());
  EXPECT_EQ(settingValue(p.client, NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL), 1u);
  // RFC 8441 §4: CONNECT with :protocol opens a tunnel on its stream; the
  // tunnel's bytes are DATA both ways.
  bool wants = false;
  StreamRef held;
  p.handler.respond = [&](Stream& s, bool end_stream) {
    EXPECT_FALSE(end_stream);
    wants = s.wantsTunnel();
    EXPECT_TRUE(s.acceptTunnel());
    EXPECT_EQ(s.submitResponse(200, {}, ResponseBody::streamed()), SubmitResult::kOk);
    held = StreamRef(&s);
  };
  const std::string up = "frame bytes";
  const int32_t id = p.client.request("CONNECT", "/ws",
                                      {{":protocol", "websocket"}, {"sec-websocket-version", "13"}},
                                      &up, /*end_stream=*/false);
  ASSERT_TRUE(p.pump());
  EXPECT_TRUE(wants);
  EXPECT_EQ(p.handler.last_method, "CONNECT");
  EXPECT_EQ(p.handler.data_bytes, up.size());
  EXPECT_EQ(p.client.streams[id].status, 200);
  ASSERT_EQ(held->appendBody("down"), SubmitResult::kOk);
  ASSERT_TRUE(p.pump());
  EXPECT_EQ(p.client.streams[id].body, "down");
  EXPECT_FALSE(p.client.streams[id].closed);
  held.reset();
}

TEST(Session, OrdinaryRequestsOfferNoTunnel) {
  SessionConfig cfg;
  cfg.enable_connect_protocol = true;
  Pair p(16, cfg);
  bool wants = true;
  p.handler.respond = [&](Stream& s, bool) {
    wants = s.wantsTunnel();
    EXPECT_FALSE(s.acceptTunnel());
    EXPECT_EQ(s.submitResponse(204, {}, ResponseBody::none()), SubmitResult::kOk);
  };
  (void)p.client.request("GET", "/");
  ASSERT_TRUE(p.pump());
  EXPECT_FALSE(wants);
}

TEST(Session, GetWithInMemoryBody) {
  Pair p;
  const int32_t id = p.client.request("GET", "/index", {{"accept", "text/plain"}});
  ASSERT_TRUE(p.pump());
  const ClientStream& cs = p.client.streams[id];
  EXPECT_EQ(cs.status, 200);
  EXPECT_EQ(cs.body, "hello /index");
  ASSERT_NE(cs.header("content-length"), nullptr);
  EXPECT_EQ(*cs.header("content-length"), "12");
  ASSERT_NE(cs.header("content-type"), nullptr);
  EXPECT_TRUE(cs.closed);
  EXPECT_EQ(cs.close_error, NGHTTP2_NO_ERROR);
  EXPECT_EQ(p.handler.requests, 1);
  EXPECT_EQ(p.handler.request_ends, 1);
  EXPECT_EQ(p.handler.last_method, "GET");
  EXPECT_EQ(p.handler.last_path, "/index");
  EXPECT_EQ(p.handler.last_authority, "example.test");
  EXPECT_EQ(p.handler.last_scheme, "https");
  ASSERT_EQ(p.handler.last_fields.size(), 1u);
  EXPECT_EQ(p.handler.last_fields[0].name, "accept");
  EXPECT_EQ(p.handler.last_fields[0].value, "text/plain");
  ASSERT_EQ(p.handler.closed.size(), 1u);
  EXPECT_EQ(p.handler.closed[0], std::make_pair(id, uint32_t{NGHTTP2_NO_ERROR}));
  EXPECT_EQ(p.pool.inUse(), 0u);
  EXPECT_EQ(p.session->activeStreams(), 0u);
  EXPECT_TRUE(p.out.releaseIfEmpty());
}

TEST(Session, PostBodyIsCountedAndEndSignalled) {
  Pair p;
  bool saw_end_stream_in_headers = true;
  p.handler.respond = [&](Stream& s, bool end_stream) {
    saw_end_stream_in_headers = end_stream;
    EXPECT_EQ(s.submitResponse(204, {}, ResponseBody::none()), SubmitResult::kOk);
  };
  const std::string body(100000, 'x');
  const int32_t id = p.client.request("POST", "/upload", {}, &body);
  ASSERT_TRUE(p.pump());
  EXPECT_FALSE(saw_end_stream_in_headers);
  EXPECT_EQ(p.handler.data_bytes, body.size());
  EXPECT_EQ(p.handler.request_ends, 1);
  EXPECT_EQ(p.handler.last_body_bytes, body.size());
  EXPECT_EQ(p.client.streams[id].status, 204);
  EXPECT_EQ(p.client.streams[id].header("content-length"), nullptr);
  EXPECT_TRUE(p.client.streams[id].closed);
  EXPECT_EQ(p.pool.inUse(), 0u);
}

TEST(Session, FileRangeBodyZeroCopyAcrossWindowUpdates) {
  // 1 MiB + change: far beyond the client's 65535-byte default windows.
  TempFile file(1024 * 1024 + 12345);
  Pair p;
  const uint64_t offset = 1000;
  const uint64_t length = file.contents.size() - 2000;
  p.handler.respond = [&](Stream& s, bool) {
    EXPECT_EQ(s.submitResponse(200, {}, ResponseBody::file(&file, offset, length)),
              SubmitResult::kOk);
    EXPECT_EQ(file.refs, 1);
  };
  const int32_t id = p.client.request("GET", "/big");
  ASSERT_TRUE(p.pump());
  const ClientStream& cs = p.client.streams[id];
  EXPECT_EQ(cs.status, 200);
  ASSERT_EQ(cs.body.size(), length);
  EXPECT_TRUE(cs.body == file.contents.substr(offset, length));
  EXPECT_EQ(*cs.header("content-length"), std::to_string(length));
  EXPECT_GE(cs.data_frames, static_cast<int>(length / 16384));
  EXPECT_TRUE(cs.end_stream);
  // Every DATA frame went through send_data_callback (NO_COPY path).
  EXPECT_EQ(file.fd_calls, cs.data_frames);
  EXPECT_EQ(file.refs, 0);
  EXPECT_EQ(p.pool.inUse(), 0u);
  EXPECT_LE(p.max_out, p.out.highWatermark() + 9 + 16384);
}

TEST(Session, FileHeldInMemoryIsCopiedNotRead) {
  TempFile file(40000);
  file.holdInMemory(file.contents.size());
  file.breakFd();  // a pread would fail: every byte must come from memory()
  Pair p;
  const uint64_t offset = 100, length = 39000;
  p.handler.respond = [&](Stream& s, bool) {
    EXPECT_EQ(s.submitResponse(200, {}, ResponseBody::file(&file, offset, length)),
              SubmitResult::kOk);
  };
  const int32_t id = p.client.request("GET", "/small");
  ASSERT_TRUE(p.pump());
  const ClientStream& cs = p.client.streams[id];
  EXPECT_EQ(cs.status, 200);
  EXPECT_TRUE(cs.body == file.contents.substr(offset, length));
  EXPECT_FALSE(cs.rst_received);
  EXPECT_EQ(file.fd_calls, 0);
  EXPECT_EQ(p.session->fileErrors(), 0u);
  EXPECT_EQ(file.refs, 0);
}

TEST(Session, MemoryShorterThanTheRangeResetsTheStream) {
  TempFile file(40000);
  file.holdInMemory(20000);  // inconsistent handle: the range is 40000
  Pair p;
  p.handler.respond = [&](Stream& s, bool) {
    EXPECT_EQ(s.submitResponse(200, {}, ResponseBody::file(&file, 0, 40000)), SubmitResult::kOk);
  };
  const int32_t id = p.client.request("GET", "/small");
  ASSERT_TRUE(p.pump());
  EXPECT_TRUE(p.client.streams[id].rst_received);
  EXPECT_EQ(p.client.streams[id].rst_error, NGHTTP2_INTERNAL_ERROR);
  EXPECT_EQ(p.session->fileErrors(), 1u);
  EXPECT_EQ(p.client.goaway_frames, 0);
  EXPECT_EQ(file.refs, 0);
}

// Header views need only live for the submitResponse() call: the HEADERS
// frame is serialised later (here: at the next produce()), from the stream's
// own copy.
TEST(Session, ResponseHeaderViewsNeedOnlyLiveForTheCall) {
  Pair p;
  std::string name = "x-name", value = "first value";
  p.handler.respond = [&](Stream& s, bool) {
    const Header h[] = {{name, value}};
    EXPECT_EQ(s.submitResponse(200, h, ResponseBody::bytes("ok")), SubmitResult::kOk);
    name.assign(name.size(), 'z');  // the caller reuses its buffers at once
    value.assign(value.size(), 'z');
  };
  const int32_t id = p.client.request("GET", "/h");
  ASSERT_TRUE(p.pump());
  ASSERT_NE(p.client.streams[id].header("x-name"), nullptr);
  EXPECT_EQ(*p.client.streams[id].header("x-name"), "first value");
  EXPECT_EQ(*p.client.streams[id].header("content-length"), "2");
}

// A response whose HEADERS frame is still queued when the client resets the
// stream; the stream object goes back to the pool and serves the next
// request before the server writes anything. nghttp2 drops the first HEADERS
// unread; the second carries its own values.
TEST(Session, QueuedHeadersOfAResetStreamDoNotLeakIntoItsSuccessor) {
  Pair p(1);  // one stream object: the successor reuses its storage
  p.handler.respond = [&](Stream& s, bool) {
    const std::string v = std::string(s.path());
    const Header h[] = {{"x-path", v}};
    EXPECT_EQ(s.submitResponse(200, h, ResponseBody::bytes(v)), SubmitResult::kOk);
  };
  ASSERT_TRUE(p.pump());
  const int32_t first = p.client.request("GET", "/first-request-path");
  p.clientToServer();  // the server queues its response, produces nothing
  p.client.reset(first);
  const int32_t second = p.client.request("GET", "/2nd");
  p.clientToServer();
  EXPECT_EQ(p.pool.highWater(), 1u);
  ASSERT_TRUE(p.pump());
  EXPECT_EQ(p.client.streams[first].status, 0);
  const ClientStream& cs = p.client.streams[second];
  EXPECT_EQ(cs.status, 200);
  ASSERT_NE(cs.header("x-path"), nullptr);
  EXPECT_EQ(*cs.header("x-path"), "/2nd");
  EXPECT_EQ(*cs.header("content-length"), "4");
  EXPECT_EQ(cs.body, "/2nd");
}

TEST(Session, HeadGetsHeadersOnly) {
  TempFile file(50000);
  Pair p;
  p.handler.respond = [&](Stream& s, bool) {
    EXPECT_EQ(s.submitResponse(200, {}, ResponseBody::file(&file, 0, 50000)), SubmitResult::kOk);
  };
  const int32_t id = p.client.request("HEAD", "/file");
  ASSERT_TRUE(p.pump());
  const ClientStream& cs = p.client.streams[id];
  EXPECT_EQ(cs.status, 200);
  EXPECT_EQ(*cs.header("content-length"), "50000");
  EXPECT_TRUE(cs.body.empty());
  EXPECT_EQ(cs.data_frames, 0);
  EXPECT_TRUE(cs.end_stream);
  EXPECT_TRUE(cs.closed);
  EXPECT_EQ(cs.close_error, NGHTTP2_NO_ERROR);
  EXPECT_EQ(file.refs, 0);
  EXPECT_EQ(file.fd_calls, 0);
  EXPECT_EQ(p.pool.inUse(), 0u);
}

TEST(Session, ManyConcurrentStreams) {
  Pair p(128);
  std::vector<int32_t> ids;
  for (int i = 0; i < 100; ++i)
    ids.push_back(p.client.request("GET", "/s" + std::to_string(i)));
  ASSERT_TRUE(p.pump());
  for (int i = 0; i < 100; ++i) {
    const ClientStream& cs = p.client.streams[ids[i]];
    EXPECT_EQ(cs.status, 200) << i;
    EXPECT_EQ(cs.body, "hello /s" + std::to_string(i));
    EXPECT_TRUE(cs.closed);
  }
  EXPECT_EQ(p.handler.requests, 100);
  EXPECT_EQ(p.handler.closed.size(), 100u);
  EXPECT_EQ(p.pool.inUse(), 0u);
  EXPECT_EQ(p.pool.totalAcquired(), 100u);
  EXPECT_GT(p.pool.highWater(), 1u);
  EXPECT_LE(p.pool.highWater(), 100u);
  EXPECT_EQ(p.pool.refused(), 0u);
}

TEST(Session, PoolExhaustionRefusesStreamsAndConnectionLivesOn) {
  Pair p(2);
  std::vector<StreamRef> held;
  p.handler.respond = [&](Stream& s, bool) {
    EXPECT_EQ(s.submitResponse(200, {}, ResponseBody::streamed()), SubmitResult::kOk);
    held.emplace_back(&s);
  };
  std::vector<int32_t> ids;
  for (int i = 0; i < 5; ++i)
    ids.push_back(p.client.request("GET", "/x"));
  ASSERT_TRUE(p.pump());
  ASSERT_EQ(held.size(), 2u);
  int refused = 0;
  for (int32_t id : ids) {
    const ClientStream& cs = p.client.streams[id];
    if (cs.rst_received) {
      EXPECT_EQ(cs.rst_error, NGHTTP2_REFUSED_STREAM);
      EXPECT_EQ(cs.status, 0);
      EXPECT_TRUE(cs.closed);
      ++refused;
    }
  }
  EXPECT_EQ(refused, 3);
  EXPECT_EQ(p.client.goaway_frames, 0);
  EXPECT_EQ(p.pool.refused(), 3u);
  EXPECT_EQ(p.session->refusedStreams(), 3u);
  EXPECT_EQ(p.pool.inUse(), 2u);
  EXPECT_EQ(p.pool.highWater(), 2u);
  EXPECT_EQ(p.handler.closed.size(), 0u);  // refused streams never reach the handler

  // Finish the two held responses; the pool frees and new requests work.
  for (StreamRef& r : held) {
    EXPECT_EQ(r->appendBody("done"), SubmitResult::kOk);
    EXPECT_EQ(r->endBody(), SubmitResult::kOk);
  }
  held.clear();
  ASSERT_TRUE(p.pump());
  EXPECT_EQ(p.pool.inUse(), 0u);
  p.handler.respond = [](Stream& s, bool) {
    EXPECT_EQ(s.submitResponse(200, {}, ResponseBody::bytes("again")), SubmitResult::kOk);
  };
  const int32_t id = p.client.request("GET", "/again");
  ASSERT_TRUE(p.pump());
  EXPECT_EQ(p.client.streams[id].status, 200);
  EXPECT_EQ(p.client.streams[id].body, "again");
  EXPECT_EQ(p.pool.inUse(), 0u);
}

TEST(Session, HeaderListTooLargeResetsStreamOnly) {
  SessionConfig cfg;
  cfg.max_header_list_size = 8 * 1024;
  Pair p(16, cfg);
  std::vector<std::pair<std::string, std::string>> big;
  for (int i = 0; i < 10; ++i)
    big.emplace_back("x-big-" + std::to_string(i), std::string(1000, 'a'));
  const int32_t bad = p.client.request("GET", "/big-headers", big);
  ASSERT_TRUE(p.pump());
  const ClientStream& cs = p.client.streams[bad];
  EXPECT_TRUE(cs.rst_received);
  EXPECT_EQ(cs.rst_error, NGHTTP2_ENHANCE_YOUR_CALM);
  EXPECT_EQ(cs.status, 0);
  EXPECT_EQ(p.client.rst_frames, 1);  // one RST, not a second INTERNAL_ERROR one
  EXPECT_EQ(p.handler.requests, 0);
  EXPECT_EQ(p.session->headerLimitResets(), 1u);
  EXPECT_EQ(p.client.goaway_frames, 0);
  EXPECT_EQ(p.pool.inUse(), 0u);
  ASSERT_EQ(p.handler.closed.size(), 1u);

  // HPACK state survived: a normal request on the same connection works.
  const int32_t ok = p.client.request("GET", "/fine", {{"x-small", "1"}});
  ASSERT_TRUE(p.pump());
  EXPECT_EQ(p.client.streams[ok].status, 200);
  EXPECT_EQ(p.client.streams[ok].body, "hello /fine");
}

TEST(Session, DefaultHeaderListLimitIs64KiB) {
  Pair p(16, {}, {}, 0, 64 * 1024, 256 * 1024);
  std::vector<std::pair<std::string, std::string>> big;
  for (int i = 0; i < 7; ++i)
    big.emplace_back("x-big-" + std::to_string(i), std::string(10000, 'b'));
  const int32_t bad = p.client.request("GET", "/big", big);
  big.pop_back();  // 6 x 10 KB: under the limit
  const int32_t ok = p.client.request("GET", "/ok", big);
  ASSERT_TRUE(p.pump());
  EXPECT_TRUE(p.client.streams[bad].rst_received);
  EXPECT_EQ(p.client.streams[ok].status, 200);
  EXPECT_EQ(p.session->headerLimitResets(), 1u);
}

TEST(Session, TooManyHeaderFieldsResetsStreamOnly) {
  Pair p;  // default max_header_fields = 128, pseudo-headers included
  std::vector<std::pair<std::string, std::string>> many;
  for (int i = 0; i < 125; ++i)
    many.emplace_back("x-f" + std::to_string(i), "v");
  const int32_t bad = p.client.request("GET", "/many", many);  // 4 + 125 = 129
  many.pop_back();
  const int32_t ok = p.client.request("GET", "/limit", many);  // 128: allowed
  ASSERT_TRUE(p.pump());
  EXPECT_TRUE(p.client.streams[bad].rst_received);
  EXPECT_EQ(p.client.streams[bad].rst_error, NGHTTP2_ENHANCE_YOUR_CALM);
  EXPECT_EQ(p.client.streams[ok].status, 200);
  EXPECT_EQ(p.handler.last_fields.size(), 124u);
  EXPECT_EQ(p.session->headerLimitResets(), 1u);
  EXPECT_EQ(p.client.goaway_frames, 0);
  EXPECT_EQ(p.pool.inUse(), 0u);
}

TEST(Session, ClientResetOfFileResponseReturnsStreamAndFileRef) {
  TempFile file(1024 * 1024);
  Pair p;
  p.handler.respond = [&](Stream& s, bool) {
    EXPECT_EQ(s.submitResponse(200, {}, ResponseBody::file(&file, 0, file.contents.size())),
              SubmitResult::kOk);
  };
  const int32_t id2 = p.client.request("GET", "/big2");
  // Deliver the request and let the server produce one buffer-full only.
  const uint8_t* data = nullptr;
  for (ssize_t n; (n = nghttp2_session_mem_send(p.client.get(), &data)) > 0;) {
    ASSERT_EQ(p.session->receive(data, static_cast<size_t>(n)).status, SessionStatus::kOk);
  }
  ASSERT_EQ(p.session->produce(p.out).status, SessionStatus::kOk);
  EXPECT_EQ(file.refs, 1);
  EXPECT_EQ(p.pool.inUse(), 1u);
  p.client.reset(id2);
  ASSERT_TRUE(p.pump());
  EXPECT_EQ(p.pool.inUse(), 0u);
  EXPECT_EQ(file.refs, 0);
  ASSERT_FALSE(p.handler.closed.empty());
  EXPECT_EQ(p.handler.closed.back(), std::make_pair(id2, uint32_t{NGHTTP2_CANCEL}));
  EXPECT_LT(p.client.streams[id2].body.size(), file.contents.size());
}

TEST(Session, ClientResetWithAsyncHolder) {
  Pair p;
  StreamRef holder;
  p.handler.respond = [&](Stream& s, bool) {
    EXPECT_EQ(s.submitResponse(200, {}, ResponseBody::streamed()), SubmitResult::kOk);
    holder = StreamRef(&s);
  };
  const int32_t id = p.client.request("GET", "/slow");
  ASSERT_TRUE(p.pump());
  ASSERT_TRUE(holder);
  EXPECT_EQ(holder->refCount(), 2u);
  EXPECT_TRUE(holder->sessionHeld());
  EXPECT_EQ(p.client.streams[id].status, 200);
  EXPECT_EQ(holder->appendBody("part1"), SubmitResult::kOk);
  ASSERT_TRUE(p.pump());
  EXPECT_EQ(p.client.streams[id].body, "part1");

  p.client.reset(id, NGHTTP2_CANCEL);
  ASSERT_TRUE(p.pump());
  EXPECT_TRUE(holder->closed());
  EXPECT_FALSE(holder->sessionHeld());
  EXPECT_EQ(holder->closeErrorCode(), uint32_t{NGHTTP2_CANCEL});
  EXPECT_EQ(holder->refCount(), 1u);
  EXPECT_EQ(p.pool.inUse(), 1u);  // the async holder keeps it
  EXPECT_EQ(p.session->activeStreams(), 0u);
  EXPECT_EQ(holder->appendBody("late"), SubmitResult::kClosed);
  EXPECT_EQ(holder->endBody(), SubmitResult::kClosed);
  EXPECT_EQ(holder->submitResponse(500, {}, ResponseBody::none()), SubmitResult::kClosed);
  ASSERT_TRUE(p.pump());
  EXPECT_EQ(p.client.streams[id].body, "part1");
  holder.reset();
  EXPECT_EQ(p.pool.inUse(), 0u);
}

TEST(Session, DeferredStreamedBodyResumes) {
  Pair p;
  StreamRef holder;
  p.handler.respond = [&](Stream& s, bool) {
    static const Header kHeaders[] = {{"content-type", "text/event-stream"}};
    EXPECT_EQ(s.submitResponse(200, kHeaders, ResponseBody::streamed()), SubmitResult::kOk);
    EXPECT_EQ(s.submitResponse(200, {}, ResponseBody::none()), SubmitResult::kAlreadySubmitted);
    holder = StreamRef(&s);
  };
  const int32_t id = p.client.request("GET", "/events");
  ASSERT_TRUE(p.pump());
  const ClientStream& cs = p.client.streams[id];
  EXPECT_EQ(cs.status, 200);
  EXPECT_EQ(cs.header("content-length"), nullptr);
  EXPECT_TRUE(cs.body.empty());
  EXPECT_FALSE(cs.closed);
  EXPECT_FALSE(p.session->wantWrite());  // deferred: nothing to send

  EXPECT_EQ(holder->appendBody("abc"), SubmitResult::kOk);
  EXPECT_TRUE(p.session->wantWrite());
  ASSERT_TRUE(p.pump());
  EXPECT_EQ(cs.body, "abc");
  EXPECT_FALSE(cs.closed);

  const std::string big(100000, 'z');  // several frames, past the 64 KiB window
  EXPECT_EQ(holder->appendBody("def"), SubmitResult::kOk);
  EXPECT_EQ(holder->appendBody(big), SubmitResult::kOk);
  EXPECT_EQ(holder->endBody(), SubmitResult::kOk);
  EXPECT_EQ(holder->appendBody("x"), SubmitResult::kBadState);
  ASSERT_TRUE(p.pump());
  EXPECT_EQ(cs.body, "abcdef" + big);
  EXPECT_TRUE(cs.closed);
  EXPECT_TRUE(cs.end_stream);
  EXPECT_EQ(cs.close_error, NGHTTP2_NO_ERROR);
  EXPECT_EQ(holder->bufferedBody(), 0u);
  holder.reset();
  EXPECT_EQ(p.pool.inUse(), 0u);
}

TEST(Session, AsyncResponseSubmittedLater) {
  Pair p;
  StreamRef holder;
  p.handler.respond = [&](Stream& s, bool) { holder = StreamRef(&s); };
  const int32_t id = p.client.request("GET", "/later");
  ASSERT_TRUE(p.pump());
  EXPECT_EQ(p.client.streams[id].status, 0);
  EXPECT_EQ(holder->submitResponse(404, {}, ResponseBody::bytes("not found")), SubmitResult::kOk);
  ASSERT_TRUE(p.pump());
  EXPECT_EQ(p.client.streams[id].status, 404);
  EXPECT_EQ(p.client.streams[id].body, "not found");
  EXPECT_TRUE(holder->closed());
  holder.reset();
  EXPECT_EQ(p.pool.inUse(), 0u);
}

TEST(Session, OutputBoundedWhenClientNeverReads) {
  TempFile file(4 * 1024 * 1024);
  const size_t high = 32 * 1024;
  // Huge client windows: only the OutputBuffer bound can stop the server.
  Pair p(16, {}, {{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, (1u << 31) - 1}}, (1 << 30), high);
  p.handler.respond = [&](Stream& s, bool) {
    if (s.path() == "/file") {
      EXPECT_EQ(s.submitResponse(200, {}, ResponseBody::file(&file, 0, file.contents.size())),
                SubmitResult::kOk);
    } else {
      EXPECT_EQ(s.submitResponse(200, {}, ResponseBody::bytes(std::string(40000, 'm'))),
                SubmitResult::kOk);
    }
  };
  const int32_t fid = p.client.request("GET", "/file");
  std::vector<int32_t> mids;
  for (int i = 0; i < 5; ++i)
    mids.push_back(p.client.request("GET", "/mem"));
  // Deliver the requests and the handshake, then produce without reading.
  const uint8_t* data = nullptr;
  for (ssize_t n; (n = nghttp2_session_mem_send(p.client.get(), &data)) > 0;) {
    ASSERT_EQ(p.session->receive(data, static_cast<size_t>(n)).status, SessionStatus::kOk);
  }
  const size_t bound = high + 9 + 16384;
  ASSERT_EQ(p.session->produce(p.out).status, SessionStatus::kOk);
  EXPECT_TRUE(p.out.aboveHigh());
  EXPECT_LE(p.out.size(), bound);
  const size_t stuck = p.out.size();
  for (int i = 0; i < 100; ++i) {
    const ProduceResult r = p.session->produce(p.out);
    ASSERT_EQ(r.status, SessionStatus::kOk);
    EXPECT_EQ(r.bytes, 0u);
  }
  EXPECT_EQ(p.out.size(), stuck);
  EXPECT_TRUE(p.session->wantWrite());

  // A slow reader: drain a little at a time (delivered to the client in
  // order), produce again, and check the bound and the bytes at the end.
  size_t steps = 0;
  while (!p.out.empty() || p.session->wantWrite()) {
    const size_t take = std::min<size_t>(p.out.size(), 7000);
    const ssize_t n = nghttp2_session_mem_recv(p.client.get(), p.out.data(), take);
    ASSERT_EQ(n, static_cast<ssize_t>(take));
    p.out.consume(take);
    ASSERT_EQ(p.session->produce(p.out).status, SessionStatus::kOk);
    ASSERT_LE(p.out.size(), bound);
    ++steps;
    ASSERT_LT(steps, 100000u);
  }
  ASSERT_TRUE(p.pump());
  EXPECT_TRUE(p.client.streams[fid].body == file.contents);
  for (int32_t id : mids)
    EXPECT_EQ(p.client.streams[id].body, std::string(40000, 'm'));
  EXPECT_LE(p.max_out, bound);
  EXPECT_EQ(file.refs, 0);
}

// A zero-copy DATA frame that crosses the high watermark must end the
// mem_send pass: a HEADERS frame queued by a callback during that pass (here
// from onStreamClosed) would otherwise land on top of it and overflow.
TEST(Session, NoFrameAfterDataCrossesHighWatermark) {
  TempFile file(16384);
  const size_t high = 32 * 1024;
  Pair p(16, {}, {}, 0, high);
  StreamRef later;
  std::string big_value;
  for (int i = 0; i < 20000; ++i)
    big_value.push_back(static_cast<char>('!' + (i * 7919) % 90));
  p.handler.respond = [&](Stream& s, bool) {
    if (s.path() == "/later") {
      later = StreamRef(&s);
    } else {
      EXPECT_EQ(s.submitResponse(200, {}, ResponseBody::file(&file, 0, 16384)), SubmitResult::kOk);
    }
  };
  const Header big_header[] = {{"x-big", big_value}};
  p.handler.on_closed = [&](Stream& s, uint32_t) {
    if (s.path() == "/file" && later) {
      EXPECT_EQ(later->submitResponse(200, big_header, ResponseBody::none()), SubmitResult::kOk);
    }
  };
  ASSERT_TRUE(p.pump());  // handshake
  const int32_t lid = p.client.request("GET", "/later");
  const int32_t fid = p.client.request("GET", "/file");
  p.clientToServer();
  ASSERT_TRUE(later);
  // Pending output the "socket" has not taken yet: just under the watermark.
  const size_t junk = high - 100;
  ASSERT_TRUE(p.out.append(std::vector<uint8_t>(junk, 0)));
  const ProduceResult r = p.session->produce(p.out);
  ASSERT_EQ(r.status, SessionStatus::kOk) << p.session->lastError();
  EXPECT_LE(p.out.size(), high + 9 + 16384);
  EXPECT_TRUE(p.session->wantWrite());  // the big HEADERS waits for the next pass
  p.out.consume(junk);
  ASSERT_TRUE(p.pump());
  EXPECT_EQ(p.client.streams[fid].body, file.contents);
  EXPECT_EQ(p.client.streams[lid].status, 200);
  ASSERT_NE(p.client.streams[lid].header("x-big"), nullptr);
  EXPECT_EQ(*p.client.streams[lid].header("x-big"), big_value);
  later.reset();
}

TEST(Session, DestroyedWithOpenStreamsReturnsThemToPool) {
  StreamPool pool(8);
  RecordingHandler handler;
  StreamRef outside;
  int writes_during_teardown = 0;
  {
    // Declared before the session: these references outlive its destruction.
    std::vector<StreamRef> open;
    Client client;
    OutputBuffer out;
    Session session(pool, handler);
    int n = 0;
    handler.respond = [&](Stream& s, bool) {
      EXPECT_EQ(s.submitResponse(200, {}, ResponseBody::streamed()), SubmitResult::kOk);
      if (n++ == 0) outside = StreamRef(&s);
      open.emplace_back(&s);
    };
    // During teardown every stream already reads as closed, including the
    // ones not yet reported.
    handler.on_closed = [&](Stream&, uint32_t) {
      for (const StreamRef& o : open) {
        EXPECT_TRUE(o->closed());
        EXPECT_EQ(o->appendBody("x"), SubmitResult::kClosed);
      }
      ++writes_during_teardown;
    };
    for (int i = 0; i < 4; ++i)
      client.request("GET", "/open");
    const uint8_t* data = nullptr;
    for (ssize_t k; (k = nghttp2_session_mem_send(client.get(), &data)) > 0;) {
      ASSERT_EQ(session.receive(data, static_cast<size_t>(k)).status, SessionStatus::kOk);
    }
    ASSERT_EQ(session.produce(out).status, SessionStatus::kOk);
    EXPECT_EQ(session.activeStreams(), 4u);
    EXPECT_EQ(pool.inUse(), 4u);
  }
  // Session gone: the handler heard about every stream, one stays with its
  // outside holder, closed.
  ASSERT_EQ(handler.closed.size(), 4u);
  for (const auto& c : handler.closed)
    EXPECT_EQ(c.second, uint32_t{NGHTTP2_CANCEL});
  EXPECT_EQ(writes_during_teardown, 4);
  EXPECT_EQ(pool.inUse(), 1u);
  ASSERT_TRUE(outside);
  EXPECT_TRUE(outside->closed());
  EXPECT_EQ(outside->appendBody("x"), SubmitResult::kClosed);
  outside.reset();
  EXPECT_EQ(pool.inUse(), 0u);
}

TEST(Session, DestroyedWithFileResponsesInFlightDropsFileRefs) {
  TempFile file(1024 * 1024);
  StreamPool pool(8);
  RecordingHandler handler;
  handler.respond = [&](Stream& s, bool) {
    EXPECT_EQ(s.submitResponse(200, {}, ResponseBody::file(&file, 0, file.contents.size())),
              SubmitResult::kOk);
  };
  {
    Client client;
    OutputBuffer out;
    Session session(pool, handler);
    for (int i = 0; i < 3; ++i)
      client.request("GET", "/f");
    const uint8_t* data = nullptr;
    for (ssize_t k; (k = nghttp2_session_mem_send(client.get(), &data)) > 0;) {
      ASSERT_EQ(session.receive(data, static_cast<size_t>(k)).status, SessionStatus::kOk);
    }
    ASSERT_EQ(session.produce(out).status, SessionStatus::kOk);
    EXPECT_EQ(file.refs, 3);
  }
  EXPECT_EQ(file.refs, 0);
  EXPECT_EQ(pool.inUse(), 0u);
}

// Frames the server produced, as (type, stream id, first payload word) for
// GOAWAY: (last-stream-id, error code).
struct Goaway {
  int count = 0;
  uint32_t last_stream_id = 0;
  uint32_t error_code = 0;
};
Goaway goawayIn(const OutputBuffer& out) {
  Goaway g;
  const uint8_t* p = out.data();
  size_t left = out.size();
  auto be32 = [](const uint8_t* b) {
    return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
  };
  while (left >= 9) {
    const size_t len = (size_t{p[0]} << 16) | (size_t{p[1]} << 8) | p[2];
    if (left < 9 + len) break;
    if (p[3] == NGHTTP2_GOAWAY && len >= 8) {
      ++g.count;
      g.last_stream_id = be32(p + 9) & 0x7fffffffu;
      g.error_code = be32(p + 13);
    }
    p += 9 + len;
    left -= 9 + len;
  }
  return g;
}

std::vector<uint8_t> frame(uint8_t type, uint8_t flags, int32_t id, std::string_view payload) {
  std::vector<uint8_t> f(9 + payload.size(), 0);
  f[0] = static_cast<uint8_t>(payload.size() >> 16);
  f[1] = static_cast<uint8_t>(payload.size() >> 8);
  f[2] = static_cast<uint8_t>(payload.size());
  f[3] = type;
  f[4] = flags;
  f[5] = static_cast<uint8_t>(id >> 24);
  f[6] = static_cast<uint8_t>(id >> 16);
  f[7] = static_cast<uint8_t>(id >> 8);
  f[8] = static_cast<uint8_t>(id);
  for (size_t i = 0; i < payload.size(); ++i)
    f[9 + i] = static_cast<uint8_t>(payload[i]);
  return f;
}

// GET https://localhost/: static-table fields and a literal :authority not
// indexed (no dynamic-table state to keep in step).
constexpr std::string_view kGetSlash = "\x82\x87\x84\x01\x09localhost";

RecvResult feed(Pair& p, const std::vector<uint8_t>& bytes) {
  return p.session->receive(bytes.data(), bytes.size());
}

// RFC 9113 §3.4 / §5.4.1: an invalid preface is a connection error; the
// peer gets GOAWAY(PROTOCOL_ERROR) it can read, not a silent close.
TEST(Session, BadClientMagicGetsGoawayProtocolError) {
  StreamPool pool(4);
  RecordingHandler handler;
  Session session(pool, handler);
  const std::string garbage = "\x01\x02 this is not an HTTP/2 connection preface\r\n\r\n";
  const RecvResult r =
      session.receive(reinterpret_cast<const uint8_t*>(garbage.data()), garbage.size());
  EXPECT_EQ(r.status, SessionStatus::kOk);
  EXPECT_EQ(r.error, NGHTTP2_ERR_BAD_CLIENT_MAGIC);
  EXPECT_EQ(session.connectionError(), uint32_t{NGHTTP2_PROTOCOL_ERROR});
  EXPECT_NE(session.connectionErrorReason().find("preface"), std::string::npos);
  OutputBuffer out;
  ASSERT_EQ(session.produce(out).status, SessionStatus::kOk);
  const Goaway g = goawayIn(out);
  EXPECT_EQ(g.count, 1);
  EXPECT_EQ(g.error_code, uint32_t{NGHTTP2_PROTOCOL_ERROR});
  EXPECT_EQ(g.last_stream_id, 0u);
  EXPECT_TRUE(session.finished());
  EXPECT_EQ(pool.inUse(), 0u);
}

// §5.1.1: HEADERS on stream 5 after stream 7 opened: 5 was idle and is now
// closed; using it is a connection error. nghttp2 alone ignores the frame.
TEST(Session, StreamIdBelowOneUsedIsProtocolError) {
  Pair p;
  ASSERT_TRUE(p.pump());
  ASSERT_EQ(feed(p, frame(NGHTTP2_HEADERS, 0x5, 7, kGetSlash)).status, SessionStatus::kOk);
  EXPECT_EQ(p.handler.requests, 1);
  EXPECT_EQ(p.session->connectionError(), 0u);
  ASSERT_EQ(feed(p, frame(NGHTTP2_HEADERS, 0x5, 5, kGetSlash)).status, SessionStatus::kOk);
  EXPECT_EQ(p.handler.requests, 1) << "stream 5 must not be served";
  EXPECT_EQ(p.session->connectionError(), uint32_t{NGHTTP2_PROTOCOL_ERROR});
  EXPECT_NE(p.session->connectionErrorReason().find("stream 5"), std::string::npos)
      << p.session->connectionErrorReason();
  ASSERT_EQ(p.session->produce(p.out).status, SessionStatus::kOk);
  const Goaway g = goawayIn(p.out);
  EXPECT_EQ(g.count, 1);
  EXPECT_EQ(g.error_code, uint32_t{NGHTTP2_PROTOCOL_ERROR});
  EXPECT_EQ(g.last_stream_id, 7u);
  p.out.consume(p.out.size());
}

// The guard must not fire on what is legal: trailers (HEADERS on an open
// stream with a lower id than the newest), and ids far apart.
TEST(Session, TrailersOnAnOlderStreamAreNoError) {
  Pair p;
  ASSERT_TRUE(p.pump());
  ASSERT_EQ(feed(p, frame(NGHTTP2_HEADERS, 0x4, 1, kGetSlash)).status, SessionStatus::kOk);
  ASSERT_EQ(feed(p, frame(NGHTTP2_HEADERS, 0x5, 3001, kGetSlash)).status, SessionStatus::kOk);
  // Trailers for stream 1: a literal field, END_STREAM | END_HEADERS.
  ASSERT_EQ(feed(p, frame(NGHTTP2_HEADERS, 0x5, 1,
                          "\x00\x03x-t\x01"
                          "1"))
                .status,
            SessionStatus::kOk);
  EXPECT_EQ(p.session->connectionError(), 0u) << p.session->connectionErrorReason();
  EXPECT_EQ(p.handler.requests, 2);
  EXPECT_EQ(p.handler.request_ends, 2);
  ASSERT_EQ(p.session->produce(p.out).status, SessionStatus::kOk);
  EXPECT_EQ(goawayIn(p.out).count, 0);
  p.out.consume(p.out.size());
}

TEST(PeerStreamIds, RemembersAWindowOfUsedAndSkippedIds) {
  PeerStreamIds ids;
  EXPECT_EQ(ids.lookup(1), PeerStreamIds::Seen::kNew);
  ids.open(3);
  EXPECT_EQ(ids.lookup(1), PeerStreamIds::Seen::kSkipped);
  EXPECT_EQ(ids.lookup(3), PeerStreamIds::Seen::kUsed);
  ids.open(9);
  EXPECT_EQ(ids.lookup(3), PeerStreamIds::Seen::kUsed);
  EXPECT_EQ(ids.lookup(5), PeerStreamIds::Seen::kSkipped);
  EXPECT_EQ(ids.lookup(7), PeerStreamIds::Seen::kSkipped);
  EXPECT_EQ(ids.lookup(11), PeerStreamIds::Seen::kNew);
  // Reusing ring slots: ids one window apart do not alias.
  const uint32_t far = 9 + 2 * PeerStreamIds::kWindow;
  ids.open(far);
  EXPECT_EQ(ids.lookup(far), PeerStreamIds::Seen::kUsed);
  EXPECT_EQ(ids.lookup(far - 2), PeerStreamIds::Seen::kSkipped);
  EXPECT_EQ(ids.lookup(9), PeerStreamIds::Seen::kUnknown);
  ids.open(far + 2);
  EXPECT_EQ(ids.lookup(far), PeerStreamIds::Seen::kUsed);
}

// A peer that sends PINGs and never reads our answers: nghttp2 reports
// FLOODED; the Session answers with GOAWAY(ENHANCE_YOUR_CALM).
TEST(Session, UnreadPingFloodGetsGoawayEnhanceYourCalm) {
  SessionConfig cfg;
  cfg.max_outbound_ack = 10;
  Pair p(16, cfg);
  ASSERT_TRUE(p.pump());
  std::vector<uint8_t> pings;
  for (int i = 0; i < 50; ++i) {
    const std::vector<uint8_t> f = frame(NGHTTP2_PING, 0, 0, "12345678");
    pings.insert(pings.end(), f.begin(), f.end());
  }
  const RecvResult r = feed(p, pings);
  EXPECT_EQ(r.status, SessionStatus::kOk);
  EXPECT_EQ(r.error, NGHTTP2_ERR_FLOODED);
  EXPECT_EQ(p.session->connectionError(), uint32_t{NGHTTP2_ENHANCE_YOUR_CALM});
  ASSERT_EQ(p.session->produce(p.out).status, SessionStatus::kOk);
  EXPECT_FALSE(p.session->wantRead());
  const Goaway g = goawayIn(p.out);
  EXPECT_EQ(g.count, 1);
  EXPECT_EQ(g.error_code, uint32_t{NGHTTP2_ENHANCE_YOUR_CALM});
  p.out.consume(p.out.size());
  EXPECT_TRUE(p.session->finished());
}

TEST(Session, TooManyContinuationsGetGoawayEnhanceYourCalm) {
  SessionConfig cfg;
  cfg.max_continuations = 4;
  Pair p(16, cfg);
  ASSERT_TRUE(p.pump());
  std::vector<uint8_t> in = frame(NGHTTP2_HEADERS, 0x1, 1, kGetSlash);  // no END_HEADERS
  for (int i = 0; i < 6; ++i) {
    const std::vector<uint8_t> f = frame(NGHTTP2_CONTINUATION, 0, 1, "");
    in.insert(in.end(), f.begin(), f.end());
  }
  const RecvResult r = feed(p, in);
  EXPECT_EQ(r.status, SessionStatus::kOk);
  EXPECT_EQ(r.error, NGHTTP2_ERR_TOO_MANY_CONTINUATIONS);
  EXPECT_EQ(p.session->connectionError(), uint32_t{NGHTTP2_ENHANCE_YOUR_CALM});
  ASSERT_EQ(p.session->produce(p.out).status, SessionStatus::kOk);
  EXPECT_EQ(goawayIn(p.out).error_code, uint32_t{NGHTTP2_ENHANCE_YOUR_CALM});
  p.out.consume(p.out.size());
}

// A client's GOAWAY is no error: it is noted, and with nothing in flight
// nghttp2 has nothing more to do (the connection ends it).
TEST(Session, ClientGoawayIsNotedAndIsNoError) {
  Pair p;
  ASSERT_TRUE(p.pump());
  ASSERT_EQ(nghttp2_submit_goaway(p.client.get(), NGHTTP2_FLAG_NONE, 0, 0x1234, nullptr, 0), 0);
  ASSERT_TRUE(p.pump());
  EXPECT_TRUE(p.session->peerGoaway());
  EXPECT_EQ(p.session->connectionError(), 0u);
  EXPECT_TRUE(p.session->finished());
}

TEST(Session, FileReadErrorResetsStreamNotConnection) {
  TempFile file(100000);
  file.breakFd();  // pread on -1 fails with EBADF
  Pair p;
  p.handler.respond = [&](Stream& s, bool) {
    if (s.path() == "/broken") {
      EXPECT_EQ(s.submitResponse(200, {}, ResponseBody::file(&file, 0, 100000)), SubmitResult::kOk);
    } else {
      EXPECT_EQ(s.submitResponse(200, {}, ResponseBody::bytes("ok")), SubmitResult::kOk);
    }
  };
  const int32_t bad = p.client.request("GET", "/broken");
  ASSERT_TRUE(p.pump());
  EXPECT_EQ(p.client.streams[bad].status, 200);
  EXPECT_TRUE(p.client.streams[bad].rst_received);
  EXPECT_EQ(p.client.streams[bad].rst_error, NGHTTP2_INTERNAL_ERROR);
  EXPECT_EQ(p.session->fileErrors(), 1u);
  EXPECT_EQ(file.refs, 0);
  const int32_t ok = p.client.request("GET", "/ok");
  ASSERT_TRUE(p.pump());
  EXPECT_EQ(p.client.streams[ok].body, "ok");
  EXPECT_EQ(p.client.goaway_frames, 0);
}

TEST(Session, GracefulShutdownThenFinished) {
  Pair p;
  StreamRef holder;
  p.handler.respond = [&](Stream& s, bool) {
    EXPECT_EQ(s.submitResponse(200, {}, ResponseBody::streamed()), SubmitResult::kOk);
    holder = StreamRef(&s);
  };
  const int32_t id = p.client.request("GET", "/a");
  ASSERT_TRUE(p.pump());
  ASSERT_TRUE(p.session->shutdownNotice());
  ASSERT_TRUE(p.pump());
  EXPECT_EQ(p.client.goaway_frames, 1);
  EXPECT_EQ(p.client.goaway_last_stream_id, (1u << 31) - 1);
  ASSERT_TRUE(p.session->goaway(NGHTTP2_NO_ERROR));
  ASSERT_TRUE(p.pump());
  EXPECT_EQ(p.client.goaway_frames, 2);
  EXPECT_EQ(p.client.goaway_last_stream_id, id);
  EXPECT_FALSE(p.session->finished());  // the in-flight stream may finish
  EXPECT_EQ(holder->appendBody("bye"), SubmitResult::kOk);
  EXPECT_EQ(holder->endBody(), SubmitResult::kOk);
  ASSERT_TRUE(p.pump());
  EXPECT_EQ(p.client.streams[id].body, "bye");
  EXPECT_EQ(p.client.streams[id].close_error, NGHTTP2_NO_ERROR);
  EXPECT_TRUE(p.session->finished());
  holder.reset();
}

TEST(Session, TerminateSendsGoawayAndFinishes) {
  Pair p;
  ASSERT_TRUE(p.pump());
  ASSERT_TRUE(p.session->terminate(NGHTTP2_ENHANCE_YOUR_CALM));
  EXPECT_TRUE(p.session->wantWrite());
  ASSERT_TRUE(p.pump());
  EXPECT_EQ(p.client.goaway_frames, 1);
  EXPECT_EQ(p.client.goaway_error, uint32_t{NGHTTP2_ENHANCE_YOUR_CALM});
  EXPECT_TRUE(p.session->finished());
}

// A reset budget of 5 (1 per second), and requests answered with a streamed
// body that stays open: every reset cancels a live response.
SessionConfig smallResetBudget() {
  SessionConfig cfg;
  cfg.stream_reset_burst = 5;
  cfg.stream_reset_rate = 1;
  return cfg;
}

void answerStreamed(Stream& s, bool) {
  EXPECT_EQ(s.submitResponse(200, {}, ResponseBody::streamed()), SubmitResult::kOk);
}

TEST(Session, RapidResetFloodTerminatesConnection) {
  Pair p(64, smallResetBudget());
  p.handler.respond = answerStreamed;
  ASSERT_TRUE(p.pump());
  // Each HEADERS must reach the server before its RST (nghttp2 drops both
  // if the RST is queued first).
  for (int i = 0; i < 20 && p.client.goaway_frames == 0; ++i) {
    const int32_t id = p.client.request("GET", "/r");
    p.clientToServer();
    p.client.reset(id);
    ASSERT_TRUE(p.pump());
  }
  EXPECT_EQ(p.client.goaway_frames, 1);
  EXPECT_NE(p.session->connectionError(), uint32_t{NGHTTP2_NO_ERROR});
  EXPECT_TRUE(p.session->finished());
}

// The whole flood arrives in one read (a fast attacker, a slow server): the
// requests after the budget runs out must not be started. nghttp2's own
// limiter only queues its GOAWAY, and goes on accepting new streams until
// that GOAWAY is serialised, i.e. after the whole buffer was parsed.
TEST(Session, RapidResetFloodInOneReadStopsAtTheBudget) {
  Pair p(64, smallResetBudget());
  p.handler.respond = answerStreamed;
  ASSERT_TRUE(p.pump());
  std::vector<uint8_t> flood;
  auto take = [&] {
    const uint8_t* data = nullptr;
    for (ssize_t n; (n = nghttp2_session_mem_send(p.client.get(), &data)) > 0;)
      flood.insert(flood.end(), data, data + n);
  };
  const int pairs = 200;
  for (int i = 0; i < pairs; ++i) {
    const int32_t id = p.client.request("GET", "/r");
    take();  // the HEADERS before its RST (nghttp2 would drop both otherwise)
    p.client.reset(id);
    take();
  }
  const RecvResult r = p.session->receive(flood.data(), flood.size());
  ASSERT_EQ(r.status, SessionStatus::kOk) << p.session->lastError();
  // The burst, plus at most the one-second refill if the clock ticked.
  EXPECT_LE(p.handler.requests, 5 + 2);
  EXPECT_EQ(p.session->connectionError(), uint32_t{NGHTTP2_ENHANCE_YOUR_CALM});
  ASSERT_TRUE(p.pump());
  EXPECT_EQ(p.client.goaway_error, uint32_t{NGHTTP2_ENHANCE_YOUR_CALM});
  EXPECT_LE(p.client.goaway_last_stream_id, 2 * (5 + 2) - 1);
  EXPECT_TRUE(p.session->finished());
}

// Opens an upload whose body never comes (HEADERS without END_STREAM).
int32_t openUpload(Pair& p) {
  const std::string m = ":method", post = "POST", path = ":path", slash = "/up", scheme = ":scheme",
                    https = "https", authority = ":authority", host = "example.test";
  const nghttp2_nv nva[] = {nv(m, post), nv(path, slash), nv(scheme, https), nv(authority, host)};
  const int32_t id =
      nghttp2_submit_headers(p.client.get(), NGHTTP2_FLAG_NONE, -1, nullptr, nva, 4, nullptr);
  EXPECT_GT(id, 0);
  p.client.streams[id];
  return id;
}

// Raw DATA frame bytes (the client library would not send empty ones).
std::vector<uint8_t> dataFrame(int32_t id, std::string_view payload) {
  std::vector<uint8_t> f(9 + payload.size(), 0);
  f[2] = static_cast<uint8_t>(payload.size());
  f[3] = NGHTTP2_DATA;
  f[8] = static_cast<uint8_t>(id);
  for (size_t i = 0; i < payload.size(); ++i)
    f[9 + i] = static_cast<uint8_t>(payload[i]);
  return f;
}

TEST(Session, EmptyDataFloodGetsEnhanceYourCalm) {
  SessionConfig cfg;
  cfg.max_empty_data_frames = 10;
  Pair p(64, cfg);
  ASSERT_TRUE(p.pump());
  const int32_t id = openUpload(p);
  ASSERT_TRUE(p.pump());
  const std::vector<uint8_t> empty = dataFrame(id, "");
  const std::vector<uint8_t> one = dataFrame(id, "x");
  auto feed = [&](const std::vector<uint8_t>& f, int times) {
    for (int i = 0; i < times; ++i) {
      ASSERT_EQ(p.session->receive(f.data(), f.size()).status, SessionStatus::kOk);
    }
  };
  // Up to the limit, and a frame that carries data starts the count again.
  feed(empty, 10);
  feed(one, 1);
  feed(empty, 10);
  ASSERT_TRUE(p.pump());
  EXPECT_EQ(p.client.goaway_frames, 0);
  EXPECT_EQ(p.session->connectionError(), uint32_t{NGHTTP2_NO_ERROR});
  EXPECT_EQ(p.handler.data_bytes, 1u);
  // One more in a row is a flood.
  feed(empty, 1);
  ASSERT_TRUE(p.pump());
  EXPECT_EQ(p.client.goaway_frames, 1);
  EXPECT_EQ(p.client.goaway_error, uint32_t{NGHTTP2_ENHANCE_YOUR_CALM});
  EXPECT_EQ(p.session->connectionError(), uint32_t{NGHTTP2_ENHANCE_YOUR_CALM});
  EXPECT_FALSE(p.session->wantRead()) << "nothing more is read from a flooding peer";
}

TEST(Session, FrameLevelProtocolErrorIsReportedAsTheGoawayCodeSent) {
  Pair p;
  ASSERT_TRUE(p.pump());
  // WINDOW_UPDATE with a zero increment on the connection: PROTOCOL_ERROR.
  const uint8_t bad[] = {0, 0, 4, NGHTTP2_WINDOW_UPDATE, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  ASSERT_EQ(p.session->receive(bad, sizeof bad).status, SessionStatus::kOk);
  ASSERT_TRUE(p.pump());
  EXPECT_EQ(p.client.goaway_error, uint32_t{NGHTTP2_PROTOCOL_ERROR});
  EXPECT_EQ(p.session->connectionError(), uint32_t{NGHTTP2_PROTOCOL_ERROR});
  EXPECT_TRUE(p.session->finished());
}

TEST(Session, GracefulGoawayIsNoError) {
  Pair p;
  ASSERT_TRUE(p.pump());
  ASSERT_TRUE(p.session->goaway(NGHTTP2_NO_ERROR));
  ASSERT_TRUE(p.pump());
  EXPECT_EQ(p.client.goaway_frames, 1);
  EXPECT_EQ(p.session->connectionError(), uint32_t{NGHTTP2_NO_ERROR});
}

}  // namespace
}  // namespace h2loop::h2::test

namespace h2loop::h2::test {
namespace {

TEST(Session, StreamedBodyEndsWithTrailers) {
  Pair p;
  StreamRef holder;
  p.handler.respond = [&](Stream& s, bool) {
    EXPECT_EQ(s.submitResponse(200, {}, ResponseBody::streamed()), SubmitResult::kOk);
    holder = StreamRef(&s);
  };
  const int32_t id = p.client.request("GET", "/trailers");
  ASSERT_TRUE(p.pump());
  ASSERT_TRUE(holder);
  EXPECT_EQ(holder->appendBody("abc"), SubmitResult::kOk);
  static const Header kTrailers[] = {{"x-checksum", "3"}, {"x-done", "yes"}};
  EXPECT_EQ(holder->endBody(kTrailers), SubmitResult::kOk);
  ASSERT_TRUE(p.pump());
  const ClientStream& cs = p.client.streams[id];
  EXPECT_EQ(cs.body, "abc");
  ASSERT_NE(cs.header("x-checksum"), nullptr);
  EXPECT_EQ(*cs.header("x-checksum"), "3");
  ASSERT_NE(cs.header("x-done"), nullptr);
  EXPECT_TRUE(cs.closed);
  EXPECT_EQ(cs.close_error, NGHTTP2_NO_ERROR);
  holder.reset();
}

// A stream that holds its window gets no WINDOW_UPDATE until it consumes;
// the connection's window comes back regardless, so other streams go on.
TEST(Session, HeldWindowReturnsOnlyWhatIsConsumed) {
  SessionConfig cfg;
  cfg.initial_window_size = 64 * 1024;
  Pair p(256, cfg);
  StreamRef held;
  p.handler.respond = [&](Stream& s, bool) {
    if (s.path() == "/held") {
      s.holdWindow();
      held = StreamRef(&s);
    }
    EXPECT_EQ(s.submitResponse(200, {}, ResponseBody::none()), SubmitResult::kOk);
  };
  const std::string big(200 * 1024, 'u');
  const int32_t held_id = p.client.request("POST", "/held", {}, &big);
  ASSERT_TRUE(p.pump());
  ASSERT_TRUE(held);
  EXPECT_EQ(p.handler.data_bytes, size_t{64 * 1024}) << "more than one stream window arrived";
  EXPECT_EQ(nghttp2_session_get_stream_remote_window_size(p.client.get(), held_id), 0);

  // Another upload on the same connection is not held up.
  const int32_t free_id = p.client.request("POST", "/free", {}, &big);
  ASSERT_TRUE(p.pump());
  EXPECT_EQ(p.handler.data_bytes, size_t{64 * 1024} + big.size());
  EXPECT_TRUE(p.client.streams[free_id].closed);

  held->consume(64 * 1024);
  ASSERT_TRUE(p.pump());
  EXPECT_EQ(p.handler.data_bytes, size_t{2 * 64 * 1024} + big.size());
  held->consume(64 * 1024);
  held->consume(64 * 1024);
  ASSERT_TRUE(p.pump());
  held->consume(8 * 1024);
  ASSERT_TRUE(p.pump());
  EXPECT_EQ(p.handler.data_bytes, 2 * big.size());
  held.reset();
}

}  // namespace
}  // namespace h2loop::h2::test
