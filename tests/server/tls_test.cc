// TlsContext, TlsTransport and generateSelfSigned against an in-process OpenSSL client on real
// loopback TCP sockets. Both sides run in the test's thread; every wait is a bounded poll().

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "net/self_signed.h"
#include "net/socket_util.h"
#include "net/tls_context.h"
#include "net/tls_transport.h"
#include "server/transport_test_util.h"

namespace h2loop::server {
namespace {

using transport_testing::ClientOptions;
using transport_testing::HandshakeOutcome;
using transport_testing::makeTcpPair;
using transport_testing::pollEvents;
using transport_testing::pumpHandshake;
using transport_testing::readExactlyFrom;
using transport_testing::readWhenReady;
using transport_testing::resetAndClose;
using transport_testing::sendAll;
using transport_testing::serverHandshake;
using transport_testing::TcpPair;
using transport_testing::TempDir;
using transport_testing::testCerts;
using transport_testing::TestTlsClient;
using transport_testing::waitFd;
using Step = TestTlsClient::Step;

bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

net::TlsOptions defaultOptions() {
  net::TlsOptions o;
  o.cert_file = testCerts().cert;
  o.key_file = testCerts().key;
  return o;
}

const net::TlsContext& defaultContext() {
  static const net::TlsContext ctx(defaultOptions());
  return ctx;
}

std::string pattern(size_t offset, size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i)
    s[i] = static_cast<char>((offset + i) % 251);
  return s;
}

// A server transport and a client on one loopback connection, handshake not yet run.
struct TlsPair {
  explicit TlsPair(const net::TlsContext& ctx = defaultContext(),
                   const ClientOptions& client_opts = {})
      : tcp(makeTcpPair()), server(ctx, tcp.server.get()), client(tcp.client.get(), client_opts) {}

  // Runs the handshake to completion on both sides; fails the test otherwise.
  void establish() {
    HandshakeOutcome o = pumpHandshake(server, client);
    ASSERT_FALSE(o.timed_out);
    ASSERT_EQ(o.server, net::HandshakeStatus::kDone) << server.failureReason();
    ASSERT_EQ(o.client, Step::kDone) << client.error();
  }

  TcpPair tcp;  // declared first: the fds outlive the transport and the client
  net::TlsTransport server;
  TestTlsClient client;
};

// ---- generateSelfSigned -----------------------------------------------------------------------

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};

std::unique_ptr<X509, X509Free> loadCert(const std::filesystem::path& path) {
  FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) return nullptr;
  std::unique_ptr<X509, X509Free> cert(PEM_read_X509(f, nullptr, nullptr, nullptr));
  std::fclose(f);
  return cert;
}

