// PlainTransport and socket_util on real loopback TCP sockets.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

#include "net/plain_transport.h"
#include "net/socket_util.h"
#include "server/transport_test_util.h"

namespace h2loop::server {
namespace {

using transport_testing::makeTcpPair;
using transport_testing::readExactlyFrom;
using transport_testing::readWhenReady;
using transport_testing::recvExactly;
using transport_testing::resetAndClose;
using transport_testing::ScopedFd;
using transport_testing::sendAll;
using transport_testing::TcpPair;
using transport_testing::waitFd;

std::string pattern(size_t offset, size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i)
    s[i] = static_cast<char>((offset + i) % 251);
  return s;
}

TEST(PlainTransport, HandshakeIsImmediateAndDataFlowsBothWays) {
  TcpPair pair = makeTcpPair();
  ASSERT_GE(pair.server.get(), 0);
  net::PlainTransport t(pair.server.get());
  EXPECT_EQ(t.handshake(), net::HandshakeStatus::kDone);
  EXPECT_FALSE(t.isTls());
  EXPECT_TRUE(t.alpnProtocol().empty());
  EXPECT_EQ(t.fd(), pair.server.get());

  const std::string out = "hello from server";
  net::IoResult w = t.write(reinterpret_cast<const uint8_t*>(out.data()), out.size());
  EXPECT_EQ(w.status, net::IoStatus::kOk);
  EXPECT_EQ(w.bytes, out.size());
  EXPECT_EQ(recvExactly(pair.client.get(), out.size()), out);

  ASSERT_TRUE(sendAll(pair.client.get(), "hello from client"));
  EXPECT_EQ(readExactlyFrom(t, 17), "hello from client");
  EXPECT_EQ(t.pendingInterest(), net::Interest::kNone);
  EXPECT_FALSE(t.hasPendingInput());
  EXPECT_TRUE(t.failureReason().empty());
}

TEST(PlainTransport, ReadWithoutDataWouldBlockWantingRead) {
  TcpPair pair = makeTcpPair();
  ASSERT_GE(pair.server.get(), 0);
  net::PlainTransport t(pair.server.get());
  uint8_t buf[16];
  net::IoResult r = t.read(buf, sizeof buf);
  EXPECT_EQ(r.status, net::IoStatus::kWouldBlock);
  EXPECT_EQ(r.bytes, 0u);
  EXPECT_EQ(r.want, net::Interest::kRead);
  EXPECT_EQ(t.pendingInterest(), net::Interest::kRead);

  ASSERT_TRUE(sendAll(pair.client.get(), "x"));
  r = readWhenReady(t, buf, sizeof buf);
  EXPECT_EQ(r.status, net::IoStatus::kOk);
  EXPECT_EQ(r.bytes, 1u);
  EXPECT_EQ(t.pendingInterest(), net::Interest::kNone);
}

TEST(PlainTransport, ZeroLengthReadIsNotEof) {
  TcpPair pair = makeTcpPair();
  ASSERT_GE(pair.server.get(), 0);
  net::PlainTransport t(pair.server.get());
  uint8_t buf[1];
  net::IoResult r = t.read(buf, 0);
  EXPECT_EQ(r.status, net::IoStatus::kOk);
  EXPECT_EQ(r.bytes, 0u);
}

TEST(PlainTransport, PartialWritesUntilWouldBlockThenAllBytesArriveInOrder) {
  TcpPair pair = makeTcpPair();
  ASSERT_GE(pair.server.get(), 0);
  int small = 4096;
  ASSERT_EQ(::setsockopt(pair.server.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
  net::PlainTransport t(pair.server.get());

  constexpr size_t kChunk = 64 * 1024;
  const std::string source = pattern(0, 4 * 1024 * 1024);
  size_t total = 0;
  bool saw_short_write = false;
  net::IoResult last{net::IoStatus::kOk, 0, 0};
  for (int i = 0; i < 10000 && total + kChunk <= source.size(); ++i) {
    last = t.write(reinterpret_cast<const uint8_t*>(source.data() + total), kChunk);
    if (last.status != net::IoStatus::kOk) break;
    if (last.bytes < kChunk) saw_short_write = true;
    total += last.bytes;
  }
  ASSERT_EQ(last.status, net::IoStatus::kWouldBlock) << "the socket buffer never filled";
  EXPECT_EQ(last.want, net::Interest::kWrite);
  EXPECT_EQ(t.pendingInterest(), net::Interest::kWrite);
  EXPECT_TRUE(saw_short_write) << "a 64 KiB write into a 4 KiB buffer should be partial";
  EXPECT_GT(total, 0u);
  EXPECT_LT(total, source.size()) << "the socket buffers should bound what is accepted";

  // The peer drains: every accepted byte arrives, in order, and the writer can continue.
  const std::string received = recvExactly(pair.client.get(), total);
  ASSERT_EQ(received.size(), total);
  EXPECT_TRUE(received == source.substr(0, total)) << "bytes arrived altered or out of order";
  ASSERT_TRUE(waitFd(pair.server.get(), POLLOUT));
  const std::string more = pattern(total, 10);
  net::IoResult again = t.write(reinterpret_cast<const uint8_t*>(more.data()), more.size());
  EXPECT_EQ(again.status, net::IoStatus::kOk);
  EXPECT_EQ(t.pendingInterest(), net::Interest::kNone);
}

TEST(PlainTransport, WritevGathersBuffersInOrder) {
  TcpPair pair = makeTcpPair();
  ASSERT_GE(pair.server.get(), 0);
  net::PlainTransport t(pair.server.get());
  std::string a = "frame-header|";
  std::string b;  // empty buffers are allowed
  std::string c = "payload";
  iovec iov[3] = {{a.data(), a.size()}, {b.data(), 0}, {c.data(), c.size()}};
  net::IoResult r = t.writev(iov, 3);
  EXPECT_EQ(r.status, net::IoStatus::kOk);
  EXPECT_EQ(r.bytes, a.size() + c.size());
  EXPECT_EQ(recvExactly(pair.client.get(), a.size() + c.size()), a + c);
}

TEST(PlainTransport, PeerResetIsResetNotWouldBlock) {
  TcpPair pair = makeTcpPair();
  ASSERT_GE(pair.server.get(), 0);
  net::PlainTransport t(pair.server.get());
  resetAndClose(pair.client);
  ASSERT_TRUE(waitFd(pair.server.get(), POLLIN));
  uint8_t buf[64];
  net::IoResult r = t.read(buf, sizeof buf);
  EXPECT_EQ(r.status, net::IoStatus::kReset) << toString(r.status);
  EXPECT_EQ(r.err, ECONNRESET);
  EXPECT_NE(t.failureReason().find("reset"), std::string_view::npos) << t.failureReason();
}

TEST(PlainTransport, PeerClosingWithUnreadDataResetsMidResponse) {
  TcpPair pair = makeTcpPair();
  ASSERT_GE(pair.server.get(), 0);
  net::PlainTransport t(pair.server.get());
  // The server has sent part of a response the client never reads; a close() with unread data
  // sends RST (RFC 2525), the "client went away mid-response" case.
  const std::string body = pattern(0, 1000);
  ASSERT_EQ(t.write(reinterpret_cast<const uint8_t*>(body.data()), body.size()).status,
            net::IoStatus::kOk);
  ASSERT_TRUE(waitFd(pair.client.get(), POLLIN));
  pair.client.reset();
  ASSERT_TRUE(waitFd(pair.server.get(), POLLIN));
  uint8_t buf[64];
  net::IoResult r = t.read(buf, sizeof buf);
  EXPECT_EQ(r.status, net::IoStatus::kReset) << toString(r.status);
}

TEST(PlainTransport, WriteToResetPeerIsResetWithoutSigpipe) {
  TcpPair pair = makeTcpPair();
  ASSERT_GE(pair.server.get(), 0);
  net::PlainTransport t(pair.server.get());
  resetAndClose(pair.client);
  ASSERT_TRUE(waitFd(pair.server.get(), POLLIN));
  const std::string data(100, 'x');
  // Default SIGPIPE disposition: without MSG_NOSIGNAL this would kill the test binary.
  // The first send reports the pending ECONNRESET, later ones EPIPE (the SIGPIPE case).
  net::IoResult w1 = t.write(reinterpret_cast<const uint8_t*>(data.data()), data.size());
  EXPECT_EQ(w1.status, net::IoStatus::kReset) << toString(w1.status);
  net::IoResult w2 = t.write(reinterpret_cast<const uint8_t*>(data.data()), data.size());
  EXPECT_EQ(w2.status, net::IoStatus::kReset) << toString(w2.status);
  EXPECT_EQ(w2.err, EPIPE);
  iovec iov{const_cast<char*>(data.data()), data.size()};
  net::IoResult w3 = t.writev(&iov, 1);
  EXPECT_EQ(w3.status, net::IoStatus::kReset) << toString(w3.status);
  EXPECT_EQ(w3.err, EPIPE);
}

TEST(PlainTransport, PeerFinIsEof) {
  TcpPair pair = makeTcpPair();
  ASSERT_GE(pair.server.get(), 0);
  net::PlainTransport t(pair.server.get());
  ASSERT_TRUE(sendAll(pair.client.get(), "last words"));
  ASSERT_EQ(::shutdown(pair.client.get(), SHUT_WR), 0);
  EXPECT_EQ(readExactlyFrom(t, 10), "last words");
  uint8_t buf[16];
  net::IoResult r = readWhenReady(t, buf, sizeof buf);
  EXPECT_EQ(r.status, net::IoStatus::kEof) << toString(r.status);
  EXPECT_EQ(r.bytes, 0u);
}

TEST(PlainTransport, ShutdownWriteSendsFinAndIsIdempotent) {
  TcpPair pair = makeTcpPair();
  ASSERT_GE(pair.server.get(), 0);
  net::PlainTransport t(pair.server.get());
  t.shutdownWrite();
  t.shutdownWrite();
  ASSERT_TRUE(waitFd(pair.client.get(), POLLIN));
  char c = 0;
  EXPECT_EQ(::recv(pair.client.get(), &c, 1, 0), 0);
  // The read side stays open: a lingering close can still drain the client.
  ASSERT_TRUE(sendAll(pair.client.get(), "abc"));
  EXPECT_EQ(readExactlyFrom(t, 3), "abc");
}

TEST(PlainTransport, BadFdIsErrorNotWouldBlock) {
  net::PlainTransport t(-1);
  uint8_t buf[8] = {};
  net::IoResult r = t.read(buf, sizeof buf);
  EXPECT_EQ(r.status, net::IoStatus::kError);
  EXPECT_EQ(r.err, EBADF);
  net::IoResult w = t.write(buf, sizeof buf);
  EXPECT_EQ(w.status, net::IoStatus::kError);
  EXPECT_EQ(w.err, EBADF);
  iovec iov{buf, sizeof buf};
  net::IoResult v = t.writev(&iov, 1);
  EXPECT_EQ(v.status, net::IoStatus::kError);
  EXPECT_FALSE(t.failureReason().empty());
  t.shutdownWrite();  // harmless on an invalid fd
}

TEST(SocketUtil, ClassifyErrno) {
  EXPECT_EQ(net::classifyErrno(EAGAIN), net::IoStatus::kWouldBlock);
  EXPECT_EQ(net::classifyErrno(EWOULDBLOCK), net::IoStatus::kWouldBlock);
  EXPECT_EQ(net::classifyErrno(ECONNRESET), net::IoStatus::kReset);
  EXPECT_EQ(net::classifyErrno(EPIPE), net::IoStatus::kReset);
  EXPECT_EQ(net::classifyErrno(ETIMEDOUT), net::IoStatus::kReset);
  EXPECT_EQ(net::classifyErrno(ENOTCONN), net::IoStatus::kReset);
  EXPECT_EQ(net::classifyErrno(EBADF), net::IoStatus::kError);
  EXPECT_EQ(net::classifyErrno(EINVAL), net::IoStatus::kError);
  EXPECT_EQ(net::classifyErrno(ENOMEM), net::IoStatus::kError);
}

TEST(SocketUtil, ParseHostPortAccepts) {
  struct Case {
    const char* text;
    const char* host;
    uint16_t port;
  };
  const Case cases[] = {
      {"127.0.0.1:8443", "127.0.0.1", 8443}, {"[::1]:8443", "::1", 8443},
      {"localhost:80", "localhost", 80},     {":8080", "", 8080},
      {"0.0.0.0:0", "0.0.0.0", 0},           {"[::]:65535", "::", 65535},
      {"[fe80::1]:1", "fe80::1", 1},
  };
  for (const Case& c : cases) {
    net::HostPortResult r = net::parseHostPort(c.text);
    EXPECT_TRUE(r.ok()) << c.text << ": " << r.error;
    EXPECT_EQ(r.host, c.host) << c.text;
    EXPECT_EQ(r.port, c.port) << c.text;
  }
}

TEST(SocketUtil, ParseHostPortRejectsWithClearErrors) {
  struct Case {
    const char* text;
    const char* expected_in_error;
  };
  const Case cases[] = {
      {"127.0.0.1", "host:port"},
      {"127.0.0.1:", "missing port"},
      {"127.0.0.1:http", "0..65535"},
      {"127.0.0.1:65536", "0..65535"},
      {"127.0.0.1:-1", "0..65535"},
      {"127.0.0.1:80x", "0..65535"},
      {"::1:8443", "bracketed"},
      {"[::1]8443", "':port'"},
      {"[::1", "missing ']'"},
      {"[]:80", "empty IPv6"},
      {"[127.0.0.1]:80", "not an IPv6 address"},
      {"", "host:port"},
  };
  for (const Case& c : cases) {
    net::HostPortResult r = net::parseHostPort(c.text);
    EXPECT_FALSE(r.ok()) << c.text;
    EXPECT_NE(r.error.find(c.expected_in_error), std::string::npos)
        << "'" << c.text << "' -> " << r.error;
    EXPECT_NE(r.error.find(std::string("\"") + c.text + "\""), std::string::npos)
        << "error should quote the input: " << r.error;
  }
}

TEST(SocketUtil, MakeListenerEphemeralPortOnLoopback) {
  for (const char* host : {"127.0.0.1", "localhost"}) {
    net::ListenerResult l = net::makeListener(host, 0, false);
    ASSERT_TRUE(l.ok()) << l.error;
    ScopedFd fd(l.fd);
    std::optional<uint16_t> port = net::localPort(fd.get());
    ASSERT_TRUE(port.has_value());
    EXPECT_NE(*port, 0);
    int reuse = 0;
    socklen_t len = sizeof reuse;
    ASSERT_EQ(::getsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &reuse, &len), 0);
    EXPECT_NE(reuse, 0);
    EXPECT_NE(::fcntl(fd.get(), F_GETFL) & O_NONBLOCK, 0);
  }
}

TEST(SocketUtil, MakeListenerIpv6Literal) {
  net::ListenerResult l = net::makeListener("[::1]", 0, false);
  if (!l.ok() && (l.error.find("Cannot assign") != std::string::npos ||
                  l.error.find("not supported") != std::string::npos)) {
    GTEST_SKIP() << "no IPv6 loopback here: " << l.error;
  }
  ASSERT_TRUE(l.ok()) << l.error;
  ScopedFd fd(l.fd);
  EXPECT_NE(net::localPort(fd.get()).value_or(0), 0);
  net::ListenerResult bare = net::makeListener("::1", 0, false);
  ASSERT_TRUE(bare.ok()) << bare.error;
  ::close(bare.fd);
}

TEST(SocketUtil, MakeListenerOnPortInUseFailsClearly) {
  net::ListenerResult first = net::makeListener("127.0.0.1", 0, false);
  ASSERT_TRUE(first.ok()) << first.error;
  ScopedFd fd(first.fd);
  const uint16_t port = net::localPort(fd.get()).value_or(0);
  ASSERT_NE(port, 0);
  net::ListenerResult second = net::makeListener("127.0.0.1", port, false);
  EXPECT_FALSE(second.ok());
  EXPECT_EQ(second.fd, -1);
  EXPECT_NE(second.error.find("Address already in use"), std::string::npos) << second.error;
  EXPECT_NE(second.error.find("127.0.0.1:" + std::to_string(port)), std::string::npos)
      << second.error;
}

TEST(SocketUtil, MakeListenerReusePortAllowsOneListenerPerWorker) {
  net::ListenerResult first = net::makeListener("127.0.0.1", 0, true);
  ASSERT_TRUE(first.ok()) << first.error;
  ScopedFd a(first.fd);
  const uint16_t port = net::localPort(a.get()).value_or(0);
  net::ListenerResult second = net::makeListener("127.0.0.1", port, true);
  ASSERT_TRUE(second.ok()) << second.error;
  ScopedFd b(second.fd);
  EXPECT_EQ(net::localPort(b.get()).value_or(0), port);
}

TEST(SocketUtil, MakeListenerRestartsOnPortWithTimeWait) {
  net::ListenerResult first = net::makeListener("127.0.0.1", 0, false);
  ASSERT_TRUE(first.ok()) << first.error;
  ScopedFd listener(first.fd);
  const uint16_t port = net::localPort(listener.get()).value_or(0);
  ASSERT_NE(port, 0);
  {
    // One connection the server closes first: the server side enters TIME_WAIT on `port`.
    ScopedFd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_TRUE(waitFd(listener.get(), POLLIN));
    ScopedFd accepted(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    ASSERT_GE(accepted.get(), 0);
    accepted.reset();  // server is the active closer
    ASSERT_TRUE(waitFd(client.get(), POLLIN));
    char c;
    ASSERT_EQ(::recv(client.get(), &c, 1, 0), 0);
  }
  listener.reset();
  net::ListenerResult again = net::makeListener("127.0.0.1", port, false);
  EXPECT_TRUE(again.ok()) << again.error;
  if (again.ok()) ::close(again.fd);
}

TEST(SocketUtil, MakeListenerRejectsHostNames) {
  net::ListenerResult l = net::makeListener("example.com", 0, false);
  EXPECT_FALSE(l.ok());
  EXPECT_NE(l.error.find("example.com"), std::string::npos) << l.error;
  EXPECT_NE(l.error.find("literal"), std::string::npos) << l.error;
}

TEST(SocketUtil, SocketOptionsTakeEffect) {
  TcpPair pair = makeTcpPair();
  ASSERT_GE(pair.server.get(), 0);
  const int fd = pair.server.get();
  ASSERT_TRUE(net::setNoDelay(fd));
  int v = 0;
  socklen_t len = sizeof v;
  ASSERT_EQ(::getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &len), 0);
  EXPECT_NE(v, 0);
  ASSERT_TRUE(net::setLingerZero(fd));
  linger lg{};
  len = sizeof lg;
  ASSERT_EQ(::getsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, &len), 0);
  EXPECT_EQ(lg.l_onoff, 1);
  EXPECT_EQ(lg.l_linger, 0);
  ScopedFd blocking(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_EQ(::fcntl(blocking.get(), F_GETFL) & O_NONBLOCK, 0);
  ASSERT_TRUE(net::setNonBlocking(blocking.get()));
  EXPECT_NE(::fcntl(blocking.get(), F_GETFL) & O_NONBLOCK, 0);
  EXPECT_FALSE(net::setNoDelay(-1));
}

}  // namespace
}  // namespace h2loop::server
