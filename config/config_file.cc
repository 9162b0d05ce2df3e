#include "config/config_file.h"

#include <fmt/format.h>

#include <toml++/toml.h>
#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <set>
#include <sstream>

#include "eventloop/loop_factory.h"
#include "net/proxy_protocol.h"
#include "net/socket_util.h"
#include "server/mounts.h"

namespace h2loop::config {
namespace {

using server::ServerConfig;

std::string where(const std::string& name, const toml::source_region& src) {
  return fmt::format("{}:{}:{}", name, src.begin.line, src.begin.column);
}

// Walks one table: typed reads with range checks, and at the end an error for
// every key nobody asked for (a typo must not be silently ignored).
class Section {
 public:
  Section(const toml::table& table, std::string prefix, const std::string& name)
      : table_(table), prefix_(std::move(prefix)), name_(name) {}

  [[noreturn]] void fail(const toml::node& node, std::string_view key,
                         std::string_view what) const {
    throw ConfigError(fmt::format("{}: {}{}: {}", where(name_, node.source()), prefix_, key, what));
  }

  const toml::node* find(std::string_view key) {
    known_.emplace(key);
    return table_.get(key);
  }

  bool boolean(std::string_view key, bool& out) {
    const toml::node* n = find(key);
    if (n == nullptr) return false;
    if (!n->is_boolean()) fail(*n, key, "expected true or false");
    out = n->value<bool>().value_or(false);
    return true;
  }

  bool string(std::string_view key, std::string& out) {
    const toml::node* n = find(key);
    if (n == nullptr) return false;
    if (!n->is_string()) fail(*n, key, "expected a string");
    out = n->value<std::string>().value_or("");
    return true;
  }

  template <typename T>
  bool integer(std::string_view key, T& out, int64_t lo, int64_t hi) {
    const toml::node* n = find(key);
    if (n == nullptr) return false;
    if (!n->is_integer()) fail(*n, key, "expected an integer");
    const int64_t v = n->value<int64_t>().value_or(0);
    if (v < lo || v > hi) fail(*n, key, fmt::format("{} is out of range [{}, {}]", v, lo, hi));
    out = static_cast<T>(v);
    return true;
  }

  // Seconds, integer or fractional, above zero (and at most a day: a typo in
  // the unit, not a wish).
  bool seconds(std::string_view key, std::chrono::milliseconds& out, bool zero_ok = false) {
    const toml::node* n = find(key);
    if (n == nullptr) return false;
    if (!n->is_number()) fail(*n, key, "expected a number of seconds");
    const double s = n->value<double>().value_or(-1);
    if (!std::isfinite(s) || s < 0 || (s == 0 && !zero_ok) || s > 86'400) {
      fail(*n, key, fmt::format("{} seconds is out of range {}, 86400]", s, zero_ok ? "[0" : "(0"));
    }
    out = std::chrono::milliseconds(static_cast<int64_t>(std::llround(s * 1000.0)));
    if (out.count() == 0 && s > 0) out = std::chrono::milliseconds(1);
    return true;
  }

  bool path(std::string_view key, std::filesystem::path& out, const std::filesystem::path& base) {
    std::string s;
    if (!string(key, s)) return false;
    if (s.empty()) fail(*table_.get(key), key, "expected a path, got an empty string");
    std::filesystem::path p(s);
    out = p.is_absolute() ? p : (base / p).lexically_normal();
    return true;
  }

  // One path or a list of them.
  bool paths(std::string_view key, std::vector<std::filesystem::path>& out,
             const std::filesystem::path& base) {
    const toml::node* n = find(key);
    if (n == nullptr) return false;
    std::vector<std::filesystem::path> v;
    auto add = [&](const toml::node& e) {
      if (!e.is_string() || e.value<std::string>().value_or("").empty()) {
        fail(e, key, "expected a path or a list of paths");
      }
      std::filesystem::path p(*e.value<std::string>());
      v.push_back(p.is_absolute() ? p : (base / p).lexically_normal());
    };
    if (const toml::array* a = n->as_array()) {
      for (const toml::node& e : *a)
        add(e);
    } else {
      add(*n);
    }
    out = std::move(v);
    return true;
  }

