#include "net/tls_context.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <spdlog/spdlog.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <unordered_map>

#include "net/socket_util.h"
#include "net/tls_transport.h"

namespace h2loop::net {

namespace {

constexpr unsigned char kAlpnH2[] = {2, 'h', '2'};
// Our preference order when HTTP/1.1 is served too.
constexpr unsigned char kAlpnH2Http11[] = {2, 'h', '2', 8, 'h', 't', 't', 'p', '/', '1', '.', '1'};

// "h2c, http/1.1" from a wire-format ALPN list.
std::string describeAlpnList(const unsigned char* in, unsigned int inlen) {
  std::string out;
  unsigned int i = 0;
  while (i < inlen) {
    unsigned int n = in[i++];
    if (n > inlen - i) break;
    if (!out.empty()) out += ", ";
    out.append(reinterpret_cast<const char*>(in + i), n);
    i += n;
  }
  return out.empty() ? std::string("nothing") : out;
}

int selectAlpn(SSL* ssl, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
               unsigned int inlen, void* arg) {
  const bool http1 = static_cast<const TlsOptions*>(arg)->http1;
  unsigned char* selected = nullptr;
  unsigned char selected_len = 0;
  // Ours first: h2 whenever the client offers it, whatever its order.
  if (SSL_select_next_proto(&selected, &selected_len, http1 ? kAlpnH2Http11 : kAlpnH2,
                            http1 ? sizeof kAlpnH2Http11 : sizeof kAlpnH2, in,
                            inlen) == OPENSSL_NPN_NEGOTIATED) {
    *out = selected;
    *outlen = selected_len;
    return SSL_TLSEXT_ERR_OK;
  }
  TlsTransport::noteHandshakeFailure(
      ssl, std::string(http1 ? "no ALPN h2 or http/1.1" : "no ALPN h2") +
               " offered (client offered: " + describeAlpnList(in, inlen) + ")");
  // OpenSSL turns this into a fatal no_application_protocol alert.
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

// Runs before ALPN selection: the ALPN callback is not called at all when the client sends no
// ALPN extension, and we would rather refuse such a client during the handshake than complete it
// and then drop the connection (the client would see a hang or a confusing error).
int onClientHello(SSL* ssl, int* alert, void* arg) {
  const auto* options = static_cast<const TlsOptions*>(arg);
  const unsigned char* ext = nullptr;
  size_t ext_len = 0;
  if (options->allow_missing_alpn || options->http1 ||
      SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &ext,
                                &ext_len) == 1) {
    return SSL_CLIENT_HELLO_SUCCESS;
  }
  TlsTransport::noteHandshakeFailure(ssl, "no ALPN h2 offered (client sent no ALPN extension)");
  *alert = SSL_AD_NO_APPLICATION_PROTOCOL;
  return SSL_CLIENT_HELLO_ERROR;
}

// The reasons on the thread's error queue, oldest first, "; "-joined; clears the queue.
std::string drainOpensslErrors() {
  std::string out;
  unsigned long e = 0;
  while ((e = ERR_get_error()) != 0) {
    std::string reason;
    if (ERR_SYSTEM_ERROR(e)) {
      reason = errnoString(ERR_GET_REASON(e));
    } else if (const char* r = ERR_reason_error_string(e); r != nullptr) {
      reason = r;
    } else {
      char buf[256];
      ERR_error_string_n(e, buf, sizeof buf);
      reason = buf;
    }
    // "system lib", "PEM lib": markers of where an error passed through, not reasons.
    const bool marker = reason.size() > 4 && reason.compare(reason.size() - 4, 4, " lib") == 0;
    if (marker || out.find(reason) != std::string::npos) continue;
    if (!out.empty()) out += "; ";
    out += reason;
  }
  return out.empty() ? std::string("unknown OpenSSL error") : out;
}

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error(what + ": " + drainOpensslErrors());
}

constexpr size_t kTicketKeyBytes = 80;

struct TicketKey {
  unsigned char name[16];
  unsigned char hmac[32];
  unsigned char aes[32];
};

std::string readFile(const std::filesystem::path& file, size_t limit, const char* what) {
  std::FILE* f = std::fopen(file.c_str(), "rb");
  if (f == nullptr) {
    throw std::runtime_error(std::string("TLS: cannot read ") + what + " '" + file.string() +
                             "': " + errnoString(errno));
  }
  std::string data;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0 && data.size() <= limit)
    data.append(buf, n);
  std::fclose(f);
  if (data.size() > limit) {
    throw std::runtime_error(std::string("TLS: ") + what + " '" + file.string() +
                             "' is larger than " + std::to_string(limit) + " bytes");
  }
  return data;
}

