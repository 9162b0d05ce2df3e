// Mounts (several document roots, each with its response fields), the custom
// error pages and the server's OPTIONS answers: what the router accepts, how a
// request is matched, which page an error answer gets, and the binary's
// command-line flags over its configuration file.
#include "server/mounts.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include <gtest/gtest.h>

#include "http/route_table.h"

namespace h2loop::server {
namespace {

namespace fs = std::filesystem;

// ---- response fields -------------------------------------------------------

TEST(ResponseFields, ValidFieldsPass) {
  EXPECT_EQ(responseFieldError("cache-control", "max-age=3600"), "");
  EXPECT_EQ(responseFieldError("x-frame-options", "DENY"), "");
  EXPECT_EQ(responseFieldError("strict-transport-security", "max-age=63072000; preload"), "");
  EXPECT_EQ(responseFieldError("x-a!#$%&'*+-.^_`|~9", "v\tw"), "");
  EXPECT_EQ(responseFieldError("x-empty", ""), "");
  EXPECT_EQ(responseFieldError("x-obs-text", "caf\xc3\xa9"), "");
}

TEST(ResponseFields, NamesAreLowercaseTokens) {
  EXPECT_EQ(responseFieldError("", "v"), "empty field name");
  EXPECT_EQ(responseFieldError("Cache-Control", "v"), "field names are lowercase");
  for (const char* bad : {"a b", "a:b", ":status", "a\r\nb", "a\"b", "a(b)", "a/b", "a=b", "é"}) {
    EXPECT_EQ(responseFieldError(bad, "v"), "field name is not a token (RFC 9110 §5.6.2)") << bad;
  }
}

TEST(ResponseFields, TheServersOwnFieldsAreRefused) {
  for (const char* own :
       {"content-length", "content-type", "content-encoding", "content-range", "accept-ranges",
        "etag", "last-modified", "date", "server", "vary", "allow", "connection", "keep-alive",
        "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer"}) {
    EXPECT_EQ(responseFieldError(own, "x"), "the server sets this field itself") << own;
  }
  EXPECT_EQ(responseFieldError("content-language", "en"), "");  // not the server's
}

TEST(ResponseFields, ValuesCarryNoLineBreaksOrControls) {
  EXPECT_EQ(responseFieldError("x", "a\rb"), "CR, LF or NUL in the value");
  EXPECT_EQ(responseFieldError("x", "a\nset-cookie: b"), "CR, LF or NUL in the value");
  EXPECT_EQ(responseFieldError("x", std::string_view("a\0b", 3)), "CR, LF or NUL in the value");
  EXPECT_EQ(responseFieldError("x", "a\x01"), "control character in the value");
  EXPECT_EQ(responseFieldError("x", "a\x7f"), "control character in the value");
  EXPECT_EQ(responseFieldError("x", " a"), "leading or trailing whitespace in the value");
  EXPECT_EQ(responseFieldError("x", "a\t"), "leading or trailing whitespace in the value");
}

TEST(ResponseFields, LengthIsBounded) {
  const std::string name = "x-long";
  std::string value(FilesOptions::kMaxFieldBytes - name.size(), 'v');
  EXPECT_EQ(responseFieldError(name, value), "");
  value += 'v';
  EXPECT_EQ(responseFieldError(name, value), "field longer than 4096 bytes (name and value)");
}

// ---- the router --------------------------------------------------------------

std::string filesError(const std::string& prefix, FilesOptions options, Router r = {}) {
  try {
    r.files(prefix, "/srv", std::move(options));
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(Router, FilesRefusesBadPrefixesAndFields) {
  EXPECT_EQ(filesError("assets", {}), "files(\"assets\"): the prefix must start with '/'");
  EXPECT_EQ(filesError("", {}), "files(\"\"): the prefix must start with '/'");
  Router r;
  r.files("/a", "/srv");
  EXPECT_EQ(filesError("/a/", {}, r), "files(\"/a/\"): already mounted");
  EXPECT_EQ(filesError("/a", {}, r), "files(\"/a/\"): already mounted");
  EXPECT_EQ(filesError("/b", {{{"cache-control", "x"}, {"cache-control", "y"}}}),
            "files(\"/b/\"): cache-control: field given twice");
  EXPECT_EQ(filesError("/b", {{{"Vary", "x"}}}), "files(\"/b/\"): Vary: field names are lowercase");
  EXPECT_EQ(filesError("/b", {{{"etag", "x"}}}),
            "files(\"/b/\"): etag: the server sets this field itself");
  FilesOptions many;
  for (size_t i = 0; i < FilesOptions::kMaxFields; ++i)
    many.headers.push_back({"x-" + std::to_string(i), "v"});
  EXPECT_EQ(filesError("/b", many), "");
  many.headers.push_back({"x-one-more", "v"});
  EXPECT_EQ(filesError("/b", many), "files(\"/b/\"): more than 32 header fields");
}

TEST(Router, FilesKeepsItsFields) {
  Router r;
  r.files("/assets", "/srv/assets", {{{"cache-control", "max-age=3600"}}});
  ASSERT_EQ(r.routes().size(), 1u);
  EXPECT_EQ(r.routes()[0].path, "/assets/");
  ASSERT_EQ(r.routes()[0].headers.size(), 1u);
  EXPECT_EQ(r.routes()[0].headers[0].value, "max-age=3600");
}

TEST(RouteTable, TheLongestMountWins) {
  Router r;
  r.files("/", "/srv/www");
  r.files("/assets", "/srv/assets");
  r.files("/assets/img", "/srv/img");
  const http::RouteTable t(std::move(r));
  auto root = [&](std::string_view path) {
    const http::RouteMatch m = t.match("GET", path);
    return m.route != nullptr ? m.route->root.string() : std::string("none");
  };
  EXPECT_EQ(root("/"), "/srv/www");
  EXPECT_EQ(root("/index.html"), "/srv/www");
  EXPECT_EQ(root("/assets/a.css"), "/srv/assets");
  EXPECT_EQ(root("/assets/img/x.png"), "/srv/img");
  EXPECT_EQ(root("/assets/imgx.png"), "/srv/assets");  // a directory, not a string prefix
  EXPECT_EQ(root("/assetsx"), "/srv/www");
  EXPECT_EQ(root("/assets"),
            "/srv/www");  // without the slash: root's (as nginx's location /assets/)
  EXPECT_EQ(root("x"), "none");
}

TEST(RouteTable, OptionsIsTheServersUnlessARouteTakesIt) {
  Router r;
  r.files("/", "/srv/www");
  r.metrics("/metrics");
  r.route("POST", "/api/items", [](const Request&, Response) {});
  r.route("GET", "/api/items", [](const Request&, Response) {});
  r.route("OPTIONS", "/api/cors", [](const Request&, Response) {});
  r.route("", "/any", [](const Request&, Response) {});
  r.route("DELETE", "/gone", [](const Request&, Response) {});
  const http::RouteTable t(std::move(r));

  http::RouteMatch m = t.match("OPTIONS", "*");
  EXPECT_TRUE(m.options);
  EXPECT_EQ(m.allow, "GET, HEAD, POST, OPTIONS, DELETE");
  m = t.match("OPTIONS", "/a/file.html");  // the files route: the server answers
  EXPECT_TRUE(m.options);
  EXPECT_EQ(m.route, nullptr);
  EXPECT_EQ(m.allow, "GET, HEAD, OPTIONS");
  m = t.match("OPTIONS", "/metrics");
  EXPECT_TRUE(m.options);
  EXPECT_EQ(m.allow, "GET, HEAD, OPTIONS");
  m = t.match("OPTIONS", "/api/items");
  EXPECT_TRUE(m.options);
  EXPECT_EQ(m.allow, "POST, GET, OPTIONS");
  m = t.match("OPTIONS", "/api/cors");  // the application's own preflight
  ASSERT_NE(m.route, nullptr);
  EXPECT_EQ(m.route->method, "OPTIONS");
  m = t.match("OPTIONS", "/any");
  ASSERT_NE(m.route, nullptr);
  EXPECT_FALSE(m.options);
  // A 405 names OPTIONS too.
  m = t.match("PUT", "/api/items");
  EXPECT_TRUE(m.method_not_allowed);
  EXPECT_EQ(m.allow, "POST, GET, OPTIONS");
  m = t.match("GET", "/gone");
  EXPECT_EQ(m.allow, "DELETE, OPTIONS");
  // "*" is for OPTIONS only: anything else there finds no route.
  m = t.match("GET", "*");
  EXPECT_EQ(m.route, nullptr);
  EXPECT_FALSE(m.options);
  EXPECT_FALSE(m.method_not_allowed);
}

TEST(RouteTable, OptionsWithoutRoutesIsA404) {
  Router r;
  r.route("GET", "/only", [](const Request&, Response) {});
  const http::RouteTable t(std::move(r));
  const http::RouteMatch m = t.match("OPTIONS", "/elsewhere");
  EXPECT_EQ(m.route, nullptr);
  EXPECT_FALSE(m.options);
  EXPECT_FALSE(m.method_not_allowed);
  EXPECT_EQ(t.match("OPTIONS", "*").allow, "GET, OPTIONS");
}

// ---- error pages -----------------------------------------------------------

TEST(ErrorPages, OnlyTheServersOwnStatuses) {
  Router r;
  for (int status : Router::kErrorPageStatuses)
    EXPECT_NO_THROW(r.errorPage(status, "text/html", "x"));
  for (int status : {200, 204, 206, 301, 304, 401, 408, 413, 418, 431, 502, 504, 0, -1}) {
    EXPECT_THROW(r.errorPage(status, "text/html", "x"), std::invalid_argument) << status;
  }
  EXPECT_THROW(r.errorPage(404, "text/html\r\nx: y", "x"), std::invalid_argument);
  EXPECT_THROW(r.errorPage(404, "", "x"), std::invalid_argument);
}

TEST(ErrorPages, TheTableChoosesByStatus) {
  Router r;
  r.errorPage(404, "text/html", "first");
  r.errorPage(403, "text/plain", "forbidden page");
  r.errorPage(404, "text/html; charset=utf-8", "second");  // replaces
  ASSERT_EQ(r.errorPages().size(), 2u);
  const http::RouteTable t(std::move(r));
  ASSERT_NE(t.errorPage(404), nullptr);
  EXPECT_EQ(t.errorPage(404)->body, "second");
  EXPECT_EQ(t.errorPage(404)->content_type, "text/html; charset=utf-8");
  EXPECT_EQ(t.errorPage(403)->body, "forbidden page");
  EXPECT_EQ(t.errorPage(405), nullptr);
  EXPECT_EQ(t.errorPage(304), nullptr);
  EXPECT_EQ(t.errorPage(200), nullptr);
}

class Files : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("h2loop-mounts-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "www");
    fs::create_directories(dir_ / "assets");
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path write(const std::string& name, const std::string& content) {
    std::ofstream(dir_ / name, std::ios::binary) << content;
    return dir_ / name;
  }
  ServerConfig config() {
    ServerConfig c;
    c.root = dir_ / "www";
    return c;
  }
  fs::path dir_;
};

TEST_F(Files, AnErrorPageIsReadWithItsType) {
  const Router::ErrorPage p = loadErrorPage(404, write("404.html", "<h1>gone</h1>"));
  EXPECT_EQ(p.status, 404);
  EXPECT_EQ(p.body, "<h1>gone</h1>");
  EXPECT_EQ(p.content_type, "text/html; charset=utf-8");
  EXPECT_EQ(loadErrorPage(500, write("oops.txt", "x")).content_type, "text/plain; charset=utf-8");
  EXPECT_EQ(loadErrorPage(500, write("oops", "x")).content_type, "application/octet-stream");
}

TEST_F(Files, AnErrorPageIsBounded) {
  EXPECT_EQ(loadErrorPage(404, write("max.html", std::string(kMaxErrorPageBytes, 'x'))).body.size(),
            kMaxErrorPageBytes);
  try {
    (void)loadErrorPage(404, write("big.html", std::string(kMaxErrorPageBytes + 1, 'x')));
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()),
              "error page 404: " + (dir_ / "big.html").string() + ": larger than 64 KiB");
  }
}

TEST_F(Files, AMissingErrorPageIsAnError) {
  try {
    (void)loadErrorPage(403, dir_ / "none.html");
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()),
              "error page 403: " + (dir_ / "none.html").string() + ": No such file or directory");
  }
  // A directory, a FIFO (whose read would block start-up), a device: refused unopened.
  try {
    (void)loadErrorPage(403, dir_ / "www");
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()),
              "error page 403: " + (dir_ / "www").string() + ": not a regular file");
  }
}

