#include "http/exchange.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <utility>
#include <vector>

namespace h2loop::http::detail {
namespace {

// RST_STREAM code for a stream the application gave up (HTTP/2 CANCEL).
constexpr uint32_t kCancel = 0x8;
constexpr size_t kMaxHeaders = 62;  // h2::Session::kMaxResponseHeaders less date and length

// Header fields copied for a trip to the loop thread.
class OwnedHeaders {
 public:
  explicit OwnedHeaders(const Headers& h) {
    fields_.reserve(h.size());
    for (const Header& f : h)
      fields_.emplace_back(std::string(f.name), std::string(f.value));
  }
  [[nodiscard]] Headers view() const {
    Headers h;
    h.reserve(fields_.size());
    for (const auto& [n, v] : fields_)
      h.push_back({n, v});
    return h;
  }

 private:
  std::vector<std::pair<std::string, std::string>> fields_;
};

bool validHeaders(const Headers& headers) {
  if (headers.size() > kMaxHeaders) return false;
  for (const Header& h : headers) {
    if (h.name.empty() || h.name[0] == ':') return false;
    for (char c : h.name) {
      if ((c >= 'A' && c <= 'Z') || c == ' ' || c == '\r' || c == '\n' || c == '\0') return false;
    }
    for (char c : h.value) {
      if (c == '\r' || c == '\n' || c == '\0') return false;
    }
  }
  return true;
}

bool validStatus(int status) {
  return status >= 200 && status <= 999;
}

// A file opened for one response; the last reference closes it.
class OwnedFile final : public h2::FileHandle {
 public:
  explicit OwnedFile(int fd) : fd_(fd) {}
  [[nodiscard]] int fd() const override { return fd_; }
  void addRef() override { ++refs_; }
  void release() override {
    if (--refs_ == 0) delete this;
  }