TEST(SelfSigned, CertificateCoversLocalhostForOneYear) {
  const auto& certs = testCerts();
  auto cert = loadCert(certs.cert);
  ASSERT_NE(cert, nullptr);
  EXPECT_EQ(X509_check_host(cert.get(), "localhost", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_ip_asc(cert.get(), "127.0.0.1", 0), 1);
  EXPECT_EQ(X509_check_ip_asc(cert.get(), "::1", 0), 1);
  EXPECT_NE(X509_check_host(cert.get(), "example.com", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_get_version(cert.get()), X509_VERSION_3);

  int days = 0;
  int secs = 0;
  ASSERT_EQ(ASN1_TIME_diff(&days, &secs, nullptr, X509_get0_notAfter(cert.get())), 1);
  EXPECT_GE(days, 364);
  EXPECT_LE(days, 366);
  ASSERT_EQ(ASN1_TIME_diff(&days, &secs, nullptr, X509_get0_notBefore(cert.get())), 1);
  EXPECT_LE(days, 0);
  EXPECT_LE(secs, 0) << "notBefore must not be in the future";

  EVP_PKEY* pub = X509_get0_pubkey(cert.get());
  ASSERT_NE(pub, nullptr);
  EXPECT_EQ(EVP_PKEY_get_base_id(pub), EVP_PKEY_EC);
}

TEST(SelfSigned, KeyFileIsPrivate) {
  struct stat st {};
  ASSERT_EQ(::stat(testCerts().key.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST(SelfSigned, CommonNameIsAddedToSubjectAltNames) {
  auto cert = loadCert(testCerts().other_cert);
  ASSERT_NE(cert, nullptr);
  EXPECT_EQ(X509_check_host(cert.get(), "other.test", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_host(cert.get(), "localhost", 0, 0, nullptr), 1);
}

TEST(SelfSigned, UnwritablePathThrowsNamingTheFile) {
  TempDir dir;
  const auto missing = dir.path() / "no-such-dir" / "key.pem";
  try {
    net::generateSelfSigned(dir.path() / "cert.pem", missing);
    FAIL() << "expected an exception";
  } catch (const std::runtime_error& e) {
    EXPECT_TRUE(contains(e.what(), missing.string())) << e.what();
    EXPECT_TRUE(contains(e.what(), "No such file or directory")) << e.what();
  }
}

TEST(SelfSigned, ClientVerifiesTheCertificateForLocalhost) {
  ClientOptions opts;
  opts.ca_file = testCerts().cert;
  opts.verify_host = "localhost";
  TlsPair p(defaultContext(), opts);
  p.establish();
  EXPECT_EQ(SSL_get_verify_result(p.client.ssl()), X509_V_OK);
}

TEST(SelfSigned, ClientRejectsTheCertificateForAnotherHost) {
  ClientOptions opts;
  opts.ca_file = testCerts().cert;
  opts.verify_host = "example.com";
  TlsPair p(defaultContext(), opts);
  HandshakeOutcome o = pumpHandshake(p.server, p.client);
  ASSERT_FALSE(o.timed_out);
  EXPECT_EQ(o.client, Step::kFailed);
  EXPECT_TRUE(contains(p.client.error(), "certificate verify failed")) << p.client.error();
  EXPECT_EQ(o.server, net::HandshakeStatus::kFailed);
}

// ---- TlsContext start-up errors ---------------------------------------------------------------

std::string contextError(const net::TlsOptions& o) {
  try {
    net::TlsContext ctx(o);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return {};
}

TEST(TlsContext, MissingCertificateThrowsNamingTheFile) {
  net::TlsOptions o = defaultOptions();
  o.cert_file = testCerts().dir / "missing-cert.pem";
  const std::string msg = contextError(o);
  ASSERT_FALSE(msg.empty()) << "expected an exception";
  EXPECT_TRUE(contains(msg, o.cert_file.string())) << msg;
  EXPECT_TRUE(contains(msg, "No such file or directory")) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
}

TEST(TlsContext, MissingKeyThrowsNamingTheFile) {
  net::TlsOptions o = defaultOptions();
  o.key_file = testCerts().dir / "missing-key.pem";
  const std::string msg = contextError(o);
  ASSERT_FALSE(msg.empty()) << "expected an exception";
  EXPECT_TRUE(contains(msg, o.key_file.string())) << msg;
  EXPECT_TRUE(contains(msg, "No such file or directory")) << msg;
}

TEST(TlsContext, GarbageCertificateThrows) {
  TempDir dir;
  const auto bad = dir.path() / "bad.pem";
  FILE* f = std::fopen(bad.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fputs("this is not a certificate\n", f);
  std::fclose(f);
  net::TlsOptions o = defaultOptions();
  o.cert_file = bad;
  const std::string msg = contextError(o);
  ASSERT_FALSE(msg.empty()) << "expected an exception";
  EXPECT_TRUE(contains(msg, bad.string())) << msg;
}

TEST(TlsContext, KeyNotMatchingCertificateThrows) {
  net::TlsOptions o = defaultOptions();
  o.key_file = testCerts().other_key;
  const std::string msg = contextError(o);
  ASSERT_FALSE(msg.empty()) << "expected an exception";
  EXPECT_TRUE(contains(msg, o.key_file.string())) << msg;
  EXPECT_TRUE(contains(msg, "mismatch")) << msg;
}

TEST(TlsContext, InvalidCipherSettingsThrow) {
  net::TlsOptions o = defaultOptions();
  o.tls13_ciphersuites = "TLS_NOT_A_SUITE";
  EXPECT_TRUE(contains(contextError(o), "TLS_NOT_A_SUITE"));
  o = defaultOptions();
  o.tls12_ciphers = "NOT-A-CIPHER";
  EXPECT_TRUE(contains(contextError(o), "NOT-A-CIPHER"));
}

TEST(TlsContext, ValidOptionsDoNotThrowAndContextIsMovable) {
  net::TlsContext a(defaultOptions());
  EXPECT_NE(a.get(), nullptr);
  net::TlsContext b(std::move(a));
  EXPECT_NE(b.get(), nullptr);
  EXPECT_EQ(SSL_CTX_get_min_proto_version(b.get()), TLS1_2_VERSION);
  // A transport made from the moved-to context still negotiates (callback arguments survived).
  TlsPair p(b);
  p.establish();
  EXPECT_EQ(p.server.alpnProtocol(), "h2");
}

// ---- Handshake ---------------------------------------------------------------------------------

TEST(TlsTransport, HandshakeNegotiatesH2AndDataFlowsBothWays) {
  TlsPair p;
  EXPECT_TRUE(p.server.isTls());
  EXPECT_TRUE(p.server.protocolVersion().empty());
  p.establish();
  EXPECT_EQ(p.server.alpnProtocol(), "h2");
  EXPECT_EQ(p.client.alpn(), "h2");
  EXPECT_EQ(p.server.protocolVersion(), "TLSv1.3");
  EXPECT_EQ(p.server.handshake(), net::HandshakeStatus::kDone) << "idempotent once done";
  EXPECT_TRUE(p.server.failureReason().empty());

  ASSERT_TRUE(p.client.writeAll("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
  EXPECT_EQ(readExactlyFrom(p.server, 24), "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

  const std::string reply = "server says hi";
  net::IoResult w = p.server.write(reinterpret_cast<const uint8_t*>(reply.data()), reply.size());
  EXPECT_EQ(w.status, net::IoStatus::kOk);
  EXPECT_EQ(w.bytes, reply.size());
  EXPECT_EQ(p.client.readExactly(reply.size()), reply);
}

TEST(TlsTransport, AlpnPicksH2AmongSeveralOffers) {
  ClientOptions opts;
  opts.alpn = {"http/1.1", "h2", "h2c"};
  TlsPair p(defaultContext(), opts);
  p.establish();
  EXPECT_EQ(p.server.alpnProtocol(), "h2");
}

TEST(TlsTransport, Tls13CiphersuitesAreConfigurable) {
  {
    TlsPair p;
    p.establish();
    // OpenSSL's default server preference picks AES-256 first.
    EXPECT_EQ(p.server.cipherName(), "TLS_AES_256_GCM_SHA384");
  }
  net::TlsOptions o = defaultOptions();
  o.tls13_ciphersuites = "TLS_AES_128_GCM_SHA256";
  net::TlsContext ctx(o);
  TlsPair p(ctx);
  p.establish();
  EXPECT_EQ(p.server.cipherName(), "TLS_AES_128_GCM_SHA256");
}

TEST(TlsTransport, Tls12ClientGetsEcdheAeadCipher) {
  ClientOptions opts;
  opts.max_version = TLS1_2_VERSION;
  TlsPair p(defaultContext(), opts);
  p.establish();
  EXPECT_EQ(p.server.protocolVersion(), "TLSv1.2");
  const std::string cipher(p.server.cipherName());
  EXPECT_EQ(cipher.rfind("ECDHE-", 0), 0u) << cipher;
  EXPECT_TRUE(contains(cipher, "GCM") || contains(cipher, "CHACHA20")) << cipher;
  EXPECT_EQ(p.server.alpnProtocol(), "h2");
}

TEST(TlsTransport, Tls12ClientWithOnlyBlockListedCiphersIsRefused) {
  ClientOptions opts;
  opts.max_version = TLS1_2_VERSION;
  opts.tls12_ciphers = "AES128-SHA:AES256-GCM-SHA384:ECDHE-ECDSA-AES128-SHA";
  TlsPair p(defaultContext(), opts);
  HandshakeOutcome o = pumpHandshake(p.server, p.client);
  ASSERT_FALSE(o.timed_out);
  EXPECT_EQ(o.server, net::HandshakeStatus::kFailed);
  EXPECT_EQ(p.server.failureStatus(), net::IoStatus::kError);
  EXPECT_TRUE(contains(p.server.failureReason(), "no shared cipher")) << p.server.failureReason();
  EXPECT_EQ(o.client, Step::kFailed);
}

TEST(TlsTransport, ClientOfferingOnlyHttp11FailsWithAlpnReasonAndAlert) {
  ClientOptions opts;
  opts.alpn = {"http/1.1"};
  TlsPair p(defaultContext(), opts);
  HandshakeOutcome o = pumpHandshake(p.server, p.client);
  ASSERT_FALSE(o.timed_out) << "the client must see a failure, not a hang";
  EXPECT_EQ(o.server, net::HandshakeStatus::kFailed);
  EXPECT_EQ(p.server.failureStatus(), net::IoStatus::kError);
  EXPECT_TRUE(contains(p.server.failureReason(), "ALPN")) << p.server.failureReason();
  EXPECT_TRUE(contains(p.server.failureReason(), "http/1.1")) << p.server.failureReason();
  EXPECT_EQ(o.client, Step::kFailed);
  EXPECT_TRUE(contains(p.client.error(), "no application protocol")) << p.client.error();
  EXPECT_EQ(p.server.handshake(), net::HandshakeStatus::kFailed) << "failure is sticky";
}

TEST(TlsTransport, ClientWithoutAlpnFailsWithAlpnReasonAndAlert) {
  ClientOptions opts;
  opts.alpn = {};
  TlsPair p(defaultContext(), opts);
  HandshakeOutcome o = pumpHandshake(p.server, p.client);
  ASSERT_FALSE(o.timed_out);
  EXPECT_EQ(o.server, net::HandshakeStatus::kFailed);
  EXPECT_TRUE(contains(p.server.failureReason(), "no ALPN")) << p.server.failureReason();
  EXPECT_EQ(o.client, Step::kFailed);
  EXPECT_TRUE(contains(p.client.error(), "no application protocol")) << p.client.error();
}

TEST(TlsTransport, ClientWithoutAlpnIsServedWhenAllowed) {
  net::TlsOptions o = defaultOptions();
  o.allow_missing_alpn = true;
  net::TlsContext ctx(o);
  ClientOptions opts;
  opts.alpn = {};
  TlsPair p(ctx, opts);
  p.establish();
  EXPECT_TRUE(p.server.alpnProtocol().empty());
  // Offering something else is still refused.
  ClientOptions http11;
  http11.alpn = {"http/1.1"};
  TlsPair q(ctx, http11);
  HandshakeOutcome out = pumpHandshake(q.server, q.client);
  ASSERT_FALSE(out.timed_out);
  EXPECT_EQ(out.server, net::HandshakeStatus::kFailed);
}

TEST(TlsTransport, GarbageInsteadOfClientHelloFails) {
  TcpPair tcp = makeTcpPair();
  ASSERT_GE(tcp.server.get(), 0);
  net::TlsTransport server(defaultContext(), tcp.server.get());
  ASSERT_TRUE(sendAll(tcp.client.get(), "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  EXPECT_EQ(serverHandshake(server), net::HandshakeStatus::kFailed);
  EXPECT_EQ(server.failureStatus(), net::IoStatus::kError);
  const std::string reason(server.failureReason());
  EXPECT_EQ(reason.rfind("TLS handshake: tls: ", 0), 0u) << reason;
  EXPECT_TRUE(contains(reason, "http request") || contains(reason, "wrong version number"))
      << reason;
}

TEST(TlsTransport, Tls11OnlyClientIsRefused) {
  ClientOptions opts;
  opts.min_version = TLS1_1_VERSION;
  opts.max_version = TLS1_1_VERSION;
  opts.security_level = 0;  // let the client build a TLS 1.1 ClientHello at all
  opts.tls12_ciphers = "DEFAULT:@SECLEVEL=0";
  TlsPair p(defaultContext(), opts);
  HandshakeOutcome o = pumpHandshake(p.server, p.client);
  ASSERT_FALSE(o.timed_out);
  EXPECT_EQ(o.server, net::HandshakeStatus::kFailed);
  EXPECT_EQ(p.server.failureStatus(), net::IoStatus::kError);
  EXPECT_TRUE(contains(p.server.failureReason(), "unsupported protocol"))
      << p.server.failureReason();
  EXPECT_EQ(o.client, Step::kFailed);
}

// ---- Peer reset / close -----------------------------------------------------------------------

TEST(TlsTransport, ResetBeforeClientHelloFailsHandshakeAsReset) {
  TcpPair tcp = makeTcpPair();
  ASSERT_GE(tcp.server.get(), 0);
  net::TlsTransport server(defaultContext(), tcp.server.get());
  EXPECT_EQ(server.handshake(), net::HandshakeStatus::kWantRead);
  EXPECT_EQ(server.pendingInterest(), net::Interest::kRead);
  resetAndClose(tcp.client);
  EXPECT_EQ(serverHandshake(server), net::HandshakeStatus::kFailed);
  EXPECT_EQ(server.failureStatus(), net::IoStatus::kReset);
  EXPECT_TRUE(contains(server.failureReason(), "reset")) << server.failureReason();
  EXPECT_EQ(server.pendingInterest(), net::Interest::kNone);
  server.shutdownWrite();  // must not attempt SSL_shutdown; must not crash
}

TEST(TlsTransport, ResetMidHandshakeFailsHandshakeAsReset) {
  TlsPair p;
  // Client sends its ClientHello; the server answers with its first flight.
  ASSERT_EQ(p.client.handshakeStep(), Step::kWantRead);
  ASSERT_TRUE(waitFd(p.server.fd(), POLLIN));
  ASSERT_EQ(p.server.handshake(), net::HandshakeStatus::kWantRead);
  ASSERT_TRUE(waitFd(p.client.fd(), POLLIN)) << "server flight should have arrived";
  resetAndClose(p.tcp.client);
  EXPECT_EQ(serverHandshake(p.server), net::HandshakeStatus::kFailed);
  EXPECT_EQ(p.server.failureStatus(), net::IoStatus::kReset) << p.server.failureReason();
  EXPECT_TRUE(contains(p.server.failureReason(), "TLS handshake")) << p.server.failureReason();
}

TEST(TlsTransport, FinMidHandshakeFailsHandshakeAsEof) {
  TlsPair p;
  ASSERT_EQ(p.client.handshakeStep(), Step::kWantRead);
  ASSERT_EQ(::shutdown(p.tcp.client.get(), SHUT_WR), 0);
  EXPECT_EQ(serverHandshake(p.server), net::HandshakeStatus::kFailed);
  EXPECT_EQ(p.server.failureStatus(), net::IoStatus::kEof) << p.server.failureReason();
}

TEST(TlsTransport, ResetAfterHandshakeIsResetOnReadAndWrite) {
  TlsPair p;
  p.establish();
  resetAndClose(p.tcp.client);
  ASSERT_TRUE(waitFd(p.server.fd(), POLLIN));
  uint8_t buf[256];
  net::IoResult r = p.server.read(buf, sizeof buf);
  EXPECT_EQ(r.status, net::IoStatus::kReset)
      << toString(r.status) << " " << p.server.failureReason();
  EXPECT_EQ(r.err, ECONNRESET);
  EXPECT_TRUE(contains(p.server.failureReason(), "reset")) << p.server.failureReason();
  // Writing to the dead peer: kReset too, and no SIGPIPE (default disposition would kill us).
  const std::string data(100, 'x');
  net::IoResult w = p.server.write(reinterpret_cast<const uint8_t*>(data.data()), data.size());
  EXPECT_NE(w.status, net::IoStatus::kOk);
  EXPECT_NE(w.status, net::IoStatus::kWouldBlock);
  p.server.shutdownWrite();
}

TEST(TlsTransport, ResetWhileServerIsBlockedWritingIsReset) {
  TlsPair p;
  p.establish();
  int small = 4096;
  ASSERT_EQ(::setsockopt(p.server.fd(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
  const std::string chunk = pattern(0, 16384);
  net::IoResult w{net::IoStatus::kOk, 0, 0};
  for (int i = 0; i < 100000 && w.status == net::IoStatus::kOk; ++i) {
    w = p.server.write(reinterpret_cast<const uint8_t*>(chunk.data()), chunk.size());
  }
  ASSERT_EQ(w.status, net::IoStatus::kWouldBlock);
  EXPECT_EQ(w.want, net::Interest::kWrite);
  EXPECT_EQ(p.server.pendingInterest(), net::Interest::kWrite);
  resetAndClose(p.tcp.client);  // mid-response: the client vanishes
  ASSERT_TRUE(waitFd(p.server.fd(), POLLOUT));
  // The retry of the blocked write sees the reset; it must not report would-block again.
  w = p.server.write(reinterpret_cast<const uint8_t*>(chunk.data()), chunk.size());
  EXPECT_EQ(w.status, net::IoStatus::kReset)
      << toString(w.status) << " " << p.server.failureReason();
  EXPECT_TRUE(w.err == ECONNRESET || w.err == EPIPE) << w.err;
}

TEST(TlsTransport, CloseNotifyIsEofAndShutdownWriteAnswersIt) {
  TlsPair p;
  p.establish();
  ASSERT_TRUE(p.client.writeAll("bye"));
  ERR_clear_error();
  ASSERT_GE(SSL_shutdown(p.client.ssl()), 0);  // sends close_notify
  EXPECT_EQ(readExactlyFrom(p.server, 3), "bye");
  uint8_t buf[16];
  net::IoResult r = readWhenReady(p.server, buf, sizeof buf);
  EXPECT_EQ(r.status, net::IoStatus::kEof) << toString(r.status) << " " << p.server.failureReason();
  EXPECT_TRUE(contains(p.server.failureReason(), "close_notify"));

  p.server.shutdownWrite();
  p.server.shutdownWrite();  // idempotent
  // The client sees our close_notify, then the TCP FIN.
  EXPECT_EQ(p.client.readUntilClosed(), SSL_ERROR_ZERO_RETURN);
  ASSERT_TRUE(waitFd(p.client.fd(), POLLIN));
  char c = 0;
  EXPECT_EQ(::recv(p.client.fd(), &c, 1, 0), 0);
}

TEST(TlsTransport, FinWithoutCloseNotifyIsEof) {
  TlsPair p;
  p.establish();
  ASSERT_EQ(::shutdown(p.tcp.client.get(), SHUT_WR), 0);
  uint8_t buf[16];
  net::IoResult r = readWhenReady(p.server, buf, sizeof buf);
  EXPECT_EQ(r.status, net::IoStatus::kEof) << toString(r.status) << " " << p.server.failureReason();
  EXPECT_TRUE(contains(p.server.failureReason(), "without close_notify"))
      << p.server.failureReason();
}

// ---- Reads, writes, buffering ------------------------------------------------------------------

TEST(TlsTransport, ReadWithoutDataWouldBlockWantingRead) {
  TlsPair p;
  p.establish();
  uint8_t buf[16];
  net::IoResult r = p.server.read(buf, sizeof buf);
  EXPECT_EQ(r.status, net::IoStatus::kWouldBlock);
  EXPECT_EQ(r.want, net::Interest::kRead);
  EXPECT_EQ(p.server.pendingInterest(), net::Interest::kRead);
}

TEST(TlsTransport, StaleErrorOnTheThreadQueueDoesNotBreakRead) {
  TlsPair p;
  p.establish();
  // Another connection on this thread left an error behind.
  ERR_raise(ERR_LIB_SSL, SSL_R_BAD_LENGTH);
  uint8_t buf[16];
  net::IoResult r = p.server.read(buf, sizeof buf);
  EXPECT_EQ(r.status, net::IoStatus::kWouldBlock)
      << toString(r.status) << " " << p.server.failureReason();
  ERR_raise(ERR_LIB_SSL, SSL_R_BAD_LENGTH);
  ASSERT_TRUE(p.client.writeAll("ok"));
  EXPECT_EQ(readExactlyFrom(p.server, 2), "ok");
  EXPECT_EQ(ERR_peek_error(), 0u) << "the transport leaves the queue clean";
}

// SNI: names come from each certificate (generateSelfSigned writes
// DNS:<cn>, DNS:localhost); the default serves whatever matches nothing.
TEST(TlsContext, SniNamesChooseTheirCertificate) {
  TempDir dir;
  net::TlsOptions o = defaultOptions();
  for (const char* cn : {"a.example", "*.wild.example", "b.example"}) {
    const std::string base = (dir.path() / (std::string(cn[0] == '*' ? "wild" : cn))).string();
    net::generateSelfSigned(base + ".pem", base + ".key", cn);
    o.sni.push_back({base + ".pem", base + ".key", {}});
  }
  const net::TlsContext ctx(o);
  EXPECT_EQ(ctx.certificateFor("a.example"), 1u);
  EXPECT_EQ(ctx.certificateFor("A.Example"), 1u);
  EXPECT_EQ(ctx.certificateFor("x.wild.example"), 2u);
  EXPECT_EQ(ctx.certificateFor("b.example"), 3u);
  // A wildcard covers one label: not the bare domain, not two labels.
  EXPECT_EQ(ctx.certificateFor("wild.example"), 0u);
  EXPECT_EQ(ctx.certificateFor("y.x.wild.example"), 0u);
  EXPECT_EQ(ctx.certificateFor(""), 0u);
  EXPECT_EQ(ctx.certificateFor("unknown.example"), 0u);
  EXPECT_EQ(ctx.certificateFor(std::string(300, 'a')), 0u);
  // "localhost" is in every certificate: the first one listed (the default) keeps it.
  EXPECT_EQ(ctx.certificateFor("localhost"), 0u);
  EXPECT_EQ(ctx.namesOf(2), (std::vector<std::string>{"*.wild.example", "localhost"}));
}

TEST(TlsTransport, DecryptedBytesLeftInsideAreReportedAsPendingInput) {
  TlsPair p;
  p.establish();
  const std::string first(100, 'A');
  const std::string second(100, 'B');
  ASSERT_TRUE(p.client.writeAll(first));  // two separate records
  ASSERT_TRUE(p.client.writeAll(second));
  EXPECT_FALSE(p.server.hasPendingInput());

  uint8_t small[10];
  net::IoResult r = readWhenReady(p.server, small, sizeof small);
  ASSERT_EQ(r.status, net::IoStatus::kOk);
  ASSERT_EQ(r.bytes, sizeof small);
  // 90 bytes of the first record are decrypted and buffered in the SSL object: no readiness
  // event will announce them, so the transport must.
  EXPECT_TRUE(p.server.hasPendingInput());
  uint8_t rest[90];
  r = p.server.read(rest, sizeof rest);
  ASSERT_EQ(r.status, net::IoStatus::kOk);
  EXPECT_EQ(r.bytes, sizeof rest);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(rest), sizeof rest), std::string(90, 'A'));
  EXPECT_FALSE(p.server.hasPendingInput());
  EXPECT_EQ(readExactlyFrom(p.server, 100), second);
}

TEST(TlsTransport, PartialWritesRetriedFromAMovedBufferDeliverEveryByteInOrder) {
  TlsPair p;
  p.establish();
  int small = 4096;
  ASSERT_EQ(::setsockopt(p.server.fd(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
  const std::string source = pattern(0, 256 * 1024);

  // Like a connection's output buffer: unwritten bytes are compacted to the front of a fresh
  // allocation before every retry, so OpenSSL sees a moved buffer after each would-block.
  std::vector<uint8_t> pending(source.begin(), source.end());
  std::string received;
  int would_blocks = 0;
  bool saw_partial = false;
  auto writeOnce = [&] {
    net::IoResult w = p.server.write(pending.data(), pending.size());
    if (w.status == net::IoStatus::kOk) {
      if (w.bytes < pending.size()) saw_partial = true;
      pending = std::vector<uint8_t>(pending.begin() + static_cast<long>(w.bytes), pending.end());
    } else {
      EXPECT_EQ(w.status, net::IoStatus::kWouldBlock) << p.server.failureReason();
      ++would_blocks;
      pending = std::vector<uint8_t>(pending.begin(), pending.end());  // move it
    }
    return w.status;
  };
  // First fill the socket while the client reads nothing, so the first retry surely follows a
  // would-block with encrypted records left pending (in the transport: OpenSSL never sees the
  // socket block after the handshake).
  for (int i = 0; i < 10000; ++i) {
    if (writeOnce() != net::IoStatus::kOk) break;
  }
  ASSERT_EQ(would_blocks, 1) << "the socket buffer never filled";
  int rounds = 0;
  while ((!pending.empty() || received.size() < source.size()) && rounds++ < 100000) {
    if (!pending.empty()) {
      const net::IoStatus st = writeOnce();
      if (st != net::IoStatus::kOk && st != net::IoStatus::kWouldBlock) break;
    } else if (p.server.pendingOutput() > 0) {
      // Ciphertext of bytes write() already took, which the socket had no room for.
      const net::IoStatus st = p.server.flushPendingOutput().status;
      if (st != net::IoStatus::kOk && st != net::IoStatus::kWouldBlock) break;
    }
    // The client drains whatever has arrived, without blocking.
    for (;;) {
      char buf[65536];
      size_t got = 0;
      ERR_clear_error();
      if (SSL_read_ex(p.client.ssl(), buf, sizeof buf, &got) != 1) {
        const int code = SSL_get_error(p.client.ssl(), 0);
        ASSERT_TRUE(code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE) << code;
        break;
      }
      received.append(buf, got);
    }
    if (p.server.pendingInterest() != net::Interest::kNone && received.size() < source.size()) {
      pollfd fds[2] = {{p.server.fd(), pollEvents(p.server.pendingInterest()), 0},
                       {p.client.fd(), POLLIN, 0}};
      ASSERT_GT(::poll(fds, 2, transport_testing::kWaitMs), 0) << "stalled";
    }
  }
  EXPECT_TRUE(saw_partial) << "writes are capped at one flight of records";
  ASSERT_EQ(received.size(), source.size());
  EXPECT_TRUE(received == source) << "bytes arrived altered or out of order";
}

// One write() takes a flight of several records (sent with one send()), not one record.
TEST(TlsTransport, OneWriteTakesAFlightOfRecords) {
  TlsPair p;
  p.establish();
  const std::string source = pattern(0, 256 * 1024);
  const net::IoResult w =
      p.server.write(reinterpret_cast<const uint8_t*>(source.data()), source.size());
  ASSERT_EQ(w.status, net::IoStatus::kOk) << p.server.failureReason();
  EXPECT_EQ(w.bytes, 4u * 16384) << "four full records per call";
  EXPECT_EQ(p.server.pendingOutput(), 0u) << "an empty socket takes the whole flight";
  std::string received;
  while (received.size() < w.bytes) {
    char buf[65536];
    size_t got = 0;
    ASSERT_EQ(SSL_read_ex(p.client.ssl(), buf, sizeof buf, &got), 1);
    received.append(buf, got);
  }
  EXPECT_TRUE(received == source.substr(0, w.bytes));
}

// Output pending in the transport while the client asks for a key update: nothing new is
// encrypted until the pending ciphertext is out, the KeyUpdate answer (OpenSSL writes it with
// the next SSL_write) follows it, and every byte arrives in order under the right keys; both
// directions keep working afterwards.
TEST(TlsTransport, KeyUpdateWhileOutputIsPendingKeepsTheStreamInOrder) {
  TlsPair p;
  p.establish();
  int small = 4096;
  ASSERT_EQ(::setsockopt(p.server.fd(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
  const std::string source = pattern(0, 4 * 1024 * 1024);
  size_t written = 0;
  while (p.server.pendingOutput() == 0 && written < source.size()) {
    const net::IoResult w = p.server.write(
        reinterpret_cast<const uint8_t*>(source.data()) + written, source.size() - written);
    ASSERT_EQ(w.status, net::IoStatus::kOk) << p.server.failureReason();
    written += w.bytes;
  }
  ASSERT_GT(p.server.pendingOutput(), 0u) << "the socket never filled";
  EXPECT_TRUE(net::hasInterest(p.server.pendingInterest(), net::Interest::kWrite));
  const net::IoResult blocked = p.server.write(reinterpret_cast<const uint8_t*>(source.data()), 1);
  EXPECT_EQ(blocked.status, net::IoStatus::kWouldBlock) << "nothing new while output is pending";

  // The client asks for a key update; the server reads it (its answer goes out later).
  ASSERT_EQ(SSL_key_update(p.client.ssl(), SSL_KEY_UPDATE_REQUESTED), 1);
  size_t n = 0;
  ASSERT_EQ(SSL_write_ex(p.client.ssl(), "ping", 4, &n), 1);
  EXPECT_EQ(readExactlyFrom(p.server, 4), "ping");
  EXPECT_GT(p.server.pendingOutput(), 0u);

  // Drain: every byte arrives, in order, and the connection still works both ways.
  std::string received;
  for (int rounds = 0; received.size() < written && rounds < 100000; ++rounds) {
    const net::IoResult f = p.server.flushPendingOutput();
    ASSERT_TRUE(f.status == net::IoStatus::kOk || f.status == net::IoStatus::kWouldBlock)
        << p.server.failureReason();
    char buf[65536];
    size_t got = 0;
    ERR_clear_error();
    if (SSL_read_ex(p.client.ssl(), buf, sizeof buf, &got) == 1) {
      received.append(buf, got);
    } else {
      const int code = SSL_get_error(p.client.ssl(), 0);
      ASSERT_EQ(code, SSL_ERROR_WANT_READ) << "the client could not read the stream: " << code;
      pollfd fds[2] = {{p.server.fd(), pollEvents(p.server.pendingInterest()), 0},
                       {p.client.fd(), POLLIN, 0}};
      ASSERT_GT(::poll(fds, 2, transport_testing::kWaitMs), 0) << "stalled";
    }
  }
  ASSERT_EQ(received.size(), written);
  EXPECT_TRUE(received == source.substr(0, written));
  EXPECT_EQ(p.server.pendingOutput(), 0u);
  const net::IoResult after = p.server.write(reinterpret_cast<const uint8_t*>("after"), 5);
  ASSERT_EQ(after.status, net::IoStatus::kOk);
  EXPECT_EQ(after.bytes, 5u);
  // The small send buffer may still hold the last segments: flush as a connection would.
  while (p.server.pendingOutput() > 0) {
    ASSERT_TRUE(transport_testing::waitFd(p.server.fd(), POLLOUT));
    const net::IoStatus st = p.server.flushPendingOutput().status;
    ASSERT_TRUE(st == net::IoStatus::kOk || st == net::IoStatus::kWouldBlock)
        << p.server.failureReason();
  }
  EXPECT_EQ(p.client.readExactly(5), "after") << p.client.error();
  ASSERT_EQ(SSL_write_ex(p.client.ssl(), "pong", 4, &n), 1);
  EXPECT_EQ(readExactlyFrom(p.server, 4), "pong");
}

TEST(TlsTransport, WritevCoalescesSmallBuffersAndPassesLargeOnes) {
  TlsPair p;
  p.establish();
  std::string a = "header-";
  std::string b;
  std::string c = "body";
  iovec iov[3] = {{a.data(), a.size()}, {b.data(), 0}, {c.data(), c.size()}};
  net::IoResult r = p.server.writev(iov, 3);
  EXPECT_EQ(r.status, net::IoStatus::kOk);
  EXPECT_EQ(r.bytes, a.size() + c.size());
  EXPECT_EQ(p.client.readExactly(a.size() + c.size()), a + c);

  // More than one record's worth across buffers: one record per call, bytes in order.
  std::string big1 = pattern(0, 10000);
  std::string big2 = pattern(10000, 10000);
  iovec iov2[2] = {{big1.data(), big1.size()}, {big2.data(), big2.size()}};
  r = p.server.writev(iov2, 2);
  ASSERT_EQ(r.status, net::IoStatus::kOk);
  EXPECT_EQ(r.bytes, 16384u);
  EXPECT_EQ(p.client.readExactly(16384), pattern(0, 16384));
  p.server.releaseIdleBuffers();
}

}  // namespace
}  // namespace h2loop::server