TEST_F(Files, TheBinarysRouterHasEveryMount) {
  ServerConfig c = config();
  c.metrics_path = "/metrics";
  c.root_headers = {{"cache-control", "no-cache"}};
  c.mounts = {{"/assets", dir_ / "assets", {{"cache-control", "max-age=3600"}}}};
  c.error_pages[404] = write("404.html", "page");
  const Router r = routerFor(c);
  const http::RouteTable t(r);
  const http::RouteMatch a = t.match("GET", "/assets/a.css");
  ASSERT_NE(a.route, nullptr);
  EXPECT_EQ(a.route->headers, (std::vector<ResponseField>{{"cache-control", "max-age=3600"}}));
  const http::RouteMatch w = t.match("GET", "/a.css");
  ASSERT_NE(w.route, nullptr);
  EXPECT_EQ(w.route->headers, (std::vector<ResponseField>{{"cache-control", "no-cache"}}));
  EXPECT_EQ(t.match("GET", "/metrics").route->kind, Router::Route::Kind::kMetrics);
  ASSERT_NE(t.errorPage(404), nullptr);
  EXPECT_EQ(t.errorPage(404)->body, "page");
}

std::string routerError(const ServerConfig& c) {
  try {
    (void)routerFor(c);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

TEST_F(Files, TheBinarysRouterChecksWhatItServes) {
  ServerConfig c = config();
  c.mounts = {{"/assets", dir_ / "nowhere", {}}};
  EXPECT_EQ(routerError(c),
            "mount /assets: root " + (dir_ / "nowhere").string() + ": not a directory");
  c.mounts = {{"/a", dir_ / "assets", {}}, {"/a/", dir_ / "assets", {}}};
  EXPECT_EQ(routerError(c), "mount /a/: files(\"/a/\"): already mounted");
  c.mounts = {{"/", dir_ / "assets", {}}};
  EXPECT_EQ(routerError(c), "mount /: \"/\" is the root's mount (root, root_headers)");
  c.mounts = {{"/a", dir_ / "assets", {{"server", "x"}}}};
  EXPECT_EQ(routerError(c), "mount /a: files(\"/a/\"): server: the server sets this field itself");
  c.mounts.clear();
  c.error_pages[500] = dir_ / "none.html";
  EXPECT_EQ(routerError(c),
            "error page 500: " + (dir_ / "none.html").string() + ": No such file or directory");
}

// ---- the command line over the file -----------------------------------------

std::string flagsError(ServerConfig& c, const std::vector<std::string>& mounts,
                       const std::vector<std::string>& headers = {},
                       const std::vector<std::string>& pages = {}) {
  try {
    applyMountFlags(c, mounts, headers, pages);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(MountFlags, EachFlagWinsForItsKey) {
  ServerConfig c;
  c.mounts = {{"/a", "/file/a", {{"cache-control", "max-age=1"}, {"x-keep", "1"}}},
              {"/b", "/file/b", {}}};
  c.error_pages = {{404, "/file/404.html"}, {403, "/file/403.html"}};
  EXPECT_EQ(flagsError(c, {"/a/=/flag/a", "/c=/flag/c"},
                       {"/a=cache-control: max-age=2", "/=x-root:yes", "/c=x-c: c"},
                       {"404=/flag/404.html"}),
            "");
  ASSERT_EQ(c.mounts.size(), 3u);
  EXPECT_EQ(c.mounts[0],
            (Mount{"/a", "/flag/a", {{"cache-control", "max-age=2"}, {"x-keep", "1"}}}));
  EXPECT_EQ(c.mounts[1], (Mount{"/b", "/file/b", {}}));
  EXPECT_EQ(c.mounts[2], (Mount{"/c", "/flag/c", {{"x-c", "c"}}}));
  EXPECT_EQ(c.root_headers, (std::vector<ResponseField>{{"x-root", "yes"}}));
  EXPECT_EQ(c.error_pages.at(404), "/flag/404.html");
  EXPECT_EQ(c.error_pages.at(403), "/file/403.html");
}

TEST(MountFlags, MistakesAreRefused) {
  ServerConfig c;
  EXPECT_EQ(flagsError(c, {"/a"}), "--mount /a: expected PREFIX=DIR");
  EXPECT_EQ(flagsError(c, {"/a="}), "--mount /a=: expected PREFIX=DIR");
  EXPECT_EQ(flagsError(c, {"a=/x"}), "--mount a=/x: expected a path starting with '/'");
  EXPECT_EQ(flagsError(c, {"/=/x"}),
            "--mount /=/x: \"/\" is the root's mount (root, root_headers)");
  EXPECT_EQ(flagsError(c, {"/a?b=/x"}), "--mount /a?b=/x: a prefix has no '?' or '#'");
  EXPECT_EQ(flagsError(c, {"/a=/x", "/a/=/y"}), "--mount /a/=/y: the prefix is mounted twice");
  c = {};
  EXPECT_EQ(flagsError(c, {}, {"/z=x:y"}), "--mount-header /z=x:y: no mount at that prefix");
  EXPECT_EQ(flagsError(c, {}, {"/=x"}), "--mount-header /=x: expected PREFIX=NAME:VALUE");
  EXPECT_EQ(flagsError(c, {}, {"/=X-A: b"}), "--mount-header /=X-A: b: field names are lowercase");
  EXPECT_EQ(flagsError(c, {}, {"/=date: b"}),
            "--mount-header /=date: b: the server sets this field itself");
  EXPECT_EQ(flagsError(c, {}, {}, {"418=/x"}),
            "--error-page 418=/x: not a status the server answers itself (400, 403, 404, 405, "
            "416, 500, 503)");
  EXPECT_EQ(flagsError(c, {}, {}, {"404"}), "--error-page 404: expected STATUS=FILE");
  EXPECT_EQ(flagsError(c, {}, {}, {"4o4=/x"}), "--error-page 4o4=/x: expected STATUS=FILE");
  c = {};
  std::vector<std::string> many;
  for (size_t i = 0; i < FilesOptions::kMaxFields; ++i)
    many.push_back("/=x-" + std::to_string(i) + ": v");
  EXPECT_EQ(flagsError(c, {}, many), "");
  many.push_back("/=x-more: v");
  EXPECT_EQ(flagsError(c, {}, many),
            "--mount-header /=x-more: v: more than 32 fields on that mount");
}

}  // namespace
}  // namespace h2loop::server
