#pragma once
// h2loop's application API: routes, requests, and the reference-counted
// response handle. Protocol-neutral: nothing here is HTTP/2-specific, so an
// HTTP/1.1 front end can serve the same handlers.
//
// Threads. A request lives on the loop of the worker that accepted its
// connection. Handlers and every callback (body chunks, writable, close) run
// on that loop's thread. A Response handle may be copied, moved and used from
// any thread: an operation from another thread is carried to the owning loop
// (its Status then means "queued"; what happened is told by onClose()).
// Request is a view for the loop thread only.
//
// Lifetime. A Response handle keeps the request's pooled stream alive; after
// the client reset the stream, the connection closed, the response timed out
// or the server shut down, every operation returns Status::kClosed and
// touches nothing freed. The pooled slot returns when both the connection and
// the last handle have let go.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace h2loop {

namespace ev {
class Loop;
}
namespace http::detail {
class Exchange;
class WebSocketSession;
}  // namespace http::detail
struct WebSocketHandlers;
struct WebSocketOptions;

// Result of an operation on a Response.
enum class Status : uint8_t {
  kOk,                // done (or, from another thread, queued)
  kWouldBlock,        // write(): the stream's output bound is reached; wait for onWritable()
  kClosed,            // the request is over (reset, connection gone, timeout, shutdown)
  kAlreadyResponded,  // respond()/start() after a response was started
  kNotStarted,        // write()/end() before start()
  kInvalid,           // bad status code or header, unreadable file
};
std::string_view toString(Status s);

// Why a request ended, told once to onClose().
enum class CloseReason : uint8_t {
  kCompleted,         // the response was sent in full
  kReset,             // the client reset the stream (RST_STREAM)
  kConnectionClosed,  // the connection ended first (EOF, RST, error, idle timeout)
  kTimeout,           // no response within the response timeout (a 504 went out)
  kShutdown,          // the server shut down
  kAborted,           // the handler reset it (reset(), a throw after start())
};
std::string_view toString(CloseReason r);

// One header field. The views need only live for the call they are passed to.
// Names are sent lowercase (HTTP/2); give them lowercase.
struct Header {
  std::string_view name;
  std::string_view value;
};
using Headers = std::vector<Header>;

// The request, as received. A view: valid during the handler call, and on the
// loop thread while a Response handle to it is held. Copy what another thread
// needs.
class Request {
 public:
  [[nodiscard]] std::string_view method() const;
  // The :path without its query.
  [[nodiscard]] std::string_view path() const;
  // After the '?', without it; empty when there is none.
  [[nodiscard]] std::string_view query() const;
  // The :path as received (path and query).
  [[nodiscard]] std::string_view target() const;
  [[nodiscard]] std::string_view authority() const;
  [[nodiscard]] std::string_view scheme() const;
  // First field with this name, case-insensitive.
  [[nodiscard]] std::optional<std::string_view> header(std::string_view name) const;
  // Every regular field in arrival order (trailers appended when they came).
  [[nodiscard]] std::vector<Header> headers() const;
  // "127.0.0.1:54321", "[::1]:54321".
  [[nodiscard]] std::string peer() const;
  [[nodiscard]] bool tls() const;
  // Negotiated ALPN ("h2"), empty over cleartext.
  [[nodiscard]] std::string_view alpn() const;
  // The server name the client asked for (TLS SNI), empty when none.
  [[nodiscard]] std::string_view sni() const;
  // Body bytes received so far.
  [[nodiscard]] uint64_t bodyBytes() const;

 private:
  friend class http::detail::Exchange;
  explicit Request(http::detail::Exchange& ex) : ex_(&ex) {}
  http::detail::Exchange* ex_;
};

// The reference-counted handle on one request/response exchange. Copyable,
// movable, usable from any thread (see the top of this file). A default
// constructed handle is empty: every operation returns kClosed.
class Response {
 public:
  Response() = default;
  Response(const Response& o);
  Response(Response&& o) noexcept;
  Response& operator=(const Response& o);
  Response& operator=(Response&& o) noexcept;
  ~Response();

  // ---- the request (loop thread only; not on an empty handle) ----
  [[nodiscard]] const Request& request() const;

