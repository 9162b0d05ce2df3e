// The public classes of include/h2loop/http.h: thin forwards to the Exchange.

#include <algorithm>
#include <cctype>
#include <stdexcept>

#include "h2loop/http.h"
#include "http/exchange.h"

namespace h2loop {

using http::detail::Exchange;

std::string_view toString(Status s) {
  switch (s) {
    case Status::kOk:
      return "ok";
    case Status::kWouldBlock:
      return "would block";
    case Status::kClosed:
      return "closed";
    case Status::kAlreadyResponded:
      return "already responded";
    case Status::kNotStarted:
      return "not started";
    case Status::kInvalid:
      return "invalid";
  }
  return "?";
}

std::string_view toString(CloseReason r) {
  switch (r) {
    case CloseReason::kCompleted:
      return "completed";
    case CloseReason::kReset:
      return "reset by the client";
    case CloseReason::kConnectionClosed:
      return "connection closed";
    case CloseReason::kTimeout:
      return "response timeout";
    case CloseReason::kShutdown:
      return "server shutdown";
    case CloseReason::kAborted:
      return "aborted by the handler";
  }
  return "?";
}

// ---- Request --------------------------------------------------------------

std::string_view Request::method() const {
  return ex_->stream().method();
}

std::string_view Request::target() const {
  return ex_->stream().path();
}

std::string_view Request::path() const {
  const std::string_view t = target();
  return t.substr(0, t.find('?'));
}

std::string_view Request::query() const {
  const std::string_view t = target();
  const size_t q = t.find('?');
  return q == std::string_view::npos ? std::string_view{} : t.substr(q + 1);
}

std::string_view Request::authority() const {
  return ex_->stream().authority();
}

std::string_view Request::scheme() const {
  return ex_->stream().scheme();
}

std::optional<std::string_view> Request::header(std::string_view name) const {
  for (const h2::HeaderField& f : ex_->stream().headers()) {
    if (f.name.size() == name.size() &&
        std::equal(f.name.begin(), f.name.end(), name.begin(), [](char a, char b) {
          return a == std::tolower(static_cast<unsigned char>(b));
        })) {
      return std::string_view(f.value);
    }
  }
  return std::nullopt;
}

std::vector<Header> Request::headers() const {
  std::vector<Header> out;
  for (const h2::HeaderField& f : ex_->stream().headers())
    out.push_back({f.name, f.value});
  return out;
}

std::string Request::peer() const {
  const auto* c = ex_->connection();
  return c != nullptr ? c->peerAddress() : std::string{};
}

bool Request::tls() const {
  const auto* c = ex_->connection();
  return c != nullptr && c->isTls();
}

std::string_view Request::alpn() const {
  const auto* c = ex_->connection();
  return c != nullptr ? c->alpn() : std::string_view{};
}

std::string_view Request::sni() const {
  const auto* c = ex_->connection();
  return c != nullptr ? c->sni() : std::string_view{};
}

uint64_t Request::bodyBytes() const {
  return ex_->stream().requestBodyBytes();
}

// ---- Response -------------------------------------------------------------

Response::Response(std::shared_ptr<Exchange> ex) : ex_(std::move(ex)) {
  if (ex_) ex_->handleAdded();
}

Response::Response(const Response& o) : ex_(o.ex_) {
  if (ex_) ex_->handleAdded();
}

Response::Response(Response&& o) noexcept : ex_(std::move(o.ex_)) {}

Response& Response::operator=(const Response& o) {
  if (this != &o) Response(o).ex_.swap(ex_);  // the temporary drops the old one
  return *this;
}

Response& Response::operator=(Response&& o) noexcept {
  if (this != &o) {
    Response old(std::move(*this));
    ex_ = std::move(o.ex_);
  }
  return *this;
}

Response::~Response() {
  if (ex_) ex_->handleDropped();
}

const Request& Response::request() const {
  return ex_->request();
}

void Response::onBody(std::function<void(std::string_view)> on_chunk,
                      std::function<void()> on_end) {
  if (ex_) ex_->onBody(std::move(on_chunk), std::move(on_end));
}

void Response::collectBody(size_t limit, std::function<void(std::string)> done) {
  if (ex_) ex_->collectBody(limit, std::move(done));
}

Status Response::pauseBody() {
  return ex_ ? ex_->pauseBody() : Status::kClosed;
}

Status Response::resumeBody() {
  return ex_ ? ex_->resumeBody() : Status::kClosed;
}

Status Response::respond(int status, const Headers& headers, std::string_view body) {
  return ex_ ? ex_->respond(status, headers, body) : Status::kClosed;
}

Status Response::respondFile(int status, const Headers& headers,
                             const std::filesystem::path& file) {
  return ex_ ? ex_->respondFile(status, headers, file) : Status::kClosed;
}

Status Response::start(int status, const Headers& headers) {
  return ex_ ? ex_->start(status, headers) : Status::kClosed;
}

Status Response::write(std::string_view bytes) {
  return ex_ ? ex_->write(bytes) : Status::kClosed;
}

void Response::onWritable(std::function<void()> fn) {
  if (ex_) ex_->onWritable(std::move(fn));
}

Status Response::end(const Headers& trailers) {
  return ex_ ? ex_->end(trailers) : Status::kClosed;
}

Status Response::reset() {
  return ex_ ? ex_->reset() : Status::kClosed;
}

void Response::onClose(std::function<void(CloseReason)> fn) {
  if (ex_) ex_->onClose(std::move(fn));
}

bool Response::closed() const {
  return !ex_ || ex_->closed();
}

bool Response::responded() const {
  return ex_ && ex_->responded();
}

bool Response::post(std::function<void()> fn) const {
  return ex_ && ex_->post(std::move(fn));
}

ev::Loop& Response::loop() const {
  return ex_->loop();
}

// ---- Router ---------------------------------------------------------------

Router& Router::route(std::string method, std::string path, Handler handler, RouteOptions options) {
  Route r;
  r.method = std::move(method);
  r.path = std::move(path);
  r.handler = std::move(handler);
  r.options = options;
  routes_.push_back(std::move(r));
  return *this;
}

Router& Router::prefix(std::string method, std::string prefix, Handler handler,
                       RouteOptions options) {
  route(std::move(method), std::move(prefix), std::move(handler), options);
  routes_.back().is_prefix = true;
  return *this;
}

namespace {

// RFC 9110 §5.6.2 tchar, lowercase letters only (HTTP/2 field names are).
bool lowercaseTokenChar(char c) {
  if (c >= 'a' && c <= 'z') return true;
  if (c >= '0' && c <= '9') return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// Fields the server writes itself (static files, every answer) or that are
// connection-specific (RFC 9113 §8.2.2 forbids them in HTTP/2).
constexpr std::string_view kServerFields[] = {
    "content-length",
    "content-type",
    "content-encoding",
    "content-range",
    "accept-ranges",
    "etag",
    "last-modified",
    "date",
    "server",
    "vary",
    "allow",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
};

}  // namespace

std::string_view responseFieldError(std::string_view name, std::string_view value) {
  if (name.empty()) return "empty field name";
  for (char c : name) {
    if (c >= 'A' && c <= 'Z') return "field names are lowercase";
    if (!lowercaseTokenChar(c)) return "field name is not a token (RFC 9110 §5.6.2)";
  }
  for (std::string_view s : kServerFields) {
    if (name == s) return "the server sets this field itself";
  }
  if (name.size() + value.size() > FilesOptions::kMaxFieldBytes) {
    return "field longer than 4096 bytes (name and value)";
  }
  for (char c : value) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '\r' || c == '\n' || c == '\0') return "CR, LF or NUL in the value";
    if ((u < 0x20 && c != '\t') || u == 0x7f) return "control character in the value";
  }
  if (!value.empty() && (value.front() == ' ' || value.front() == '\t' || value.back() == ' ' ||
                         value.back() == '\t')) {
    return "leading or trailing whitespace in the value";
  }
  return {};
}

