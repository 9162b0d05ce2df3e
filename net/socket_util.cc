#include "net/socket_util.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include <fmt/format.h>

namespace h2loop::net {

namespace {

// Holds either an IPv4 or an IPv6 socket address.
struct SockAddr {
  sockaddr_storage storage{};
  socklen_t len = 0;
  int family = AF_UNSPEC;
};

bool isAnyHost(std::string_view host) {
  return host.empty() || host == "*";
}

std::optional<SockAddr> resolveLiteral(std::string_view host, uint16_t port) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  SockAddr out;
  std::string h(host);
  if (isAnyHost(host)) h = "0.0.0.0";
  if (h == "localhost") h = "127.0.0.1";

  sockaddr_in v4{};
  if (inet_pton(AF_INET, h.c_str(), &v4.sin_addr) == 1) {
    v4.sin_family = AF_INET;
    v4.sin_port = htons(port);
    std::memcpy(&out.storage, &v4, sizeof v4);
    out.len = sizeof v4;
    out.family = AF_INET;
    return out;
  }
  sockaddr_in6 v6{};
  if (inet_pton(AF_INET6, h.c_str(), &v6.sin6_addr) == 1) {
    v6.sin6_family = AF_INET6;
    v6.sin6_port = htons(port);
    std::memcpy(&out.storage, &v6, sizeof v6);
    out.len = sizeof v6;
    out.family = AF_INET6;
    return out;
  }
  return std::nullopt;
}

std::string displayHostPort(std::string_view host, uint16_t port) {
  std::string h = isAnyHost(host) ? std::string("0.0.0.0") : std::string(host);
  if (h.find(':') != std::string::npos && h.front() != '[') h = "[" + h + "]";
  return h + ":" + std::to_string(port);
}

}  // namespace

bool setNonBlocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL, 0);
  if (flags < 0) return false;
  if ((flags & O_NONBLOCK) != 0) return true;
  return ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

bool setNoDelay(int fd) {
  int one = 1;
  return ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0;
}

bool setNotSentLowat(int fd, uint32_t bytes) {
  return ::setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &bytes, sizeof bytes) == 0;
}

bool setLingerZero(int fd) {
  linger lg{};
  lg.l_onoff = 1;
  lg.l_linger = 0;
  return ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0;
}

IoStatus classifyErrno(int err) {
  switch (err) {
    case EAGAIN:
#if EAGAIN != EWOULDBLOCK
    case EWOULDBLOCK:
#endif
      return IoStatus::kWouldBlock;
    case ECONNRESET:
    case EPIPE:
    case ETIMEDOUT:
    case ENOTCONN:
    case ECONNABORTED:
    case EHOSTUNREACH:
    case ENETUNREACH:
      return IoStatus::kReset;
    default:
      return IoStatus::kError;
  }
}

int64_t countOpenFds() {
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) return -1;
  int64_t n = 0;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(d);
  return n - 1;  // the directory stream's own fd
}

std::string errnoString(int err) {
  char buf[128];
  // GNU strerror_r: returns a pointer to the message (maybe a static string, maybe buf).
  const char* msg = ::strerror_r(err, buf, sizeof buf);
  return msg != nullptr ? std::string(msg) : "errno " + std::to_string(err);
}

ListenerResult makeListener(std::string_view host, uint16_t port, bool reuse_port, int backlog) {
  ListenerResult result;
  const std::string where = "cannot listen on " + displayHostPort(host, port) + ": ";
  std::optional<SockAddr> addr = resolveLiteral(host, port);
  if (!addr) {
    result.error = where + "host must be an IPv4/IPv6 literal or \"localhost\"";
    return result;
  }
  int fd = ::socket(addr->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    result.error = where + "socket: " + errnoString(errno);
    return result;
  }
  auto fail = [&](const char* what) {
    result.error = where + what + ": " + errnoString(errno);
    ::close(fd);
    return result;
  };
  int one = 1;
  if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) {
    return fail("setsockopt(SO_REUSEADDR)");
  }
  if (reuse_port && ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
    return fail("setsockopt(SO_REUSEPORT)");
  }
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr->storage), addr->len) != 0) {
    return fail("bind");
  }
  if (::listen(fd, backlog) != 0) return fail("listen");
  result.fd = fd;
  return result;
}

std::optional<uint16_t> localPort(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return std::nullopt;
  if (ss.ss_family == AF_INET) {
    return ntohs(reinterpret_cast<const sockaddr_in*>(&ss)->sin_port);
  }
  if (ss.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_port);
  }
  return std::nullopt;
}

std::optional<std::string> localAddress(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return std::nullopt;
  char buf[INET6_ADDRSTRLEN];
  const void* addr = nullptr;
  if (ss.ss_family == AF_INET) addr = &reinterpret_cast<const sockaddr_in*>(&ss)->sin_addr;
  if (ss.ss_family == AF_INET6) addr = &reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_addr;
  if (addr == nullptr || ::inet_ntop(ss.ss_family, addr, buf, sizeof buf) == nullptr) {
    return std::nullopt;
  }
  return std::string(buf);
}

HostPortResult parseHostPort(std::string_view text) {
  HostPortResult r;
  // fmt, not operator+ on literals: GCC 12 -O3 reports a false -Wrestrict
  // for `"literal" + std::string` chains.
  const auto invalid = [text](std::string_view why) {
    return fmt::format("invalid address \"{}\": {}", text, why);
  };
  std::string_view host;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos) {
      r.error = invalid("missing ']'");
      return r;
    }
    host = text.substr(1, close - 1);
    std::string_view rest = text.substr(close + 1);
    if (rest.empty() || rest.front() != ':') {
      r.error = invalid("expected ':port' after ']'");
      return r;
    }
    port = rest.substr(1);
    if (host.empty()) {
      r.error = invalid("empty IPv6 address");
      return r;
    }
    in6_addr tmp{};
    std::string h(host);
    if (inet_pton(AF_INET6, h.c_str(), &tmp) != 1) {
      r.error = invalid(fmt::format("\"{}\" is not an IPv6 address", h));
      return r;
    }
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      r.error = invalid("expected host:port");
      return r;
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      r.error = invalid("IPv6 addresses must be bracketed, e.g. [::1]:8443");
      return r;
    }
  }
  if (port.empty()) {
    r.error = invalid("missing port");
    return r;
  }
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (ec != std::errc() || ptr != port.data() + port.size() || value > 65535) {
    r.error = invalid("port must be a number in 0..65535");
    return r;
  }
  r.host = std::string(host);
  r.port = static_cast<uint16_t>(value);
  return r;
}

int socketError(int fd) {
  int err = 0;
  socklen_t len = sizeof err;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return errno;
  return err;
}

std::string peerAddress(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (fd < 0 || ::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return {};
  return formatAddress(ss);
}

std::string formatAddress(const sockaddr_storage& ss) {
  char host[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    ::inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    return fmt::format("{}:{}", host, ntohs(a->sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    ::inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    return fmt::format("[{}]:{}", host, ntohs(a->sin6_port));
  }
  return {};
}

}  // namespace h2loop::net
