// The configuration file: what each key sets, and that every mistake names
// the file, the line and the key (and changes nothing).
#include "config/config_file.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

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

TEST(ConfigFile, MountsRootHeadersAndErrorPages) {
  const Parsed p = parse(R"(
root = "www"
root_headers = { "cache-control" = "no-cache" }
[[mount]]
prefix = "/assets"
root = "assets"
headers = { "cache-control" = "max-age=3600", "x-content-type-options" = "nosniff" }
[[mount]]
prefix = "/docs/"
root = "/srv/docs"
[error_pages]
404 = "errors/404.html"
"503" = "/srv/errors/503.html"
)");
  EXPECT_EQ(p.cfg.root_headers, (std::vector<ResponseField>{{"cache-control", "no-cache"}}));
  ASSERT_EQ(p.cfg.mounts.size(), 2u);
  EXPECT_EQ(
      p.cfg.mounts[0],
      (server::Mount{"/assets",
                     "/etc/h2loop/assets",
                     {{"cache-control", "max-age=3600"}, {"x-content-type-options", "nosniff"}}}));
  EXPECT_EQ(p.cfg.mounts[1], (server::Mount{"/docs/", "/srv/docs", {}}));
  EXPECT_EQ(p.cfg.error_pages,
            (std::map<int, std::filesystem::path>{{404, "/etc/h2loop/errors/404.html"},
                                                  {503, "/srv/errors/503.html"}}));
}

TEST(ConfigFile, MountMistakesNameFileLineAndKey) {
  EXPECT_EQ(errorOf("mount = 1\n"),
            "h2loop.toml:1:9: mount: expected [[mount]] tables (prefix, root, headers)");
  EXPECT_EQ(errorOf("[[mount]]\nroot = \"/x\"\n"), "h2loop.toml:1:1: mount[0].prefix: missing");
  EXPECT_EQ(errorOf("[[mount]]\nprefix = \"/a\"\n"), "h2loop.toml:1:1: mount[0].root: missing");
  EXPECT_EQ(errorOf("[[mount]]\nprefix = \"a\"\nroot = \"/x\"\n"),
            "h2loop.toml:2:10: mount[0].prefix: expected a path starting with '/'");
  EXPECT_EQ(errorOf("[[mount]]\nprefix = \"/\"\nroot = \"/x\"\n"),
            "h2loop.toml:2:10: mount[0].prefix: \"/\" is the root's mount (root, root_headers)");
  EXPECT_EQ(errorOf("[[mount]]\nprefix = \"/a\"\nroot = \"/x\"\n"
                    "[[mount]]\nprefix = \"/a/\"\nroot = \"/y\"\n"),
            "h2loop.toml:5:10: mount[1].prefix: \"/a/\" is mounted twice");
  EXPECT_EQ(errorOf("[[mount]]\nprefix = \"/a\"\nroot = \"/x\"\nrot = 1\n"),
            "h2loop.toml:4:1: mount[0].rot: unknown key");
  const std::string mount = "[[mount]]\nprefix = \"/a\"\nroot = \"/x\"\n";
  EXPECT_EQ(errorOf(mount + "headers = { \"Cache-Control\" = \"x\" }\n"),
            "h2loop.toml:4:31: mount[0].headers.Cache-Control: field names are lowercase");
  EXPECT_EQ(errorOf(mount + "headers = { \"x-a\" = \"b\\r\\nset-cookie: c\" }\n"),
            "h2loop.toml:4:21: mount[0].headers.x-a: CR, LF or NUL in the value");
  EXPECT_EQ(errorOf(mount + "headers = { \"x-a\" = \"\\u0000\" }\n"),
            "h2loop.toml:4:21: mount[0].headers.x-a: CR, LF or NUL in the value");
  EXPECT_EQ(errorOf(mount + "headers = { \"content-type\" = \"text/plain\" }\n"),
            "h2loop.toml:4:30: mount[0].headers.content-type: the server sets this field itself");
  EXPECT_EQ(errorOf(mount + "headers = { \"x a\" = \"b\" }\n"),
            "h2loop.toml:4:21: mount[0].headers.x a: field name is not a token (RFC 9110 §5.6.2)");
  EXPECT_EQ(errorOf(mount + "headers = { \"x-a\" = 1 }\n"),
            "h2loop.toml:4:21: mount[0].headers.x-a: expected a string");
  EXPECT_EQ(errorOf(mount + "headers = \"cache-control: x\"\n"),
            "h2loop.toml:4:11: mount[0].headers: expected a table of fields ({ \"cache-control\" = "
            "\"...\" })");
  std::string many = mount + "[mount.headers]\n";
  for (int i = 0; i < 32; ++i)
    many += "x-" + std::to_string(i) + " = \"v\"\n";
  EXPECT_EQ(errorOf(many), "");
  EXPECT_EQ(errorOf(many + "x-more = \"v\"\n"),
            "h2loop.toml:4:1: mount[0].headers: more than 32 fields");
  EXPECT_EQ(errorOf("root_headers = { \"server\" = \"x\" }\n"),
            "h2loop.toml:1:29: root_headers.server: the server sets this field itself");
}

