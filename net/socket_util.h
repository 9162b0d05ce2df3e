#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "net/transport.h"

namespace h2loop::net {

// Small socket helpers. None of them throws; none of them logs.

// Each returns false on failure and leaves errno set.
[[nodiscard]] bool setNonBlocking(int fd);
[[nodiscard]] bool setNoDelay(int fd);
// TCP_NOTSENT_LOWAT: the kernel takes no more from send() once `bytes` of it
// wait unsent (Linux checks it in sendmsg, not only for writability), so what
// a peer that does not read can make the kernel hold for it is bounded by
// this plus its receive window; bytes in flight (the link's BDP) are not.
[[nodiscard]] bool setNotSentLowat(int fd, uint32_t bytes);
// SO_LINGER {1, 0}: the next close() sends RST and leaves no TIME_WAIT. For abortive closes only.
[[nodiscard]] bool setLingerZero(int fd);

// The transport's errno classification (see IoStatus): EAGAIN/EWOULDBLOCK -> kWouldBlock;
// ECONNRESET/EPIPE/ETIMEDOUT/ENOTCONN/ECONNABORTED/EHOSTUNREACH/ENETUNREACH -> kReset;
// everything else (EBADF, ...) -> kError. EINTR is not expected here: callers retry it.
[[nodiscard]] IoStatus classifyErrno(int err);

// strerror_r, thread-safe.
[[nodiscard]] std::string errnoString(int err);

// Descriptors open in this process (/proc/self/fd, not counting the one used
// to list it); -1 if it cannot be read.
[[nodiscard]] int64_t countOpenFds();
// The peer of a connected socket: "127.0.0.1:54321", "[::1]:54321"; empty
// when it cannot be had (not connected any more).
[[nodiscard]] std::string peerAddress(int fd);
// "1.2.3.4:80", "[::1]:80" (as peerAddress()); empty for other families.
[[nodiscard]] std::string formatAddress(const sockaddr_storage& ss);
// The socket's pending error (SO_ERROR, which reading clears), e.g.
// ECONNRESET after the peer's RST; 0 if none, or errno if it cannot be had.
[[nodiscard]] int socketError(int fd);

struct [[nodiscard]] ListenerResult {
  int fd = -1;        // non-blocking, close-on-exec listening socket; the caller owns it
  std::string error;  // one line, e.g. "cannot listen on 127.0.0.1:8443: bind: Address already
                      // in use"; empty on success
  [[nodiscard]] bool ok() const { return fd >= 0; }
};

// Creates a listening TCP socket. `host` is an IPv4 literal, an IPv6 literal (brackets optional),
// "localhost" (= 127.0.0.1), or "" / "*" (= 0.0.0.0). No name resolution. port 0 = ephemeral
// (see localPort()). SO_REUSEADDR always; SO_REUSEPORT when `reuse_port` (one listener per
// worker); IPv6 sockets keep the system's V6ONLY default.
ListenerResult makeListener(std::string_view host, uint16_t port, bool reuse_port,
                            int backlog = 511);

// The local port a socket is bound to, or nullopt on error.
[[nodiscard]] std::optional<uint16_t> localPort(int fd);
// The local address a socket is bound to, as a literal without brackets.
[[nodiscard]] std::optional<std::string> localAddress(int fd);

struct [[nodiscard]] HostPortResult {
  std::string host;  // without brackets; may be empty ("" / ":8443" means any address)
  uint16_t port = 0;
  std::string error;  // empty on success
  [[nodiscard]] bool ok() const { return error.empty(); }
};

// "127.0.0.1:8443", "[::1]:8443", "localhost:8443", ":8443". An IPv6 host must be bracketed.
HostPortResult parseHostPort(std::string_view text);

}  // namespace h2loop::net
