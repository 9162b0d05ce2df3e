#include "h2/stream.h"

#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstring>

#include "h2/session.h"
#include "h2/stream_pool.h"

namespace h2loop::h2 {

namespace {

// Pooled streams keep their string capacity, but a one-off large body must
// not pin memory in every pool slot it ever visited.
constexpr size_t kMaxRetainedBody = 16 * 1024;
constexpr size_t kMaxRetainedFields = 64;

void clearKeepingSmall(std::string& s, size_t max_keep) {
  if (s.capacity() > max_keep) {
    std::string().swap(s);
  } else {
    s.clear();
  }
}

}  // namespace

Stream::~Stream() {
  // Only reached for a recycled stream (pool destruction) or an orphaned one
  // on its last release; recycle() has dropped the file reference.
  assert(file_ == nullptr);
}

void Stream::release() {
  assert(refs_ > 0);
  if (--refs_ != 0) return;
  if (pool_ != nullptr) {
    pool_->recycle(this);
  } else {
    recycle();
    delete this;
  }
}

const HeaderField* Stream::findHeader(std::string_view name) const {
  for (const HeaderField& f : headers()) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

void Stream::addField(const uint8_t* name, size_t namelen, const uint8_t* value, size_t valuelen) {
  if (field_count_ == fields_.size()) fields_.emplace_back();
  HeaderField& f = fields_[field_count_++];
  f.name.assign(reinterpret_cast<const char*>(name), namelen);
  f.value.assign(reinterpret_cast<const char*>(value), valuelen);
}

void Stream::recycle() {
  assert(refs_ == 0);
  assert(session_ == nullptr && prev_ == nullptr && next_ == nullptr);
  dropFile();
  session_held_ = false;
  id_ = 0;
  closed_ = false;
  request_complete_ = false;
  response_submitted_ = false;
  discard_body_ = false;
  body_ended_ = false;
  deferred_ = false;
  hold_window_ = false;
  wants_tunnel_ = false;
  tunnel_ = false;
  drain_notify_ = false;
  drain_threshold_ = 0;
  trailers_.clear();
  close_error_code_ = 0;
  method_.clear();
  path_.clear();
  authority_.clear();
  scheme_.clear();
  if (fields_.size() > kMaxRetainedFields) fields_.resize(kMaxRetainedFields);
  for (size_t i = 0; i < field_count_ && i < fields_.size(); ++i) {
    clearKeepingSmall(fields_[i].name, kMaxRetainedBody);
    clearKeepingSmall(fields_[i].value, kMaxRetainedBody);
  }
  field_count_ = 0;
  header_list_bytes_ = 0;
  header_field_total_ = 0;
  request_body_bytes_ = 0;
  user_ = nullptr;
  body_kind_ = ResponseBody::Kind::kNone;
  if (response_headers_capacity_ > kMaxRetainedBody) {
    response_headers_.reset();
    response_headers_capacity_ = 0;
  }
  clearKeepingSmall(body_, kMaxRetainedBody);
  body_offset_ = 0;
  file_offset_ = 0;
  file_remaining_ = 0;
  pieces_.clear();
  piece_index_ = 0;
  piece_done_ = 0;
}

void Stream::setFileBody(const ResponseBody& body) {
  // Dropped in recycle(), whatever happens next.
  body.fileHandle()->addRef();
  file_ = body.fileHandle();
  file_offset_ = body.offset();
  file_remaining_ = body.length();
  body_kind_ = ResponseBody::Kind::kFile;
  if (!body.pieces().empty()) {
    pieces_.assign(body.pieces().begin(), body.pieces().end());
    body_.assign(body.bytesView());
    body_offset_ = 0;
    piece_index_ = 0;
    piece_done_ = 0;
  }
}

bool Stream::readPieces(uint8_t* dst, size_t length) {
  while (length > 0) {
    if (piece_index_ >= pieces_.size() || file_ == nullptr) return false;
    const BodyPiece& piece = pieces_[piece_index_];
    if (piece_done_ < piece.text_length) {
      const uint64_t left = piece.text_length - piece_done_;
      const size_t n = static_cast<size_t>(std::min<uint64_t>(left, length));
      if (body_offset_ + n > body_.size()) return false;
      std::memcpy(dst, body_.data() + body_offset_, n);
      body_offset_ += n;
      piece_done_ += n;
      dst += n;
      length -= n;
      file_remaining_ -= n;
    } else if (piece_done_ < piece.text_length + piece.file_length) {
      const uint64_t into = piece_done_ - piece.text_length;
      const uint64_t offset = piece.file_offset + into;
      const size_t n = static_cast<size_t>(std::min<uint64_t>(piece.file_length - into, length));
      const std::string_view memory = file_->memory();
      ssize_t got = 0;
      if (!memory.empty()) {
        if (offset > memory.size() || memory.size() - offset < n) return false;
        std::memcpy(dst, memory.data() + offset, n);
        got = static_cast<ssize_t>(n);
      } else {
        do {
          got = ::pread(file_->fd(), dst, n, static_cast<off_t>(offset));
        } while (got < 0 && errno == EINTR);
        if (got <= 0) return false;
      }
      piece_done_ += static_cast<uint64_t>(got);
      dst += got;
      length -= static_cast<size_t>(got);
      file_remaining_ -= static_cast<uint64_t>(got);
    } else {
      ++piece_index_;
      piece_done_ = 0;
    }
  }
  return true;
}

SubmitResult Stream::submitResponse(int status, std::span<const Header> headers,
                                    const ResponseBody& body) {
  if (session_ == nullptr) return SubmitResult::kClosed;
  return session_->submitResponse(*this, status, headers, body);
}

SubmitResult Stream::appendBody(std::string_view bytes) {
  if (session_ == nullptr) return SubmitResult::kClosed;
  if (!response_submitted_ || body_kind_ != ResponseBody::Kind::kStreamed || body_ended_) {
    return discard_body_ && response_submitted_ ? SubmitResult::kOk : SubmitResult::kBadState;
  }
  if (bytes.empty()) return SubmitResult::kOk;
  if (body_offset_ == body_.size()) {
    body_.clear();
    body_offset_ = 0;
  } else if (body_offset_ > body_.size() / 2) {
    body_.erase(0, body_offset_);
    body_offset_ = 0;
  }
  body_.append(bytes);
  session_->resumeData(*this);
  return SubmitResult::kOk;
}

void Stream::dropFile() {
  if (file_ != nullptr) {
    FileHandle* f = file_;
    file_ = nullptr;
    f->release();
  }
}

SubmitResult Stream::reset(uint32_t error_code) {
  if (session_ == nullptr) return SubmitResult::kClosed;
  return session_->resetStream(*this, error_code);
}

void Stream::consume(size_t len) {
  if (session_ != nullptr) session_->consumeStream(*this, len);
}

SubmitResult Stream::endBody(std::span<const Header> trailers) {
  if (session_ == nullptr) return SubmitResult::kClosed;
  if (!response_submitted_ || body_kind_ != ResponseBody::Kind::kStreamed || body_ended_) {
    return discard_body_ && response_submitted_ ? SubmitResult::kOk : SubmitResult::kBadState;
  }
  if (trailers.size() > Session::kMaxResponseHeaders) return SubmitResult::kInvalid;
  if (!discard_body_) {
    for (const Header& h : trailers)
      trailers_.push_back(HeaderField{std::string(h.name), std::string(h.value)});
  }
  body_ended_ = true;
  session_->resumeData(*this);
  return SubmitResult::kOk;
}

}  // namespace h2loop::h2