Router& Router::files(std::string prefix, std::filesystem::path root, FilesOptions options) {
  if (prefix.empty() || prefix.front() != '/') {
    throw std::invalid_argument("files(\"" + prefix + "\"): the prefix must start with '/'");
  }
  // A directory: "/static" serves "/static/a.css", never "/staticfoo".
  if (prefix.back() != '/') prefix += '/';
  for (const Route& r : routes_) {
    if (r.kind == Route::Kind::kFiles && r.path == prefix) {
      throw std::invalid_argument("files(\"" + prefix + "\"): already mounted");
    }
  }
  if (options.headers.size() > FilesOptions::kMaxFields) {
    throw std::invalid_argument("files(\"" + prefix + "\"): more than 32 header fields");
  }
  for (size_t i = 0; i < options.headers.size(); ++i) {
    const ResponseField& f = options.headers[i];
    std::string_view why = responseFieldError(f.name, f.value);
    for (size_t j = 0; why.empty() && j < i; ++j) {
      if (options.headers[j].name == f.name) why = "field given twice";
    }
    if (!why.empty()) {
      throw std::invalid_argument("files(\"" + prefix + "\"): " + f.name + ": " + std::string(why));
    }
  }
  Route r;
  r.kind = Route::Kind::kFiles;
  r.path = std::move(prefix);
  r.is_prefix = true;
  r.root = std::move(root);
  r.headers = std::move(options.headers);
  routes_.push_back(std::move(r));
  return *this;
}

Router& Router::errorPage(int status, std::string content_type, std::string body) {
  if (std::find(std::begin(kErrorPageStatuses), std::end(kErrorPageStatuses), status) ==
      std::end(kErrorPageStatuses)) {
    throw std::invalid_argument("errorPage(" + std::to_string(status) +
                                "): not a status the server answers itself (400, 403, 404, 405, "
                                "416, 500, 503)");
  }
  if (!responseFieldError("x", content_type).empty() || content_type.empty()) {
    throw std::invalid_argument("errorPage(" + std::to_string(status) + "): invalid content-type");
  }
  for (ErrorPage& p : error_pages_) {
    if (p.status == status) {
      p.content_type = std::move(content_type);
      p.body = std::move(body);
      return *this;
    }
  }
  error_pages_.push_back({status, std::move(content_type), std::move(body)});
  return *this;
}

Router& Router::metrics(std::string path) {
  for (const char* m : {"GET", "HEAD"}) {
    Route r;
    r.kind = Route::Kind::kMetrics;
    r.method = m;
    r.path = path;
    routes_.push_back(std::move(r));
  }
  return *this;
}

}  // namespace h2loop