  const toml::table* table(std::string_view key) {
    const toml::node* n = find(key);
    if (n == nullptr) return nullptr;
    if (!n->is_table()) fail(*n, key, "expected a table ([" + std::string(key) + "])");
    return n->as_table();
  }

  // Every key present that no read asked for is an error.
  void finish() const {
    for (auto&& [k, v] : table_) {
      if (known_.count(std::string(k.str())) == 0) {
        throw ConfigError(
            fmt::format("{}: {}{}: unknown key", where(name_, k.source()), prefix_, k.str()));
      }
    }
  }

  [[nodiscard]] const std::string& prefix() const { return prefix_; }
  [[nodiscard]] const std::string& name() const { return name_; }

 private:
  const toml::table& table_;
  std::string prefix_;
  const std::string& name_;
  std::set<std::string, std::less<>> known_;
};

void listenAddresses(Section& s, ServerConfig& cfg) {
  const toml::node* n = s.find("listen");
  if (n == nullptr) return;
  std::vector<const toml::node*> items;
  if (n->is_string()) {
    items.push_back(n);
  } else if (const toml::array* a = n->as_array()) {
    for (const toml::node& e : *a)
      items.push_back(&e);
    if (items.empty()) s.fail(*n, "listen", "expected at least one address");
  } else {
    s.fail(*n, "listen", "expected \"HOST:PORT\" or a list of them");
  }
  std::vector<server::ListenAddress> out;
  for (size_t i = 0; i < items.size(); ++i) {
    const toml::node* e = items[i];
    // "HOST:PORT", or { address = "HOST:PORT", tls = false } for h2c there.
    bool tls = true;
    const toml::node* address = e;
    std::string key = "listen";
    if (const toml::table* t = e->as_table()) {
      Section entry(*t, fmt::format("listen[{}].", i), s.name());
      address = entry.find("address");
      if (address == nullptr) entry.fail(*e, "address", "missing (\"HOST:PORT\")");
      entry.boolean("tls", tls);
      entry.finish();
      key = fmt::format("listen[{}].address", i);
    }
    if (!address->is_string()) {
      s.fail(*address, key, "expected \"HOST:PORT\" or { address = \"HOST:PORT\", tls = false }");
    }
    const std::string text = address->value<std::string>().value_or("");
    net::HostPortResult hp = net::parseHostPort(text);
    if (!hp.ok()) s.fail(*address, key, fmt::format("\"{}\": {}", text, hp.error));
    out.push_back({hp.host, hp.port, !tls});
  }
  cfg.listen = std::move(out);
}

// [[tls.sni]]: { cert, key, ocsp_response } each.
void sniCertificates(Section& s, const std::filesystem::path& base,
                     std::vector<net::CertificateFiles>& out) {
  const toml::node* n = s.find("sni");
  if (n == nullptr) return;
  const toml::array* a = n->as_array();
  if (a == nullptr) s.fail(*n, "sni", "expected [[tls.sni]] tables (cert, key, ocsp_response)");
  std::vector<net::CertificateFiles> v;
  for (size_t i = 0; i < a->size(); ++i) {
    const toml::table* t = (*a)[i].as_table();
    if (t == nullptr) s.fail((*a)[i], "sni", "expected a table (cert, key, ocsp_response)");
    Section entry(*t, fmt::format("{}sni[{}].", s.prefix(), i), s.name());
    net::CertificateFiles files;
    if (!entry.path("cert", files.cert, base)) entry.fail(*t, "cert", "missing");
    if (!entry.path("key", files.key, base)) entry.fail(*t, "key", "missing");
    entry.path("ocsp_response", files.ocsp_response, base);
    entry.finish();
    v.push_back(std::move(files));
  }
  out = std::move(v);
}

// A table of response fields, { "cache-control" = "max-age=3600", ... }
// (FilesOptions::headers, checked as the router will).
std::vector<ResponseField> responseFields(Section& s, std::string_view key) {
  const toml::node* n = s.find(key);
  if (n == nullptr) return {};
  const toml::table* t = n->as_table();
  if (t == nullptr) s.fail(*n, key, "expected a table of fields ({ \"cache-control\" = \"...\" })");
  if (t->size() > FilesOptions::kMaxFields) s.fail(*n, key, "more than 32 fields");
  std::vector<ResponseField> out;
  for (auto&& [k, v] : *t) {
    const std::string field = fmt::format("{}.{}", key, k.str());
    if (!v.is_string()) s.fail(v, field, "expected a string");
    ResponseField f{std::string(k.str()), v.value<std::string>().value_or("")};
    if (std::string_view why = responseFieldError(f.name, f.value); !why.empty()) {
      s.fail(v, field, why);
    }
    out.push_back(std::move(f));
  }
  return out;
}

// root_headers, [[mount]] (prefix, root, headers) and [error_pages].
void mountsAndErrorPages(Section& top, const std::filesystem::path& base, ServerConfig& cfg) {
  if (top.find("root_headers") != nullptr) cfg.root_headers = responseFields(top, "root_headers");
  if (const toml::node* n = top.find("mount")) {
    const toml::array* a = n->as_array();
    if (a == nullptr) top.fail(*n, "mount", "expected [[mount]] tables (prefix, root, headers)");
    std::vector<server::Mount> mounts;
    for (size_t i = 0; i < a->size(); ++i) {
      const toml::table* t = (*a)[i].as_table();
      if (t == nullptr) top.fail((*a)[i], "mount", "expected a table (prefix, root, headers)");
      Section entry(*t, fmt::format("mount[{}].", i), top.name());
      server::Mount m;
      if (!entry.string("prefix", m.prefix)) entry.fail(*t, "prefix", "missing");
      if (std::string_view why = server::mountPrefixError(m.prefix); !why.empty()) {
        entry.fail(*t->get("prefix"), "prefix", why);
      }
      for (const server::Mount& other : mounts) {
        if (server::canonicalPrefix(other.prefix) == server::canonicalPrefix(m.prefix)) {
          entry.fail(*t->get("prefix"), "prefix", fmt::format("\"{}\" is mounted twice", m.prefix));
        }
      }
      if (!entry.path("root", m.root, base)) entry.fail(*t, "root", "missing");
      m.headers = responseFields(entry, "headers");
      entry.finish();
      mounts.push_back(std::move(m));
    }
    cfg.mounts = std::move(mounts);
  }
  if (const toml::table* t = top.table("error_pages")) {
    Section s(*t, "error_pages.", top.name());
    std::map<int, std::filesystem::path> pages;
    for (auto&& [k, v] : *t) {
      const std::string key(k.str());
      int status = 0;
      const auto [end, ec] = std::from_chars(key.data(), key.data() + key.size(), status);
      if (ec != std::errc() || end != key.data() + key.size() ||
          std::find(std::begin(Router::kErrorPageStatuses), std::end(Router::kErrorPageStatuses),
                    status) == std::end(Router::kErrorPageStatuses)) {
        s.fail(v, key,
               "not a status the server answers itself (400, 403, 404, 405, 416, 500, 503)");
      }
      if (pages.count(status) != 0) s.fail(v, key, "given twice");
      s.path(key, pages[status], base);
    }
    s.finish();
    cfg.error_pages = std::move(pages);
  }
}

void apply(const toml::table& root, const std::string& name, const std::filesystem::path& base,
           ServerConfig& cfg, ProgramSettings& program) {
  Section top(root, "", name);
  listenAddresses(top, cfg);
  top.path("root", cfg.root, base);
  if (top.string("event_loop", cfg.event_loop)) {
    const auto names = ev::loopBackendNames();
    if (std::find(names.begin(), names.end(), cfg.event_loop) == names.end()) {
      top.fail(*root.get("event_loop"), "event_loop",
               fmt::format("\"{}\" is not one of: {}", cfg.event_loop, fmt::join(names, ", ")));
    }
  }
  top.integer("workers", cfg.workers, 1, 256);
  top.integer("max_connections", cfg.max_connections, 1, int64_t{1} << 24);
  top.boolean("http1", cfg.http1);
  if (top.string("log_level", program.log_level)) {
    static const std::set<std::string, std::less<>> kLevels = {"trace", "debug",    "info", "warn",
                                                               "error", "critical", "off"};
    if (kLevels.count(program.log_level) == 0) {
      top.fail(*root.get("log_level"), "log_level",
               "expected trace, debug, info, warn, error, critical or off");
    }
  }
  if (const toml::node* n = top.find("access_log")) {
    if (n->is_boolean()) {
      cfg.access_log = n->value<bool>().value_or(false);
      program.access_log_file.clear();
    } else if (n->is_string()) {
      top.path("access_log", program.access_log_file, base);
      cfg.access_log = true;
    } else {
      top.fail(*n, "access_log", "expected true, false or a file path");
    }
  }
  if (const toml::node* n = top.find("proxy_protocol_from")) {
    std::vector<net::Cidr> from;
    auto add = [&](const toml::node& e) {
      std::string error;
      std::optional<net::Cidr> c;
      if (e.is_string()) c = net::Cidr::parse(*e.value<std::string>(), &error);
      if (!c) {
        top.fail(e, "proxy_protocol_from",
                 error.empty() ? "expected a CIDR block such as \"10.0.0.0/8\"" : error);
      }
      from.push_back(*c);
    };
    if (const toml::array* a = n->as_array()) {
      for (const toml::node& e : *a)
        add(e);
    } else {
      add(*n);
    }
    cfg.proxy_protocol_from = std::move(from);
  }
  top.string("metrics_path", cfg.metrics_path);
  if (!cfg.metrics_path.empty() && cfg.metrics_path.front() != '/') {
    top.fail(*root.get("metrics_path"), "metrics_path", "expected a path starting with '/'");
  }

  if (const toml::table* t = top.table("tls")) {
    Section s(*t, "tls.", name);
    s.path("cert", cfg.cert, base);
    s.path("key", cfg.key, base);
    s.string("tls13_ciphers", cfg.tls13_ciphers);
    s.string("ciphers", cfg.tls12_ciphers);
    if (s.string("min_version", cfg.tls_min_version) && cfg.tls_min_version != "1.2" &&
        cfg.tls_min_version != "1.3") {
      s.fail(*t->get("min_version"), "min_version", "expected \"1.2\" or \"1.3\"");
    }
    s.paths("ticket_keys", cfg.tls_ticket_key_files, base);
    s.path("ocsp_response", cfg.tls_ocsp_response, base);
    sniCertificates(s, base, cfg.sni_certificates);
    s.finish();
  }
  if (const toml::table* t = top.table("limits")) {
    Section s(*t, "limits.", name);
    s.integer("max_concurrent_streams", cfg.session.max_concurrent_streams, 1, 100'000);
    if (s.integer("output_high_watermark", cfg.output_high_watermark, 16 * 1024, 16 << 20)) {
      cfg.output_low_watermark = cfg.output_high_watermark / 4;
    }
    s.integer("kernel_unsent_limit", cfg.kernel_unsent_limit, 0, 64 << 20);
    s.integer("stream_write_bound", cfg.stream_write_bound, 1024, int64_t{1} << 30);
    s.finish();
  }
  if (const toml::table* t = top.table("timeouts")) {
    Section s(*t, "timeouts.", name);
    s.seconds("handshake", cfg.handshake_timeout);
    s.seconds("header", cfg.header_timeout);
    s.seconds("idle", cfg.idle_timeout);
    s.seconds("write", cfg.write_timeout);
    s.seconds("drain", cfg.drain_timeout);
    s.seconds("response", cfg.response_timeout, /*zero_ok=*/true);
    s.finish();
  }
  if (const toml::table* t = top.table("static")) {
    Section s(*t, "static.", name);
    s.boolean("ranges", cfg.static_files.ranges);
    s.integer("max_ranges", cfg.static_files.max_ranges, 0, 10'000);
    s.boolean("precompressed", cfg.static_files.precompressed);
    server::StaticFilesOptions& o = cfg.static_files;
    s.boolean("compress", o.compress);
    s.integer("compress_min_size", o.compress_min_size, 0, int64_t{1} << 30);
    s.integer("compress_max_size", o.compress_max_size, 0, int64_t{64} << 20);
    s.integer("compress_budget", o.compress_budget, 0, int64_t{1} << 40);
    s.integer("gzip_level", o.gzip_level, 1, 9);
    s.integer("brotli_quality", o.brotli_quality, 0, 11);
    if (const toml::node* n = s.find("compress_types")) {
      const toml::array* a = n->as_array();
      if (a == nullptr) s.fail(*n, "compress_types", "expected a list of media types");
      o.compress_types.clear();
      for (const toml::node& e : *a) {
        const std::string v = e.value<std::string>().value_or("");
        if (!e.is_string() || v.find('/') == std::string::npos || v.front() == '/') {
          s.fail(e, "compress_types", "expected a media type (\"text/css\", \"text/*\")");
        }
        o.compress_types.push_back(v);
      }
    }
    s.finish();
  }
  if (const toml::table* t = top.table("websocket")) {
    Section s(*t, "websocket.", name);
    WebSocketOptions& w = cfg.websocket_options;
    s.string("echo", cfg.websocket_echo);
    if (!cfg.websocket_echo.empty() && cfg.websocket_echo.front() != '/') {
      s.fail(*t->get("echo"), "echo", "expected a path starting with '/'");
    }
    s.integer("max_message", w.max_message, 125, int64_t{1} << 30);
    s.integer("send_bound", w.send_bound, 1024, int64_t{1} << 30);
    s.seconds("ping_interval", w.ping_interval);
    s.seconds("pong_timeout", w.pong_timeout);
    s.finish();
  }
  mountsAndErrorPages(top, base, cfg);
  top.finish();
}

double secs(std::chrono::milliseconds ms) {
  return static_cast<double>(ms.count()) / 1000.0;
}

std::string hostPort(const server::ListenAddress& l) {
  const bool v6 = l.host.find(':') != std::string::npos;
  return fmt::format("{}{}{}:{}", v6 ? "[" : "", l.host.empty() ? "0.0.0.0" : l.host, v6 ? "]" : "",
                     l.port);
}

}  // namespace

void applyConfigText(std::string_view text, const std::string& name,
                     const std::filesystem::path& base, ServerConfig& cfg,
                     ProgramSettings& program) {
  toml::table root;
  try {
    root = toml::parse(text, name);
  } catch (const toml::parse_error& e) {
    throw ConfigError(fmt::format("{}: {}", where(name, e.source()), e.description()));
  }
  // All or nothing: a file that fails halfway changes nothing (a reload
  // keeps the running configuration whole).
  ServerConfig c = cfg;
  ProgramSettings p = program;
  apply(root, name, base, c, p);
  cfg = std::move(c);
  program = std::move(p);
}

void applyConfigFile(const std::filesystem::path& file, ServerConfig& cfg,
                     ProgramSettings& program) {
  std::FILE* f = std::fopen(file.c_str(), "rb");
  if (f == nullptr) {
    throw ConfigError(fmt::format("{}: cannot read: {}", file.string(), std::strerror(errno)));
  }
  std::string text;
  char buf[8192];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) {
    text.append(buf, n);
    if (text.size() > (size_t{4} << 20)) {
      std::fclose(f);
      throw ConfigError(fmt::format("{}: larger than 4 MiB", file.string()));
    }
  }
  const bool error = std::ferror(f) != 0;
  std::fclose(f);
  if (error) throw ConfigError(fmt::format("{}: read error", file.string()));
  std::filesystem::path base = std::filesystem::absolute(file).parent_path();
  applyConfigText(text, file.string(), base, cfg, program);
}

std::string effectiveConfig(const ServerConfig& cfg, const ProgramSettings& program) {
  toml::array listen;
  for (const server::ListenAddress& l : cfg.listen) {
    if (l.cleartext) {
      listen.push_back(toml::table{{"address", hostPort(l)}, {"tls", false}});
    } else {
      listen.push_back(hostPort(l));
    }
  }
  toml::table top;
  top.insert("listen", std::move(listen));
  top.insert("root", cfg.root.string());
  auto fields = [](const std::vector<ResponseField>& v) {
    toml::table t;
    for (const ResponseField& f : v)
      t.insert(f.name, f.value);
    t.is_inline(true);
    return t;
  };
  if (!cfg.root_headers.empty()) top.insert("root_headers", fields(cfg.root_headers));
  toml::array mounts;
  for (const server::Mount& m : cfg.mounts) {
    mounts.push_back(toml::table{
        {"prefix", m.prefix}, {"root", m.root.string()}, {"headers", fields(m.headers)}});
  }
  if (!mounts.empty()) top.insert("mount", std::move(mounts));
  toml::table pages;
  for (const auto& [status, file] : cfg.error_pages)
    pages.insert(std::to_string(status), file.string());
  top.insert("error_pages", std::move(pages));
  top.insert("event_loop", cfg.event_loop);
  top.insert("workers", static_cast<int64_t>(cfg.workers));
  top.insert("max_connections", static_cast<int64_t>(cfg.max_connections));
  top.insert("http1", cfg.http1);
  top.insert("log_level", program.log_level);
  if (cfg.access_log && !program.access_log_file.empty()) {
    top.insert("access_log", program.access_log_file.string());
  } else {
    top.insert("access_log", cfg.access_log);
  }
  top.insert("metrics_path", cfg.metrics_path);
  toml::array proxy;
  for (const net::Cidr& c : cfg.proxy_protocol_from)
    proxy.push_back(c.toString());
  top.insert("proxy_protocol_from", std::move(proxy));

  toml::table tls;
  if (!cfg.cert.empty()) tls.insert("cert", cfg.cert.string());
  if (!cfg.key.empty()) tls.insert("key", cfg.key.string());
  tls.insert("tls13_ciphers", cfg.tls13_ciphers);
  tls.insert("ciphers", cfg.tls12_ciphers);
  tls.insert("min_version", cfg.tls_min_version);
  toml::array tickets;
  for (const std::filesystem::path& p : cfg.tls_ticket_key_files)
    tickets.push_back(p.string());
  tls.insert("ticket_keys", std::move(tickets));
  if (!cfg.tls_ocsp_response.empty()) tls.insert("ocsp_response", cfg.tls_ocsp_response.string());
  toml::array sni;
  for (const net::CertificateFiles& c : cfg.sni_certificates) {
    toml::table t{{"cert", c.cert.string()}, {"key", c.key.string()}};
    if (!c.ocsp_response.empty()) t.insert("ocsp_response", c.ocsp_response.string());
    sni.push_back(std::move(t));
  }
  if (!sni.empty()) tls.insert("sni", std::move(sni));
  top.insert("tls", std::move(tls));

  toml::table limits;
  limits.insert("max_concurrent_streams", static_cast<int64_t>(cfg.session.max_concurrent_streams));
  limits.insert("output_high_watermark", static_cast<int64_t>(cfg.output_high_watermark));
  limits.insert("kernel_unsent_limit", static_cast<int64_t>(cfg.kernel_unsent_limit));
  limits.insert("stream_write_bound", static_cast<int64_t>(cfg.stream_write_bound));
  top.insert("limits", std::move(limits));

  toml::table timeouts;
  timeouts.insert("handshake", secs(cfg.handshake_timeout));
  timeouts.insert("header", secs(cfg.header_timeout));
  timeouts.insert("idle", secs(cfg.idle_timeout));
  timeouts.insert("write", secs(cfg.write_timeout));
  timeouts.insert("drain", secs(cfg.drain_timeout));
  timeouts.insert("response", secs(cfg.response_timeout));
  top.insert("timeouts", std::move(timeouts));

  toml::table files;
  files.insert("ranges", cfg.static_files.ranges);
  files.insert("max_ranges", static_cast<int64_t>(cfg.static_files.max_ranges));
  files.insert("precompressed", cfg.static_files.precompressed);
  files.insert("compress", cfg.static_files.compress);
  files.insert("compress_min_size", static_cast<int64_t>(cfg.static_files.compress_min_size));
  files.insert("compress_max_size", static_cast<int64_t>(cfg.static_files.compress_max_size));
  files.insert("compress_budget", static_cast<int64_t>(cfg.static_files.compress_budget));
  files.insert("gzip_level", static_cast<int64_t>(cfg.static_files.gzip_level));
  files.insert("brotli_quality", static_cast<int64_t>(cfg.static_files.brotli_quality));
  toml::array types;
  for (const std::string& t : cfg.static_files.compress_types)
    types.push_back(t);
  files.insert("compress_types", std::move(types));
  top.insert("static", std::move(files));

  const WebSocketOptions& w = cfg.websocket_options;
  toml::table ws;
  ws.insert("echo", cfg.websocket_echo);
  ws.insert("max_message", static_cast<int64_t>(w.max_message));
  ws.insert("send_bound", static_cast<int64_t>(w.send_bound));
  ws.insert("ping_interval", secs(w.ping_interval));
  ws.insert("pong_timeout", secs(w.pong_timeout));
  top.insert("websocket", std::move(ws));

  std::ostringstream out;
  out << top << '\n';
  return out.str();
}

}  // namespace h2loop::config
