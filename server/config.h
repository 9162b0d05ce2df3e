#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "h1/session.h"
#include "h2/session.h"
#include "h2loop/http.h"
#include "h2loop/websocket.h"
#include "net/proxy_protocol.h"
#include "net/tls_context.h"
#include "server/static_files.h"

namespace h2loop::server {

struct ListenAddress {
  std::string host;  // literal address; "" = any
  uint16_t port = 0;
  // h2c (and HTTP/1.1) on this address, even when the server has
  // certificates: e.g. for a load balancer on a private network.
  bool cleartext = false;
  bool operator==(const ListenAddress&) const = default;
};

// A document root served below a path prefix, with the fields its 2xx and
// 3xx answers carry (FilesOptions::headers).
struct Mount {
  std::string prefix;  // starts with '/'; not "/" (that is ServerConfig::root)
  std::filesystem::path root;
  std::vector<ResponseField> headers;
  bool operator==(const Mount&) const = default;
};

// Everything the server is told at start-up. Defaults are production values.
struct ServerConfig {
  std::vector<ListenAddress> listen;
  // Listening sockets made by someone else (systemd socket activation),
  // non-blocking; when given, `listen` is not used and the server owns them.
  std::vector<int> listen_fds;
  std::filesystem::path root;               // the "/" mount
  std::vector<ResponseField> root_headers;  // its fields (FilesOptions::headers)
  // More document roots below other prefixes (the longest prefix wins).
  std::vector<Mount> mounts;
  // Status → file whose content becomes the body of the server's own answer
  // with that status (Router::errorPage; read at start, at most 64 KiB).
  std::map<int, std::filesystem::path> error_pages;
  std::filesystem::path cert;  // both empty: the listeners speak h2c
  std::filesystem::path key;
  // More certificates, chosen by SNI (net::TlsOptions::sni); cert/key is the
  // default one.
  std::vector<net::CertificateFiles> sni_certificates;
  std::string tls13_ciphers;            // empty: OpenSSL's defaults
  std::string tls12_ciphers;            // empty: net::kDefaultTls12Ciphers (RFC 9113's allowance)
  std::string tls_min_version = "1.2";  // or "1.3"
  // Session-ticket key files (net::TlsOptions::ticket_key_files); none: a
  // key of the server's own, kept across reloads.
  std::vector<std::filesystem::path> tls_ticket_key_files;
  std::filesystem::path tls_ocsp_response;  // DER, stapled; empty: none
  std::string event_loop = "epoll";
  unsigned workers = 1;
  size_t max_connections = 10000;  // over all workers
  h2::SessionConfig session;       // max_concurrent_streams etc.
  // HTTP/1.1 next to HTTP/2 on every listener: over TLS by ALPN (http/1.1,
  // or no ALPN), in cleartext whatever does not start with the HTTP/2
  // preface. Off: HTTP/2 only (TLS refuses other ALPN, cleartext answers 505).
  bool http1 = true;
  h1::SessionConfig http1_session;  // limits; scheme and date are set per connection
  size_t pool_capacity = 0;         // streams per worker; 0 = derived from the limits
  std::string metrics_path;         // empty: off
  // The h2loop binary's WebSocket echo endpoint (empty: none), and its limits.
  std::string websocket_echo;
  WebSocketOptions websocket_options;
  bool access_log = false;
  // Load balancers allowed to speak the PROXY protocol (v1 or v2). Non-empty: every listener
  // requires a PROXY header first, from these sources only, and refuses other connections.
  std::vector<net::Cidr> proxy_protocol_from;
  // What the server serves. Unset: metrics_path (when set) and the files of
  // root at "/", which is what the h2loop binary serves.
  std::shared_ptr<const Router> router;
  // A streamed response's queued bytes before write() says kWouldBlock.
  size_t stream_write_bound = 64 * 1024;
  // From a request's headers to the start of its response (application
  // routes); then 504. Zero: none.
  std::chrono::milliseconds response_timeout{30'000};

  // Bounded output per connection (h2::OutputBuffer watermarks).
  size_t output_high_watermark = 64 * 1024;
  size_t output_low_watermark = 16 * 1024;
  // TCP_NOTSENT_LOWAT on accepted sockets: bytes the kernel holds unsent for
  // a connection before send() would block (0: the kernel's default, which
  // is unbounded). Without it a peer that sends control frames and never
  // reads parks megabytes of our answers in the kernel, and our own output
  // never backs up far enough for the flood limit to see it.
  uint32_t kernel_unsent_limit = 128 * 1024;

  std::chrono::milliseconds handshake_timeout{10'000};
  // HTTP/1.1: from a request's first byte to the end of its header section,
  // however slowly it trickles in (slowloris); then 408 and the close.
  std::chrono::milliseconds header_timeout{10'000};
  std::chrono::milliseconds idle_timeout{60'000};
  std::chrono::milliseconds write_timeout{30'000};
  // Graceful ends: how long we wait for the client's FIN after our GOAWAY.
  std::chrono::milliseconds linger_timeout{2'000};
  // Connection errors: after GOAWAY(error) and our FIN, how long input is
  // read and discarded (so a late RST cannot destroy the GOAWAY) before the
  // close; also the bound on flushing that GOAWAY to a peer that does not read.
  std::chrono::milliseconds error_linger_timeout{1'000};
  std::chrono::milliseconds drain_timeout{10'000};
  // Between the shutdown notice and the final GOAWAY (about one round trip);
  // also how long a client that sent GOAWAY and has nothing left in flight
  // gets to close first before we send our FIN.
  std::chrono::milliseconds goaway_delay{100};
  // Pause before accepting again after EMFILE/ENFILE.
  std::chrono::milliseconds accept_backoff{100};

  // Ranges and precompressed variants of static files.
  StaticFilesOptions static_files;

  int64_t file_cache_ttl_ms = 1000;
  size_t file_cache_entries = 256;
};

// One generation of what a reload may change: a connection runs its whole
// life with the generation it was accepted under, and holds it (so the TLS
// context its handshake callbacks use outlives the connection).
struct Settings {
  ServerConfig config;
  std::shared_ptr<const net::TlsContext> tls;  // null: h2c
};

}  // namespace h2loop::server
