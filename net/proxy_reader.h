#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "net/proxy_protocol.h"

namespace h2loop::net {

// Takes a PROXY header off a non-blocking socket, and not one byte more: what follows (a TLS
// ClientHello, an HTTP/2 preface) stays in the socket for the transport, even when it came in
// the same segment. The header may arrive in any number of pieces.
//
// How: peek, parse what has come so far, then consume only bytes the parser placed inside the
// header (all of them while it is incomplete, exactly its length once complete). Nothing is
// left peeked and unconsumed while waiting, so a level-triggered watch does not spin.
class ProxyHeaderReader {
 public:
  enum class Status : uint8_t {
    kDone,        // header() is complete and consumed
    kWouldBlock,  // wait for readability, then call read() again
    kInvalid,     // not a (valid) PROXY header: error() says why
    kEof,         // the peer closed before the header was complete
    kReset,       // ECONNRESET and the like
    kError,       // any other recv() failure (errno in lastErrno())
  };

  Status read(int fd);

  [[nodiscard]] const ProxyHeader& header() const { return header_; }
  [[nodiscard]] std::string_view error() const { return error_; }
  [[nodiscard]] int lastErrno() const { return errno_; }
  // Header bytes consumed so far.
  [[nodiscard]] size_t received() const { return buf_.size(); }

 private:
  std::string buf_;
  ProxyHeader header_;
  std::string_view error_;
  int errno_ = 0;
};

}  // namespace h2loop::net
