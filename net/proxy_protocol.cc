#include "net/proxy_protocol.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <charconv>
#include <cstring>

#include <fmt/format.h>

namespace h2loop::net {
namespace {

constexpr std::string_view kV1Prefix = "PROXY ";

ProxyParseResult invalid(std::string_view why) {
  ProxyParseResult r;
  r.status = ProxyParseStatus::kInvalid;
  r.error = why;
  return r;
}

ProxyParseResult needMore(size_t expected = 0) {
  ProxyParseResult r;
  r.expected = expected;
  return r;
}

// A decimal port: 1 to 5 digits, no sign, no leading zero (but "0"), at most 65535.
bool parsePort(std::string_view s, uint16_t& out) {
  if (s.empty() || s.size() > 5 || (s.size() > 1 && s[0] == '0')) return false;
  unsigned v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v > 65535) return false;
  out = static_cast<uint16_t>(v);
  return true;
}

bool parseIp(int family, std::string_view s, uint16_t port, sockaddr_storage& out) {
  char buf[INET6_ADDRSTRLEN + 1];
  if (s.empty() || s.size() >= sizeof buf) return false;
  std::memcpy(buf, s.data(), s.size());
  buf[s.size()] = '\0';
  out = {};
  if (family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&out);
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    return ::inet_pton(AF_INET, buf, &a->sin_addr) == 1;
  }
  auto* a = reinterpret_cast<sockaddr_in6*>(&out);
  a->sin6_family = AF_INET6;
  a->sin6_port = htons(port);
  return ::inet_pton(AF_INET6, buf, &a->sin6_addr) == 1;
}

ProxyParseResult parseV1(std::span<const uint8_t> data) {
  const size_t head = std::min(data.size(), kV1Prefix.size());
  if (std::memcmp(data.data(), kV1Prefix.data(), head) != 0) return invalid("no PROXY header");
  // Look for the CRLF within the first 107 bytes; refuse early what no header can contain.
  const size_t scan = std::min(data.size(), kProxyV1MaxLength);
  size_t end = 0;  // index of the '\r' of the CRLF
  for (size_t i = kV1Prefix.size(); i < scan; ++i) {
    const uint8_t c = data[i];
    if (c == '\r') {
      if (i + 2 > kProxyV1MaxLength) return invalid("v1 header without CRLF within 107 bytes");
      if (i + 1 >= data.size()) return needMore();  // its '\n' is still to come
      if (data[i + 1] != '\n') return invalid("v1 header: CR without LF");
      end = i;
      break;
    }
    if (c < 0x20 || c > 0x7e) return invalid("v1 header: a byte no header contains");
  }
  if (end == 0) {
    if (data.size() >= kProxyV1MaxLength) return invalid("v1 header without CRLF within 107 bytes");
    return needMore();
  }
  const std::string_view line(reinterpret_cast<const char*>(data.data()) + kV1Prefix.size(),
                              end - kV1Prefix.size());
  std::array<std::string_view, 5> tok;
  size_t n = 0, pos = 0;
  while (n < tok.size()) {
    const size_t sp = line.find(' ', pos);
    tok[n++] = line.substr(pos, sp == std::string_view::npos ? std::string_view::npos : sp - pos);
    if (sp == std::string_view::npos) {
      pos = line.size() + 1;
      break;
    }
    pos = sp + 1;
    if (n == 1 && tok[0] == "UNKNOWN") break;  // the rest, whatever it is, is ignored
  }
  ProxyParseResult r;
  r.header.version = 1;
  r.header.length = end + 2;
  if (tok[0] == "UNKNOWN") {
    r.status = ProxyParseStatus::kDone;
    return r;
  }
  int family = 0;
  if (tok[0] == "TCP4") {
    family = AF_INET;
  } else if (tok[0] == "TCP6") {
    family = AF_INET6;
  } else {
    return invalid("v1 header: protocol is not TCP4, TCP6 or UNKNOWN");
  }
  if (n != 5 || pos <= line.size()) return invalid("v1 header: not 4 fields after the protocol");
  uint16_t sport = 0, dport = 0;
  if (!parsePort(tok[3], sport) || !parsePort(tok[4], dport)) {
    return invalid("v1 header: bad port");
  }
  if (!parseIp(family, tok[1], sport, r.header.source) ||
      !parseIp(family, tok[2], dport, r.header.destination)) {
    return invalid("v1 header: bad address for its protocol");
  }
  r.header.local = false;
  r.status = ProxyParseStatus::kDone;
  return r;
}

