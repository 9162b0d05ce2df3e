// The PROXY protocol parser (net/proxy_protocol.h), hostile inputs included, and the socket
// reader (net/proxy_reader.h) on a socketpair: the header in pieces, nothing after it lost.

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "net/proxy_protocol.h"
#include "net/proxy_reader.h"

namespace h2loop::net {
namespace {

using Bytes = std::vector<uint8_t>;

Bytes bytes(std::string_view s) {
  return Bytes(s.begin(), s.end());
}

ProxyParseResult parse(const Bytes& b) {
  return parseProxyHeader(std::span<const uint8_t>(b.data(), b.size()));
}

ProxyParseResult parse(std::string_view s) {
  return parse(bytes(s));
}

std::string source(const ProxyParseResult& r) {
  return formatAddress(r.header.source);
}

// A v2 header: signature, ver_cmd, fam, then `payload` (its length is filled in).
Bytes v2(uint8_t ver_cmd, uint8_t fam, const Bytes& payload) {
  Bytes b(kProxyV2Signature.begin(), kProxyV2Signature.end());
  b.push_back(ver_cmd);
  b.push_back(fam);
  b.push_back(static_cast<uint8_t>(payload.size() >> 8));
  b.push_back(static_cast<uint8_t>(payload.size() & 0xFF));
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

Bytes ipv4Block() {  // 10.1.2.3:4567 -> 10.9.8.7:443
  return {10, 1, 2, 3, 10, 9, 8, 7, 0x11, 0xD7, 0x01, 0xBB};
}

Bytes ipv6Block() {  // [2001:db8::1]:1234 -> [2001:db8::2]:443
  Bytes b(36, 0);
  b[0] = 0x20;
  b[1] = 0x01;
  b[2] = 0x0d;
  b[3] = 0xb8;
  b[15] = 1;
  b[16] = 0x20;
  b[17] = 0x01;
  b[18] = 0x0d;
  b[19] = 0xb8;
  b[31] = 2;
  b[32] = 0x04;
  b[33] = 0xD2;
  b[34] = 0x01;
  b[35] = 0xBB;
  return b;
}

Bytes tlv(uint8_t type, size_t len) {
  Bytes b{type, static_cast<uint8_t>(len >> 8), static_cast<uint8_t>(len & 0xFF)};
  b.resize(b.size() + len, 'x');
  return b;
}

Bytes cat(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Every proper prefix of a valid header is kNeedMore (and never kInvalid or kDone).
void expectPrefixesNeedMore(const Bytes& header) {
  for (size_t n = 0; n < header.size(); ++n) {
    Bytes p(header.begin(), header.begin() + static_cast<ptrdiff_t>(n));
    EXPECT_EQ(parse(p).status, ProxyParseStatus::kNeedMore) << "prefix of " << n << " bytes";
  }
}

void expectInvalid(const Bytes& b, std::string_view why_contains = {}) {
  const ProxyParseResult r = parse(b);
  EXPECT_EQ(r.status, ProxyParseStatus::kInvalid);
  if (!why_contains.empty()) {
    EXPECT_NE(r.error.find(why_contains), std::string_view::npos) << r.error;
  }
}

void expectInvalid(std::string_view s, std::string_view why_contains = {}) {
  expectInvalid(bytes(s), why_contains);
}

// --- v1 ---

TEST(ProxyV1, Tcp4WithTheClientsBytesAfterIt) {
  const std::string h = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
  const ProxyParseResult r = parse(h + "\x16\x03\x01 the ClientHello");
  ASSERT_EQ(r.status, ProxyParseStatus::kDone) << r.error;
  EXPECT_EQ(r.header.version, 1);
  EXPECT_FALSE(r.header.local);
  EXPECT_EQ(r.header.length, h.size());
  EXPECT_EQ(source(r), "192.168.0.1:56324");
  EXPECT_EQ(formatAddress(r.header.destination), "192.168.0.11:443");
}

TEST(ProxyV1, Tcp6) {
  const ProxyParseResult r = parse("PROXY TCP6 2001:db8::1 ::1 65535 0\r\nPRI");
  ASSERT_EQ(r.status, ProxyParseStatus::kDone) << r.error;
  EXPECT_EQ(source(r), "[2001:db8::1]:65535");
  EXPECT_EQ(formatAddress(r.header.destination), "[::1]:0");
}

TEST(ProxyV1, UnknownKeepsTheSocketAddressWhateverFollows) {
  for (std::string_view h :
       {"PROXY UNKNOWN\r\n", "PROXY UNKNOWN ffff:f...f:ffff 1.2.3.4 x y\r\n"}) {
    const ProxyParseResult r = parse(h);
    ASSERT_EQ(r.status, ProxyParseStatus::kDone) << h;
    EXPECT_TRUE(r.header.local);
    EXPECT_EQ(r.header.length, h.size());
  }
}

TEST(ProxyV1, EveryPrefixNeedsMore) {
  expectPrefixesNeedMore(bytes("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"));
  expectPrefixesNeedMore(bytes("PROXY TCP6 ::1 ::2 1 2\r\n"));
}

TEST(ProxyV1, At107BytesExactlyItFitsAndOneMoreDoesNot) {
  std::string h = "PROXY UNKNOWN ";
  h.append(kProxyV1MaxLength - h.size() - 2, 'a');
  h += "\r\n";
  ASSERT_EQ(h.size(), kProxyV1MaxLength);
  EXPECT_EQ(parse(h).status, ProxyParseStatus::kDone);
  std::string longer = "PROXY UNKNOWN a";
  longer.append(kProxyV1MaxLength - longer.size() - 1, 'a');
  longer += "\r\n";  // the CRLF ends at byte 108
  expectInvalid(longer, "107");
}

TEST(ProxyV1, NoCrlfWithin107BytesIsRefusedAndNotBufferedOn) {
  std::string h = "PROXY TCP4 ";
  h.append(kProxyV1MaxLength - 1 - h.size(), '1');
  EXPECT_EQ(parse(h).status, ProxyParseStatus::kNeedMore);  // 106 bytes: may still end
  h += '1';
  expectInvalid(h, "107");  // 107 bytes, no CRLF
  expectInvalid(h + std::string(5000, '1'), "107");
}

TEST(ProxyV1, BogusPortsAndAddresses) {
  expectInvalid("PROXY TCP4 1.2.3.4 5.6.7.8 65536 443\r\n", "port");
  expectInvalid("PROXY TCP4 1.2.3.4 5.6.7.8 -1 443\r\n", "port");
  expectInvalid("PROXY TCP4 1.2.3.4 5.6.7.8 +1 443\r\n", "port");
  expectInvalid("PROXY TCP4 1.2.3.4 5.6.7.8 0443 443\r\n", "port");
  expectInvalid("PROXY TCP4 1.2.3.4 5.6.7.8 99999999999999999999 443\r\n", "port");
  expectInvalid("PROXY TCP4 1.2.3.4 5.6.7.8 1x 443\r\n", "port");
  expectInvalid("PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n", "port");
  expectInvalid("PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n", "address");
  expectInvalid("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "address");
  expectInvalid("PROXY TCP4 localhost 5.6.7.8 1 2\r\n", "address");
  expectInvalid("PROXY TCP4 ::1 5.6.7.8 1 2\r\n", "address");   // v6 under TCP4
  expectInvalid("PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "address");   // v4 under TCP6
  expectInvalid("PROXY TCP6 ::1 ::1%eth0 1 2\r\n", "address");  // no scope ids
}

TEST(ProxyV1, BadShape) {
  expectInvalid("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "fields");
  expectInvalid("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "fields");
  expectInvalid("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "fields");
  expectInvalid("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n");
  expectInvalid("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "protocol");
  expectInvalid("PROXY UNKNOWNX\r\n", "protocol");
  expectInvalid("PROXY \r\n", "protocol");
  expectInvalid("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "no PROXY header");
  expectInvalid("PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n", "no PROXY header");
  expectInvalid("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "a byte");  // LF without CR
  expectInvalid("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", "CR without LF");
  expectInvalid(std::string_view("PROXY TCP4 1.2.3.4\0 5.6.7.8 1 2\r\n", 33), "a byte");
  expectInvalid("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\xff\r\n", "a byte");
}

// --- neither version: the client spoke first ---

TEST(ProxyHeader, AClientThatSpeaksDirectlyIsRefusedOnItsFirstBytes) {
  expectInvalid(Bytes{0x16, 0x03, 0x01}, "no PROXY header");  // a TLS ClientHello
  expectInvalid("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "no PROXY header");
  expectInvalid("PRI", "no PROXY header");
  expectInvalid("GET / HTTP/1.1\r\n", "no PROXY header");
  expectInvalid(Bytes{0x00}, "no PROXY header");
  EXPECT_EQ(parse(Bytes{}).status, ProxyParseStatus::kNeedMore);
}

// --- v2 ---

TEST(ProxyV2, Ipv4WithTheClientsBytesAfterIt) {
  const Bytes h = v2(0x21, 0x11, ipv4Block());
  const ProxyParseResult r = parse(cat(h, bytes("PRI * HTTP/2.0")));
  ASSERT_EQ(r.status, ProxyParseStatus::kDone) << r.error;
  EXPECT_EQ(r.header.version, 2);
  EXPECT_FALSE(r.header.local);
  EXPECT_EQ(r.header.length, h.size());
  EXPECT_EQ(source(r), "10.1.2.3:4567");
  EXPECT_EQ(formatAddress(r.header.destination), "10.9.8.7:443");
}

TEST(ProxyV2, Ipv6) {
  const ProxyParseResult r = parse(v2(0x21, 0x21, ipv6Block()));
  ASSERT_EQ(r.status, ProxyParseStatus::kDone) << r.error;
  EXPECT_EQ(source(r), "[2001:db8::1]:1234");
  EXPECT_EQ(formatAddress(r.header.destination), "[2001:db8::2]:443");
}

TEST(ProxyV2, TlvsAreSkippedAndCounted) {
  const Bytes payload = cat(cat(ipv4Block(), tlv(0x01, 2)), cat(tlv(0x04, 0), tlv(0xEE, 600)));
  const Bytes h = v2(0x21, 0x11, payload);
  const ProxyParseResult r = parse(cat(h, Bytes{0x16, 0x03}));
  ASSERT_EQ(r.status, ProxyParseStatus::kDone) << r.error;
  EXPECT_EQ(r.header.length, h.size());
  EXPECT_EQ(source(r), "10.1.2.3:4567");
}

TEST(ProxyV2, LocalUnspecAndUnixKeepTheSocketAddress) {
  for (const Bytes& h :
       {v2(0x20, 0x00, {}), v2(0x20, 0x11, ipv4Block()), v2(0x20, 0x77, Bytes(5, 0)),
        v2(0x21, 0x00, Bytes(7, 1)), v2(0x21, 0x31, Bytes(216, 0))}) {
    const ProxyParseResult r = parse(h);
    ASSERT_EQ(r.status, ProxyParseStatus::kDone) << r.error;
    EXPECT_TRUE(r.header.local);
    EXPECT_EQ(r.header.length, h.size());
  }
}

TEST(ProxyV2, EveryPrefixNeedsMoreAndTheLengthIsKnownAfter16Bytes) {
  const Bytes h = v2(0x21, 0x11, cat(ipv4Block(), tlv(0x05, 300)));
  expectPrefixesNeedMore(h);
  Bytes p(h.begin(), h.begin() + 16);
  EXPECT_EQ(parse(p).expected, h.size());
}

TEST(ProxyV2, BadSignatureAtAnyByte) {
  for (size_t i = 0; i < kProxyV2Signature.size(); ++i) {
    Bytes h = v2(0x21, 0x11, ipv4Block());
    h[i] ^= 0x40;
    EXPECT_EQ(parse(h).status, ProxyParseStatus::kInvalid) << "byte " << i;
    // Refused as soon as the bad byte arrives.
    if (i > 0) {
      Bytes p(h.begin(), h.begin() + static_cast<ptrdiff_t>(i) + 1);
      expectInvalid(p, "signature");
    }
  }
}

TEST(ProxyV2, BadVersionCommandFamily) {
  expectInvalid(v2(0x11, 0x11, ipv4Block()), "version");
  expectInvalid(v2(0x31, 0x11, ipv4Block()), "version");
  expectInvalid(v2(0x22, 0x11, ipv4Block()), "command");
  expectInvalid(v2(0x2F, 0x11, ipv4Block()), "command");
  expectInvalid(v2(0x21, 0x12, ipv4Block()), "datagram");
  expectInvalid(v2(0x21, 0x22, ipv6Block()), "datagram");
  expectInvalid(v2(0x21, 0x10, ipv4Block()), "unknown address family");
  expectInvalid(v2(0x21, 0x41, ipv4Block()), "unknown address family");
  // The version byte is judged before the rest of the fixed part arrives.
  Bytes h = v2(0x11, 0x11, ipv4Block());
  expectInvalid(Bytes(h.begin(), h.begin() + 13), "version");
}

TEST(ProxyV2, TruncatedOrOversized) {
  expectInvalid(v2(0x21, 0x11, Bytes(11, 0)), "too short");
  expectInvalid(v2(0x21, 0x21, Bytes(35, 0)), "too short");
  expectInvalid(v2(0x21, 0x31, Bytes(215, 0)), "too short");
  expectInvalid(v2(0x21, 0x11, cat(ipv4Block(), Bytes{0x01, 0x00})), "truncated TLV");
  expectInvalid(v2(0x21, 0x11, cat(ipv4Block(), Bytes{0x01, 0x00, 0x05, 'a'})), "TLV longer");
  // An announced length above the bound is refused from the 16 fixed bytes alone: nothing is
  // buffered waiting for 64 KiB.
  Bytes big = v2(0x21, 0x11, Bytes(kProxyV2MaxPayload + 1, 0));
  expectInvalid(Bytes(big.begin(), big.begin() + 16), "bound");
  Bytes max(kProxyV2Signature.begin(), kProxyV2Signature.end());
  for (uint8_t b : {0x21, 0x11, 0xFF, 0xFF})
    max.push_back(b);
  expectInvalid(max, "bound");
  // At the bound exactly it is fine.
  const Bytes at = v2(0x21, 0x11, cat(ipv4Block(), tlv(0x20, kProxyV2MaxPayload - 12 - 3)));
  EXPECT_EQ(parse(at).status, ProxyParseStatus::kDone);
}

// --- CIDR ---

sockaddr_storage addr(const char* text) {
  sockaddr_storage ss{};
  if (std::strchr(text, ':') != nullptr) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    EXPECT_EQ(::inet_pton(AF_INET6, text, &a->sin6_addr), 1);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    EXPECT_EQ(::inet_pton(AF_INET, text, &a->sin_addr), 1);
  }
  return ss;
}

bool in(const char* cidr, const char* a) {
  auto c = Cidr::parse(cidr);
  EXPECT_TRUE(c.has_value()) << cidr;
  sockaddr_storage ss = addr(a);
  return c && c->contains(reinterpret_cast<const sockaddr*>(&ss));
}

TEST(Cidr, ParsesAndMatches) {
  EXPECT_TRUE(in("127.0.0.0/8", "127.0.0.2"));
  EXPECT_TRUE(in("127.0.0.0/8", "127.255.255.255"));
  EXPECT_FALSE(in("127.0.0.0/8", "128.0.0.1"));
  EXPECT_TRUE(in("127.0.0.3/32", "127.0.0.3"));
  EXPECT_FALSE(in("127.0.0.3/32", "127.0.0.2"));
  EXPECT_TRUE(in("127.0.0.3", "127.0.0.3"));
  EXPECT_TRUE(in("10.128.0.0/9", "10.200.1.1"));
  EXPECT_FALSE(in("10.128.0.0/9", "10.127.1.1"));
  EXPECT_TRUE(in("0.0.0.0/0", "8.8.8.8"));
  EXPECT_FALSE(in("0.0.0.0/0", "::1"));
  EXPECT_TRUE(in("::1/128", "::1"));
  EXPECT_FALSE(in("::1/128", "::2"));
  EXPECT_TRUE(in("2001:db8::/32", "2001:db8:ffff::1"));
  EXPECT_FALSE(in("2001:db8::/32", "2001:db9::1"));
  EXPECT_FALSE(in("::1/128", "127.0.0.1"));
  // A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d.
  EXPECT_TRUE(in("127.0.0.0/8", "::ffff:127.0.0.2"));
  EXPECT_FALSE(in("127.0.0.0/8", "::ffff:128.0.0.2"));
  EXPECT_FALSE(in("127.0.0.0/8", "::127.0.0.2"));
  EXPECT_EQ(Cidr::parse("10.0.0.0/8")->toString(), "10.0.0.0/8");
  EXPECT_EQ(Cidr::parse("::1")->toString(), "::1/128");
}

TEST(Cidr, RefusesWhatIsNotABlock) {
  std::string err;
  for (const char* bad :
       {"", "/8", "localhost/8", "10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/8x", "10.0.0.0/-1",
        "10.0.0.0/+8", "10.0.0.1/8", "::1/64", "10.0.0.0/0008", "1.2.3.4.5"}) {
    EXPECT_FALSE(Cidr::parse(bad, &err).has_value()) << bad;
  }
  EXPECT_NE(err.find("1.2.3.4.5"), std::string::npos) << err;
}

// --- the reader on a socket ---

struct Pair {
  int client = -1;
  int server = -1;
  Pair() {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    client = fds[0];
    server = fds[1];
  }
  ~Pair() {
    if (client >= 0) ::close(client);
    if (server >= 0) ::close(server);
  }
  void send(const Bytes& b) const {
    ASSERT_EQ(::send(client, b.data(), b.size(), 0), static_cast<ssize_t>(b.size()));
  }
  Bytes rest() const {
    Bytes out(65536);
    const ssize_t n = ::recv(server, out.data(), out.size(), 0);
    out.resize(n > 0 ? static_cast<size_t>(n) : 0);
    return out;
  }
};

using Status = ProxyHeaderReader::Status;

TEST(ProxyReader, HeaderAndClientBytesInOneSegmentLoseNothing) {
  for (const Bytes& h : {bytes("PROXY TCP4 1.2.3.4 5.6.7.8 1000 443\r\n"),
                         v2(0x21, 0x11, cat(ipv4Block(), tlv(0xEE, 900)))}) {
    Pair p;
    const Bytes hello = {0x16, 0x03, 0x01, 0x02, 0x00, 'h', 'e', 'l', 'l', 'o'};
    p.send(cat(h, hello));
    ProxyHeaderReader r;
    ASSERT_EQ(r.read(p.server), Status::kDone) << r.error();
    EXPECT_EQ(r.header().length, h.size());
    EXPECT_FALSE(r.header().local);
    EXPECT_EQ(p.rest(), hello);
  }
}

TEST(ProxyReader, HeaderOneByteAtATime) {
  for (const Bytes& h : {bytes("PROXY TCP6 2001:db8::1 ::1 1 2\r\n"),
                         v2(0x21, 0x21, cat(ipv6Block(), tlv(0x01, 700)))}) {
    Pair p;
    ProxyHeaderReader r;
    for (size_t i = 0; i + 1 < h.size(); ++i) {
      p.send(Bytes{h[i]});
      ASSERT_EQ(r.read(p.server), Status::kWouldBlock) << "after byte " << i;
    }
    // The last header byte and the preface together.
    p.send(cat(Bytes{h.back()}, bytes("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")));
    ASSERT_EQ(r.read(p.server), Status::kDone) << r.error();
    EXPECT_EQ(formatAddress(r.header().source),
              "[2001:db8::1]:" + std::to_string(h[0] == 'P' ? 1 : 1234));
    EXPECT_EQ(p.rest(), bytes("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
  }
}

TEST(ProxyReader, GarbageEofAndOversize) {
  {
    Pair p;
    p.send({0x16, 0x03, 0x01});
    ProxyHeaderReader r;
    EXPECT_EQ(r.read(p.server), Status::kInvalid);
    EXPECT_EQ(r.error(), "no PROXY header");
  }
  {
    Pair p;
    p.send(bytes("PROXY TCP4 1.2."));
    ::shutdown(p.client, SHUT_WR);
    ProxyHeaderReader r;
    EXPECT_EQ(r.read(p.server), Status::kEof);
    EXPECT_EQ(r.received(), 15u);
  }
  {
    Pair p;
    ProxyHeaderReader r;
    EXPECT_EQ(r.read(p.server), Status::kWouldBlock);
    std::string s = "PROXY UNKNOWN ";
    s.append(200, 'z');
    p.send(bytes(s));
    EXPECT_EQ(r.read(p.server), Status::kInvalid);
  }
}

}  // namespace
}  // namespace h2loop::net
