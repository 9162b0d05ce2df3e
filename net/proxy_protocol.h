#pragma once

// The PROXY protocol (HAProxy's "The PROXY protocol", versions 1 and 2): the
// header a load balancer sends first on a connection so the server learns
// the real client's address. Pure functions, no sockets: bytes in, verdict out.
// The socket side is net/proxy_reader.h.

#include <sys/socket.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "net/socket_util.h"

namespace h2loop::net {

// An address block: "127.0.0.0/8", "::1/128", "10.1.2.3" (a /32), "::1" (a /128).
struct Cidr {
  int family = 0;                  // AF_INET or AF_INET6
  std::array<uint8_t, 16> addr{};  // network byte order (IPv4: the first 4), host bits zero
  unsigned prefix = 0;             // 0..32 or 0..128

  // nullopt (and *error says why, when given) for anything else: a host name, a prefix out of
  // range or with junk, host bits set ("10.0.0.1/8" is refused: say "10.0.0.0/8").
  static std::optional<Cidr> parse(std::string_view text, std::string* error = nullptr);
  // True when `sa` (AF_INET or AF_INET6) lies in the block. An IPv4-mapped IPv6 address
  // (::ffff:a.b.c.d, a dual-stack listener's view of an IPv4 peer) matches IPv4 blocks.
  [[nodiscard]] bool contains(const sockaddr* sa) const;
  [[nodiscard]] std::string toString() const;
  bool operator==(const Cidr&) const = default;
};

[[nodiscard]] bool anyContains(const std::vector<Cidr>& list, const sockaddr* sa);

// formatAddress() (net/socket_util.h) prints the addresses of a ProxyHeader.

// v1: "PROXY TCP4|TCP6|UNKNOWN ...\r\n", at most 107 bytes with the CRLF.
inline constexpr size_t kProxyV1MaxLength = 107;
// v2: 12-byte signature, version/command, family/transport, 16-bit length, then that many
// bytes (addresses, then TLVs, which are checked for shape and skipped).
inline constexpr size_t kProxyV2FixedLength = 16;
// The largest v2 payload accepted: addresses (at most 216 bytes, AF_UNIX) plus TLVs. HAProxy's
// own TLVs (ALPN, authority, unique id, SSL facts) fit easily; a peer announcing more is refused
// instead of making us buffer up to 64 KiB before the first byte of the real protocol.
inline constexpr size_t kProxyV2MaxPayload = 2048;
inline constexpr size_t kProxyHeaderMaxLength = kProxyV2FixedLength + kProxyV2MaxPayload;
inline constexpr std::array<uint8_t, 12> kProxyV2Signature = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                                              0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

struct ProxyHeader {
  uint8_t version = 0;  // 1 or 2
  // No address to use: v2 LOCAL (the proxy's own health check), v1 UNKNOWN, v2 AF_UNSPEC or
  // AF_UNIX. The connection keeps the socket's peer address.
  bool local = true;
  sockaddr_storage source{};       // the real client, when !local
  sockaddr_storage destination{};  // the address the client connected to, when !local
  size_t length = 0;               // bytes the header took; the client's bytes follow
};

enum class ProxyParseStatus : uint8_t {
  // `data` is a proper prefix of a header that may still turn out valid. Every byte of it
  // belongs to the header, so a reader may consume all of it without taking the client's.
  kNeedMore,
  kDone,     // header.length bytes at the start of `data` are the header
  kInvalid,  // not a PROXY header, or a malformed or oversized one; `error` says which
};

struct ProxyParseResult {
  ProxyParseStatus status = ProxyParseStatus::kNeedMore;
  ProxyHeader header;      // kDone
  std::string_view error;  // kInvalid: a static description
  // kNeedMore: the header's whole length once it is known (v2 after its 16 fixed bytes), else 0.
  size_t expected = 0;
};

// Parses the PROXY header at the start of `data`, which holds every byte received on the
// connection so far (and perhaps the client's bytes after the header: they are not looked at).
// Decides as early as the bytes allow: a first byte that starts neither version is kInvalid at
// once, so a client that speaks TLS or HTTP directly is refused on its first read.
[[nodiscard]] ProxyParseResult parseProxyHeader(std::span<const uint8_t> data);

}  // namespace h2loop::net