  // ---- request body (loop thread for the callbacks' registration) ----
  // Body chunks, then the end. Chunks not yet delivered when onBody() is
  // called (the handler returns before registering) are delivered first.
  // A request without a body gets on_end at once.
  void onBody(std::function<void(std::string_view chunk)> on_chunk, std::function<void()> on_end);
  // Collects the whole body, up to `limit` bytes; above it the request gets
  // 413 and `done` is never called.
  void collectBody(size_t limit, std::function<void(std::string body)> done);
  // Stops delivering body chunks; the stream's flow-control window is not
  // returned meanwhile, so the client stops sending once it is spent (the
  // server holds at most one window per stream). Any thread.
  Status pauseBody();
  Status resumeBody();

  // ---- response ----
  // A whole response from memory (the body is copied).
  Status respond(int status, const Headers& headers = {}, std::string_view body = {});
  // A whole response from a file, sent by pread() straight into the output.
  Status respondFile(int status, const Headers& headers, const std::filesystem::path& file);
  // A streamed response: headers now, then write()... end().
  Status start(int status, const Headers& headers = {});
  // Queues bytes (copied). Taken whole while the bytes queued for this stream
  // are below its bound (ServerOptions::stream_write_bound), else refused with
  // kWouldBlock: nothing is taken, and onWritable() fires once the queue
  // has drained below a quarter of the bound and far enough for the refused
  // write to be taken. (A single write larger than the bound is taken when
  // nothing is queued; write in chunks below the bound to keep to it
  // strictly.)
  Status write(std::string_view bytes);
  // Called on the loop thread after a kWouldBlock, once writing can go on.
  void onWritable(std::function<void()> fn);
  // Ends a streamed response, with trailers if any.
  Status end(const Headers& trailers = {});
  // Resets the stream (RST_STREAM CANCEL). onClose() says kAborted.
  Status reset();

  // Told once, on the loop thread, when the exchange ends (also when the
  // response completed). Registered after the end: called at once.
  void onClose(std::function<void(CloseReason)> fn);
  // The exchange is over: every operation returns kClosed.
  [[nodiscard]] bool closed() const;
  // A response was started (respond/respondFile/start).
  [[nodiscard]] bool responded() const;

  // ---- the worker's loop ----
  // Runs fn on the request's loop thread; false when the server is gone. Any thread.
  bool post(std::function<void()> fn) const;
  // The loop itself, for timers (loop thread only; valid while the server runs).
  [[nodiscard]] ev::Loop& loop() const;

  explicit operator bool() const { return ex_ != nullptr; }

 private:
  friend class http::detail::Exchange;
  friend class http::detail::WebSocketSession;
  explicit Response(std::shared_ptr<http::detail::Exchange> ex);
  std::shared_ptr<http::detail::Exchange> ex_;
};

// A handler gets the request and the handle to answer it. It may answer at
// once, keep the handle and answer later (any thread), or drop it: a request
// whose every handle is gone without a response is answered 500 and logged.
// A handler that throws costs its request a 500 (or a reset, once the
// response started); the connection and its other streams go on.
using Handler = std::function<void(const Request&, Response)>;

// One response field a route adds to its answers (an owned copy).
struct ResponseField {
  std::string name;  // lowercase, an RFC 9110 token
  std::string value;
  bool operator==(const ResponseField&) const = default;
};

// Options of a files() route.
struct FilesOptions {
  // Fields added to this route's 2xx and 3xx answers (200, 206, 304), as
  // nginx's `add_header` without `always`: e.g. {"cache-control",
  // "max-age=3600"}. Error answers (4xx, 5xx) and OPTIONS answers do not get
  // them, so a 404 is not cached for an hour. At most kMaxFields of them;
  // names are lowercase tokens, each at most once; values carry no CR, LF,
  // NUL or other control character (tab aside) and no leading or trailing
  // whitespace, and a name and value together are at most kMaxFieldBytes.
  // Names the server sets itself are refused, so nothing is sent twice or
  // silently replaced: content-length, content-type, content-encoding,
  // content-range, accept-ranges, etag, last-modified, date, server, vary,
  // allow, and the connection-specific connection, keep-alive,
  // proxy-connection, transfer-encoding, upgrade, te, trailer.
  std::vector<ResponseField> headers;
  static constexpr size_t kMaxFields = 32;
  static constexpr size_t kMaxFieldBytes = 4096;
};

// Why `name: value` cannot be one of FilesOptions::headers; empty when it can.
[[nodiscard]] std::string_view responseFieldError(std::string_view name, std::string_view value);

