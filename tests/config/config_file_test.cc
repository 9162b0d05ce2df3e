// The configuration file: what each key sets, and that every mistake names
// the file, the line and the key (and changes nothing).
#include "config/config_file.h"

#include <gtest/gtest.h>

#include <string>

namespace h2loop::config {
namespace {

using server::ServerConfig;

struct Parsed {
  ServerConfig cfg;
  ProgramSettings program;
};

Parsed parse(std::string_view text) {
  Parsed p;
  applyConfigText(text, "h2loop.toml", "/etc/h2loop", p.cfg, p.program);
  return p;
}

// The message of the ConfigError `text` raises ("" if none).
std::string errorOf(std::string_view text) {
  try {
    (void)parse(text);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(ConfigFile, EveryKeySetsItsField) {
  const Parsed p = parse(R"(
listen = ["127.0.0.1:8443", "[::1]:9443"]
root = "www"
event_loop = "libevent"
workers = 3
max_connections = 500
http1 = false
log_level = "debug"
access_log = "/var/log/h2loop/access.log"
metrics_path = "/metrics"
proxy_protocol_from = ["10.0.0.0/8", "::1/128"]
[tls]
cert = "/etc/ssl/c.pem"
key = "k.pem"
tls13_ciphers = "TLS_AES_128_GCM_SHA256"
ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256"
min_version = "1.3"
ticket_keys = ["t1.key", "/keys/t0.key"]
ocsp_response = "ocsp.der"
[limits]
max_concurrent_streams = 64
output_high_watermark = 131072
kernel_unsent_limit = 0
stream_write_bound = 4096
[timeouts]
handshake = 2
header = 3.5
idle = 120
write = 15
drain = 0.25
response = 0
[websocket]
echo = "/ws"
max_message = 4096
send_bound = 2048
ping_interval = 20
pong_timeout = 5
)");
  const ServerConfig& c = p.cfg;
  ASSERT_EQ(c.listen.size(), 2u);
  EXPECT_EQ(c.listen[0].host, "127.0.0.1");
  EXPECT_EQ(c.listen[0].port, 8443);
  EXPECT_EQ(c.listen[1].host, "::1");
  EXPECT_EQ(c.listen[1].port, 9443);
  // Relative paths are taken from the file's directory.
  EXPECT_EQ(c.root, "/etc/h2loop/www");
  EXPECT_EQ(c.event_loop, "libevent");
  EXPECT_EQ(c.workers, 3u);
  EXPECT_EQ(c.max_connections, 500u);
  EXPECT_FALSE(c.http1);
  EXPECT_EQ(p.program.log_level, "debug");
  EXPECT_TRUE(c.access_log);
  EXPECT_EQ(p.program.access_log_file, "/var/log/h2loop/access.log");
  EXPECT_EQ(c.metrics_path, "/metrics");
  ASSERT_EQ(c.proxy_protocol_from.size(), 2u);
  EXPECT_EQ(c.proxy_protocol_from[0].toString(), "10.0.0.0/8");
  EXPECT_EQ(c.proxy_protocol_from[1].toString(), "::1/128");
  EXPECT_EQ(c.cert, "/etc/ssl/c.pem");
  EXPECT_EQ(c.key, "/etc/h2loop/k.pem");
  EXPECT_EQ(c.tls13_ciphers, "TLS_AES_128_GCM_SHA256");
  EXPECT_EQ(c.tls12_ciphers, "ECDHE-ECDSA-AES128-GCM-SHA256");
  EXPECT_EQ(c.tls_min_version, "1.3");
  ASSERT_EQ(c.tls_ticket_key_files.size(), 2u);
  EXPECT_EQ(c.tls_ticket_key_files[0], "/etc/h2loop/t1.key");
  EXPECT_EQ(c.tls_ticket_key_files[1], "/keys/t0.key");
  EXPECT_EQ(c.tls_ocsp_response, "/etc/h2loop/ocsp.der");
  EXPECT_EQ(c.session.max_concurrent_streams, 64u);
  EXPECT_EQ(c.output_high_watermark, 131072u);
  EXPECT_EQ(c.output_low_watermark, 131072u / 4);
  EXPECT_EQ(c.kernel_unsent_limit, 0u);
  EXPECT_EQ(c.stream_write_bound, 4096u);
  EXPECT_EQ(c.handshake_timeout.count(), 2000);
  EXPECT_EQ(c.header_timeout.count(), 3500);
  EXPECT_EQ(c.idle_timeout.count(), 120000);
  EXPECT_EQ(c.write_timeout.count(), 15000);
  EXPECT_EQ(c.drain_timeout.count(), 250);
  EXPECT_EQ(c.response_timeout.count(), 0);
  EXPECT_EQ(c.websocket_echo, "/ws");
  EXPECT_EQ(c.websocket_options.max_message, 4096u);
  EXPECT_EQ(c.websocket_options.send_bound, 2048u);
  EXPECT_EQ(c.websocket_options.ping_interval.count(), 20000);
  EXPECT_EQ(c.websocket_options.pong_timeout.count(), 5000);
}

TEST(ConfigFile, AbsentKeysKeepTheirValues) {
  ServerConfig cfg;
  cfg.workers = 7;
  ProgramSettings program;
  applyConfigText("root = \"/srv\"\n", "f.toml", "/", cfg, program);
  EXPECT_EQ(cfg.workers, 7u);
  EXPECT_EQ(cfg.root, "/srv");
  EXPECT_EQ(cfg.idle_timeout, ServerConfig{}.idle_timeout);
  EXPECT_FALSE(cfg.access_log);
}

TEST(ConfigFile, AccessLogTrueMeansTheLog) {
  const Parsed p = parse("access_log = true\n");
  EXPECT_TRUE(p.cfg.access_log);
  EXPECT_TRUE(p.program.access_log_file.empty());
}

TEST(ConfigFile, MistakesNameFileLineAndKey) {
  EXPECT_EQ(errorOf("root = \"/srv\"\nworkerz = 2\n"), "h2loop.toml:2:1: workerz: unknown key");
  EXPECT_EQ(errorOf("[timeouts]\nidle = \"60\"\n"),
            "h2loop.toml:2:8: timeouts.idle: expected a number of seconds");
  EXPECT_EQ(errorOf("[timeouts]\n\nidle = -1\n"),
            "h2loop.toml:3:8: timeouts.idle: -1 seconds is out of range (0, 86400]");
  EXPECT_EQ(errorOf("workers = 0\n"), "h2loop.toml:1:11: workers: 0 is out of range [1, 256]");
  EXPECT_EQ(errorOf("workers = 2.5\n"), "h2loop.toml:1:11: workers: expected an integer");
  EXPECT_EQ(errorOf("[limits]\nstreams = 5\n"), "h2loop.toml:2:1: limits.streams: unknown key");
  EXPECT_EQ(errorOf("tls = 1\n"), "h2loop.toml:1:7: tls: expected a table ([tls])");
  EXPECT_EQ(errorOf("http1 = \"yes\"\n"), "h2loop.toml:1:9: http1: expected true or false");
  EXPECT_EQ(errorOf("[tls]\nmin_version = \"1.1\"\n"),
            "h2loop.toml:2:15: tls.min_version: expected \"1.2\" or \"1.3\"");
  EXPECT_EQ(errorOf("[tls]\nticket_keys = [\"a\", 3]\n"),
            "h2loop.toml:2:21: tls.ticket_keys: expected a path or a list of paths");
  EXPECT_EQ(errorOf("event_loop = \"kqueue\"\n"),
            "h2loop.toml:1:14: event_loop: \"kqueue\" is not one of: epoll, libevent");
  EXPECT_EQ(
      errorOf("listen = [\"127.0.0.1:8443\", \"nope\"]\n").rfind("h2loop.toml:1:29: listen:", 0),
      0u);
  EXPECT_EQ(errorOf("listen = []\n"), "h2loop.toml:1:10: listen: expected at least one address");
  EXPECT_EQ(errorOf("proxy_protocol_from = [\"10.0.0.1/8\"]\n")
                .rfind("h2loop.toml:1:24: proxy_protocol_from: ", 0),
            0u);
  EXPECT_EQ(errorOf("metrics_path = \"metrics\"\n"),
            "h2loop.toml:1:16: metrics_path: expected a path starting with '/'");
  EXPECT_EQ(
      errorOf("log_level = \"loud\"\n"),
      "h2loop.toml:1:13: log_level: expected trace, debug, info, warn, error, critical or off");
  // A syntax error: toml++'s own description, at its position.
  EXPECT_EQ(errorOf("root = \"/srv\n").rfind("h2loop.toml:1:", 0), 0u);
}

TEST(ConfigFile, AFailedFileChangesNothing) {
  ServerConfig cfg;
  ProgramSettings program;
  EXPECT_THROW(applyConfigText("workers = 4\nlog_level = \"debug\"\n[timeouts]\nidle = 0\n", "f",
                               "/", cfg, program),
               ConfigError);
  EXPECT_EQ(cfg.workers, 1u);
  EXPECT_EQ(program.log_level, "info");
}

TEST(ConfigFile, EffectiveConfigReadsBackTheSame) {
  const Parsed p = parse(R"(
listen = "[::1]:9443"
root = "/srv/www"
workers = 2
access_log = "/var/log/a.log"
[timeouts]
drain = 0.5
[websocket]
echo = "/ws"
)");
  const std::string text = effectiveConfig(p.cfg, p.program);
  Parsed back;
  applyConfigText(text, "effective", "/", back.cfg, back.program);
  EXPECT_EQ(effectiveConfig(back.cfg, back.program), text);
  EXPECT_EQ(back.cfg.listen, p.cfg.listen);
  EXPECT_EQ(back.cfg.drain_timeout.count(), 500);
  EXPECT_EQ(back.program.access_log_file, "/var/log/a.log");
  EXPECT_EQ(back.cfg.websocket_echo, "/ws");
}

TEST(ConfigFile, MissingFileIsAnError) {
  ServerConfig cfg;
  ProgramSettings program;
  try {
    applyConfigFile("/nonexistent/h2loop.toml", cfg, program);
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()),
              "/nonexistent/h2loop.toml: cannot read: No such file or directory");
  }
}

// The example in deploy/ stays a valid file.
TEST(ConfigFile, TheDeployExampleReads) {
  ServerConfig cfg;
  ProgramSettings program;
  applyConfigFile(H2LOOP_SOURCE_DIR "/deploy/h2loop.toml", cfg, program);
  EXPECT_EQ(cfg.root, "/srv/www");
  EXPECT_EQ(cfg.workers, 2u);
  EXPECT_EQ(cfg.listen.size(), 2u);
  EXPECT_EQ(program.access_log_file, "/var/log/h2loop/access.log");
}

}  // namespace
}  // namespace h2loop::config
