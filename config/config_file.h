#pragma once

#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "server/config.h"

// The h2loop binary's configuration file (TOML, read with toml++). Every key
// has a command-line flag of the same meaning, and a flag given on the
// command line wins over the file. The keys:
//
//   listen = ["127.0.0.1:8443", "[::1]:8443"]   # or one string
//   root = "/srv/www"
//   event_loop = "epoll"          # or "libevent"
//   workers = 2
//   max_connections = 10000
//   http1 = true
//   log_level = "info"
//   access_log = "/var/log/h2loop/access.log"   # true: with the other logs
//   metrics_path = "/metrics"
//   proxy_protocol_from = ["10.0.0.0/8"]   # PROXY protocol from these only
//   [tls]        cert, key, min_version ("1.2"/"1.3"), ciphers (TLS 1.2),
//                tls13_ciphers, ticket_keys (files), ocsp_response (DER file)
//   [limits]     max_concurrent_streams, output_high_watermark,
//                kernel_unsent_limit, stream_write_bound
//   [timeouts]   handshake, header, idle, write, drain, response   (seconds)
//   [static]     ranges, max_ranges, precompressed, compress, compress_min_size,
//                compress_max_size, compress_budget, compress_types, gzip_level,
//                brotli_quality
//   [websocket]  echo, max_message, send_bound, ping_interval, pong_timeout
//   root_headers = { "cache-control" = "no-cache" }   # fields of root's 2xx/3xx
//   [[mount]]    prefix = "/assets", root = "assets",
//                headers = { "cache-control" = "max-age=31536000" }   (repeatable)
//   [error_pages] 404 = "errors/404.html"   # 400, 403, 404, 405, 416, 500, 503
//
// A relative path is taken relative to the file's own directory, so a file
// means the same whatever directory the server is started from.
namespace h2loop::config {

// What the program itself owns, next to the server's configuration.
struct ProgramSettings {
  std::string log_level = "info";
  // Empty: access lines (when on) go to the log; else appended to this file,
  // reopened on SIGUSR1.
  std::filesystem::path access_log_file;
};

// One message, "FILE:LINE:COLUMN: KEY: what is wrong".
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Reads `file` over `cfg` and `program`: only the keys present change them.
// Throws ConfigError for a syntax error, an unknown key, a value of the wrong
// type or out of range. Nothing is changed when it throws.
void applyConfigFile(const std::filesystem::path& file, server::ServerConfig& cfg,
                     ProgramSettings& program);

// The same, from text (tests); `name` stands for the file in messages and
// relative paths are taken from `base`.
void applyConfigText(std::string_view text, const std::string& name,
                     const std::filesystem::path& base, server::ServerConfig& cfg,
                     ProgramSettings& program);

// The effective configuration in the file's own syntax (--check prints it):
// read back by applyConfigText it gives the same configuration.
[[nodiscard]] std::string effectiveConfig(const server::ServerConfig& cfg,
                                          const ProgramSettings& program);

}  // namespace h2loop::config
