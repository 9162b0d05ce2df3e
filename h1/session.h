#pragma once

#include <http_parser.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "h2/output_buffer.h"
#include "h2/session.h"
#include "h2/stream.h"
#include "h2/stream_pool.h"

namespace h2loop::h1 {

// Limits of an HTTP/1.1 connection. Defaults are production values.
struct SessionConfig {
  // Request line + header section (names, values, 4 bytes per line for ": "
  // and CRLF). Above it: 431 (414 when the request target alone is over).
  size_t max_header_bytes = 64 * 1024;
  uint32_t max_header_fields = 128;
  // Input read ahead of the request being answered (pipelined requests, a
  // body nobody consumes yet): above it the session stops taking input
  // (inputPaused()) until the current exchange is done.
  size_t max_buffered_input = 64 * 1024;
  // Request-body bytes handed to a stream that holds its window
  // (Stream::holdWindow()) and not yet consumed, before parsing stops: the
  // HTTP/1.1 counterpart of an HTTP/2 stream window.
  size_t body_window = 256 * 1024;
  // "https" or "http", for Stream::scheme().
  std::string_view scheme = "http";
  // Offer the h2c upgrade (RFC 7540 §3.2) to cleartext requests that ask.
  bool allow_h2c_upgrade = true;
  // The date header of the session's own error responses (none if unset).
  std::function<std::string_view()> date;
};

// Server side of one HTTP/1.1 connection: bytes in (receive), bytes out
// (produce), parsed by Node's http_parser (Debian's libhttp-parser, strict
// mode). Knows nothing of sockets, TLS or event loops. One request is
// answered at a time, each on a pooled, reference-counted h2::Stream exactly
// as an HTTP/2 stream is, with the same SessionHandler callbacks; pipelined
// requests wait in the input, which is bounded (max_buffered_input).
//
// A request's stream closes (onStreamClosed) once its response has been
// produced and its body has been read; then the next request is parsed.
// Input that is not HTTP/1.1 (a parse error, a header section over the
// limits, request smuggling: conflicting Content-Length/Transfer-Encoding)
// gets an error response with `connection: close` and the session ends
// (connectionError()).
class Session final : public h2::StreamOwner {
 public:
  Session(h2::StreamPool& pool, h2::SessionHandler& handler, const SessionConfig& config = {});
  // Closes the request in flight, if any (onStreamClosed(NGHTTP2_CANCEL)).
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Takes every byte; what is not parsed yet is kept (see inputPaused()).
  void receive(const uint8_t* data, size_t len);
  // Response bytes until `out` is above its high watermark. May parse the
  // next pipelined request (its handler callbacks run from here).
  void produce(h2::OutputBuffer& out);

  // Input is held and none should be read until produce() made progress.
  [[nodiscard]] bool inputPaused() const {
    return input_.size() - input_offset_ >= config_.max_buffered_input;
  }
  // The connection goes on: more requests may come, or one is in flight
  // (false once the connection is to end and nothing is left to answer).
  [[nodiscard]] bool wantRead() const {
    return !errored_ && upgrade_ == nullptr && (!closing_ || current_ != nullptr);
  }
  [[nodiscard]] bool wantWrite() const;
  [[nodiscard]] size_t activeStreams() const { return current_ != nullptr ? 1 : 0; }
  // A request is under way and its header section is not complete yet (the
  // header timeout applies).
  [[nodiscard]] bool readingHead() const { return in_head_; }

  // The peer's input was refused (an error response is queued, or the
  // connection must end without one: a response already started).
  [[nodiscard]] bool connectionError() const { return errored_; }
  [[nodiscard]] const std::string& connectionErrorReason() const { return error_reason_; }
  [[nodiscard]] int errorStatus() const { return error_status_; }

  // No more requests after the one in flight (our graceful end).
  void stopAfterCurrent();
  // The header section did not complete in time: 408 and the end.
  void headerTimeout();

