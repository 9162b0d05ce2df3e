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

// One certificate with its key (and, optionally, its stapled OCSP response).
struct CertificateFiles {
  std::filesystem::path cert;  // PEM; leaf first, then intermediates
  std::filesystem::path key;   // PEM private key matching the leaf
  // A DER OCSP response for this certificate, stapled to every handshake
  // whose client asks (status_request). Empty: none.
  std::filesystem::path ocsp_response;
  bool operator==(const CertificateFiles&) const = default;
};

struct TlsOptions {
  std::filesystem::path cert_file;  // PEM; leaf first, then intermediates
  std::filesystem::path key_file;   // PEM private key matching the leaf
  // More certificates, chosen by the client's SNI (server_name) against the
  // DNS names each one carries (subjectAltName, else its CN; "*.example.com"
  // matches one label). The first certificate whose names match wins; a
  // client without SNI, or with a name none carries, gets cert_file.
  std::vector<CertificateFiles> sni;
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
  // A DER OCSP response for cert_file, stapled to every handshake whose
  // client asks (status_request). Empty: none.
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

  // The default certificate's context: every handshake starts on it (an SNI
  // match then moves the SSL to that certificate's context).
  [[nodiscard]] SSL_CTX* get() const;
  [[nodiscard]] const TlsOptions& options() const;
  // The certificate (index into [cert_file, sni...]) a handshake with this
  // SNI name gets; 0 for none or an unknown name. Case-insensitive.
  [[nodiscard]] size_t certificateFor(std::string_view server_name) const;
  // The DNS names certificate `index` was found to carry.
  [[nodiscard]] const std::vector<std::string>& namesOf(size_t index) const;
  // Ticket keys, certificates and their names and OCSP responses, as the
  // OpenSSL callbacks read them (opaque outside tls_context.cc).
  struct Extras;

 private:
  // Heap-allocated: its address is the client-hello callback's argument and must not move.
  std::unique_ptr<TlsOptions> options_;
  std::unique_ptr<Extras> extras_;
};

}  // namespace h2loop::net