TicketKey ticketKey(std::string_view raw, const std::string& source) {
  if (raw.size() != kTicketKeyBytes) {
    throw std::runtime_error("TLS: session ticket key " + source + " has " +
                             std::to_string(raw.size()) +
                             " bytes, not 80 (make one with "
                             "`openssl rand 80 > FILE`)");
  }
  TicketKey k;
  std::memcpy(k.name, raw.data(), 16);
  std::memcpy(k.hmac, raw.data() + 16, 32);
  std::memcpy(k.aes, raw.data() + 48, 32);
  return k;
}

int ticketIndex() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

}  // namespace

namespace {

struct CtxDeleter {
  void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};

// One certificate's context: configured as every other, with its own
// certificate, key and OCSP response.
struct Certificate {
  std::unique_ptr<SSL_CTX, CtxDeleter> ctx;
  std::string ocsp;                // DER; empty: none (the status callback's argument)
  std::vector<std::string> names;  // lowercase DNS names, "*.x" for wildcards
};

}  // namespace

struct TlsContext::Extras {
  std::vector<TicketKey> ticket_keys;                // [0] issues
  std::vector<std::unique_ptr<Certificate>> certs;   // [0]: the default
  std::unordered_map<std::string, size_t> exact;     // name → certificate
  std::unordered_map<std::string, size_t> wildcard;  // ".example.com" → certificate

  size_t find(std::string_view server_name) const {
    if (certs.size() < 2 || server_name.empty() || server_name.size() > 255) return 0;
    std::string name(server_name);
    for (char& c : name)
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (auto it = exact.find(name); it != exact.end()) return it->second;
    const size_t dot = name.find('.');
    if (dot == std::string::npos || dot == 0) return 0;
    if (auto it = wildcard.find(name.substr(dot)); it != wildcard.end()) return it->second;
    return 0;
  }
};

namespace {

// OpenSSL's ticket callback (RFC 5077 layout): enc = 1 issues a ticket under
// the first key; otherwise the key is found by name. Returns 1 (use it), 2
// (use it and issue a new ticket under the first key), 0 (unknown: a full
// handshake), -1 (error).
int onTicketKey(SSL* ssl, unsigned char name[16], unsigned char* iv, EVP_CIPHER_CTX* cipher,
                EVP_MAC_CTX* mac, int enc) {
  const auto* extras = static_cast<const TlsContext::Extras*>(
      SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ticketIndex()));
  if (extras == nullptr || extras->ticket_keys.empty()) return 0;
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                         OSSL_PARAM_construct_end()};
  if (enc == 1) {
    const TicketKey& k = extras->ticket_keys.front();
    if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(EVP_aes_256_cbc())) != 1) return -1;
    std::memcpy(name, k.name, 16);
    if (EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, k.aes, iv) != 1 ||
        EVP_MAC_init(mac, k.hmac, sizeof k.hmac, params) != 1) {
      return -1;
    }
    return 1;
  }
  for (size_t i = 0; i < extras->ticket_keys.size(); ++i) {
    const TicketKey& k = extras->ticket_keys[i];
    if (std::memcmp(name, k.name, 16) != 0) continue;
    if (EVP_MAC_init(mac, k.hmac, sizeof k.hmac, params) != 1 ||
        EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, k.aes, iv) != 1) {
      return -1;
    }
    return i == 0 ? 1 : 2;
  }
  return 0;
}

// Staples the OCSP response when the client asked for one.
int onStatusRequest(SSL* ssl, void* arg) {
  const std::string& ocsp = *static_cast<const std::string*>(arg);
  if (ocsp.empty()) return SSL_TLSEXT_ERR_NOACK;
  auto* copy = static_cast<unsigned char*>(OPENSSL_malloc(ocsp.size()));
  if (copy == nullptr) return SSL_TLSEXT_ERR_NOACK;
  std::memcpy(copy, ocsp.data(), ocsp.size());
  // OpenSSL owns `copy` from here on.
  if (SSL_set_tlsext_status_ocsp_resp(ssl, copy, static_cast<long>(ocsp.size())) != 1) {
    OPENSSL_free(copy);
    return SSL_TLSEXT_ERR_NOACK;
  }
  return SSL_TLSEXT_ERR_OK;
}