  // --- h2c upgrade (RFC 7540 §3.2) ---
  // A complete cleartext request asked to switch to HTTP/2 (Upgrade: h2c
  // with HTTP2-Settings, no body). Nothing was dispatched for it.
  [[nodiscard]] bool upgradeRequested() const { return upgrade_ != nullptr; }
  [[nodiscard]] std::string_view upgradeSettings() const { return upgrade_settings_; }
  // Hands the request's stream over (with the reference the session held)
  // and returns the input that follows the request (the client's HTTP/2
  // preface). The session is done afterwards.
  h2::Stream* takeUpgrade(std::string& rest);
  // The upgrade could not be accepted (bad settings): the request is
  // answered 400 and the connection ends.
  void refuseUpgrade(std::string_view why);

  [[nodiscard]] uint64_t requests() const { return requests_; }

  // h2::StreamOwner
  [[nodiscard]] h2::SubmitResult submitResponse(h2::Stream& stream, int status,
                                                std::span<const h2::Header> headers,
                                                const h2::ResponseBody& body) override;
  void resumeData(h2::Stream& stream) override;
  [[nodiscard]] h2::SubmitResult resetStream(h2::Stream& stream, uint32_t error_code) override;
  void consumeStream(h2::Stream& stream, size_t len) override;

 private:
  struct Callbacks;

  // http_parser callbacks.
  int onMessageBegin();
  int onUrl(const char* at, size_t len);
  int onHeaderField(const char* at, size_t len);
  int onHeaderValue(const char* at, size_t len);
  int onHeadersComplete();
  int onBody(const char* at, size_t len);
  int onMessageComplete();

  // Parses held input while nothing holds the parser back (or feeds it to
  // the tunnel).
  void parse();
  void parseHttp();
  void feedTunnel();
  // The 101 of a WebSocket upgrade the server took; tunnel mode from here.
  h2::SubmitResult openTunnel(h2::Stream& s, std::span<const h2::Header> headers);
  [[nodiscard]] bool parserBlocked() const;
  bool finishField();
  // Validates the head and fills the stream's request fields; false after
  // fail() said why.
  bool completeHead();
  void fail(int status, std::string reason);
  void queueError(int status);
  // Moves the exchange on: response produced and request read → close it.
  void maybeFinishExchange();
  void closeCurrent(uint32_t error_code);
  // Appends response bytes of the current exchange; true when its response
  // is complete.
  bool produceBody(h2::OutputBuffer& out);
  bool appendPending(h2::OutputBuffer& out);

  h2::StreamPool& pool_;
  h2::SessionHandler& handler_;
  SessionConfig config_;
  http_parser parser_{};

  // Unparsed input from input_offset_ on.
  std::string input_;
  size_t input_offset_ = 0;
  bool parsing_ = false;

  h2::Stream* current_ = nullptr;  // the session's reference
  h2::Stream* upgrade_ = nullptr;  // a complete h2c upgrade request
  std::string upgrade_settings_;
  uint64_t requests_ = 0;

  // The request being parsed.
  bool in_head_ = false;
  bool in_value_ = false;
  // The last header-value piece ended where the parsed input did (the next
  // piece continues it); anything else is line folding.
  bool value_at_input_end_ = false;
  const char* input_end_ = nullptr;  // end of what the parser is being given
  bool request_done_ = false;        // message complete
  bool keep_alive_ = true;
  bool expect_continue_ = false;
  bool continue_sent_ = false;
  bool wants_h2c_ = false;
  size_t head_bytes_ = 0;
  std::string field_;
  std::string value_;
  std::string url_;
  size_t unconsumed_ = 0;  // body bytes a window-holding stream has not consumed

  // The response of the current exchange.
  std::string pending_;  // serialised head / chunk framing not yet in the output
  size_t pending_offset_ = 0;
  bool response_started_ = false;  // head produced (at least partly)
  bool response_done_ = false;     // every byte produced
  bool chunked_ = false;
  bool until_close_ = false;  // body delimited by the connection's close
  bool tunneling_ = false;    // a 101 went out: input and body are the tunnel's bytes
  bool has_declared_length_ = false;
  uint64_t declared_remaining_ = 0;  // streamed body with the application's content-length

  bool closing_ = false;  // no request after the current one
  bool errored_ = false;
  int error_status_ = 0;
  uint32_t reset_code_ = 0;  // the application reset its stream
  std::string error_reason_;
};

}  // namespace h2loop::h1