uint16_t be16(const uint8_t* p) {
  return static_cast<uint16_t>((p[0] << 8) | p[1]);
}

ProxyParseResult parseV2(std::span<const uint8_t> data) {
  const size_t sig = std::min(data.size(), kProxyV2Signature.size());
  if (std::memcmp(data.data(), kProxyV2Signature.data(), sig) != 0) {
    return invalid("v2 header: bad signature");
  }
  if (data.size() < kProxyV2FixedLength) {
    // Refuse a bad version or command as soon as its byte is here.
    if (data.size() > 12 && (data[12] >> 4) != 2) return invalid("v2 header: version is not 2");
    if (data.size() > 12 && (data[12] & 0x0F) > 1) return invalid("v2 header: unknown command");
    return needMore();
  }
  const uint8_t ver_cmd = data[12];
  const uint8_t fam = data[13];
  const size_t len = be16(&data[14]);
  if ((ver_cmd >> 4) != 2) return invalid("v2 header: version is not 2");
  const uint8_t cmd = ver_cmd & 0x0F;
  if (cmd > 1) return invalid("v2 header: unknown command");
  if (len > kProxyV2MaxPayload) return invalid("v2 header: length above the bound");
  const size_t total = kProxyV2FixedLength + len;
  if (data.size() < total) return needMore(total);

  ProxyParseResult r;
  r.header.version = 2;
  r.header.length = total;
  r.status = ProxyParseStatus::kDone;
  // LOCAL: the proxy speaks for itself; whatever the block says is ignored.
  if (cmd == 0) return r;
  const uint8_t* p = data.data() + kProxyV2FixedLength;
  size_t addr_len = 0;
  switch (fam) {
    case 0x00:  // AF_UNSPEC: keep the socket's address; the block is ignored, as for LOCAL
      return r;
    case 0x11: {  // TCP over IPv4
      addr_len = 12;
      if (len < addr_len) return invalid("v2 header: length too short for IPv4 addresses");
      auto* s = reinterpret_cast<sockaddr_in*>(&r.header.source);
      auto* d = reinterpret_cast<sockaddr_in*>(&r.header.destination);
      s->sin_family = d->sin_family = AF_INET;
      std::memcpy(&s->sin_addr, p, 4);
      std::memcpy(&d->sin_addr, p + 4, 4);
      std::memcpy(&s->sin_port, p + 8, 2);
      std::memcpy(&d->sin_port, p + 10, 2);
      r.header.local = false;
      break;
    }
    case 0x21: {  // TCP over IPv6
      addr_len = 36;
      if (len < addr_len) return invalid("v2 header: length too short for IPv6 addresses");
      auto* s = reinterpret_cast<sockaddr_in6*>(&r.header.source);
      auto* d = reinterpret_cast<sockaddr_in6*>(&r.header.destination);
      s->sin6_family = d->sin6_family = AF_INET6;
      std::memcpy(&s->sin6_addr, p, 16);
      std::memcpy(&d->sin6_addr, p + 16, 16);
      std::memcpy(&s->sin6_port, p + 32, 2);
      std::memcpy(&d->sin6_port, p + 34, 2);
      r.header.local = false;
      break;
    }
    case 0x31:  // AF_UNIX stream: no IP address to use
      addr_len = 216;
      if (len < addr_len) return invalid("v2 header: length too short for UNIX addresses");
      break;
    case 0x12:
    case 0x22:
    case 0x32:
      return invalid("v2 header: a datagram transport on a stream connection");
    default:
      return invalid("v2 header: unknown address family or transport");
  }
  // TLVs: type (1), length (2), value. Skipped, but they must tile the rest exactly.
  for (size_t off = addr_len; off < len;) {
    if (len - off < 3) return invalid("v2 header: truncated TLV");
    const size_t vlen = be16(p + off + 1);
    if (len - off - 3 < vlen) return invalid("v2 header: TLV longer than the header");
    off += 3 + vlen;
  }
  return r;
}

}  // namespace