// SNI: runs while the ClientHello's extensions are read, before ALPN and the
// certificate are chosen. A name another certificate carries moves the SSL to
// that certificate's context (configured as the default one in every other
// respect); anything else stays on the default certificate.
int onServerName(SSL* ssl, int* /*alert*/, void* arg) {
  const auto* extras = static_cast<const TlsContext::Extras*>(arg);
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (name == nullptr) return SSL_TLSEXT_ERR_OK;
  const size_t i = extras->find(name);
  if (i != 0 && SSL_set_SSL_CTX(ssl, extras->certs[i]->ctx.get()) == nullptr) {
    TlsTransport::noteHandshakeFailure(
        ssl, "cannot switch to the certificate for SNI " + std::string(name));
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  return SSL_TLSEXT_ERR_OK;
}

// The DNS names a certificate carries: its subjectAltName DNS entries, else
// its subject CN (lowercase).
std::vector<std::string> dnsNames(X509* x) {
  std::vector<std::string> out;
  auto lower = [](const unsigned char* p, int n) {
    std::string s(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
    for (char& c : s)
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  };
  if (auto* sans = static_cast<GENERAL_NAMES*>(
          X509_get_ext_d2i(x, NID_subject_alt_name, nullptr, nullptr))) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* g = sk_GENERAL_NAME_value(sans, i);
      if (g->type != GEN_DNS) continue;
      const ASN1_STRING* s = g->d.dNSName;
      if (ASN1_STRING_length(s) > 0) {
        out.push_back(lower(ASN1_STRING_get0_data(s), ASN1_STRING_length(s)));
      }
    }
    GENERAL_NAMES_free(sans);
  }
  if (out.empty()) {
    X509_NAME* subject = X509_get_subject_name(x);
    const int i = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    const ASN1_STRING* s =
        i >= 0 ? X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i)) : nullptr;
    if (s != nullptr && ASN1_STRING_length(s) > 0) {
      out.push_back(lower(ASN1_STRING_get0_data(s), ASN1_STRING_length(s)));
    }
  }
  return out;
}

}  // namespace

std::string randomTicketKey() {
  std::string key(kTicketKeyBytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(key.data()), static_cast<int>(key.size())) != 1) {
    fail("TLS: no random bytes for a session ticket key");
  }
  return key;
}

namespace {

// A context configured as every certificate's is: versions, ciphers, modes,
// session cache and tickets, ALPN.
std::unique_ptr<SSL_CTX, CtxDeleter> newContext(const TlsOptions& options, int min_version,
                                                TlsContext::Extras* extras,
                                                TlsOptions* callback_options) {
  std::unique_ptr<SSL_CTX, CtxDeleter> owned(SSL_CTX_new(TLS_server_method()));
  if (!owned) fail("TLS: SSL_CTX_new failed");
  SSL_CTX* ctx = owned.get();
  if (SSL_CTX_set_min_proto_version(ctx, min_version) != 1) {
    fail("TLS: cannot set minimum protocol version TLS " + options.min_version);
  }
  SSL_CTX_set_options(
      ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  // ECDH groups: OpenSSL 3 always picks automatically (SSL_CTX_set_ecdh_auto is a no-op);
  // its default list (X25519, P-256, X448, P-521, P-384, ffdhe*) is fine.

  if (SSL_CTX_set_cipher_list(ctx, options.tls12_ciphers.c_str()) != 1) {
    fail("TLS: invalid TLS 1.2 cipher list \"" + options.tls12_ciphers + "\"");
  }
  if (!options.tls13_ciphersuites.empty() &&
      SSL_CTX_set_ciphersuites(ctx, options.tls13_ciphersuites.c_str()) != 1) {
    fail("TLS: invalid TLS 1.3 ciphersuites \"" + options.tls13_ciphersuites + "\"");
  }

  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
  // Read-ahead: one recv() takes in as many records as are there (instead of
  // a header read and a body read per record). Buffered raw bytes make no
  // readiness event: TlsTransport::hasPendingInput() uses SSL_has_pending().
  SSL_CTX_set_read_ahead(ctx, 1);
  // One resumption ticket per handshake is enough for a browser-like client.
  SSL_CTX_set_num_tickets(ctx, 1);
  static constexpr unsigned char kSessionIdContext[] = "h2loop";
  SSL_CTX_set_session_id_context(ctx, kSessionIdContext, sizeof kSessionIdContext - 1);
  // Session tickets (no SSL_OP_NO_TICKET), under our keys: from files, or
  // the server's own (kept across reloads). OpenSSL's default would be a
  // random key per SSL_CTX, which a reload would throw away.
  if (!extras->ticket_keys.empty()) {
    if (SSL_CTX_set_ex_data(ctx, ticketIndex(), extras) != 1 ||
        SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, onTicketKey) != 1) {
      fail("TLS: cannot install the session ticket keys");
    }
  }
  SSL_CTX_set_client_hello_cb(ctx, onClientHello, callback_options);
  SSL_CTX_set_alpn_select_cb(ctx, selectAlpn, callback_options);
  return owned;
}

// Loads one certificate (chain, key, OCSP response) into a fresh context.
std::unique_ptr<Certificate> loadCertificate(const CertificateFiles& files,
                                             std::unique_ptr<SSL_CTX, CtxDeleter> owned) {
  auto c = std::make_unique<Certificate>();
  SSL_CTX* ctx = owned.get();
  const std::string cert = files.cert.string();
  const std::string key = files.key.string();
  if (SSL_CTX_use_certificate_chain_file(ctx, cert.c_str()) != 1) {
    fail("TLS: cannot load certificate file '" + cert + "'");
  }
  // Also checks the key against the certificate loaded above ("key values mismatch").
  if (SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM) != 1) {
    fail("TLS: cannot load private key file '" + key + "' (for certificate '" + cert + "')");
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    fail("TLS: private key '" + key + "' does not match certificate '" + cert + "'");
  }
  c->names = dnsNames(SSL_CTX_get0_certificate(ctx));
  if (!files.ocsp_response.empty()) {
    const std::string file = files.ocsp_response.string();
    c->ocsp = readFile(files.ocsp_response, 64 * 1024, "OCSP response");
    const auto* p = reinterpret_cast<const unsigned char*>(c->ocsp.data());
    OCSP_RESPONSE* resp = d2i_OCSP_RESPONSE(nullptr, &p, static_cast<long>(c->ocsp.size()));
    if (resp == nullptr) fail("TLS: OCSP response '" + file + "' is not a DER OCSP response");
    const int status = OCSP_response_status(resp);
    OCSP_RESPONSE_free(resp);
    if (status != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
      throw std::runtime_error("TLS: OCSP response '" + file + "' has status " +
                               OCSP_response_status_str(status));
    }
    // The argument is the response's own string: the Certificate is on the
    // heap and lives as long as the context.
    SSL_CTX_set_tlsext_status_cb(ctx, onStatusRequest);
    SSL_CTX_set_tlsext_status_arg(ctx, &c->ocsp);
  }
  c->ctx = std::move(owned);
  return c;
}

}  // namespace

