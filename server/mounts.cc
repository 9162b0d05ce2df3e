#include "server/mounts.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "h2loop/websocket.h"
#include "server/mime_types.h"

namespace h2loop::server {

std::string_view mountPrefixError(std::string_view prefix) {
  if (prefix.empty() || prefix.front() != '/') return "expected a path starting with '/'";
  if (prefix == "/") return "\"/\" is the root's mount (root, root_headers)";
  for (char c : prefix) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '?' || c == '#') return "a prefix has no '?' or '#'";
    if (u <= 0x20 || u == 0x7f) return "whitespace or a control character in the prefix";
  }
  return {};
}

std::string canonicalPrefix(std::string_view prefix) {
  std::string p(prefix);
  if (p.empty() || p.back() != '/') p += '/';
  return p;
}

Router::ErrorPage loadErrorPage(int status, const std::filesystem::path& file) {
  auto fail = [&](std::string_view why) {
    return std::runtime_error(fmt::format("error page {}: {}: {}", status, file.string(), why));
  };
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec)) {
    throw fail(ec ? ec.message() : std::string("not a regular file"));
  }
  std::FILE* f = std::fopen(file.c_str(), "rb");
  if (f == nullptr) throw fail(std::strerror(errno));
  Router::ErrorPage page;
  page.status = status;
  page.content_type = mimeTypeForPath(file.filename().string());
  char buf[8192];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) {
    page.body.append(buf, n);
    if (page.body.size() > kMaxErrorPageBytes) {
      std::fclose(f);
      throw fail(fmt::format("larger than {} KiB", kMaxErrorPageBytes / 1024));
    }
  }
  const bool error = std::ferror(f) != 0;
  std::fclose(f);
  if (error) throw fail("read error");
  return page;
}

void applyMountFlags(ServerConfig& cfg, const std::vector<std::string>& mounts,
                     const std::vector<std::string>& headers,
                     const std::vector<std::string>& error_pages) {
  auto refuse = [](std::string_view flag, std::string_view value, std::string_view why) {
    return std::invalid_argument(fmt::format("{} {}: {}", flag, value, why));
  };
  std::vector<std::string> seen;
  for (const std::string& v : mounts) {
    const size_t eq = v.find('=');
    if (eq == std::string::npos || eq + 1 == v.size())
      throw refuse("--mount", v, "expected PREFIX=DIR");
    const std::string prefix = v.substr(0, eq);
    if (std::string_view why = mountPrefixError(prefix); !why.empty()) {
      throw refuse("--mount", v, why);
    }
    const std::string canonical = canonicalPrefix(prefix);
    if (std::find(seen.begin(), seen.end(), canonical) != seen.end()) {
      throw refuse("--mount", v, "the prefix is mounted twice");
    }
    seen.push_back(canonical);
    auto it = std::find_if(cfg.mounts.begin(), cfg.mounts.end(),
                           [&](const Mount& m) { return canonicalPrefix(m.prefix) == canonical; });
    if (it != cfg.mounts.end()) {
      it->root = v.substr(eq + 1);
    } else {
      cfg.mounts.push_back({prefix, v.substr(eq + 1), {}});
    }
  }
  for (const std::string& v : headers) {
    const size_t eq = v.find('=');
    const size_t colon = eq == std::string::npos ? eq : v.find(':', eq);
    if (colon == std::string::npos) throw refuse("--mount-header", v, "expected PREFIX=NAME:VALUE");
    const std::string prefix = v.substr(0, eq);
    const std::string name = v.substr(eq + 1, colon - eq - 1);
    std::string_view value = std::string_view(v).substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
      value.remove_prefix(1);
    std::vector<ResponseField>* fields = nullptr;
    if (prefix == "/") {
      fields = &cfg.root_headers;
    } else {
      for (Mount& m : cfg.mounts) {
        if (canonicalPrefix(m.prefix) == canonicalPrefix(prefix)) fields = &m.headers;
      }
    }
    if (fields == nullptr) throw refuse("--mount-header", v, "no mount at that prefix");
    if (std::string_view why = responseFieldError(name, value); !why.empty()) {
      throw refuse("--mount-header", v, why);
    }
    auto it = std::find_if(fields->begin(), fields->end(),
                           [&](const ResponseField& f) { return f.name == name; });
    if (it != fields->end()) {
      it->value = value;
    } else if (fields->size() == FilesOptions::kMaxFields) {
      throw refuse("--mount-header", v, "more than 32 fields on that mount");
    } else {
      fields->push_back({name, std::string(value)});
    }
  }
  for (const std::string& v : error_pages) {
    const size_t eq = v.find('=');
    int status = 0;
    const auto [end, ec] =
        std::from_chars(v.data(), v.data() + (eq == std::string::npos ? 0 : eq), status);
    if (eq == std::string::npos || eq + 1 == v.size() || ec != std::errc() ||
        end != v.data() + eq) {
      throw refuse("--error-page", v, "expected STATUS=FILE");
    }
    if (std::find(std::begin(Router::kErrorPageStatuses), std::end(Router::kErrorPageStatuses),
                  status) == std::end(Router::kErrorPageStatuses)) {
      throw refuse("--error-page", v,
                   "not a status the server answers itself (400, 403, 404, 405, 416, 500, 503)");
    }
    cfg.error_pages[status] = v.substr(eq + 1);
  }
}

Router routerFor(const ServerConfig& cfg) {
  Router r;
  if (!cfg.metrics_path.empty()) r.metrics(cfg.metrics_path);
  if (!cfg.websocket_echo.empty()) {
    // Every message comes back as it came (text or binary). One answer
    // per message: the WebSocket reads on only once the previous answers
    // left, so send() is never refused here.
    r.websocket(cfg.websocket_echo,
                {.on_message = [](WebSocket& ws, WebSocket::Type type,
                                  std::string_view data) { (void)ws.send(type, data); }},
                cfg.websocket_options);
  }
  auto mount = [&r](std::string_view prefix, const std::filesystem::path& root,
                    const std::vector<ResponseField>& headers) {
    std::error_code ec;
    if (!std::filesystem::is_directory(root, ec)) {
      throw std::runtime_error(
          fmt::format("mount {}: root {}: not a directory", prefix, root.string()));
    }
    try {
      r.files(std::string(prefix), root, FilesOptions{headers});
    } catch (const std::invalid_argument& e) {
      throw std::runtime_error(fmt::format("mount {}: {}", prefix, e.what()));
    }
  };
  mount("/", cfg.root, cfg.root_headers);
  for (const Mount& m : cfg.mounts) {
    if (std::string_view why = mountPrefixError(m.prefix); !why.empty()) {
      throw std::runtime_error(fmt::format("mount {}: {}", m.prefix, why));
    }
    mount(m.prefix, m.root, m.headers);
  }
  for (const auto& [status, file] : cfg.error_pages) {
    Router::ErrorPage page = loadErrorPage(status, file);
    try {
      r.errorPage(status, std::move(page.content_type), std::move(page.body));
    } catch (const std::invalid_argument& e) {
      throw std::runtime_error(e.what());
    }
  }
  return r;
}

}  // namespace h2loop::server