TEST(ConfigFile, ErrorPageMistakesNameFileLineAndKey) {
  EXPECT_EQ(errorOf("[error_pages]\n418 = \"teapot.html\"\n"),
            "h2loop.toml:2:7: error_pages.418: not a status the server answers itself (400, 403, "
            "404, 405, 416, 500, 503)");
  EXPECT_EQ(errorOf("[error_pages]\nnotfound = \"404.html\"\n"),
            "h2loop.toml:2:12: error_pages.notfound: not a status the server answers itself (400, "
            "403, 404, 405, 416, 500, 503)");
  EXPECT_EQ(errorOf("[error_pages]\n404 = 1\n"),
            "h2loop.toml:2:7: error_pages.404: expected a string");
  EXPECT_EQ(errorOf("[error_pages]\n404 = \"a\"\n0404 = \"b\"\n"),
            "h2loop.toml:2:7: error_pages.404: given twice");
  EXPECT_EQ(errorOf("error_pages = 1\n"),
            "h2loop.toml:1:15: error_pages: expected a table ([error_pages])");
}

TEST(ConfigFile, MountsAndErrorPagesReadBackTheSame) {
  const Parsed p = parse(R"(
listen = "127.0.0.1:8443"
root = "/srv/www"
root_headers = { "cache-control" = "no-cache", "x-frame-options" = "DENY" }
[[mount]]
prefix = "/assets"
root = "/srv/assets"
headers = { "cache-control" = "max-age=31536000, immutable" }
[[mount]]
prefix = "/docs"
root = "/srv/docs"
[error_pages]
404 = "/srv/errors/404.html"
500 = "/srv/errors/500.html"
)");
  const std::string text = effectiveConfig(p.cfg, p.program);
  Parsed back;
  applyConfigText(text, "effective", "/", back.cfg, back.program);
  EXPECT_EQ(effectiveConfig(back.cfg, back.program), text);
  EXPECT_EQ(back.cfg.mounts, p.cfg.mounts);
  EXPECT_EQ(back.cfg.root_headers, p.cfg.root_headers);
  EXPECT_EQ(back.cfg.error_pages, p.cfg.error_pages);
  EXPECT_EQ(back.cfg.mounts.size(), 2u);
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

TEST(ConfigFile, ListenersAndSniCertificates) {
  const Parsed p = parse(R"(
listen = ["127.0.0.1:8443", { address = "[::1]:8080", tls = false }, { address = "0.0.0.0:443" }]
root = "www"
[tls]
cert = "d.pem"
key = "d.key"
[[tls.sni]]
cert = "a.pem"
key = "/keys/a.key"
ocsp_response = "a.der"
[[tls.sni]]
cert = "b.pem"
key = "b.key"
)");
  ASSERT_EQ(p.cfg.listen.size(), 3u);
  EXPECT_EQ(p.cfg.listen[0], (server::ListenAddress{"127.0.0.1", 8443, false}));
  EXPECT_EQ(p.cfg.listen[1], (server::ListenAddress{"::1", 8080, true}));
  EXPECT_EQ(p.cfg.listen[2], (server::ListenAddress{"0.0.0.0", 443, false}));
  ASSERT_EQ(p.cfg.sni_certificates.size(), 2u);
  EXPECT_EQ(p.cfg.sni_certificates[0],
            (net::CertificateFiles{"/etc/h2loop/a.pem", "/keys/a.key", "/etc/h2loop/a.der"}));
  EXPECT_EQ(p.cfg.sni_certificates[1],
            (net::CertificateFiles{"/etc/h2loop/b.pem", "/etc/h2loop/b.key", {}}));
  const std::string text = effectiveConfig(p.cfg, p.program);
  const Parsed back = parse(text);
  EXPECT_EQ(back.cfg.listen, p.cfg.listen);
  EXPECT_EQ(back.cfg.sni_certificates, p.cfg.sni_certificates);
  EXPECT_EQ(effectiveConfig(back.cfg, back.program), text);
}

TEST(ConfigFile, ListenerAndSniMistakesNameFileLineAndKey) {
  EXPECT_EQ(errorOf("listen = [{ tls = false }]"),
            "h2loop.toml:1:11: listen[0].address: missing (\"HOST:PORT\")");
  EXPECT_EQ(errorOf("listen = [{ address = \"x:1\", tls = 1 }]"),
            "h2loop.toml:1:36: listen[0].tls: expected true or false");
  EXPECT_EQ(errorOf("listen = [{ address = \"127.0.0.1:1\", plain = true }]"),
            "h2loop.toml:1:38: listen[0].plain: unknown key");
  EXPECT_EQ(errorOf("listen = [\"127.0.0.1:1\", { address = \"127.0.0.1\" }]"),
            "h2loop.toml:1:38: listen[1].address: \"127.0.0.1\": invalid address \"127.0.0.1\": "
            "expected host:port");
  EXPECT_EQ(errorOf("[tls]\nsni = \"a.pem\""),
            "h2loop.toml:2:7: tls.sni: expected [[tls.sni]] tables (cert, key, ocsp_response)");
  EXPECT_EQ(errorOf("[[tls.sni]]\ncert = \"a.pem\""), "h2loop.toml:1:1: tls.sni[0].key: missing");
  EXPECT_EQ(errorOf("[[tls.sni]]\ncert = \"a.pem\"\nkey = \"a.key\"\nname = \"x\""),
            "h2loop.toml:4:1: tls.sni[0].name: unknown key");
}

}  // namespace
}  // namespace h2loop::config