TlsContext::TlsContext(const TlsOptions& options)
    : options_(std::make_unique<TlsOptions>(options)), extras_(std::make_unique<Extras>()) {
  ERR_clear_error();
  int min_version = 0;
  if (options.min_version == "1.2") {
    min_version = TLS1_2_VERSION;
  } else if (options.min_version == "1.3") {
    min_version = TLS1_3_VERSION;
  } else {
    throw std::runtime_error("TLS: minimum version \"" + options.min_version +
                             "\" is not 1.2 or 1.3");
  }
  for (const std::filesystem::path& f : options.ticket_key_files) {
    extras_->ticket_keys.push_back(
        ticketKey(readFile(f, kTicketKeyBytes, "session ticket key"), "'" + f.string() + "'"));
  }
  if (options.ticket_key_files.empty()) {
    for (const std::string& k : options.ticket_keys)
      extras_->ticket_keys.push_back(ticketKey(k, "(generated)"));
  }

  std::vector<CertificateFiles> all{
      {options.cert_file, options.key_file, options.ocsp_response_file}};
  all.insert(all.end(), options.sni.begin(), options.sni.end());
  for (size_t i = 0; i < all.size(); ++i) {
    extras_->certs.push_back(
        loadCertificate(all[i], newContext(options, min_version, extras_.get(), options_.get())));
    const Certificate& c = *extras_->certs.back();
    if (i > 0 && c.names.empty()) {
      throw std::runtime_error("TLS: certificate '" + all[i].cert.string() +
                               "' carries no DNS name (subjectAltName or CN) an SNI could "
                               "choose it by");
    }
    for (const std::string& name : c.names) {
      const bool wild = name.size() > 2 && name.starts_with("*.");
      auto [it, added] =
          wild ? extras_->wildcard.emplace(name.substr(1), i) : extras_->exact.emplace(name, i);
      if (!added && i > 0) {
        spdlog::warn("TLS: {} is a name of both '{}' and '{}'; the first serves it", name,
                     all[it->second].cert.string(), all[i].cert.string());
      }
    }
  }
  // Every handshake starts on the default certificate's context; its SNI
  // callback moves it to another certificate's.
  if (all.size() > 1) {
    SSL_CTX_set_tlsext_servername_callback(get(), onServerName);
    SSL_CTX_set_tlsext_servername_arg(get(), extras_.get());
  }
  spdlog::debug("TLS context ready: {} certificate(s), default {}, tls13_ciphersuites={}",
                all.size(), options.cert_file.string(),
                options.tls13_ciphersuites.empty() ? "default" : options.tls13_ciphersuites);
}

TlsContext::~TlsContext() = default;
TlsContext::TlsContext(TlsContext&&) noexcept = default;
TlsContext& TlsContext::operator=(TlsContext&&) noexcept = default;

const TlsOptions& TlsContext::options() const {
  return *options_;
}

SSL_CTX* TlsContext::get() const {
  return extras_->certs.front()->ctx.get();
}

size_t TlsContext::certificateFor(std::string_view server_name) const {
  return extras_->find(server_name);
}

const std::vector<std::string>& TlsContext::namesOf(size_t index) const {
  return extras_->certs.at(index)->names;
}

}  // namespace h2loop::net