 private:
  ~OwnedFile() override { ::close(fd_); }
  int fd_;
  int refs_ = 1;
};

}  // namespace

// ---- Anchor ---------------------------------------------------------------

bool Anchor::post(std::function<void()> fn) {
  std::lock_guard lock(mu_);
  if (loop_ == nullptr) return false;
  loop_->post(std::move(fn));
  return true;
}

namespace {
// The anchor whose loop this thread runs, as last seen by the Service's
// entry points: a lock-free answer to onLoopThread() for the common case.
// Only compared, never dereferenced; cleared when that anchor dies here.
thread_local const Anchor* t_loop_anchor = nullptr;
}  // namespace

void Anchor::enteredLoop() const {
  t_loop_anchor = this;
}

bool Anchor::onLoopThread() const {
  if (t_loop_anchor == this) return true;
  std::lock_guard lock(mu_);
  return loop_ != nullptr && loop_->isLoopThread();
}

void Anchor::notifyShutdown() {
  // A copy: listeners leave the set from their own call.
  const std::vector<ShutdownListener*> listeners(shutdown_listeners_.begin(),
                                                 shutdown_listeners_.end());
  for (ShutdownListener* l : listeners) {
    if (shutdown_listeners_.contains(l)) l->onShutdown();
  }
}

void Anchor::kill(const std::function<void()>& teardown) {
  std::lock_guard lock(mu_);
  if (teardown) teardown();
  loop_ = nullptr;
  if (t_loop_anchor == this) t_loop_anchor = nullptr;
}

void Anchor::release(Exchange* e) {
  if (t_loop_anchor == this) {
    delete e;  // on the loop thread, the worker alive: the common case
    return;
  }
  std::unique_lock lock(mu_);
  if (loop_ == nullptr) {
    delete e;  // the worker is gone: its pool orphaned the stream
    return;
  }
  if (loop_->isLoopThread()) {
    lock.unlock();
    delete e;
    return;
  }
  // A closure the loop discards unrun (its destruction) still deletes.
  std::shared_ptr<Exchange> holder(e, [](Exchange* x) { delete x; });
  loop_->post([holder = std::move(holder)]() mutable { holder.reset(); });
}

// ---- Exchange: life -------------------------------------------------------

std::shared_ptr<Exchange> Exchange::make(std::shared_ptr<Anchor> anchor, h2::Stream& stream,
                                         ConnectionView& conn, const ExchangeConfig& config) {
  std::shared_ptr<Exchange> ex(new Exchange(std::move(anchor), stream, conn, config), Deleter{});
  ex->self_ = ex;
  return ex;
}

Exchange::Exchange(std::shared_ptr<Anchor> anchor, h2::Stream& stream, ConnectionView& conn,
                   const ExchangeConfig& config)
    : anchor_(std::move(anchor)), stream_(&stream), conn_(&conn), config_(config), request_(*this) {
  stream.holdWindow();
  anchor_->counters.exchanges_alive.fetch_add(1, std::memory_order_relaxed);
}

Exchange::~Exchange() {
  anchor_->counters.exchanges_alive.fetch_sub(1, std::memory_order_relaxed);
}

void Exchange::Deleter::operator()(Exchange* e) const {
  // The stream reference goes back on the loop thread (the pool is not
  // thread-safe), or under the anchor's lock once the pool is gone.
  std::shared_ptr<Anchor> anchor = e->anchor_;
  anchor->release(e);
}

void Exchange::handleAdded() {
  handles_.fetch_add(1, std::memory_order_relaxed);
  anchor_->counters.app_handles.fetch_add(1, std::memory_order_relaxed);
}

void Exchange::handleDropped() {
  anchor_->counters.app_handles.fetch_sub(1, std::memory_order_relaxed);
  if (handles_.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  if (here()) {
    allHandlesDropped();
  } else {
    (void)onLoop([](Exchange& ex) {
      if (ex.handles_.load(std::memory_order_acquire) == 0) ex.allHandlesDropped();
    });
  }
}

void Exchange::allHandlesDropped() {
  if (closed_ || responded()) return;
  if (in_handler_) {
    // The handler's own handle went out of scope (maybe unwinding a throw,
    // which answers itself): decided when the handler has returned.
    dropped_in_handler_ = true;
    return;
  }
  // Nobody can answer any more: say so now rather than at the timeout.
  anchor_->counters.dropped.fetch_add(1, std::memory_order_relaxed);
  spdlog::warn("{} {}: every handle was dropped without a response: 500", stream_->method(),
               stream_->path());
  (void)respondHere(500, {{"content-type", "text/plain"}}, "no response\n");
}

Status Exchange::onLoop(std::function<void(Exchange&)> op) {
  std::shared_ptr<Exchange> self = self_.lock();
  if (!self) return Status::kClosed;
  if (!anchor_->post([self = std::move(self), op = std::move(op)] { op(*self); })) {
    return Status::kClosed;
  }
  return Status::kOk;
}

void Exchange::run(const Handler& handler) {
  in_handler_ = true;
  guarded("handler", [&] { handler(request_, Response(self_.lock())); });
  in_handler_ = false;
  if (dropped_in_handler_ && handles_.load(std::memory_order_acquire) == 0) allHandlesDropped();
}

void Exchange::armResponseTimeout() {
  if (closed_ || responded() || response_timer_ ||
      config_.response_timeout <= ev::Duration::zero()) {
    return;
  }
  response_timer_ = anchor_->loop().timer([this] { responseTimedOut(); });
  response_timer_->arm(config_.response_timeout);
}

void Exchange::responseTimedOut() {
  if (closed_ || responded()) return;
  anchor_->counters.timeouts.fetch_add(1, std::memory_order_relaxed);
  spdlog::warn(
      "{} {}: no response within {} ms: 504", stream_->method(), stream_->path(),
      std::chrono::duration_cast<std::chrono::milliseconds>(config_.response_timeout).count());
  (void)respondHere(504, {{"content-type", "text/plain"}}, "response timeout\n");
  finish(CloseReason::kTimeout);
}

void Exchange::onClosed(CloseReason why) {
  if (!responded()) anchor_->counters.unanswered.fetch_add(1, std::memory_order_relaxed);
  if (!closed_) finish(why);
  // Bytes the closed stream still held leave the count with it.
  if (last_buffered_ > 0) {
    unreserve(last_buffered_);
    last_buffered_ = 0;
  }
  conn_ = nullptr;
  std::string().swap(held_body_);
}

void Exchange::finish(CloseReason why) {
  closed_ = true;
  closed_flag_.store(true, std::memory_order_release);
  response_timer_.reset();
  // Callbacks may hold handles (and through them this exchange): they go,
  // after onClose ran, so no cycle outlives the request.
  auto on_close = std::move(on_close_);
  std::function<void(std::string_view)> on_chunk;
  if (in_chunk_callback_ == 0) {  // else it is running: deliverChunk() drops it
    on_chunk = std::move(on_chunk_);
    on_chunk_ = nullptr;
  }
  auto on_end = std::move(on_end_);
  auto on_writable = std::move(on_writable_);
  on_close_ = nullptr;
  on_end_ = nullptr;
  on_writable_ = nullptr;
  close_reason_ = why;
  if (on_close) guarded("onClose", [&] { on_close(why); });
}

void Exchange::guarded(const char* what, const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    failHandler(what, e.what());
  } catch (...) {
    failHandler(what, "unknown exception");
  }
}

void Exchange::failHandler(const char* what, std::string_view error) {
  anchor_->counters.handler_errors.fetch_add(1, std::memory_order_relaxed);
  spdlog::error("{} {}: {} threw: {}", stream_->method(), stream_->path(), what, error);
  if (closed_) return;
  if (!responded()) {
    (void)respondHere(500, {{"content-type", "text/plain"}}, "internal server error\n");
  } else {
    (void)resetHere();
  }
}

// ---- request body ---------------------------------------------------------

void Exchange::onData(const uint8_t* data, size_t len) {
  const std::string_view chunk(reinterpret_cast<const char*>(data), len);
  if (closed_ || !body_wanted_) {
    stream_->consume(len);  // nobody wants it: discarded, window returned
    return;
  }
  if (paused_ || !on_chunk_ || !held_body_.empty()) {
    // Held: the window is returned once delivered. At most one window.
    held_body_.append(chunk);
    return;
  }
  deliverChunk(chunk);
  stream_->consume(len);
  if (conn_ != nullptr) conn_->wakeWriter();  // the WINDOW_UPDATE
}

void Exchange::deliverChunk(std::string_view chunk) {
  // The callback may end the exchange (reset()): finish() then leaves it
  // alone while it runs, and it goes here once it returned.
  ++in_chunk_callback_;
  guarded("onBody", [&] { on_chunk_(chunk); });
  if (--in_chunk_callback_ == 0 && closed_) on_chunk_ = nullptr;
}

void Exchange::onEnd() {
  body_end_seen_ = true;
  // The request is all here: from now on the answer is due. (An upload in
  // progress, or paused by the application, is bounded by flow control and
  // the connection's timeouts instead.)
  armResponseTimeout();
  deliverBody();
}

void Exchange::deliverBody() {
  if (closed_) return;
  bool consumed = false;
  while (!paused_ && on_chunk_ && !held_body_.empty() && !closed_) {
    std::string chunk;
    chunk.swap(held_body_);
    deliverChunk(chunk);
    stream_->consume(chunk.size());
    consumed = true;
  }
  if (body_end_seen_ && !body_end_told_ && !paused_ && held_body_.empty() && on_end_ && !closed_) {
    body_end_told_ = true;
    auto on_end = on_end_;
    guarded("onBody end", [&] { on_end(); });
  }
  if (consumed && conn_ != nullptr && !closed_) conn_->wakeWriter();
}

void Exchange::onBody(std::function<void(std::string_view)> on_chunk,
                      std::function<void()> on_end) {
  if (!here()) {
    (void)onLoop([c = std::move(on_chunk), e = std::move(on_end)](Exchange& ex) mutable {
      ex.onBody(std::move(c), std::move(e));
    });
    return;
  }
  if (closed_) return;
  body_wanted_ = true;
  on_chunk_ = std::move(on_chunk);
  on_end_ = std::move(on_end);
  if (!in_handler_) deliverBody();
}

void Exchange::collectBody(size_t limit, std::function<void(std::string)> done) {
  auto body = std::make_shared<std::string>();
  auto overflow = std::make_shared<bool>(false);
  onBody(
      [this, body, overflow, limit](std::string_view chunk) {
        if (*overflow) return;
        if (body->size() + chunk.size() > limit) {
          *overflow = true;
          std::string().swap(*body);
          body_wanted_ = false;  // the rest is discarded
          if (!responded()) {
            (void)respondHere(413, {{"content-type", "text/plain"}}, "request body too large\n");
          }
          return;
        }
        body->append(chunk);
      },
      [body, overflow, done = std::move(done)] {
        if (!*overflow) done(std::move(*body));
      });
}

Status Exchange::pauseBody() {
  if (!here()) {
    if (closed()) return Status::kClosed;
    return onLoop([](Exchange& ex) { (void)ex.pauseBody(); });
  }
  if (closed_) return Status::kClosed;
  body_wanted_ = true;
  paused_ = true;
  return Status::kOk;
}

Status Exchange::resumeBody() {
  if (!here()) {
    if (closed()) return Status::kClosed;
    return onLoop([](Exchange& ex) { (void)ex.resumeBody(); });
  }
  if (closed_) return Status::kClosed;
  paused_ = false;
  if (!in_handler_) deliverBody();
  return Status::kOk;
}

// ---- response -------------------------------------------------------------

Status Exchange::submit(int status, const Headers& headers, const h2::ResponseBody& body) {
  if (closed_ || conn_ == nullptr) return Status::kClosed;
  std::array<h2::Header, kMaxHeaders + 1> hs;
  size_t n = 0;
  hs[n++] = {"date", conn_->httpDate()};
  for (const Header& h : headers) {
    if (h.name == "date") {
      hs[0].value = h.value;
      continue;
    }
    hs[n++] = {h.name, h.value};
  }
  const h2::SubmitResult r = stream_->submitResponse(status, {hs.data(), n}, body);
  switch (r) {
    case h2::SubmitResult::kOk:
      break;
    case h2::SubmitResult::kClosed:
      return Status::kClosed;
    case h2::SubmitResult::kAlreadySubmitted:
      return Status::kAlreadyResponded;
    default:
      return Status::kInvalid;
  }
  status_ = status;
  response_timer_.reset();
  conn_->wakeWriter();
  return Status::kOk;
}

Status Exchange::respond(int status, const Headers& headers, std::string_view body) {
  if (here()) return respondHere(status, headers, body);
  if (!validStatus(status) || !validHeaders(headers)) return Status::kInvalid;
  if (closed()) return Status::kClosed;
  if (responded_flag_.exchange(true, std::memory_order_acq_rel)) return Status::kAlreadyResponded;
  return onLoop([status, h = OwnedHeaders(headers), b = std::string(body)](Exchange& ex) {
    (void)ex.submit(status, h.view(), h2::ResponseBody::bytes(b));
  });
}

Status Exchange::respondHere(int status, const Headers& headers, std::string_view body) {
  if (!validStatus(status) || !validHeaders(headers)) return Status::kInvalid;
  if (closed_) return Status::kClosed;
  if (responded_flag_.exchange(true, std::memory_order_acq_rel)) return Status::kAlreadyResponded;
  bytes_out_ = body.size();
  return submit(status, headers, h2::ResponseBody::bytes(body));
}

Status Exchange::respondFile(int status, const Headers& headers,
                             const std::filesystem::path& file) {
  if (!validStatus(status) || !validHeaders(headers)) return Status::kInvalid;
  if (closed()) return Status::kClosed;
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::kInvalid;
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::kInvalid;
  }
  // Released wherever the holder goes (the stream takes its own reference).
  std::shared_ptr<h2::FileHandle> holder(new OwnedFile(fd),
                                         [](h2::FileHandle* f) { f->release(); });
  const auto size = static_cast<uint64_t>(st.st_size);
  if (responded_flag_.exchange(true, std::memory_order_acq_rel)) return Status::kAlreadyResponded;
  auto op = [status, h = OwnedHeaders(headers), holder, size](Exchange& ex) {
    ex.bytes_out_ = size;
    (void)ex.submit(status, h.view(), h2::ResponseBody::file(holder.get(), 0, size));
  };
  if (here()) {
    if (closed_) return Status::kClosed;
    bytes_out_ = size;
    return submit(status, headers, h2::ResponseBody::file(holder.get(), 0, size));
  }
  return onLoop(std::move(op));
}

