#pragma once

#include <openssl/types.h>

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace h2loop::net {

// TLS 1.2 cipher list allowed by RFC 9113 (no block-listed suite): ECDHE key exchange + AEAD.
inline constexpr std::string_view kDefaultTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

struct TlsOptions {
  std::filesystem::path cert_file;  // PEM; leaf first, then intermediates
  std::filesystem::path key_file;   // PEM private key matching the leaf
  // SSL_CTX_set_cipher_list() syntax, TLS 1.2 only. Keep it within RFC 9113's allowance.
  std::string tls12_ciphers = std::string(kDefaultTls12Ciphers);
  // SSL_CTX_set_ciphersuites() syntax, e.g. "TLS_AES_128_GCM_SHA256". Empty: OpenSSL's default.
  std::string tls13_ciphersuites;
  // A client that sends no ALPN extension at all is refused (no_application_protocol alert)
  // unless this is set, in which case it is served as h2 (prior knowledge over TLS).
  bool allow_missing_alpn = false;
  // ALPN also accepts "http/1.1" (h2 is preferred), and a client without
  // ALPN is served HTTP/1.1 (allow_missing_alpn is then moot).
  bool http1 = false;
  // "1.2" or "1.3": the lowest protocol version accepted.
  std::string min_version = "1.2";
  // Session-ticket keys, each file 80 bytes (`openssl rand 80`): a 16-byte
  // name, a 32-byte HMAC-SHA256 secret, a 32-byte AES-256-CBC key. The first
  // issues tickets; every one is accepted (the others: renewed with the
  // first). The same files on several servers resume sessions across them.
  std::vector<std::filesystem::path> ticket_key_files;
  // Raw 80-byte keys used when no file is given (the server makes one per
  // process, so that a reload does not invalidate the tickets it issued).
  std::vector<std::string> ticket_keys;
  // A DER OCSP response for the certificate, stapled to every handshake
  // whose client asks (status_request). Empty: none.
  std::filesystem::path ocsp_response_file;
};

// A fresh random 80-byte ticket key (see TlsOptions::ticket_keys).
[[nodiscard]] std::string randomTicketKey();

// The server's SSL_CTX, built once at start-up and shared, read-only, by every worker thread
// (SSL_new on a shared SSL_CTX is thread-safe; the session cache locks internally).
//
// Configuration: TLS 1.2 minimum; TLS 1.2 restricted to `tls12_ciphers`; server cipher
// preference; no renegotiation; session cache + tickets on; ALPN: only "h2" is accepted — a client
// offering anything else (or, by default, no ALPN) fails the handshake with a
// no_application_protocol alert; partial writes + moving write buffer + released idle buffers.
//
// Lifetime: must outlive every TlsTransport made from it (the handshake callbacks use it).
class TlsContext {
 public:
  // Throws std::runtime_error with a one-line message naming the file and OpenSSL's reason
  // (missing/unreadable cert or key, key not matching the certificate, bad cipher string).
  explicit TlsContext(const TlsOptions& options);
  ~TlsContext();
  TlsContext(TlsContext&&) noexcept;
  TlsContext& operator=(TlsContext&&) noexcept;
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  [[nodiscard]] SSL_CTX* get() const { return ctx_.get(); }
  [[nodiscard]] const TlsOptions& options() const;
  // Ticket keys and the OCSP response, as the OpenSSL callbacks read them
  // (opaque outside tls_context.cc).
  struct Extras;

 private:
  struct CtxDeleter {
    void operator()(SSL_CTX* ctx) const;
  };
  // Heap-allocated: its address is the client-hello callback's argument and must not move.
  std::unique_ptr<TlsOptions> options_;
  std::unique_ptr<Extras> extras_;
  std::unique_ptr<SSL_CTX, CtxDeleter> ctx_;
};

}  // namespace h2loop::net