std::optional<Cidr> Cidr::parse(std::string_view text, std::string* error) {
  auto fail = [&](std::string why) -> std::optional<Cidr> {
    if (error != nullptr) *error = fmt::format("{}: {}", text, why);
    return std::nullopt;
  };
  const size_t slash = text.find('/');
  const std::string_view host = text.substr(0, slash);
  char buf[INET6_ADDRSTRLEN + 1];
  if (host.empty() || host.size() >= sizeof buf) return fail("not an IP address");
  std::memcpy(buf, host.data(), host.size());
  buf[host.size()] = '\0';
  Cidr c;
  unsigned bits = 0;
  if (::inet_pton(AF_INET, buf, c.addr.data()) == 1) {
    c.family = AF_INET;
    bits = 32;
  } else if (::inet_pton(AF_INET6, buf, c.addr.data()) == 1) {
    c.family = AF_INET6;
    bits = 128;
  } else {
    return fail("not an IP address");
  }
  c.prefix = bits;
  if (slash != std::string_view::npos) {
    const std::string_view p = text.substr(slash + 1);
    unsigned v = 0;
    auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), v);
    if (p.empty() || p.size() > 3 || ec != std::errc() || end != p.data() + p.size() || v > bits) {
      return fail(fmt::format("prefix length must be 0..{}", bits));
    }
    c.prefix = v;
  }
  for (unsigned i = c.prefix; i < bits; ++i) {
    if (c.addr[i / 8] & (0x80u >> (i % 8))) return fail("host bits set after the prefix length");
  }
  return c;
}

bool Cidr::contains(const sockaddr* sa) const {
  if (sa == nullptr) return false;
  const uint8_t* a = nullptr;
  if (sa->sa_family == AF_INET) {
    if (family != AF_INET) return false;
    a = reinterpret_cast<const uint8_t*>(&reinterpret_cast<const sockaddr_in*>(sa)->sin_addr);
  } else if (sa->sa_family == AF_INET6) {
    a = reinterpret_cast<const uint8_t*>(&reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr);
    if (family == AF_INET) {
      static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
      if (std::memcmp(a, kMapped, sizeof kMapped) != 0) return false;
      a += 12;
    }
  } else {
    return false;
  }
  const unsigned full = prefix / 8, rest = prefix % 8;
  if (std::memcmp(a, addr.data(), full) != 0) return false;
  if (rest == 0) return true;
  const uint8_t mask = static_cast<uint8_t>(0xFF00u >> rest);
  return (a[full] & mask) == addr[full];
}

std::string Cidr::toString() const {
  char buf[INET6_ADDRSTRLEN] = {};
  ::inet_ntop(family, addr.data(), buf, sizeof buf);
  return fmt::format("{}/{}", buf, prefix);
}

bool anyContains(const std::vector<Cidr>& list, const sockaddr* sa) {
  return std::any_of(list.begin(), list.end(), [sa](const Cidr& c) { return c.contains(sa); });
}

ProxyParseResult parseProxyHeader(std::span<const uint8_t> data) {
  if (data.empty()) return needMore();
  if (data[0] == 'P') return parseV1(data);
  if (data[0] == kProxyV2Signature[0]) return parseV2(data);
  return invalid("no PROXY header");
}

}  // namespace h2loop::net