Status Exchange::start(int status, const Headers& headers) {
  if (here()) return startHere(status, headers);
  if (!validStatus(status) || !validHeaders(headers)) return Status::kInvalid;
  if (closed()) return Status::kClosed;
  if (responded_flag_.exchange(true, std::memory_order_acq_rel)) return Status::kAlreadyResponded;
  const Status st = onLoop([status, h = OwnedHeaders(headers)](Exchange& ex) {
    ex.started_ = true;
    (void)ex.submit(status, h.view(), h2::ResponseBody::streamed());
  });
  // Only once the start is queued: a write another thread sees this flag
  // for is queued after it.
  if (st == Status::kOk) started_flag_.store(true, std::memory_order_release);
  return st;
}

Status Exchange::startHere(int status, const Headers& headers) {
  if (!validStatus(status) || !validHeaders(headers)) return Status::kInvalid;
  if (closed_) return Status::kClosed;
  if (responded_flag_.exchange(true, std::memory_order_acq_rel)) return Status::kAlreadyResponded;
  started_flag_.store(true, std::memory_order_release);
  started_ = true;
  return submit(status, headers, h2::ResponseBody::streamed());
}

void Exchange::syncQueued() {
  // What nghttp2 took since the last look leaves the count (never below
  // what is really queued).
  const size_t now = stream_->bufferedBody();
  if (now < last_buffered_) unreserve(last_buffered_ - now);
  last_buffered_ = now;
}