struct RouteOptions {
  // Time from the end of the request (its headers, or the last byte of its
  // body) to the start of the response; then 504, and the application is
  // told (onClose(kTimeout)). Zero: the server's.
  std::chrono::milliseconds response_timeout{0};
};

// Method + path → handler. The most specific path decides: an exact path,
// else the longest matching prefix. If none of its routes takes the method,
// the answer is 405 (with allow: their methods and OPTIONS); no path at all is
// 404. Build it before the server starts; it is read-only afterwards (shared
// by every worker).
//
// OPTIONS (RFC 9110 §9.3.7) is answered by the server, 200 with
// content-length 0 and `allow`: for `OPTIONS *` (HTTP/1.1 asterisk-form, or
// an HTTP/2 :path of "*") the methods of every route (files and metrics:
// GET, HEAD) and OPTIONS; for a path, the methods of the routes there and
// OPTIONS (a path without routes: 404). A route that takes OPTIONS itself
// (method "OPTIONS", or "" for every method) gets the request instead: an
// application answers its own CORS preflights.
class Router {
 public:
  // method "" matches every method. Exact path.
  Router& route(std::string method, std::string path, Handler handler, RouteOptions options = {});
  // Every path that starts with `prefix`.
  Router& prefix(std::string method, std::string prefix, Handler handler,
                 RouteOptions options = {});
  Router& get(std::string path, Handler handler) {
    return route("GET", std::move(path), std::move(handler));
  }
  Router& post(std::string path, Handler handler) {
    return route("POST", std::move(path), std::move(handler));
  }
  // Static files of `root` under the directory `prefix` (GET and HEAD;
  // conditional requests, ETag, cached descriptors): "/static/a/b.css" →
  // root/a/b.css ("/static" and "/static/" mount the same). Several mounts:
  // the longest prefix wins ("/static/img/x.png" goes to a "/static/img"
  // mount before a "/static" one). Throws std::invalid_argument for a prefix
  // not starting with '/', a prefix already mounted, or a field of `options`
  // that responseFieldError() refuses.
  Router& files(std::string prefix, std::filesystem::path root, FilesOptions options = {});
  // Prometheus metrics of the whole server at `path`.
  Router& metrics(std::string path);
  // A WebSocket endpoint at the exact `path` (see h2loop/websocket.h): an
  // HTTP/1.1 Upgrade or an HTTP/2 extended CONNECT opens it; any other
  // request there gets 426.
  Router& websocket(std::string path, const WebSocketHandlers& handlers);
  Router& websocket(std::string path, const WebSocketHandlers& handlers,
                    const WebSocketOptions& options);
  // A websocket() route exists (HTTP/2 then offers extended CONNECT).
  [[nodiscard]] bool hasWebSockets() const { return websockets_; }

  // The body of the server's own error answers with `status`: routing's 404
  // and 405, and the static files' 400, 403, 404, 405, 416, 500 and 503 (the
  // statuses in kErrorPageStatuses). The answer keeps its status and its
  // other fields (allow, content-range), takes this content-type and body
  // (content-length: its size; HEAD: the headers only). A 2xx or 3xx is
  // never touched. Not covered: what the application answers itself (its
  // 413, the 500 of a dropped handle, the 504 of a response timeout) and
  // what HTTP/1.1 refuses before routing (400, 408, 414, 431, 501, 505).
  // Throws std::invalid_argument for another status or an empty or invalid
  // content-type; a second call for a status replaces the first.
  Router& errorPage(int status, std::string content_type, std::string body);
  static constexpr int kErrorPageStatuses[] = {400, 403, 404, 405, 416, 500, 503};

  struct Route {
    enum class Kind : uint8_t { kHandler, kFiles, kMetrics };
    Kind kind = Kind::kHandler;
    std::string method;  // "" = any
    std::string path;    // exact path or prefix
    bool is_prefix = false;
    Handler handler;
    RouteOptions options;
    std::filesystem::path root;          // kFiles
    std::vector<ResponseField> headers;  // kFiles: FilesOptions::headers
  };
  [[nodiscard]] const std::vector<Route>& routes() const { return routes_; }

  struct ErrorPage {
    int status = 0;
    std::string content_type;
    std::string body;
  };
  [[nodiscard]] const std::vector<ErrorPage>& errorPages() const { return error_pages_; }

 private:
  std::vector<Route> routes_;
  std::vector<ErrorPage> error_pages_;
  bool websockets_ = false;
};

}  // namespace h2loop
