// h1::Session on its own: bytes in, bytes out, with a recording handler.
// Every test ends with the stream pool back to empty (nothing held).

#include "h1/session.h"

#include <gtest/gtest.h>
#include <nghttp2/nghttp2.h>

#include <functional>
#include <string>
#include <vector>

namespace h2loop::h1 {
namespace {

using h2::ResponseBody;
using h2::Stream;
using h2::StreamRef;
using h2::SubmitResult;

struct Recorder : h2::SessionHandler {
  std::vector<std::string> requests;  // "METHOD path authority"
  std::string body;
  int ends = 0;
  std::vector<uint32_t> closes;
  std::vector<StreamRef> held;
  // What onRequest does; default: answer "hello" at once.
  std::function<void(Stream&)> on_request = [](Stream& s) {
    ASSERT_EQ(s.submitResponse(200, {}, ResponseBody::bytes("hello")), SubmitResult::kOk);
  };

  void onRequest(Stream& s, bool /*end_stream*/) override {
    requests.push_back(std::string(s.method()) + " " + std::string(s.path()) + " " +
                       std::string(s.authority()));
    on_request(s);
  }
  void onRequestData(Stream& /*s*/, const uint8_t* data, size_t len) override {
    body.append(reinterpret_cast<const char*>(data), len);
  }
  void onRequestEnd(Stream& /*s*/) override { ++ends; }
  void onStreamClosed(Stream& /*s*/, uint32_t code) override { closes.push_back(code); }
};

class H1Session : public ::testing::Test {
 protected:
  h2::StreamPool pool_{8};
  Recorder rec_;
  SessionConfig config_;
  std::unique_ptr<Session> session_;
  h2::OutputBuffer out_;

  void SetUp() override { session_ = std::make_unique<Session>(pool_, rec_, config_); }
  void TearDown() override {
    session_.reset();
    rec_.held.clear();
    EXPECT_EQ(pool_.inUse(), 0u) << "a stream was not returned to the pool";
  }
  void reconfigure() { session_ = std::make_unique<Session>(pool_, rec_, config_); }