bool Exchange::reserve(size_t len) {
  size_t q = queued_.load(std::memory_order_acquire);
  do {
    if (q > 0 && q + len > config_.write_bound) return false;
  } while (!queued_.compare_exchange_weak(q, q + len, std::memory_order_acq_rel));
  anchor_->counters.queued_bytes.fetch_add(static_cast<int64_t>(len), std::memory_order_relaxed);
  return true;
}

void Exchange::unreserve(size_t len) {
  queued_.fetch_sub(len, std::memory_order_acq_rel);
  anchor_->counters.queued_bytes.fetch_sub(static_cast<int64_t>(len), std::memory_order_relaxed);
}

Status Exchange::write(std::string_view bytes) {
  if (here()) return writeHere(bytes);
  if (closed()) return Status::kClosed;
  if (!started_flag_.load(std::memory_order_acquire)) return Status::kNotStarted;
  return writeQueued(bytes);
}

Status Exchange::writeQueued(std::string_view bytes) {
  if (!reserve(bytes.size())) {
    noteRefused(bytes.size());
    if (!writable_requested_.exchange(true, std::memory_order_acq_rel)) {
      (void)onLoop([](Exchange& ex) { ex.askWritable(); });
    }
    return Status::kWouldBlock;
  }
  return onLoop([b = std::string(bytes)](Exchange& ex) { ex.appendReserved(b); });
}

