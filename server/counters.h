#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string_view>

namespace h2loop::server {

// Every way a connection ends. One close(reason) per connection; the reason
// is logged once and counted in h2loop_connections_closed_total{reason}.
enum class CloseReason : uint8_t {
  kCompleted,      // both sides done (client GOAWAY or our graceful GOAWAY), lingering close ended
  kPeerEof,        // the client closed (FIN / close_notify)
  kPeerReset,      // the client reset the connection (RST, EPIPE)
  kTlsError,       // handshake failure, no ALPN h2, TLS protocol error
  kProtocolError,  // HTTP/2 error, flood, bad preface
  kHandshakeTimeout,
  kIdleTimeout,
  kWriteTimeout,   // output pending, no progress
  kLimit,          // refused at max-connections
  kShutdown,       // server shutdown, drain timeout expired
  kIoError,        // any other I/O error (EBADF: fd already invalid)
  kHeaderTimeout,  // HTTP/1.1: a request head not complete in time (slowloris)
  kProxyProtocol,  // PROXY protocol required: untrusted source, or a bad header
  kCount
};

std::string_view toString(CloseReason r);

// Why a listener that requires the PROXY protocol refused a connection; counted in
// h2loop_proxy_protocol_rejected_total{reason}.
enum class ProxyReject : uint8_t {
  kUntrustedSource,  // the peer is not in --proxy-protocol-from
  kMalformed,        // no PROXY header where one must be, or a bad one
  kEof,              // the peer closed before its header was complete
  kTimeout,          // no complete header within the handshake timeout
  kCount
};

std::string_view toString(ProxyReject r);

// A counter or gauge written by one thread (its worker) and read by any (the
// metrics endpoint). Relaxed atomics: plain loads/stores, no locked RMW.
class Gauge {
 public:
  void add(int64_t d) {
    v_.store(v_.load(std::memory_order_relaxed) + d, std::memory_order_relaxed);
  }
  void set(int64_t v) { v_.store(v, std::memory_order_relaxed); }
  [[nodiscard]] int64_t get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> v_{0};
};

// Live counters of one worker; the metrics endpoint sums them over workers.
struct WorkerCounters {
  Gauge connections_active;
  Gauge connections_total;
  Gauge connections_refused;  // at max-connections (also counted as kLimit closes)
  Gauge http1_connections;    // connections served HTTP/1.1 (from their first request)
  Gauge h2c_upgrades;         // HTTP/1.1 connections that switched to HTTP/2
  Gauge streams_active;
  Gauge requests_total;
  Gauge pool_in_use;
  Gauge pool_capacity;
  Gauge pool_refused;
  Gauge output_buffered_bytes;
  Gauge accept_errors;
  Gauge file_cache_open_files;
  Gauge static_compressed_bytes;           // on-the-fly compressed bodies alive (cached or sent)
  std::array<Gauge, 2> static_compressed;  // on-the-fly compressions by coding: gzip, br
  Gauge proxy_accepted;  // PROXY headers taken (the client address then replaces the peer's)
  std::array<Gauge, static_cast<size_t>(ProxyReject::kCount)> proxy_rejected;
  std::array<Gauge, static_cast<size_t>(CloseReason::kCount)> closed;
};

}  // namespace h2loop::server
