// The public classes of include/h2loop/http.h: thin forwards to the Exchange.

#include <algorithm>
#include <cctype>

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

Router& Router::files(std::string prefix, std::filesystem::path root) {
  // A directory: "/static" serves "/static/a.css", never "/staticfoo".
  if (prefix.empty() || prefix.back() != '/') prefix += '/';
  Route r;
  r.kind = Route::Kind::kFiles;
  r.path = std::move(prefix);
  r.is_prefix = true;
  r.root = std::move(root);
  routes_.push_back(std::move(r));
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