Status Exchange::writeHere(std::string_view bytes) {
  if (closed_) return Status::kClosed;
  if (!started_) {
    // Started from another thread, the start still on its way here: the
    // bytes follow it the same way, in order.
    if (started_flag_.load(std::memory_order_acquire)) return writeQueued(bytes);
    return responded() ? Status::kAlreadyResponded : Status::kNotStarted;
  }
  if (ended_) return Status::kInvalid;
  syncQueued();
  if (!reserve(bytes.size())) {
    noteRefused(bytes.size());
    askWritable();
    return Status::kWouldBlock;
  }
  appendReserved(bytes);
  return Status::kOk;
}

void Exchange::appendReserved(std::string_view bytes) {
  if (closed_ || ended_ || !started_) {
    unreserve(bytes.size());
    return;
  }
  const h2::SubmitResult r = stream_->appendBody(bytes);
  if (r != h2::SubmitResult::kOk) {
    unreserve(bytes.size());
    return;
  }
  bytes_out_ += bytes.size();
  last_buffered_ += bytes.size();  // counted in queued_ by reserve()
  syncQueued();                    // HEAD: appendBody() kept nothing
  if (conn_ != nullptr) conn_->wakeWriter();
}

void Exchange::noteRefused(size_t len) {
  size_t r = refused_.load(std::memory_order_relaxed);
  while (r < len && !refused_.compare_exchange_weak(r, len, std::memory_order_relaxed)) {
  }
}

