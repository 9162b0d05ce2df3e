#include "server/counters.h"

namespace h2loop::server {

std::string_view toString(CloseReason r) {
  switch (r) {
    case CloseReason::kCompleted:
      return "completed";
    case CloseReason::kPeerEof:
      return "peer_eof";
    case CloseReason::kPeerReset:
      return "peer_reset";
    case CloseReason::kTlsError:
      return "tls_error";
    case CloseReason::kProtocolError:
      return "protocol_error";
    case CloseReason::kHandshakeTimeout:
      return "handshake_timeout";
    case CloseReason::kIdleTimeout:
      return "idle_timeout";
    case CloseReason::kWriteTimeout:
      return "write_timeout";
    case CloseReason::kLimit:
      return "limit";
    case CloseReason::kShutdown:
      return "shutdown";
    case CloseReason::kIoError:
      return "io_error";
    case CloseReason::kHeaderTimeout:
      return "header_timeout";
    case CloseReason::kProxyProtocol:
      return "proxy_protocol";
    case CloseReason::kCount:
      break;
  }
  return "unknown";
}

std::string_view toString(ProxyReject r) {
  switch (r) {
    case ProxyReject::kUntrustedSource:
      return "untrusted_source";
    case ProxyReject::kMalformed:
      return "malformed";
    case ProxyReject::kEof:
      return "eof";
    case ProxyReject::kTimeout:
      return "timeout";
    case ProxyReject::kCount:
      break;
  }
  return "unknown";
}

}  // namespace h2loop::server
