#include "net/proxy_reader.h"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <span>

namespace h2loop::net {
namespace {

// What the first peek asks for: a whole v1 header, or a v2 one without TLVs (IPv4, IPv6 or
// AF_UNIX). A longer v2 header announces its length in its first 16 bytes.
constexpr size_t kFirstPeek = kProxyV2FixedLength + 216;

}  // namespace

ProxyHeaderReader::Status ProxyHeaderReader::read(int fd) {
  for (;;) {
    const size_t have = buf_.size();
    size_t room = kFirstPeek > have ? kFirstPeek - have : 0;
    const ProxyParseResult known =
        have >= kProxyV2FixedLength
            ? parseProxyHeader({reinterpret_cast<const uint8_t*>(buf_.data()), have})
            : ProxyParseResult{};
    if (known.expected > have) room = known.expected - have;
    room = std::min(room, kProxyHeaderMaxLength - std::min(have, kProxyHeaderMaxLength));
    if (room == 0) {
      // Cannot happen: the parser decides before the bound. Refuse rather than spin.
      error_ = "PROXY header longer than the bound";
      return Status::kInvalid;
    }
    buf_.resize(have + room);
    ssize_t n = ::recv(fd, buf_.data() + have, room, MSG_PEEK);
    if (n < 0) {
      const int err = errno;
      buf_.resize(have);
      if (err == EINTR) continue;
      if (err == EAGAIN || err == EWOULDBLOCK) return Status::kWouldBlock;
      errno_ = err;
      return err == ECONNRESET || err == EPIPE || err == ETIMEDOUT || err == ENOTCONN
                 ? Status::kReset
                 : Status::kError;
    }
    if (n == 0) {
      buf_.resize(have);
      return Status::kEof;
    }
    buf_.resize(have + static_cast<size_t>(n));
    const ProxyParseResult r =
        parseProxyHeader({reinterpret_cast<const uint8_t*>(buf_.data()), buf_.size()});
    if (r.status == ProxyParseStatus::kInvalid) {
      error_ = r.error;
      return Status::kInvalid;
    }
    // Consume what belongs to the header: all of it while incomplete, else up to its end.
    const size_t take =
        r.status == ProxyParseStatus::kDone ? r.header.length - have : static_cast<size_t>(n);
    size_t taken = 0;
    while (taken < take) {
      const ssize_t m = ::recv(fd, buf_.data() + have + taken, take - taken, 0);
      if (m < 0 && errno == EINTR) continue;
      if (m <= 0) {
        // The peeked bytes are in the socket's queue: only a vanished socket gets here.
        errno_ = m < 0 ? errno : 0;
        buf_.resize(have + taken);
        return m < 0 ? Status::kError : Status::kEof;
      }
      taken += static_cast<size_t>(m);
    }
    buf_.resize(have + take);
    if (r.status == ProxyParseStatus::kDone) {
      header_ = r.header;
      std::string().swap(buf_);
      return Status::kDone;
    }
  }
}

}  // namespace h2loop::net