size_t Exchange::writableMark() const {
  // Below a quarter of the bound, and low enough for the write that was
  // refused to be taken: telling the writer any earlier would only have it
  // refused again (and, with a stalled client, call it back in a loop).
  const size_t refused = refused_.load(std::memory_order_relaxed);
  const size_t room = refused >= config_.write_bound ? 0 : config_.write_bound - refused;
  return std::min(config_.write_bound / 4, room);
}

void Exchange::askWritable() {
  if (closed_ || !started_) return;
  writable_asked_ = true;
  syncQueued();
  const size_t mark = writableMark();
  if (queued_.load(std::memory_order_acquire) <= mark) {
    // Already drained (or the bytes are still on their way from another
    // thread): tell the writer on the next turn of the loop.
    (void)onLoop([](Exchange& ex) { ex.onDrained(); });
    return;
  }
  stream_->notifyWhenDrained(mark);
}

void Exchange::onDrained() {
  if (closed_ || !writable_asked_) return;
  syncQueued();
  const size_t mark = writableMark();
  if (queued_.load(std::memory_order_acquire) > mark) {
    stream_->notifyWhenDrained(mark);
    return;
  }
  writable_asked_ = false;
  refused_.store(0, std::memory_order_relaxed);
  writable_requested_.store(false, std::memory_order_release);
  if (on_writable_) {
    auto fn = on_writable_;
    guarded("onWritable", [&] { fn(); });
  }
}

void Exchange::onWritable(std::function<void()> fn) {
  if (!here()) {
    (void)onLoop([fn = std::move(fn)](Exchange& ex) mutable { ex.onWritable(std::move(fn)); });
    return;
  }
  if (!closed_) on_writable_ = std::move(fn);
}

Status Exchange::end(const Headers& trailers) {
  if (here()) return endHere(trailers);
  if (!validHeaders(trailers)) return Status::kInvalid;
  if (closed()) return Status::kClosed;
  if (!started_flag_.load(std::memory_order_acquire)) return Status::kNotStarted;
  return onLoop([t = OwnedHeaders(trailers)](Exchange& ex) { (void)ex.endHere(t.view()); });
}

Status Exchange::endHere(const Headers& trailers) {
  if (!validHeaders(trailers)) return Status::kInvalid;
  if (closed_) return Status::kClosed;
  if (!started_) {
    if (started_flag_.load(std::memory_order_acquire)) {  // see writeHere()
      return onLoop([t = OwnedHeaders(trailers)](Exchange& ex) { (void)ex.endHere(t.view()); });
    }
    return responded() ? Status::kAlreadyResponded : Status::kNotStarted;
  }
  if (ended_) return Status::kInvalid;
  std::array<h2::Header, kMaxHeaders> hs;
  size_t n = 0;
  for (const Header& h : trailers)
    hs[n++] = {h.name, h.value};
  const h2::SubmitResult r = stream_->endBody({hs.data(), n});
  if (r == h2::SubmitResult::kClosed) return Status::kClosed;
  if (r != h2::SubmitResult::kOk) return Status::kInvalid;
  ended_ = true;
  if (conn_ != nullptr) conn_->wakeWriter();
  return Status::kOk;
}

Status Exchange::reset() {
  if (here()) return resetHere();
  if (closed()) return Status::kClosed;
  return onLoop([](Exchange& ex) { (void)ex.resetHere(); });
}

Status Exchange::resetHere() {
  if (closed_) return Status::kClosed;
  const h2::SubmitResult r = stream_->reset(kCancel);
  if (conn_ != nullptr) conn_->wakeWriter();
  finish(CloseReason::kAborted);
  return r == h2::SubmitResult::kClosed ? Status::kClosed : Status::kOk;
}

void Exchange::onClose(std::function<void(CloseReason)> fn) {
  if (!here()) {
    (void)onLoop([fn = std::move(fn)](Exchange& ex) mutable { ex.onClose(std::move(fn)); });
    return;
  }
  if (closed_) {
    guarded("onClose", [&] { fn(close_reason_); });
    return;
  }
  on_close_ = std::move(fn);
}

}  // namespace h2loop::http::detail
