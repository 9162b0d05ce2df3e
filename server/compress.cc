#include "server/compress.h"

#include <brotli/encode.h>
#include <zlib.h>

#include <algorithm>
#include <limits>

namespace h2loop::server {

namespace {

bool gzipBytes(std::string_view in, int level, std::string& out) {
  z_stream z{};
  // windowBits 15 + 16: a gzip wrapper (header with mtime 0, CRC-32 trailer).
  if (deflateInit2(&z, std::clamp(level, 1, 9), Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
      Z_OK) {
    return false;
  }
  out.resize(deflateBound(&z, static_cast<uLong>(in.size())));
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&z, Z_FINISH);  // one call: avail_out >= deflateBound
  const std::size_t n = z.total_out;
  deflateEnd(&z);
  if (rc != Z_STREAM_END) return false;
  out.resize(n);
  return true;
}

bool brotliBytes(std::string_view in, int quality, std::string& out) {
  std::size_t n = BrotliEncoderMaxCompressedSize(in.size());
  if (n == 0) return false;
  out.resize(n);
  if (!BrotliEncoderCompress(std::clamp(quality, BROTLI_MIN_QUALITY, BROTLI_MAX_QUALITY),
                             BROTLI_DEFAULT_WINDOW, BROTLI_MODE_TEXT, in.size(),
                             reinterpret_cast<const uint8_t*>(in.data()), &n,
                             reinterpret_cast<uint8_t*>(out.data()))) {
    return false;
  }
  out.resize(n);
  return true;
}

char lower(char c) noexcept {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

}  // namespace

std::string_view codingName(Coding c) noexcept {
  return c == Coding::kGzip ? "gzip" : "br";
}

bool compressBytes(Coding coding, std::string_view in, int level, std::string& out) {
  // zlib counts in uInt: refuse what would not fit in one call (far above any sane maximum).
  if (in.size() > std::numeric_limits<uInt>::max() / 2) return false;
  return coding == Coding::kGzip ? gzipBytes(in, level, out) : brotliBytes(in, level, out);
}

bool typeMatches(std::string_view content_type, const std::vector<std::string>& types) noexcept {
  std::string_view media = content_type.substr(0, content_type.find(';'));
  while (!media.empty() && (media.back() == ' ' || media.back() == '\t'))
    media.remove_suffix(1);
  if (media.empty()) return false;
  for (const std::string& t : types) {
    const std::string_view want = t;
    if (want.size() >= 2 && want.ends_with("/*")) {
      const std::string_view prefix = want.substr(0, want.size() - 1);  // "text/"
      if (media.size() > prefix.size() && equalsIgnoreCase(media.substr(0, prefix.size()), prefix))
        return true;
    } else if (equalsIgnoreCase(media, want)) {
      return true;
    }
  }
  return false;
}

CompressedBody::CompressedBody(std::string bytes, std::shared_ptr<detail::CompressedLive> live)
    : bytes_(std::move(bytes)), live_(std::move(live)) {
  live_->bytes += size();
  ++live_->bodies;
}

CompressedBody::~CompressedBody() {
  live_->bytes -= size();
  --live_->bodies;
}

void CompressedBody::release() {
  if (--refs_ == 0) delete this;
}

}  // namespace h2loop::server