  void send(std::string_view bytes) {
    session_->receive(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  }
  // Everything the session produces now.
  std::string drain() {
    std::string all;
    for (int i = 0; i < 1000; ++i) {
      session_->produce(out_);
      if (out_.empty()) break;
      all.append(reinterpret_cast<const char*>(out_.data()), out_.size());
      out_.consume(out_.size());
    }
    return all;
  }
  static size_t count(std::string_view hay, std::string_view needle) {
    size_t n = 0;
    for (size_t p = hay.find(needle); p != std::string_view::npos; p = hay.find(needle, p + 1))
      ++n;
    return n;
  }
};

TEST_F(H1Session, AnswersAGetAndKeepsTheConnection) {
  send("GET /a?x=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\n\r\n");
  const std::string out = drain();
  EXPECT_EQ(out.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << out;
  EXPECT_NE(out.find("content-length: 5\r\n"), std::string::npos) << out;
  EXPECT_EQ(out.find("connection: close"), std::string::npos) << out;
  EXPECT_TRUE(out.ends_with("\r\n\r\nhello")) << out;
  ASSERT_EQ(rec_.requests.size(), 1u);
  EXPECT_EQ(rec_.requests[0], "GET /a?x=1 example.com");
  EXPECT_EQ(rec_.closes, std::vector<uint32_t>{NGHTTP2_NO_ERROR});
  EXPECT_TRUE(session_->wantRead());
  EXPECT_FALSE(session_->wantWrite());
}

TEST_F(H1Session, PipelinedRequestsAreAnsweredInOrderOneAtATime) {
  std::vector<StreamRef> later;
  rec_.on_request = [&](Stream& s) { later.emplace_back(&s); };
  send("GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n");
  (void)drain();
  // The second waits in the input until the first is answered.
  ASSERT_EQ(rec_.requests.size(), 1u);
  ASSERT_EQ(later[0]->submitResponse(200, {}, ResponseBody::bytes("one")), SubmitResult::kOk);
  std::string out = drain();
  ASSERT_EQ(rec_.requests.size(), 2u);
  EXPECT_EQ(rec_.requests[1], "GET /2 h");
  ASSERT_EQ(later[1]->submitResponse(200, {}, ResponseBody::bytes("two")), SubmitResult::kOk);
  out += drain();
  EXPECT_LT(out.find("one"), out.find("two")) << out;
  EXPECT_EQ(count(out, "HTTP/1.1 200 OK"), 2u);
  later.clear();
}

TEST_F(H1Session, ReadAheadIsBoundedWhileARequestIsAnswered) {
  config_.max_buffered_input = 1024;
  reconfigure();
  rec_.on_request = [&](Stream& s) { rec_.held.emplace_back(&s); };
  std::string burst;
  for (int i = 0; i < 100; ++i)
    burst += "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
  send(burst);
  EXPECT_TRUE(session_->inputPaused()) << "the connection should stop reading";
  ASSERT_EQ(rec_.requests.size(), 1u);
  ASSERT_EQ(rec_.held[0]->submitResponse(204, {}, ResponseBody::none()), SubmitResult::kOk);
  rec_.held.clear();
  rec_.on_request = [](Stream& s) { (void)s.submitResponse(204, {}, ResponseBody::none()); };
  const std::string out = drain();
  EXPECT_EQ(count(out, "HTTP/1.1 204 No Content"), 100u);
  EXPECT_FALSE(session_->inputPaused());
}

TEST_F(H1Session, ChunkedRequestBodyAndTrailers) {
  send(
      "POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n6\r\n world\r\n0\r\nx-sum: 11\r\n\r\n");
  (void)drain();
  EXPECT_EQ(rec_.body, "hello world");
  EXPECT_EQ(rec_.ends, 1);
}

TEST_F(H1Session, StreamedResponseIsChunkedWithTrailers) {
  rec_.on_request = [&](Stream& s) {
    rec_.held.emplace_back(&s);
    ASSERT_EQ(s.submitResponse(200, {}, ResponseBody::streamed()), SubmitResult::kOk);
  };
  send("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
  std::string out = drain();
  EXPECT_NE(out.find("transfer-encoding: chunked\r\n"), std::string::npos) << out;
  ASSERT_EQ(rec_.held[0]->appendBody("abc"), SubmitResult::kOk);
  out += drain();
  const h2::Header trailers[] = {{"x-done", "yes"}};
  ASSERT_EQ(rec_.held[0]->endBody(trailers), SubmitResult::kOk);
  out += drain();
  EXPECT_TRUE(out.ends_with("\r\n\r\n3\r\nabc\r\n0\r\nx-done: yes\r\n\r\n")) << out;
  EXPECT_EQ(rec_.closes.size(), 1u);
}

TEST_F(H1Session, Http10StreamedResponseEndsWithTheConnection) {
  rec_.on_request = [&](Stream& s) {
    ASSERT_EQ(s.submitResponse(200, {}, ResponseBody::streamed()), SubmitResult::kOk);
    ASSERT_EQ(s.appendBody("data"), SubmitResult::kOk);
    ASSERT_EQ(s.endBody(), SubmitResult::kOk);
  };
  send("GET / HTTP/1.0\r\n\r\n");
  const std::string out = drain();
  EXPECT_NE(out.find("connection: close\r\n"), std::string::npos) << out;
  EXPECT_EQ(out.find("chunked"), std::string::npos) << out;
  EXPECT_TRUE(out.ends_with("\r\n\r\ndata")) << out;
  EXPECT_FALSE(session_->wantRead());  // the close ends the body
}

TEST_F(H1Session, HeadKeepsTheApplicationsLength) {
  // What a static-file HEAD does: no body, the length the GET would have.
  rec_.on_request = [](Stream& s) {
    const h2::Header h[] = {{"content-length", "1048576"}};
    ASSERT_EQ(s.submitResponse(200, h, ResponseBody::none()), SubmitResult::kOk);
  };
  send("HEAD /big HTTP/1.1\r\nHost: h\r\n\r\n");
  const std::string out = drain();
  EXPECT_NE(out.find("content-length: 1048576\r\n"), std::string::npos) << out;
  EXPECT_EQ(count(out, "content-length"), 1u) << out;
  EXPECT_TRUE(out.ends_with("\r\n\r\n")) << out;
}

TEST_F(H1Session, GarbageAfterAnAnsweredRequestIsStill400) {
  send("GET / HTTP/1.1\r\nHost: h\r\n\r\n\x01\x02\x03\r\n\r\n");
  const std::string out = drain();
  EXPECT_EQ(out.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << out;
  EXPECT_NE(out.find("HTTP/1.1 400 Bad Request\r\n"), std::string::npos) << out;
  EXPECT_TRUE(session_->connectionError());
}

TEST_F(H1Session, HeadGetsTheLengthAndNoBody) {
  send("HEAD / HTTP/1.1\r\nHost: h\r\n\r\n");
  const std::string out = drain();
  EXPECT_NE(out.find("content-length: 5\r\n"), std::string::npos) << out;
  EXPECT_TRUE(out.ends_with("\r\n\r\n")) << out;
}

TEST_F(H1Session, StopAfterCurrentLetsTheRequestInFlightFinish) {
  rec_.on_request = [&](Stream& s) { rec_.held.emplace_back(&s); };
  send("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
  (void)drain();
  session_->stopAfterCurrent();
  // Not finished while the application has yet to answer.
  EXPECT_TRUE(session_->wantRead() || session_->wantWrite());
  ASSERT_EQ(rec_.held[0]->submitResponse(200, {}, ResponseBody::bytes("late")), SubmitResult::kOk);
  const std::string out = drain();
  EXPECT_NE(out.find("connection: close\r\n"), std::string::npos) << out;
  EXPECT_TRUE(out.ends_with("late")) << out;
  EXPECT_FALSE(session_->wantRead());
  EXPECT_FALSE(session_->wantWrite());
}

TEST_F(H1Session, ConnectionCloseEndsAfterTheResponse) {
  send("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nGET /ignored HTTP/1.1\r\n");
  const std::string out = drain();
  EXPECT_NE(out.find("connection: close\r\n"), std::string::npos) << out;
  EXPECT_EQ(rec_.requests.size(), 1u);
  EXPECT_FALSE(session_->wantRead());
  EXPECT_FALSE(session_->wantWrite());
}

struct Hostile {
  const char* name;
  const char* input;
  int status;
};

class H1Hostile : public H1Session, public ::testing::WithParamInterface<Hostile> {};

TEST_P(H1Hostile, GetsItsStatusAndTheEnd) {
  send(GetParam().input);
  const std::string out = drain();
  const std::string line = "HTTP/1.1 " + std::to_string(GetParam().status) + " ";
  EXPECT_EQ(out.rfind(line, 0), 0u) << out;
  EXPECT_NE(out.find("connection: close\r\n"), std::string::npos) << out;
  EXPECT_TRUE(session_->connectionError());
  EXPECT_FALSE(session_->wantRead());
  EXPECT_EQ(session_->errorStatus(), GetParam().status);
  EXPECT_TRUE(rec_.requests.empty()) << "a refused request reached the handler";
}

INSTANTIATE_TEST_SUITE_P(
    Inputs, H1Hostile,
    ::testing::Values(
        Hostile{"ContentLengthAndChunked",
                "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: "
                "chunked\r\n\r\n0\r\n\r\n",
                400},
        Hostile{"TwoContentLengths",
                "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                400},
        Hostile{"TwoTransferEncodings",
                "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
                "chunked\r\n\r\n",
                400},
        Hostile{"UnknownTransferCoding",
                "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
        Hostile{"SpaceBeforeColon", "GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400},
        Hostile{"NoHost", "GET / HTTP/1.1\r\n\r\n", 400},
        Hostile{"TwoHosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
        Hostile{"Http2RequestLine", "GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505},
        Hostile{"Connect", "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", 405},
        Hostile{"Garbage", "\x16\x03\x01 not http at all\r\n\r\n", 400},
        Hostile{"OddExpect", "GET / HTTP/1.1\r\nHost: h\r\nExpect: magic\r\n\r\n", 417},
        Hostile{"ObsoleteLineFolding", "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n", 400},
        Hostile{"ChunkedNotFinal",
                "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400}),
    [](const auto& p) { return std::string(p.param.name); });

TEST_F(H1Session, InvalidChunkSizeAfterTheHandlerStarted) {
  send("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
  const std::string out = drain();
  // The handler answered at once (before the body): the answer stands, then
  // the connection ends on the bad chunk.
  EXPECT_TRUE(session_->connectionError());
  EXPECT_EQ(rec_.closes.size(), 1u);
  EXPECT_NE(rec_.closes[0], uint32_t{NGHTTP2_NO_ERROR});
  (void)out;
}

TEST_F(H1Session, HeaderSectionOverTheLimitIs431) {
  config_.max_header_bytes = 1024;
  reconfigure();
  send("GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + std::string(2000, 'a') + "\r\n\r\n");
  EXPECT_EQ(drain().rfind("HTTP/1.1 431 ", 0), 0u);
  EXPECT_TRUE(rec_.requests.empty());
}

TEST_F(H1Session, TooManyFieldsIs431) {
  config_.max_header_fields = 10;
  reconfigure();
  std::string req = "GET / HTTP/1.1\r\nHost: h\r\n";
  for (int i = 0; i < 20; ++i)
    req += "X-" + std::to_string(i) + ": v\r\n";
  send(req + "\r\n");
  EXPECT_EQ(drain().rfind("HTTP/1.1 431 ", 0), 0u);
}

TEST_F(H1Session, HeaderTimeoutAnswers408OnlyWhileAHeadIsArriving) {
  session_->headerTimeout();
  EXPECT_FALSE(session_->connectionError()) << "no head was arriving";
  send("GET / HTTP/1.1\r\nHo");
  EXPECT_TRUE(session_->readingHead());
  session_->headerTimeout();
  EXPECT_EQ(drain().rfind("HTTP/1.1 408 ", 0), 0u);
  EXPECT_TRUE(session_->connectionError());
}

TEST_F(H1Session, HeldStreamOutlivesTheSession) {
  rec_.on_request = [&](Stream& s) { rec_.held.emplace_back(&s); };
  send("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
  (void)drain();
  StreamRef held = rec_.held[0];
  session_.reset();
  EXPECT_EQ(rec_.closes, std::vector<uint32_t>{NGHTTP2_CANCEL});
  EXPECT_TRUE(held->closed());
  EXPECT_EQ(held->submitResponse(200, {}, ResponseBody::none()), SubmitResult::kClosed);
  EXPECT_EQ(pool_.inUse(), 1u);
  held.reset();
  rec_.held.clear();
  EXPECT_EQ(pool_.inUse(), 0u);
}

TEST_F(H1Session, UnconsumedBodyStopsParsingAtTheWindow) {
  config_.body_window = 1000;
  reconfigure();
  rec_.on_request = [&](Stream& s) {
    s.holdWindow();
    rec_.held.emplace_back(&s);
  };
  send("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3000\r\n\r\n" + std::string(3000, 'b'));
  (void)drain();
  EXPECT_GE(rec_.body.size(), 1000u);
  EXPECT_LT(rec_.body.size(), 3000u) << "the body went past the window";
  EXPECT_EQ(rec_.ends, 0);
  // The application takes what it got: parsing goes on (on the next produce).
  rec_.held[0]->consume(rec_.body.size());
  (void)drain();
  rec_.held[0]->consume(rec_.body.size());
  (void)drain();
  rec_.held[0]->consume(rec_.body.size());
  (void)drain();
  EXPECT_EQ(rec_.body.size(), 3000u);
  EXPECT_EQ(rec_.ends, 1);
  ASSERT_EQ(rec_.held[0]->submitResponse(204, {}, ResponseBody::none()), SubmitResult::kOk);
  (void)drain();
  EXPECT_EQ(rec_.closes.size(), 1u);
}

TEST_F(H1Session, ApplicationResetEndsTheConnection) {
  rec_.on_request = [&](Stream& s) {
    rec_.held.emplace_back(&s);
    ASSERT_EQ(s.submitResponse(200, {}, ResponseBody::streamed()), SubmitResult::kOk);
  };
  send("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
  (void)drain();
  ASSERT_EQ(rec_.held[0]->reset(NGHTTP2_CANCEL), SubmitResult::kOk);
  (void)drain();
  EXPECT_TRUE(session_->connectionError());
  EXPECT_EQ(rec_.closes, std::vector<uint32_t>{NGHTTP2_CANCEL});
  EXPECT_TRUE(rec_.held[0]->closed());
}

TEST_F(H1Session, ExpectContinueIsAnsweredBeforeTheBody) {
  rec_.on_request = [&](Stream& s) { rec_.held.emplace_back(&s); };
  send("PUT /f HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
  EXPECT_EQ(drain(), "HTTP/1.1 100 Continue\r\n\r\n");
  send("data");
  EXPECT_EQ(rec_.body, "data");
  ASSERT_EQ(rec_.held[0]->submitResponse(201, {}, ResponseBody::none()), SubmitResult::kOk);
  const std::string out = drain();
  EXPECT_EQ(out.rfind("HTTP/1.1 201 Created\r\n", 0), 0u) << out;
  EXPECT_EQ(out.find("connection: close"), std::string::npos) << out;
}

TEST_F(H1Session, ExpectContinueAnsweredAtOnceClosesTheConnection) {
  send("PUT /f HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
  const std::string out = drain();
  EXPECT_EQ(out.find("100 Continue"), std::string::npos) << out;
  EXPECT_NE(out.find("connection: close\r\n"), std::string::npos) << out;
  // The body may never come: the connection ends with the answer.
  EXPECT_EQ(rec_.closes.size(), 1u);
  EXPECT_FALSE(session_->wantRead());
  EXPECT_FALSE(session_->wantWrite());
}

TEST_F(H1Session, ResponseHeadersAreCheckedForSplitting) {
  rec_.on_request = [&](Stream& s) {
    const h2::Header bad[] = {{"x-a", "1\r\nset-cookie: evil"}};
    EXPECT_EQ(s.submitResponse(200, bad, ResponseBody::none()), SubmitResult::kInvalid);
    const h2::Header hop[] = {{"connection", "upgrade"}, {"x-b", "2"}};
    EXPECT_EQ(s.submitResponse(200, hop, ResponseBody::none()), SubmitResult::kOk);
  };
  send("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
  const std::string out = drain();
  EXPECT_EQ(out.find("evil"), std::string::npos);
  EXPECT_EQ(out.find("upgrade"), std::string::npos) << "a hop-by-hop field went out";
  EXPECT_NE(out.find("x-b: 2\r\n"), std::string::npos);
}

TEST_F(H1Session, H2cUpgradeHandsTheRequestOver) {
  send(
      "GET /up HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
      "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\nPRI * HTTP/2.0");
  EXPECT_TRUE(session_->upgradeRequested());
  EXPECT_TRUE(rec_.requests.empty()) << "the HTTP/2 side dispatches it";
  EXPECT_EQ(session_->upgradeSettings(), "AAMAAABkAAQCAAAAAAIAAAAA");
  std::string rest;
  Stream* s = session_->takeUpgrade(rest);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(rest, "PRI * HTTP/2.0");
  EXPECT_EQ(s->path(), "/up");
  EXPECT_TRUE(s->requestComplete());
  // The HTTP/2 session would hold it now; here it lets go.
  s->release();
}

TEST_F(H1Session, UpgradeWithABodyIsServedOnHttp11) {
  send(
      "POST /up HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
      "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nContent-Length: 2\r\n\r\nhi");
  EXPECT_FALSE(session_->upgradeRequested());
  EXPECT_EQ(drain().rfind("HTTP/1.1 200 ", 0), 0u);
  EXPECT_EQ(rec_.body, "hi");
}

TEST_F(H1Session, AbsoluteFormTargetGivesTheAuthority) {
  send("GET http://example.org:8080/p?q HTTP/1.1\r\nHost: other\r\n\r\n");
  (void)drain();
  ASSERT_EQ(rec_.requests.size(), 1u);
  EXPECT_EQ(rec_.requests[0], "GET /p?q example.org:8080");
}

// ---- WebSocket tunnel (RFC 6455 upgrade) ------------------------------------

constexpr std::string_view kWsHandshake =
    "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

TEST_F(H1Session, AcceptedTunnelAnswers101AndCarriesRawBytesBothWays) {
  rec_.on_request = [&](Stream& s) {
    EXPECT_TRUE(s.wantsTunnel());
    ASSERT_TRUE(s.acceptTunnel());
    const h2::Header h[] = {{"sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="}};
    ASSERT_EQ(s.submitResponse(200, h, ResponseBody::streamed()), SubmitResult::kOk);
    rec_.held.emplace_back(&s);
  };
  // The first tunnel bytes arrive with the handshake.
  send(std::string(kWsHandshake) +
       "\x81\x85"
       "abcd");
  std::string out = drain();
  EXPECT_EQ(out,
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n"
            "sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n");
  send("rest");
  (void)drain();
  EXPECT_EQ(rec_.body,
            "\x81\x85"
            "abcdrest");
  EXPECT_EQ(rec_.ends, 0) << "a tunnel's input ends with the connection, not with the head";
  // Our bytes go out as they are: no chunk framing, no length.
  Stream& s = *rec_.held[0];
  ASSERT_EQ(s.appendBody("\x81\x02"
                         "hi"),
            SubmitResult::kOk);
  EXPECT_EQ(drain(),
            "\x81\x02"
            "hi");
  EXPECT_TRUE(session_->wantRead());
  // Our end of the tunnel ends the connection (the server's FIN).
  ASSERT_EQ(s.endBody(), SubmitResult::kOk);
  EXPECT_EQ(drain(), "");
  EXPECT_EQ(rec_.closes, std::vector<uint32_t>{NGHTTP2_NO_ERROR});
  EXPECT_FALSE(session_->wantRead());
  send("late bytes");
  EXPECT_EQ(rec_.body,
            "\x81\x85"
            "abcdrest");
}

TEST_F(H1Session, TunnelInputIsHeldAtTheBodyWindow) {
  config_.body_window = 8;
  reconfigure();
  rec_.on_request = [&](Stream& s) {
    ASSERT_TRUE(s.acceptTunnel());
    s.holdWindow();
    ASSERT_EQ(s.submitResponse(200, {}, ResponseBody::streamed()), SubmitResult::kOk);
    rec_.held.emplace_back(&s);
  };
  send(kWsHandshake);
  (void)drain();
  send("0123456789abcdef");
  EXPECT_EQ(rec_.body, "01234567") << "fed past the window";
  rec_.held[0]->consume(8);
  (void)drain();
  EXPECT_EQ(rec_.body, "0123456789abcdef");
}

TEST_F(H1Session, RefusedTunnelIsAnOrdinaryAnswerAndTheEnd) {
  rec_.on_request = [&](Stream& s) {
    ASSERT_TRUE(s.acceptTunnel());
    ASSERT_EQ(s.submitResponse(426, {}, ResponseBody::bytes("no")), SubmitResult::kOk);
  };
  send(std::string(kWsHandshake) + "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
  const std::string out = drain();
  EXPECT_EQ(out.rfind("HTTP/1.1 426 ", 0), 0u) << out;
  EXPECT_NE(out.find("connection: close\r\n"), std::string::npos) << out;
  EXPECT_EQ(rec_.requests.size(), 1u) << "nothing is parsed after an Upgrade request";
  EXPECT_FALSE(session_->wantRead());
}

TEST_F(H1Session, UpgradeNotTakenIsServedAsHttp11) {
  // The handler ignores the offer: a plain answer, and the connection goes on.
  send(std::string(kWsHandshake) + "GET /2 HTTP/1.1\r\nHost: h\r\n\r\n");
  const std::string out = drain();
  EXPECT_EQ(count(out, "HTTP/1.1 200 OK"), 2u) << out;
  EXPECT_EQ(rec_.requests.size(), 2u);
}

TEST_F(H1Session, OnlyAWebSocketUpgradeOffersATunnel) {
  bool wants = true;
  rec_.on_request = [&](Stream& s) {
    wants = s.wantsTunnel();
    EXPECT_FALSE(s.acceptTunnel());
    ASSERT_EQ(s.submitResponse(200, {}, ResponseBody::bytes("x")), SubmitResult::kOk);
  };
  send("GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n");  // no Connection: upgrade
  (void)drain();
  EXPECT_FALSE(wants);
}

}  // namespace
}  // namespace h2loop::h1
