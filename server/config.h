#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "h2/session.h"

namespace h2loop::server {

struct ListenAddress {
  std::string host;  // literal address; "" = any
  uint16_t port = 0;
};

// Everything the server is told at start-up. Defaults are production values.
struct ServerConfig {
  std::vector<ListenAddress> listen;
  std::filesystem::path root;
  std::filesystem::path cert;  // both empty: the listeners speak h2c
  std::filesystem::path key;
  std::string tls13_ciphers;  // empty: OpenSSL's defaults
  std::string event_loop = "epoll";
  unsigned workers = 1;
  size_t max_connections = 10000;  // over all workers
  h2::SessionConfig session;       // max_concurrent_streams etc.
  size_t pool_capacity = 0;        // streams per worker; 0 = derived from the limits
  std::string metrics_path;        // empty: off
  bool access_log = false;

  // Bounded output per connection (h2::OutputBuffer watermarks).
  size_t output_high_watermark = 64 * 1024;
  size_t output_low_watermark = 16 * 1024;

  std::chrono::milliseconds handshake_timeout{10'000};
  std::chrono::milliseconds idle_timeout{60'000};
  std::chrono::milliseconds write_timeout{30'000};
  std::chrono::milliseconds linger_timeout{2'000};
  std::chrono::milliseconds drain_timeout{10'000};
  // Between the shutdown notice and the final GOAWAY (about one round trip).
  std::chrono::milliseconds goaway_delay{100};
  // Pause before accepting again after EMFILE/ENFILE.
  std::chrono::milliseconds accept_backoff{100};

  int64_t file_cache_ttl_ms = 1000;
  size_t file_cache_entries = 256;
};

}  // namespace h2loop::server
