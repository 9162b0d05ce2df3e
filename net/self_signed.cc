#include "net/self_signed.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

#include "net/socket_util.h"

namespace h2loop::net {

namespace {

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free_all(b); }
};
struct BnFree {
  void operator()(BIGNUM* b) const { BN_free(b); }
};
struct ExtFree {
  void operator()(X509_EXTENSION* e) const { X509_EXTENSION_free(e); }
};

[[noreturn]] void fail(const std::string& what) {
  const unsigned long e = ERR_get_error();
  std::string reason = "unknown error";
  if (e != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    reason = buf;
  }
  ERR_clear_error();
  throw std::runtime_error("self-signed certificate: " + what + ": " + reason);
}

void addExtension(X509* cert, int nid, const std::string& value) {
  X509V3_CTX v3{};
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, cert, cert, nullptr, nullptr, 0);
  std::unique_ptr<X509_EXTENSION, ExtFree> ext(
      X509V3_EXT_conf_nid(nullptr, &v3, nid, value.c_str()));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) {
    fail("cannot add extension " + std::string(OBJ_nid2sn(nid)) + "=" + value);
  }
}

// Opens `path` for writing with `mode` (also applied to an existing file) as a BIO.
std::unique_ptr<BIO, BioFree> openForWrite(const std::filesystem::path& path, mode_t mode) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) {
    throw std::runtime_error("self-signed certificate: cannot write '" + path.string() +
                             "': " + errnoString(errno));
  }
  if (::fchmod(fd, mode) != 0) {
    const int err = errno;
    ::close(fd);
    throw std::runtime_error("self-signed certificate: cannot chmod '" + path.string() +
                             "': " + errnoString(err));
  }
  std::unique_ptr<BIO, BioFree> bio(BIO_new_fd(fd, BIO_CLOSE));
  if (!bio) {
    ::close(fd);
    fail("cannot create a BIO for '" + path.string() + "'");
  }
  return bio;
}

}  // namespace

void generateSelfSigned(const std::filesystem::path& cert_file,
                        const std::filesystem::path& key_file, std::string_view common_name) {
  ERR_clear_error();
  std::unique_ptr<EVP_PKEY, PkeyFree> key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (!key) fail("cannot generate an EC P-256 key");

  std::unique_ptr<X509, X509Free> cert(X509_new());
  if (!cert) fail("X509_new failed");
  if (X509_set_version(cert.get(), X509_VERSION_3) != 1) fail("cannot set version");

  // Random positive 63-bit serial (RFC 5280: unique per issuer; we are our own issuer).
  uint64_t serial_raw = 0;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&serial_raw), sizeof serial_raw) != 1) {
    fail("RAND_bytes failed");
  }
  serial_raw = (serial_raw >> 1) | 1;
  std::unique_ptr<BIGNUM, BnFree> serial(BN_new());
  if (!serial || BN_set_word(serial.get(), serial_raw) != 1 ||
      BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get())) == nullptr) {
    fail("cannot set serial number");
  }

  constexpr long kSkewSeconds = 60;
  constexpr long kOneYearSeconds = 365L * 24 * 60 * 60;
  if (X509_gmtime_adj(X509_getm_notBefore(cert.get()), -kSkewSeconds) == nullptr ||
      X509_gmtime_adj(X509_getm_notAfter(cert.get()), kOneYearSeconds) == nullptr) {
    fail("cannot set validity");
  }

  const std::string cn(common_name.empty() ? std::string_view("localhost") : common_name);
  X509_NAME* name = X509_get_subject_name(cert.get());
  if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1,
                                 0) != 1 ||
      X509_set_issuer_name(cert.get(), name) != 1) {
    fail("cannot set subject/issuer name CN=" + cn);
  }
  if (X509_set_pubkey(cert.get(), key.get()) != 1) fail("cannot set public key");

  std::string san = "DNS:localhost,IP:127.0.0.1,IP:::1";
  if (cn != "localhost") san = "DNS:" + cn + "," + san;
  addExtension(cert.get(), NID_basic_constraints, "critical,CA:FALSE");
  addExtension(cert.get(), NID_ext_key_usage, "serverAuth");
  addExtension(cert.get(), NID_subject_key_identifier, "hash");
  addExtension(cert.get(), NID_subject_alt_name, san);

  if (X509_sign(cert.get(), key.get(), EVP_sha256()) <= 0) fail("cannot sign the certificate");

  {
    auto bio = openForWrite(key_file, 0600);
    if (PEM_write_bio_PrivateKey(bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) !=
            1 ||
        BIO_flush(bio.get()) != 1) {
      fail("cannot write key file '" + key_file.string() + "'");
    }
  }
  {
    auto bio = openForWrite(cert_file, 0644);
    if (PEM_write_bio_X509(bio.get(), cert.get()) != 1 || BIO_flush(bio.get()) != 1) {
      fail("cannot write certificate file '" + cert_file.string() + "'");
    }
  }
}

}  // namespace h2loop::net
